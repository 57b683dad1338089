// Pickers the editors share: departments from the synced tree, people by name search, roles, and the
// recipients automation rules notify ("owner", "owner_leader", "role:<role>", "user:<id>").
import { get, query } from "/h5/static/js/api.js";
import { clear, h } from "/h5/static/js/dom.js";
import { L } from "./i18n.js";

export const ROLES = { salesperson: ["销售", "Salesperson"], manager: ["经理", "Manager"], admin: ["管理员", "Admin"],
  presales: ["售前", "Pre-sales"] };

export function options(pairs, value, blank) {
  return [blank ? h("option", { value: "" }, blank) : null,
    ...pairs.map(([v, label]) => h("option", { value: v, selected: String(value ?? "") === String(v) }, label))];
}

export function select(attrs, pairs, value, blank) {
  return h("select", attrs, options(pairs, value, blank));
}

// The tree flattened in display order, names indented by depth so a <select> shows the hierarchy.
export async function loadDepartments() {
  const out = [];
  const walk = (nodes, depth) => nodes.forEach((d) => { out.push({ id: d.id, name: d.name, depth }); walk(d.children, depth + 1); });
  walk((await get("/org/departments")).items, 0);
  return out;
}

export function deptSelect(depts, value, onchange, attrs = {}) {
  return select({ ...attrs, onchange: (e) => onchange(e.target.value ? Number(e.target.value) : null) },
    depts.map((d) => [d.id, `${"\u3000".repeat(d.depth)}${d.name}`]), value, L("请选择部门", "Choose a department"));
}

export function roleSelect(value, onchange, attrs = {}) {
  return select({ ...attrs, onchange: (e) => onchange(e.target.value) },
    Object.entries(ROLES).map(([v, words]) => [v, L(...words)]), value, L("请选择角色", "Choose a role"));
}

// Names for ids already stored in flows and rules. There is no lookup by id, so read the directory once (a
// few pages); anyone beyond that shows as #id until picked again.
export async function loadUserNames() {
  const names = new Map();
  let cursor = null;
  for (let i = 0; i < 10; i += 1) {
    const page = await get(`/org/users${query({ cursor, limit: 100 })}`);
    for (const u of page.items) names.set(u.id, u.name);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return names;
}

// Chosen people as removable chips plus a name search. `ids` is edited in place; `single` keeps one.
export function userPicker(ids, names, onchange, { label, single = false } = {}) {
  const chips = h("span", { class: "chips" });
  const results = h("div", { class: "picker-results" });
  const changed = () => { drawChips(); onchange(ids); };
  function drawChips() {
    clear(chips, ids.map((id, i) => h("span", { class: "chip", "data-user-id": id }, names.get(id) || `#${id}`,
      h("button", { type: "button", "aria-label": L("移除", "Remove"), onclick: () => { ids.splice(i, 1); changed(); } }, "×"))));
  }
  async function search(q) {
    if (!q) return clear(results);
    try {
      const page = await get(`/org/users${query({ q, active: true, limit: 10 })}`);
      for (const u of page.items) names.set(u.id, u.name);
      clear(results, page.items.length ? page.items.map((u) => h("button", { type: "button", class: "btn small", "data-pick": u.id,
        onclick: () => {
          if (single) ids.splice(0, ids.length);
          if (!ids.includes(u.id)) ids.push(u.id);
          input.value = "";
          clear(results);
          changed();
        } }, u.name, u.departments?.[0] ? ` · ${u.departments[0].name}` : "")) : h("span", { class: "muted" }, L("没有匹配的人", "Nobody matches")));
    } catch (err) {
      clear(results, h("span", { class: "field-error" }, err.message));
    }
  }
  let timer;
  const input = h("input", { type: "search", class: "picker-search", placeholder: L("输入姓名搜索", "Search by name"),
    "aria-label": label || L("选择人员", "Pick people"),
    oninput: (e) => { clearTimeout(timer); timer = setTimeout(() => search(e.target.value.trim()), 200); } });
  drawChips();
  return h("div", { class: "picker" }, chips, input, results);
}

const RECIPIENT_KINDS = () => [["owner", L("负责人", "Owner")], ["owner_leader", L("负责人的上级", "Owner's leader")],
  ["role", L("某角色的所有人", "Everyone with a role")], ["user", L("指定人员", "A named user")]];

export function recipientWords(value, names) {
  if (value === "owner") return L("负责人", "Owner");
  if (value === "owner_leader") return L("负责人的上级", "Owner's leader");
  if (value.startsWith("role:")) return L(...(ROLES[value.slice(5)] || [value.slice(5), value.slice(5)]));
  if (value.startsWith("user:")) return names.get(Number(value.slice(5))) || value;
  return value;
}

// One recipient: a kind select plus the role or person that kind needs. Calls onchange with the string form.
export function recipientEditor(value, names, onchange) {
  const kind = value.startsWith("role:") ? "role" : value.startsWith("user:") ? "user" : value;
  const box = h("span", { class: "recipient pair" });
  const draw = (k, v) => {
    const extra = k === "role" ? roleSelect(v.slice(5), (r) => onchange(r ? `role:${r}` : "role:"), { "aria-label": L("角色", "Role") })
      : k === "user" ? userPicker(v.startsWith("user:") && v.length > 5 ? [Number(v.slice(5))] : [], names,
        (ids) => onchange(ids.length ? `user:${ids[0]}` : "user:"), { single: true })
        : null;
    clear(box, select({ "aria-label": L("通知对象", "Recipient"), class: "recipient-kind", onchange: (e) => {
      const next = e.target.value === "role" ? "role:" : e.target.value === "user" ? "user:" : e.target.value;
      onchange(next);
      draw(e.target.value, next);
    } }, RECIPIENT_KINDS(), k), extra);
  };
  draw(kind, value);
  return box;
}
