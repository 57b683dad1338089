// Audit log with filters (actor, action, entity, date) and the CSV export, which is itself audited.
import { get, query } from "/h5/static/js/api.js";
import { clear, h } from "/h5/static/js/dom.js";
import { L, when } from "../i18n.js";
import { errorBox, field, formError, table } from "../ui.js";

export default async function auditPage(main) {
  const filters = { actor: "", action: "", entity: "", from: "", to: "" };
  const listBox = h("div", { id: "audit-list" });
  const more = h("div", {});
  const input = (name, attrs = {}) => h("input", { name, ...attrs, oninput: (e) => { filters[name] = e.target.value.trim(); } });
  const exportLink = h("a", { class: "btn", id: "export-csv", href: "/api/v1/admin/audit.csv", download: "audit-log.csv" }, L("导出 CSV", "Export CSV"));
  const form = h("form", { class: "filters", id: "audit-filters", novalidate: true },
    field("actor", L("操作人 ID", "Actor id"), input("actor", { inputmode: "numeric" })),
    field("action", L("操作", "Action"), input("action", { placeholder: "update" })),
    field("entity", L("对象类型", "Entity"), input("entity", { placeholder: "customer" })),
    field("from", L("从", "From"), input("from", { type: "date" })),
    field("to", L("到", "To"), input("to", { type: "date" })),
    h("button", { type: "submit", class: "btn primary", id: "audit-filter" }, L("筛选", "Filter")), exportLink);
  form.addEventListener("submit", (e) => { e.preventDefault(); load(null); });
  clear(main, h("header", { class: "page-head" }, h("h1", {}, L("审计日志", "Audit log"))), form, listBox, more);

  function params() {
    return { ...filters, from: filters.from ? `${filters.from}T00:00:00` : "", to: filters.to ? `${filters.to}T23:59:59` : "" };
  }

  function row(e) {
    const changes = Object.entries(e.changes || {}).map(([k, v]) => (v && typeof v === "object" && "after" in v
      ? `${k}: ${JSON.stringify(v.before)} → ${JSON.stringify(v.after)}` : `${k}: ${JSON.stringify(v)}`)).join("; ");
    return h("tr", { "data-audit": e.id }, h("td", {}, when(e.created_at)), h("td", {}, e.actor ? `${e.actor.name} (#${e.actor.id})` : "—"),
      h("td", {}, e.action), h("td", {}, `${e.entity_type}${e.entity_id ? ` #${e.entity_id}` : ""}`), h("td", { class: "changes" }, changes || "—"));
  }

  async function load(cursor) {
    exportLink.href = `/api/v1/admin/audit.csv${query(params())}`;
    try {
      const page = await get(`/admin/audit${query({ ...params(), cursor, limit: 50 })}`);
      form.querySelector(".form-error")?.remove();
      const rows = page.items.map(row);
      if (cursor) listBox.querySelector("tbody")?.append(...rows);
      else clear(listBox, table([L("时间", "Time"), L("操作人", "Actor"), L("操作", "Action"), L("对象", "Entity"), L("变更", "Changes")], rows));
      clear(more, page.next_cursor ? h("button", { type: "button", class: "btn", onclick: () => load(page.next_cursor) }, L("加载更多", "More")) : null);
    } catch (err) {
      if (err.status === 400 || err.status === 422) formError(form, err);
      else clear(listBox, errorBox(err));
    }
  }
  await load(null);
}
