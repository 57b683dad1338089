// Approval flows: the list, and an editor for steps (approvers, all/any, condition), the cc list and locked
// fields. "#/flows?id=3" edits flow 3, "#/flows?new=1" starts a custom flow.
import { api, get, patch, post } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { conditionEditor, fromRow, toRow } from "../conditions.js";
import { ROLES, deptSelect, loadDepartments, loadUserNames, roleSelect, select, userPicker } from "../pickers.js";
import { button, checkbox, field, hashParams, liveToggle, move, pageHead, placeErrors, table } from "../ui.js";

const KINDS = () => [["discount", L("折扣审批", "Discount")], ["contract", L("合同审批", "Contract")],
  ["large_opportunity", L("大额商机审批", "Large opportunity")], ["custom", L("自定义", "Custom")]];
const APPROVER_KINDS = () => [["direct_leader", L("申请人的直属上级", "Applicant's direct leader")],
  ["nth_leader", L("第 N 级上级", "Nth-level leader")], ["dept_leader", L("指定部门的负责人", "Leader of a department")],
  ["users", L("指定人员", "Named users")], ["role", L("某角色的所有人", "Everyone with a role")]];
const LOCKABLE = () => [["amount", L("金额", "Amount")], ["stage", L("阶段", "Stage")], ["owner_id", L("负责人", "Owner")],
  ["expected_close_date", L("预计成交日期", "Expected close date")], ["name", L("名称", "Name")], ["custom", L("自定义字段", "Custom fields")],
  ["grade", L("客户等级", "Grade")], ["status", L("客户状态", "Status")]];

function approverWords(spec, ctx) {
  switch (spec.type) {
    case "direct_leader": return L("直属上级", "direct leader");
    case "nth_leader": return L(`第 ${spec.n} 级上级`, `level-${spec.n} leader`);
    case "dept_leader": return `${ctx.depts.find((d) => d.id === spec.department_id)?.name || `#${spec.department_id}`} ${L("负责人", "leader")}`;
    case "users": return spec.user_ids.map((id) => ctx.names.get(id) || `#${id}`).join("、");
    case "role": return L(...(ROLES[spec.role] || [spec.role, spec.role]));
    default: return spec.type;
  }
}

// Editor state → the approver spec the server takes; blanks go as null so the server names the input.
function specJson(spec) {
  const num = (v) => (v === "" || v === null || v === undefined ? null : Number.isFinite(Number(v)) ? Number(v) : v);
  switch (spec.type) {
    case "nth_leader": return { type: spec.type, n: num(spec.n) };
    case "dept_leader": return { type: spec.type, department_id: spec.department_id ?? null };
    case "users": return { type: spec.type, user_ids: [...spec.user_ids] };
    case "role": return { type: spec.type, role: spec.role || "" };
    default: return { type: spec.type };
  }
}

function approverEditor(spec, path, ctx, onRemove) {
  const box = h("div", { class: "approver pair", "data-field": path });
  const draw = () => {
    let extra = null;
    if (spec.type === "nth_leader") {
      extra = h("span", { "data-field": `${path}.n` }, h("input", { type: "number", min: 1, max: 20, class: "narrow", value: spec.n ?? "",
        "aria-label": "N", "data-role": "n", oninput: (e) => { spec.n = e.target.value; } }));
    } else if (spec.type === "dept_leader") {
      extra = h("span", { "data-field": `${path}.department_id` }, deptSelect(ctx.depts, spec.department_id, (id) => { spec.department_id = id; },
        { "aria-label": L("部门", "Department"), "data-role": "department" }));
    } else if (spec.type === "users") {
      extra = h("span", { "data-field": `${path}.user_ids` }, userPicker(spec.user_ids, ctx.names, () => {}, { label: L("审批人", "Approvers") }));
    } else if (spec.type === "role") {
      extra = h("span", { "data-field": `${path}.role` }, roleSelect(spec.role, (r) => { spec.role = r; }, { "aria-label": L("角色", "Role"), "data-role": "role" }));
    }
    clear(box, select({ "aria-label": L("审批人类型", "Approver kind"), "data-role": "approver-kind", onchange: (e) => {
      for (const key of Object.keys(spec)) delete spec[key];
      Object.assign(spec, { type: e.target.value, n: 2, department_id: null, user_ids: [], role: "" });
      draw();
    } }, APPROVER_KINDS(), spec.type), extra,
    onRemove ? button("×", onRemove, { class: "btn small", "aria-label": L("删除", "Remove") }) : null);
  };
  draw();
  return box;
}

const editable = (spec) => ({ n: "", department_id: null, user_ids: [], role: "", ...spec });

function stepEditor(state, i, ctx, redraw) {
  const step = state.steps[i];
  const path = `steps.${i}`;
  const approvers = h("div", { class: "approvers", "data-field": `${path}.approvers` },
    step.approvers.map((spec, j) => approverEditor(spec, `${path}.approvers.${j}`, ctx,
      step.approvers.length > 1 ? () => { step.approvers.splice(j, 1); redraw(); } : null)),
    button(L("+ 审批人", "+ Approver"), () => { step.approvers.push(editable({ type: "direct_leader" })); redraw(); },
      { class: "btn small", "data-action": "add-approver" }));
  return h("fieldset", { class: "step-card", "data-step": i, "data-field": path },
    h("legend", {}, L(`第 ${i + 1} 步`, `Step ${i + 1}`)),
    h("div", { class: "buttons step-tools" },
      button("↑", () => { move(state.steps, i, -1); redraw(); }, { class: "btn small", disabled: i === 0, "aria-label": L("上移", "Move up") }),
      button("↓", () => { move(state.steps, i, 1); redraw(); }, { class: "btn small", disabled: i === state.steps.length - 1, "aria-label": L("下移", "Move down") }),
      button(L("删除此步", "Remove step"), () => { state.steps.splice(i, 1); redraw(); }, { class: "btn small", "data-action": "remove-step" })),
    field(`${path}.name`, L("步骤名称", "Step name"), h("input", { value: step.name, "data-role": "step-name", oninput: (e) => { step.name = e.target.value; } })),
    field(`${path}.mode`, L("多人时", "With several approvers"), select({ "data-role": "mode", onchange: (e) => { step.mode = e.target.value; } },
      [["any", L("或签：任一人同意即可", "Any one approves")], ["all", L("会签：全部同意", "All must approve")]], step.mode)),
    h("div", { class: "field" }, h("span", { class: "label" }, L("审批人", "Approvers")), approvers),
    h("div", { class: "field" }, h("span", { class: "label" }, L("仅当满足以下条件时需要此步", "Only when all of these hold")),
      conditionEditor(step.rows, `${path}.condition`, ctx)));
}

function editor(main, flow, ctx) {
  const isNew = !flow.id;
  const state = { name: flow.name || "", kind: flow.kind || "custom", subject_type: flow.subject_type || "opportunity",
    description: flow.description || "", active: flow.active !== false, locked: new Set(flow.locked_fields || []),
    steps: (flow.steps || []).map((s) => ({ name: s.name, mode: s.mode || "any", approvers: s.approvers.map(editable),
      rows: (s.condition || []).map(toRow) })),
    cc: (flow.cc || []).map(editable) };
  if (!state.steps.length) state.steps.push({ name: "", mode: "any", approvers: [editable({ type: "direct_leader" })], rows: [] });
  const stepsBox = h("div", { id: "steps", "data-field": "steps" });
  const ccBox = h("div", { id: "cc", "data-field": "cc" });
  const drawSteps = () => clear(stepsBox, state.steps.map((_, i) => stepEditor(state, i, ctx, drawSteps)),
    button(L("+ 添加步骤", "+ Add step"), () => {
      state.steps.push({ name: "", mode: "any", approvers: [editable({ type: "direct_leader" })], rows: [] });
      drawSteps();
    }, { id: "add-step" }));
  const drawCc = () => clear(ccBox, state.cc.length ? null : h("p", { class: "muted" }, L("不抄送", "Nobody is copied")),
    state.cc.map((spec, j) => approverEditor(spec, `cc.${j}`, ctx, () => { state.cc.splice(j, 1); drawCc(); })),
    button(L("+ 抄送", "+ Copy to"), () => { state.cc.push(editable({ type: "direct_leader" })); drawCc(); }, { class: "btn small", id: "add-cc" }));
  drawSteps();
  drawCc();

  const form = h("form", { class: "card editor", id: "flow-form", novalidate: true },
    field("name", L("流程名称", "Name"), h("input", { name: "name", value: state.name, oninput: (e) => { state.name = e.target.value; } })),
    isNew ? field("kind", L("类型", "Kind"), select({ name: "kind", onchange: (e) => { state.kind = e.target.value; } }, KINDS(), state.kind),
      L("按类型发起的审批使用该类型中启用的流程，默认流程优先", "A submission by kind uses that kind's active flow, the default one first"))
      : h("p", { class: "muted" }, `${L("类型", "Kind")}：${KINDS().find(([k]) => k === flow.kind)?.[1] || flow.kind}`),
    isNew ? field("subject_type", L("审批对象", "Subject"), select({ name: "subject_type", onchange: (e) => { state.subject_type = e.target.value; } },
      [["opportunity", L("商机", "Opportunity")], ["customer", L("客户", "Customer")]], state.subject_type)) : null,
    field("description", L("说明", "Description"), h("textarea", { name: "description", rows: 2, oninput: (e) => { state.description = e.target.value; } }, state.description)),
    h("h2", {}, L("审批步骤", "Steps")), stepsBox,
    h("h2", {}, L("结束时抄送", "Copied at the end")), ccBox,
    h("div", { class: "field", "data-field": "locked_fields" }, h("span", { class: "label" }, L("审批中锁定的字段", "Fields locked while pending")),
      h("div", { class: "checks" }, LOCKABLE().map(([key, label]) => checkbox(state.locked.has(key),
        (on) => (on ? state.locked.add(key) : state.locked.delete(key)), label, { value: key })))),
    checkbox(state.active, (on) => { state.active = on; }, L("启用", "Active"), { name: "active" }),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn primary", id: "save-flow" }, L("保存", "Save")),
      h("a", { class: "btn", href: "#/flows" }, L("返回", "Back"))));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: state.name, description: state.description.trim() || null, active: state.active,
      steps: state.steps.map((s) => ({ name: s.name, mode: s.mode, approvers: s.approvers.map(specJson),
        condition: s.rows.map((r) => fromRow(r, ctx)) })),
      cc: state.cc.map(specJson), locked_fields: [...state.locked] };
    const saveButton = form.querySelector("#save-flow");
    saveButton.disabled = true;
    try {
      const saved = isNew ? await post("/admin/approval-flows", { ...body, kind: state.kind, subject_type: state.subject_type })
        : await patch(`/admin/approval-flows/${flow.id}`, body);
      toast(L("已保存", "Saved"));
      location.hash = `#/flows?saved=${saved.id}`;
    } catch (err) {
      placeErrors(form, err);
    } finally {
      saveButton.disabled = false;
    }
  });
  clear(main, pageHead(isNew ? L("新建审批流程", "New approval flow") : `${L("编辑流程", "Edit flow")}：${flow.name}`), form);
}

function listing(main, items, ctx) {
  const rows = items.map((f) => h("tr", { "data-flow": f.id, "data-kind": f.kind },
    h("td", {}, KINDS().find(([k]) => k === f.kind)?.[1] || f.kind), h("td", {}, f.name),
    h("td", { class: "steps-cell" }, h("ol", { class: "compact" }, (f.steps || []).map((s) => h("li", {}, `${s.name}：${s.approvers.map((a) => approverWords(a, ctx)).join(" + ")}`,
      s.condition?.length ? h("span", { class: "muted" }, ` (${L("有条件", "conditional")})`) : null)))),
    h("td", {}, liveToggle(f.active, (active) => patch(`/admin/approval-flows/${f.id}`, { active }), L("启用", "Active"))),
    h("td", { class: "actions" }, h("a", { class: "btn small", href: `#/flows?id=${f.id}`, "data-action": "edit" }, L("编辑", "Edit")),
      f.is_default ? null : button(L("删除", "Delete"), async () => {
        if (!confirm(L(`删除流程「${f.name}」？已使用过的流程只会停用。`, `Delete "${f.name}"? A flow already used is only deactivated.`))) return;
        try {
          await api("DELETE", `/admin/approval-flows/${f.id}`);
          toast(L("已删除", "Deleted"));
          await flowsPage(main);
        } catch (err) {
          toast(err.message, "error");
        }
      }, { class: "btn small", "data-action": "delete" }))));
  clear(main, pageHead(L("审批流程", "Approval flows"), h("a", { class: "btn primary", href: "#/flows?new=1", id: "new-flow" }, L("新建流程", "New flow"))),
    table([L("类型", "Kind"), L("名称", "Name"), L("审批步骤", "Steps"), L("启用", "Active"), ""], rows));
}

export default async function flowsPage(main) {
  const params = hashParams();
  const [stages, fields, depts, names] = await Promise.all([get("/admin/stages"), get("/fields"), loadDepartments(), loadUserNames()]);
  const ctx = { stages: stages.items.map((s) => ({ key: s.key, name: s.active ? s.name : `${s.name}${L("（已停用）", " (retired)")}` })), fields: fields.items, depts, names };
  if (params.get("new")) return editor(main, {}, ctx);
  if (params.get("id")) return editor(main, await get(`/admin/approval-flows/${Number(params.get("id"))}`), ctx);
  listing(main, (await get("/admin/approval-flows")).items, ctx);
}
