// Users and roles: search, and a role picker per person; the API refuses to demote the last admin.
import { get, patch, query } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { errorBox, table } from "../ui.js";

const ROLES = { salesperson: ["销售", "Salesperson"], manager: ["经理", "Manager"], admin: ["管理员", "Admin"], presales: ["售前", "Pre-sales"] };

export default async function usersPage(main) {
  let q = "";
  const listBox = h("div", { id: "user-list" });
  const more = h("div", {});
  const search = h("form", { class: "filters" }, h("input", { type: "search", name: "q", placeholder: L("姓名或 userid", "Name or userid"),
    oninput: (e) => { q = e.target.value.trim(); } }), h("button", { type: "submit", class: "btn" }, L("搜索", "Search")));
  search.addEventListener("submit", (e) => { e.preventDefault(); load(null); });
  clear(main, h("header", { class: "page-head" }, h("h1", {}, L("用户与角色", "Users & roles"))), search, listBox, more);

  function row(user) {
    const picker = h("select", { "data-user": user.id, "aria-label": L("角色", "Role"), onchange: async (e) => {
      const previous = user.role;
      try {
        Object.assign(user, await patch(`/admin/users/${user.id}`, { role: e.target.value }));
        toast(L("角色已更新", "Role changed"));
      } catch (err) {
        e.target.value = previous;
        toast(err.message, "error");
      }
    } }, Object.entries(ROLES).map(([value, words]) => h("option", { value, selected: value === user.role }, L(...words))));
    return h("tr", { "data-userid": user.userid }, h("td", {}, user.name), h("td", {}, h("code", {}, user.userid)),
      h("td", {}, user.title || "—"), h("td", {}, user.active ? L("在职", "active") : L("已停用", "inactive")), h("td", {}, picker));
  }

  async function load(cursor) {
    try {
      const page = await get(`/admin/users${query({ q, cursor, limit: 50 })}`);
      const rows = page.items.map(row);
      if (cursor) listBox.querySelector("tbody")?.append(...rows);
      else clear(listBox, table([L("姓名", "Name"), "userid", L("职位", "Title"), L("状态", "Status"), L("角色", "Role")], rows));
      clear(more, page.next_cursor ? h("button", { type: "button", class: "btn", onclick: () => load(page.next_cursor) }, L("加载更多", "More")) : null);
    } catch (err) {
      clear(listBox, errorBox(err));
    }
  }
  await load(null);
}
