// Delivery log with filters (state, kind, recipient, date), the platform's verdict per recipient, retry for
// failed ones; and this month's API usage against the quota, with the 80 % warning.
import { get, post, query } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L, when } from "../i18n.js";
import { errorBox, field, table } from "../ui.js";

const STATES = ["pending", "sending", "sent", "failed", "dropped"];
const STATE_WORDS = { pending: ["待发送", "pending"], sending: ["发送中", "sending"], sent: ["已发送", "sent"],
  failed: ["失败", "failed"], dropped: ["被平台丢弃", "dropped"] };
const KINDS = ["follow_up_due", "agenda", "approval", "approval_request", "handover", "quota_warning", "rule_notify"];

function usageCard(usage) {
  const pct = usage.quota ? Math.round((100 * usage.used) / usage.quota) : 0;
  const bar = h("div", { class: `bar ${usage.warning ? "warn" : ""}` });
  bar.style.width = `${Math.min(100, pct)}%`;
  return h("section", { class: "card usage", id: "usage" },
    h("h3", {}, L(`本月（${usage.month}）接口调用量`, `API calls this month (${usage.month})`)),
    h("div", { class: "progress" }, bar),
    h("p", {}, `${usage.used} / ${usage.quota ?? "∞"} (${pct}%) · ${L("消息", "messages")} ${usage.messages}`,
      ` · ${L("合并条目", "items merged")} ${usage.items_merged}`),
    usage.warning ? h("p", { class: "warn-box", id: "quota-warning" }, L("已用超过 80% 的月度额度：提醒会更多地合并发送。",
      "Over 80 % of the monthly quota used: reminders will be merged more.")) : null,
    Object.keys(usage.deferred || {}).length ? h("p", { class: "muted" }, L("推迟：", "Deferred: "),
      Object.entries(usage.deferred).map(([k, n]) => `${k} ${n}`).join(", ")) : null);
}

export default async function deliveriesPage(main) {
  const filters = { state: "", kind: "", recipient: "", from: "", to: "" };
  const usageBox = h("div", {});
  const listBox = h("div", { id: "delivery-list" });
  const more = h("div", {});
  const select = (name, values, words) => h("select", { name, onchange: (e) => { filters[name] = e.target.value; } },
    h("option", { value: "" }, L("全部", "all")), values.map((v) => h("option", { value: v }, words ? L(...words[v]) : v)));
  const form = h("form", { class: "filters", id: "delivery-filters" },
    field("state", L("状态", "State"), select("state", STATES, STATE_WORDS)),
    field("kind", L("类型", "Kind"), h("input", { name: "kind", list: "delivery-kinds", oninput: (e) => { filters.kind = e.target.value.trim(); } }),
      h("datalist", { id: "delivery-kinds" }, KINDS.map((k) => h("option", { value: k })))),
    field("recipient", L("接收人（姓名或 ID）", "Recipient (name or id)"), h("input", { name: "recipient", inputmode: "numeric", oninput: (e) => { filters.recipient = e.target.value.trim(); } })),
    field("from", L("从", "From"), h("input", { type: "date", name: "from", oninput: (e) => { filters.from = e.target.value; } })),
    field("to", L("到", "To"), h("input", { type: "date", name: "to", oninput: (e) => { filters.to = e.target.value; } })),
    h("button", { type: "submit", class: "btn primary", id: "apply-filters" }, L("筛选", "Filter")));
  form.addEventListener("submit", (e) => { e.preventDefault(); load(null); });
  clear(main, h("header", { class: "page-head" }, h("h1", {}, L("消息投递", "Deliveries"))), usageBox, form, listBox, more);

  function verdict(item) {
    const d = item.delivery;
    if (!d) return item.last_error || item.deferred_reason || "—";
    return [d.verdict || L("等待平台结果", "awaiting result"), d.reason ? ` (${d.reason})` : "",
      d.merged ? ` · ${L("合并", "merged")} ${d.items}` : ""].join("");
  }

  function row(item) {
    const retry = item.state === "failed" || item.state === "dropped"
      ? h("button", { type: "button", class: "btn small", "data-retry": item.id, onclick: async (e) => {
        e.target.disabled = true;
        try {
          await post(`/admin/deliveries/${item.id}/retry`);
          toast(L("已重新排队", "Queued again"));
          load(null);
        } catch (err) {
          e.target.disabled = false;
          toast(err.message, "error");
        }
      } }, L("重试", "Retry")) : null;
    return h("tr", { "data-item": item.id, "data-state": item.state }, h("td", {}, when(item.due_at)), h("td", {}, item.kind),
      h("td", {}, item.recipient?.name || item.recipient?.id), h("td", { class: `state-${item.state}` }, L(...(STATE_WORDS[item.state] || [item.state, item.state]))),
      h("td", {}, item.attempts), h("td", { class: "verdict" }, verdict(item)), h("td", {}, retry));
  }

  // A name is looked up among the corp's users; the log itself filters by user id.
  async function recipientId() {
    if (!filters.recipient || /^\d+$/.test(filters.recipient)) return filters.recipient;
    const { items } = await get(`/admin/users${query({ q: filters.recipient, limit: 1 })}`);
    if (!items.length) throw Object.assign(new Error(L("找不到这个人", "No such person")), { fields: {} });
    return String(items[0].id);
  }

  async function load(cursor) {
    const params = { ...filters, limit: 50, cursor };
    if (filters.from) params.from = `${filters.from}T00:00:00`;
    if (filters.to) params.to = `${filters.to}T23:59:59`;
    try {
      params.recipient = await recipientId();
      const page = await get(`/admin/deliveries${query(params)}`);
      const rows = page.items.map(row);
      if (cursor) listBox.querySelector("tbody")?.append(...rows);
      else clear(listBox, table([L("到期", "Due"), L("类型", "Kind"), L("接收人", "Recipient"), L("状态", "State"),
        L("次数", "Attempts"), L("平台结果", "Platform verdict"), ""], rows, L("没有符合条件的消息", "No messages match")));
      clear(more, page.next_cursor ? h("button", { type: "button", class: "btn", onclick: () => load(page.next_cursor) }, L("加载更多", "More")) : null);
    } catch (err) {
      clear(listBox, errorBox(err));
    }
  }

  get("/admin/usage").then((u) => clear(usageBox, usageCard(u)), (err) => clear(usageBox, errorBox(err)));
  await load(null);
}
