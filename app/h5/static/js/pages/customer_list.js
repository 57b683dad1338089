// Customers: search (name, contact, phone), filters (grade, stage, tags, owner, days without follow-up) and
// infinite scroll over the API's cursor pages.
import { get, query } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { formatTime } from "../time.js";
import { chips, infiniteList } from "../ui.js";

const STORE = "crm.customerFilters";
const STALE_CHOICES = [7, 14, 30, 60, 90];

function loadFilters() {
  try {
    return { q: "", grade: [], status: [], tags: [], owner: "", stale: "", ...JSON.parse(sessionStorage.getItem(STORE) || "{}") };
  } catch {
    return { q: "", grade: [], status: [], tags: [], owner: "", stale: "" };
  }
}

export function customerRow(c) {
  const sub = [c.owner?.name, c.last_contact_at ? t("customers.lastContact", { time: formatTime(c.last_contact_at) })
    : t("customers.neverContacted")].filter(Boolean).join(" · ");
  return h("li", {}, h("a", { class: "row", href: `#/customers/${c.id}`, dataset: { customerId: String(c.id) } },
    h("span", { class: "row-title" }, c.name, c.grade ? h("span", { class: `badge grade-${c.grade}` }, c.grade) : null,
      h("span", { class: "badge" }, t(`status.${c.status}`))),
    h("span", { class: "row-sub" }, sub),
    c.tags.length ? h("span", { class: "tags" }, c.tags.map((tag) => h("span", { class: "tag" }, tag.name))) : null));
}

function activeCount(f) {
  return [f.grade.length, f.status.length, f.tags.length, f.owner, f.stale].filter(Boolean).length;
}

export default async function customerList({ el, ctx, setTitle }) {
  setTitle(t("customers.title"));
  const filters = loadFilters();
  const save = () => sessionStorage.setItem(STORE, JSON.stringify(filters));
  const results = h("div", { class: "results", id: "customer-results" });
  const filterButton = h("button", { type: "button", class: "btn", id: "filter-toggle" });
  const sheet = h("div", { class: "sheet", id: "filter-sheet", hidden: true });
  const search = h("input", { type: "search", class: "input", id: "customer-search", placeholder: t("customers.search"),
    value: filters.q, enterkeyhint: "search", autocomplete: "off" });

  const refresh = () => {
    filterButton.textContent = activeCount(filters) ? t("filter.active", { n: activeCount(filters) }) : t("customers.filter");
    const params = { q: filters.q, grade: filters.grade, status: filters.status, tags_any: filters.tags,
      owner_id: filters.owner === "mine" ? ctx.user.id : filters.owner === "" || filters.owner === "all" ? null : filters.owner,
      stale_days: filters.stale, limit: 20 };
    infiniteList(results, (cursor) => get(`/customers${query({ ...params, cursor })}`), customerRow,
      t("customers.empty"));
  };

  let timer;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      filters.q = search.value.trim();
      save();
      refresh();
    }, 300);
  });

  const drawSheet = async () => {
    const grade = chips(["A", "B", "C"].map((g) => [g, t(`grade.${g}`)]), filters.grade);
    const status = chips(["lead", "prospect", "customer", "lost"].map((s) => [s, t(`status.${s}`)]), filters.status);
    const tagOptions = ctx.tag_groups.flatMap((g) => g.tags.map((tag) => [tag.id, g.name ? `${g.name}·${tag.name}` : tag.name]));
    const tags = chips(tagOptions, filters.tags);
    const stale = chips(STALE_CHOICES.map((n) => [n, t("filter.staleDays", { n })]), filters.stale ? [filters.stale] : [],
      { multiple: false });
    const ownerOptions = [["all", t("filter.ownerAll")], ["mine", t("filter.ownerMine")]];
    const owner = h("select", { class: "input", id: "filter-owner" });
    const fillOwners = (extra) => clear(owner, [...ownerOptions, ...extra].map(([value, label]) =>
      h("option", { value, selected: String(filters.owner || "all") === String(value) }, label)));
    fillOwners([]);
    if (ctx.user.role !== "salesperson") {
      get("/org/users?active=true&limit=100").then((page) =>
        fillOwners(page.items.filter((u) => u.id !== ctx.user.id).map((u) => [u.id, u.name]))).catch(() => {});
    }
    clear(sheet,
      h("h3", {}, t("filter.grade")), grade, h("h3", {}, t("filter.status")), status,
      tagOptions.length ? [h("h3", {}, t("filter.tags")), tags] : null,
      h("h3", {}, t("filter.owner")), owner, h("h3", {}, t("filter.stale")), stale,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "btn", onclick: () => {
          Object.assign(filters, { grade: [], status: [], tags: [], owner: "", stale: "" });
          save();
          sheet.hidden = true;
          refresh();
        } }, t("common.reset")),
        h("button", { type: "button", class: "btn primary", id: "filter-apply", onclick: () => {
          Object.assign(filters, { grade: grade.values(), status: status.values(), tags: tags.values(),
            owner: owner.value === "all" ? "" : owner.value, stale: stale.values()[0] || "" });
          save();
          sheet.hidden = true;
          refresh();
        } }, t("common.apply"))));
  };
  filterButton.addEventListener("click", () => {
    if (sheet.hidden) drawSheet();
    sheet.hidden = !sheet.hidden;
  });

  clear(el, h("div", { class: "toolbar" }, search, filterButton,
    h("a", { class: "btn primary", href: "#/customers/new", id: "new-customer" }, "+")), sheet, results);
  refresh();
}
