// Automation rules: trigger (+ its parameter), condition, actions each with their own inputs, enabled; and
// the recent firings of a rule. "#/rules?id=3" edits rule 3, "#/rules?new=1" starts one.
import { api, get, patch, post, query } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L, when } from "../i18n.js";
import { conditionEditor, fromRow, toRow } from "../conditions.js";
import { loadUserNames, recipientEditor, recipientWords, select, userPicker } from "../pickers.js";
import { button, checkbox, field, hashParams, liveToggle, move, pageHead, placeErrors, table } from "../ui.js";

const TRIGGERS = () => [["customer_created", L("新建客户", "Customer created")], ["customer_assigned", L("客户被分配负责人", "Customer assigned")],
  ["stage_changed", L("商机阶段变更", "Stage changed")], ["follow_up_written", L("写了跟进记录", "Follow-up written")],
  ["amount_crossed", L("商机金额超过", "Amount crossed")], ["no_follow_up", L("超过 N 天未跟进", "No follow-up for N days")]];
const ACTIONS = () => [["create_task", L("创建任务", "Create a task")], ["notify", L("发送通知", "Notify")],
  ["assign_owner", L("轮流分配负责人", "Assign owner (round robin)")], ["add_tag", L("添加标签", "Add a tag")],
  ["remove_tag", L("移除标签", "Remove a tag")], ["start_approval", L("发起审批", "Start an approval")]];
const FLOW_KINDS = () => [["discount", L("折扣审批", "Discount")], ["contract", L("合同审批", "Contract")],
  ["large_opportunity", L("大额商机审批", "Large opportunity")], ["custom", L("自定义", "Custom")]];
const word = (pairs, key) => pairs.find(([k]) => k === key)?.[1] || key;
const num = (v) => (v === "" || v === null || v === undefined ? null : Number.isFinite(Number(v)) ? Number(v) : v);

function triggerWords(rule, ctx) {
  const p = rule.params || {};
  const base = word(TRIGGERS(), rule.trigger);
  if (rule.trigger === "stage_changed") return p.stage ? `${base} → ${ctx.stages.find((s) => s.key === p.stage)?.name || p.stage}` : base;
  if (rule.trigger === "amount_crossed") return `${base} ${p.threshold}`;
  if (rule.trigger === "no_follow_up") return L(`超过 ${p.days} 天未跟进`, `No follow-up for ${p.days} days`);
  return base;
}

function actionJson(a) {
  switch (a.type) {
    case "create_task": return { type: a.type, title: a.title || "", due_in_days: num(a.due_in_days) ?? 0,
      ...(a.due_in_hours ? { due_in_hours: a.due_in_hours } : {}), assignee: a.assignee || "owner" };
    case "notify": return { type: a.type, to: [...a.to], message: a.message || "" };
    case "assign_owner": return { type: a.type, user_ids: [...a.user_ids] };
    case "add_tag": case "remove_tag": return { type: a.type, tag_id: a.tag_id ?? null };
    default: return { type: a.type, kind: a.kind || "discount" };
  }
}

const blankAction = (type) => ({ type, title: "", due_in_days: 1, assignee: "owner", to: ["owner"], message: "", user_ids: [],
  tag_id: null, kind: "discount" });

function actionInputs(a, path, ctx, redraw) {
  const text = (key, label, { help, ...attrs } = {}) => field(`${path}.${key}`, label, h("input", { value: a[key] ?? "", "data-role": key, ...attrs,
    oninput: (e) => { a[key] = e.target.value; } }), help);
  switch (a.type) {
    case "create_task":
      return [text("title", L("任务标题", "Task title"), { help: L("可用 {客户名称} {商机名称} {金额} {阶段}", "Placeholders: {customer_name} {opportunity_name} {amount} {stage}") }),
        text("due_in_days", L("几天后到期", "Due in days"), { type: "number", min: 0, max: 365, class: "narrow" }),
        h("div", { class: "field", "data-field": `${path}.assignee` }, h("span", { class: "label" }, L("执行人", "Assignee")),
          recipientEditor(a.assignee, ctx.names, (v) => { a.assignee = v; }))];
    case "notify":
      return [h("div", { class: "field", "data-field": `${path}.to` }, h("span", { class: "label" }, L("通知谁", "Notify whom")),
        a.to.map((v, k) => h("div", { class: "pair", "data-field": `${path}.to.${k}` }, recipientEditor(v, ctx.names, (next) => { a.to[k] = next; }),
          a.to.length > 1 ? button("×", () => { a.to.splice(k, 1); redraw(); }, { class: "btn small", "aria-label": L("删除", "Remove") }) : null)),
        button(L("+ 通知对象", "+ Recipient"), () => { a.to.push("owner"); redraw(); }, { class: "btn small", "data-action": "add-recipient" })),
      text("message", L("消息内容", "Message"), { help: L("可用 {客户名称} {商机名称} {金额} {阶段}", "Placeholders: {customer_name} {opportunity_name} {amount} {stage}") })];
    case "assign_owner":
      return [h("div", { class: "field", "data-field": `${path}.user_ids` }, h("span", { class: "label" }, L("按顺序轮流分配给", "Round robin over")),
        userPicker(a.user_ids, ctx.names, () => {}, { label: L("负责人", "Owners") }))];
    case "add_tag": case "remove_tag":
      return [field(`${path}.tag_id`, L("标签", "Tag"), select({ "data-role": "tag", onchange: (e) => { a.tag_id = num(e.target.value); } },
        ctx.tags.map((t) => [t.id, t.group ? `${t.group} / ${t.name}` : t.name]), a.tag_id, L("请选择标签", "Choose a tag")))];
    default:
      return [field(`${path}.kind`, L("审批类型", "Approval kind"), select({ "data-role": "approval-kind", onchange: (e) => { a.kind = e.target.value; } },
        FLOW_KINDS(), a.kind))];
  }
}

function actionEditor(state, i, ctx, redraw) {
  const a = state.actions[i];
  const path = `actions.${i}`;
  return h("fieldset", { class: "step-card", "data-action-index": i, "data-field": path },
    h("legend", {}, L(`动作 ${i + 1}`, `Action ${i + 1}`)),
    h("div", { class: "buttons step-tools" },
      button("↑", () => { move(state.actions, i, -1); redraw(); }, { class: "btn small", disabled: i === 0, "aria-label": L("上移", "Move up") }),
      button("↓", () => { move(state.actions, i, 1); redraw(); }, { class: "btn small", disabled: i === state.actions.length - 1, "aria-label": L("下移", "Move down") }),
      button(L("删除", "Remove"), () => { state.actions.splice(i, 1); redraw(); }, { class: "btn small", "data-action": "remove-action" })),
    field(`${path}.type`, L("做什么", "Do what"), select({ "data-role": "action-type", onchange: (e) => {
      state.actions[i] = { ...blankAction(e.target.value) };
      redraw();
    } }, ACTIONS(), a.type)),
    actionInputs(a, path, ctx, redraw));
}

function triggerInputs(state, ctx, box) {
  const p = state.params;
  let extra = null;
  if (state.trigger === "stage_changed") {
    extra = field("params.stage", L("变更为", "Moved to"), select({ name: "stage", onchange: (e) => { p.stage = e.target.value; } },
      ctx.stages.map((s) => [s.key, s.name]), p.stage, L("任意阶段", "Any stage")));
  } else if (state.trigger === "amount_crossed") {
    extra = field("params.threshold", L("金额（元）", "Amount"), h("input", { name: "threshold", inputmode: "decimal", value: p.threshold ?? "",
      oninput: (e) => { p.threshold = e.target.value; } }));
  } else if (state.trigger === "no_follow_up") {
    extra = field("params.days", L("天数", "Days"), h("input", { name: "days", type: "number", min: 1, max: 3650, value: p.days ?? "",
      oninput: (e) => { p.days = e.target.value; } }));
  }
  clear(box, field("trigger", L("何时", "When"), select({ name: "trigger", onchange: (e) => { state.trigger = e.target.value; triggerInputs(state, ctx, box); } },
    TRIGGERS(), state.trigger)), extra);
}

function paramsJson(state) {
  const p = state.params;
  if (state.trigger === "stage_changed") return p.stage ? { stage: p.stage } : {};
  if (state.trigger === "amount_crossed") return { threshold: num(p.threshold) };
  if (state.trigger === "no_follow_up") return { days: num(p.days) };
  return {};
}

async function firings(rule) {
  const page = await get(`/admin/rule-firings${query({ rule_id: rule.id, limit: 20 })}`);
  return table([L("时间", "When"), L("对象", "Subject"), L("结果", "Result"), L("动作", "Actions")],
    page.items.map((f) => h("tr", { "data-firing": f.id }, h("td", {}, when(f.created_at)),
      h("td", {}, `${f.subject.type === "opportunity" ? L("商机", "Opportunity") : L("客户", "Customer")} #${f.subject.id}`),
      h("td", { class: `state-${f.status}` }, { done: L("已执行", "done"), failed: L("失败", "failed"), loop_stopped: L("循环已阻止", "loop stopped") }[f.status] || f.status,
        f.detail ? h("div", { class: "muted" }, f.detail) : null),
      h("td", { class: "changes" }, (f.actions || []).map((a) => h("div", {}, word(ACTIONS(), a.type), a.error ? `：${a.error}` : a.skipped ? `：${a.skipped}` : ""))))),
    L("这条规则还没有触发过", "This rule has not fired yet"));
}

async function editor(main, rule, ctx) {
  const isNew = !rule.id;
  const state = { name: rule.name || "", trigger: rule.trigger || "customer_created", params: { ...(rule.params || {}) },
    rows: (rule.condition || []).map(toRow), enabled: rule.enabled !== false,
    actions: (rule.actions || [blankAction("create_task")]).map((a) => ({ ...blankAction(a.type), ...a })) };
  const triggerBox = h("div", { class: "inline-form" });
  triggerInputs(state, ctx, triggerBox);
  const actionsBox = h("div", { id: "actions", "data-field": "actions" });
  const drawActions = () => clear(actionsBox, state.actions.map((_, i) => actionEditor(state, i, ctx, drawActions)),
    button(L("+ 添加动作", "+ Add action"), () => { state.actions.push(blankAction("notify")); drawActions(); }, { id: "add-action" }));
  drawActions();
  const form = h("form", { class: "card editor", id: "rule-form", novalidate: true },
    field("name", L("规则名称", "Name"), h("input", { name: "name", value: state.name, oninput: (e) => { state.name = e.target.value; } })),
    triggerBox,
    h("div", { class: "field" }, h("span", { class: "label" }, L("并且满足以下条件", "And all of these hold")), conditionEditor(state.rows, "condition", ctx)),
    h("h2", {}, L("动作", "Actions")), actionsBox,
    checkbox(state.enabled, (on) => { state.enabled = on; }, L("启用", "Enabled"), { name: "enabled" }),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn primary", id: "save-rule" }, L("保存", "Save")),
      h("a", { class: "btn", href: "#/rules" }, L("返回", "Back"))));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: state.name, trigger: state.trigger, params: paramsJson(state), enabled: state.enabled,
      condition: state.rows.map((r) => fromRow(r, ctx)), actions: state.actions.map(actionJson) };
    const saveButton = form.querySelector("#save-rule");
    saveButton.disabled = true;
    try {
      const saved = isNew ? await post("/admin/rules", body) : await patch(`/admin/rules/${rule.id}`, body);
      toast(L("已保存", "Saved"));
      location.hash = `#/rules?saved=${saved.id}`;
    } catch (err) {
      placeErrors(form, err);
    } finally {
      saveButton.disabled = false;
    }
  });
  let recent = null;
  if (!isNew) {
    recent = h("section", { class: "card", id: "rule-firings" }, h("h2", {}, L("最近触发", "Recent firings")));
    recent.append(await firings(rule).catch((err) => h("div", { class: "error-box" }, err.message)));
  }
  clear(main, pageHead(isNew ? L("新建自动化规则", "New automation rule") : `${L("编辑规则", "Edit rule")}：${rule.name}`), form, recent);
}

function listing(main, items, ctx) {
  const rows = items.map((r) => h("tr", { "data-rule": r.id }, h("td", {}, r.name), h("td", {}, triggerWords(r, ctx)),
    h("td", {}, r.condition?.length ? L(`${r.condition.length} 个条件`, `${r.condition.length} conditions`) : "—"),
    h("td", {}, (r.actions || []).map((a) => h("div", {}, word(ACTIONS(), a.type),
      a.type === "create_task" ? `：${a.title}` : a.type === "notify" ? `：${a.to.map((v) => recipientWords(v, ctx.names)).join("、")}` : ""))),
    h("td", {}, liveToggle(r.enabled, (enabled) => patch(`/admin/rules/${r.id}`, { enabled }), L("启用", "Enabled"))),
    h("td", { class: "actions" }, h("a", { class: "btn small", href: `#/rules?id=${r.id}`, "data-action": "edit" }, L("编辑", "Edit")),
      button(L("删除", "Delete"), async () => {
        if (!confirm(L(`删除规则「${r.name}」？触发记录会保留。`, `Delete "${r.name}"? Its firing log stays.`))) return;
        try {
          await api("DELETE", `/admin/rules/${r.id}`);
          toast(L("已删除", "Deleted"));
          await rulesPage(main);
        } catch (err) {
          toast(err.message, "error");
        }
      }, { class: "btn small", "data-action": "delete" }))));
  clear(main, pageHead(L("自动化规则", "Automation rules"), h("a", { class: "btn primary", href: "#/rules?new=1", id: "new-rule" }, L("新建规则", "New rule"))),
    table([L("名称", "Name"), L("触发", "Trigger"), L("条件", "Condition"), L("动作", "Actions"), L("启用", "Enabled"), ""], rows));
}

export default async function rulesPage(main) {
  const params = hashParams();
  const [stages, fields, tags, names] = await Promise.all([get("/admin/stages"), get("/fields"), get("/tags"), loadUserNames()]);
  const ctx = { stages: stages.items.map((s) => ({ key: s.key, name: s.active ? s.name : `${s.name}${L("（已停用）", " (retired)")}` })), fields: fields.items, names,
    tags: tags.groups.flatMap((g) => g.tags) };
  if (params.get("new")) return editor(main, {}, ctx);
  if (params.get("id")) return editor(main, await get(`/admin/rules/${Number(params.get("id"))}`), ctx);
  listing(main, (await get("/admin/rules")).items, ctx);
}
