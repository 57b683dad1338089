// Lead assignment rules: customers without an owner go, by the first matching rule (region, industry, source;
// an empty list matches anything), to one user or round robin over a team (a department and its sub-departments).
import { api, get, patch, post } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { deptSelect, loadDepartments, loadUserNames, userPicker } from "../pickers.js";
import { button, checkbox, field, hashParams, liveToggle, pageHead, placeErrors, table } from "../ui.js";

const split = (text) => text.split(/[,，、\n]/).map((x) => x.trim()).filter(Boolean);
const any = () => L("不限", "any");

function editor(main, rule, ctx) {
  const isNew = !rule.id;
  const state = { name: rule.name || "", regions: (rule.regions || []).join("，"), industries: (rule.industries || []).join("，"),
    sources: (rule.sources || []).join("，"), target: rule.department_id ? "team" : "user",
    user_ids: rule.user_id ? [rule.user_id] : [], department_id: rule.department_id ?? null, enabled: rule.enabled !== false,
    sort_order: rule.sort_order ?? 0 };
  const text = (key, label, help) => field(key, label, h("input", { name: key, value: state[key], oninput: (e) => { state[key] = e.target.value; } }), help);
  const targetBox = h("div", {});
  const drawTarget = () => clear(targetBox,
    h("div", { class: "choices", role: "radiogroup" }, [["user", L("分给一个人", "One person")], ["team", L("团队轮流分配", "A team, round robin")]]
      .map(([v, label]) => h("label", { class: "choice" }, h("input", { type: "radio", name: "target", value: v, checked: state.target === v,
        onchange: () => { state.target = v; drawTarget(); } }), label))),
    state.target === "user"
      ? h("div", { class: "field", "data-field": "user_id" }, h("span", { class: "label" }, L("负责人", "Owner")),
        userPicker(state.user_ids, ctx.names, () => {}, { single: true, label: L("负责人", "Owner") }))
      : field("department_id", L("团队（含下级部门，跳过已停用的人）", "Team (with sub-departments; inactive people skipped)"),
        deptSelect(ctx.depts, state.department_id, (id) => { state.department_id = id; }, { name: "department_id" })));
  drawTarget();
  const help = L("多个值用逗号分隔，留空表示不限", "Comma-separated; empty matches anything");
  const form = h("form", { class: "card editor", id: "assignment-form", novalidate: true },
    field("name", L("规则名称", "Name"), h("input", { name: "name", value: state.name, oninput: (e) => { state.name = e.target.value; } })),
    text("regions", L("地区", "Regions"), help), text("industries", L("行业", "Industries"), help), text("sources", L("来源", "Sources"), help),
    targetBox,
    field("sort_order", L("顺序（小的先匹配）", "Order (smaller is tried first)"), h("input", { name: "sort_order", type: "number", min: 0,
      value: state.sort_order, oninput: (e) => { state.sort_order = e.target.value; } })),
    checkbox(state.enabled, (on) => { state.enabled = on; }, L("启用", "Enabled"), { name: "enabled" }),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn primary", id: "save-assignment" }, L("保存", "Save")),
      h("a", { class: "btn", href: "#/assignment" }, L("返回", "Back"))));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const order = String(state.sort_order).trim();
    const body = { name: state.name, regions: split(state.regions), industries: split(state.industries), sources: split(state.sources),
      user_id: state.target === "user" ? state.user_ids[0] ?? null : null,
      department_id: state.target === "team" ? state.department_id : null, enabled: state.enabled,
      sort_order: order === "" ? 0 : Number.isFinite(Number(order)) ? Number(order) : order };
    const saveButton = form.querySelector("#save-assignment");
    saveButton.disabled = true;
    try {
      const saved = isNew ? await post("/admin/assignment-rules", body) : await patch(`/admin/assignment-rules/${rule.id}`, body);
      toast(L("已保存", "Saved"));
      location.hash = `#/assignment?saved=${saved.id}`;
    } catch (err) {
      placeErrors(form, err);
    } finally {
      saveButton.disabled = false;
    }
  });
  clear(main, pageHead(isNew ? L("新建分配规则", "New assignment rule") : `${L("编辑分配规则", "Edit assignment rule")}：${rule.name}`), form);
}

function listing(main, items, ctx) {
  const rows = items.map((r) => h("tr", { "data-assignment": r.id }, h("td", {}, r.sort_order), h("td", {}, r.name),
    h("td", {}, r.regions.join("、") || any()), h("td", {}, r.industries.join("、") || any()), h("td", {}, r.sources.join("、") || any()),
    h("td", {}, r.user_id ? ctx.names.get(r.user_id) || `#${r.user_id}`
      : `${ctx.depts.find((d) => d.id === r.department_id)?.name || `#${r.department_id}`}（${L("轮流", "round robin")}）`),
    h("td", {}, liveToggle(r.enabled, (enabled) => patch(`/admin/assignment-rules/${r.id}`, { enabled }), L("启用", "Enabled"))),
    h("td", { class: "actions" }, h("a", { class: "btn small", href: `#/assignment?id=${r.id}`, "data-action": "edit" }, L("编辑", "Edit")),
      button(L("删除", "Delete"), async () => {
        if (!confirm(L(`删除分配规则「${r.name}」？`, `Delete "${r.name}"?`))) return;
        try {
          await api("DELETE", `/admin/assignment-rules/${r.id}`);
          toast(L("已删除", "Deleted"));
          await assignmentPage(main);
        } catch (err) {
          toast(err.message, "error");
        }
      }, { class: "btn small", "data-action": "delete" }))));
  clear(main, pageHead(L("线索分配", "Lead assignment"), h("a", { class: "btn primary", href: "#/assignment?new=1", id: "new-assignment" }, L("新建规则", "New rule"))),
    h("p", { class: "muted" }, L("没有负责人的新客户按顺序匹配第一条规则；都不匹配时留在公海。", "Customers without an owner take the first matching rule; with none they stay in the pool.")),
    table([L("顺序", "Order"), L("名称", "Name"), L("地区", "Regions"), L("行业", "Industries"), L("来源", "Sources"), L("分给", "Goes to"), L("启用", "Enabled"), ""], rows));
}

export default async function assignmentPage(main) {
  const params = hashParams();
  const [depts, names] = await Promise.all([loadDepartments(), loadUserNames()]);
  const ctx = { depts, names };
  if (params.get("new")) return editor(main, {}, ctx);
  if (params.get("id")) return editor(main, await get(`/admin/assignment-rules/${Number(params.get("id"))}`), ctx);
  listing(main, (await get("/admin/assignment-rules")).items, ctx);
}
