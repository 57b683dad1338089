// One customer: info, contacts (tap to call), follow-up timeline, opportunities, tasks — one call. Adding or
// changing a contact, task or deal happens in place; those forms load on first use (customer_records.js).
import { get, query } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { formatTime } from "../time.js";
import { errorBox, loading, section } from "../ui.js";
import { STAGE_STORE } from "./opportunities.js";

export function customFieldText(def, value) {
  if (value === undefined || value === null || value === "") return null;
  return Array.isArray(value) ? value.join("、") : String(value);
}

let records;
// Opens one of the in-place editors; a failed download says so instead of a silent dead button.
function editor(name, ...args) {
  return async () => {
    try {
      records = records || await import("./customer_records.js");
    } catch {
      return toast(t("err.network"), "error");
    }
    return records[name](...args);
  };
}

export function contactRow(page, p) {
  const phone = p.mobile || p.phone;
  const li = h("li", { dataset: { contactId: String(p.id) } },
    h("div", { class: "row" }, h("span", { class: "row-title" }, p.name, p.title ? h("small", {}, ` ${p.title}`) : null),
      h("span", { class: "row-sub" }, [phone, p.email].filter(Boolean).join(" · "))),
    phone ? h("a", { class: "btn small", href: `tel:${phone}` }, t("customer.call")) : null);
  li.append(h("button", { type: "button", class: "btn small link", dataset: { edit: "contact" },
    onclick: editor("contactForm", page, p, li) }, t("customer.edit")));
  return li;
}

export function opportunityRow(o) {
  return h("li", { dataset: { opportunityId: String(o.id) } }, h("a", { class: "row", href: "#/opportunities",
    onclick: () => sessionStorage.setItem(STAGE_STORE, o.stage.key) },
    h("span", { class: "row-title" }, o.name),
    h("span", { class: "row-sub" }, [o.stage.name, t("opp.amount", { amount: o.amount }),
      o.expected_close_date ? t("opp.closeDate", { date: o.expected_close_date }) : null].filter(Boolean).join(" · "))));
}

export function taskRow(page, task) {
  const open = task.status === "open";
  const next = open ? "done" : "open";
  const li = h("li", { class: `task ${task.status}`, dataset: { taskId: String(task.id) } });
  li.task = task; // the editors re-sort rows by it
  li.append(
    h("button", { type: "button", class: "row row-button", dataset: { edit: "task" }, onclick: editor("taskForm", page, task, li) },
      h("span", { class: "row-title" }, task.title,
        open ? null : h("small", { class: "badge" }, t(`task.status.${task.status}`))),
      h("span", { class: "row-sub" }, [task.assignee?.name, task.due_at ? formatTime(task.due_at) : null]
        .filter(Boolean).join(" · "))),
    h("button", { type: "button", class: open ? "btn small" : "btn small link", dataset: { toggle: next },
      onclick: editor("setTaskStatus", page, task, li, next) }, t(open ? "task.complete" : "task.reopen")));
  return li;
}

const TASK_ORDER = { open: 0, done: 1, cancelled: 2 };
const dueTime = (x) => (x.due_at ? Date.parse(x.due_at) : Infinity);
// Open tasks first, soonest due first, undated after dated (the payload sorts by status name).
export function taskOrder(a, b) {
  return (TASK_ORDER[a.status] ?? 3) - (TASK_ORDER[b.status] ?? 3) || dueTime(a) - dueTime(b) || a.id - b.id;
}

// A card whose list may start empty: the "none yet" line shows only while the list is (CSS), so an item
// added in place needs no re-render. `kind` names the list, the card and the editor ("contact" →
// #contacts, #add-contact, contactForm).
const LIST_IDS = { contact: "contacts", opportunity: "opportunities", task: "tasks" };
function listCard(page, kind, title, emptyText, items) {
  const list = h("ul", { class: "list", id: LIST_IDS[kind] }, items);
  const card = h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, title),
    h("button", { type: "button", class: "btn small", id: `add-${kind}`, onclick: editor(`${kind}Form`, page, null, null) },
      `＋ ${t("customer.add")}`)), list, h("p", { class: "empty" }, emptyText));
  page.lists[kind] = list;
  return card;
}

function timelineItem(f) {
  return h("li", { class: "timeline-item", dataset: { followUpId: String(f.id) } },
    h("div", { class: "timeline-head" },
      h("span", { class: `kind kind-${f.kind}` }, t(`fu.kind.${f.kind}`)),
      h("span", { class: "row-sub" }, [f.author?.name, formatTime(f.occurred_at)].filter(Boolean).join(" · "))),
    h("p", { class: "timeline-content" }, f.content),
    f.location ? h("p", { class: "row-sub" }, `${t("fu.location")}：${f.location}`) : null,
    f.next_contact_at ? h("p", { class: "row-sub next" }, t("customers.nextContact", { time: formatTime(f.next_contact_at) })) : null);
}

export default async function customerDetail({ el, params, ctx, setTitle }) {
  const id = params[0];
  clear(el, loading());
  const c = await get(`/customers/${id}`);
  setTitle(c.name);
  const page = { id: Number(id), ctx, lists: {} };
  const defs = ctx.fields.filter((d) => d.entity === "customer");
  const info = [
    [t("customer.owner"), c.in_pool ? t("customer.pool") : c.owner?.name],
    [t("field.status"), t(`status.${c.status}`)],
    [t("field.grade"), c.grade ? t(`grade.${c.grade}`) : null],
    [t("field.source"), c.source], [t("field.industry"), c.industry], [t("field.region"), c.region],
    [t("field.address"), c.address],
    [t("field.nextContact"), c.next_contact_at ? formatTime(c.next_contact_at) : null],
    ...defs.map((d) => [d.label, customFieldText(d, c.custom[d.key])]),
  ].filter(([, value]) => value);

  const timeline = h("ul", { class: "timeline", id: "timeline" }, c.follow_ups.map(timelineItem));
  const more = c.follow_ups.length >= 10 ? h("button", { type: "button", class: "btn link", onclick: async () => {
    more.disabled = true;
    let cursor = null;
    const items = [];
    try {
      do {
        const chunk = await get(`/customers/${id}/follow-ups${query({ cursor, limit: 100 })}`);
        items.push(...chunk.items);
        cursor = chunk.next_cursor;
      } while (cursor && items.length < 500);
      clear(timeline, items.map(timelineItem));
      more.remove();
    } catch (err) {
      more.replaceWith(errorBox(err));
    }
  } }, t("customer.moreTimeline")) : null;

  clear(el,
    h("section", { class: "card hero" },
      h("h2", { id: "customer-name" }, c.name),
      h("div", { class: "tags" }, c.grade ? h("span", { class: `badge grade-${c.grade}` }, c.grade) : null,
        h("span", { class: "badge" }, t(`status.${c.status}`)), c.tags.map((tag) => h("span", { class: "tag" }, tag.name))),
      h("div", { class: "actions" },
        h("a", { class: "btn primary", href: `#/customers/${id}/follow-up`, id: "write-follow-up" }, t("customer.writeFollowUp")),
        h("a", { class: "btn", href: `#/customers/${id}/edit`, id: "edit-customer" }, t("customer.edit")))),
    section(t("customer.info"), h("dl", { class: "info", id: "customer-info" },
      info.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]))),
    listCard(page, "contact", t("customer.contacts"), t("customer.noContacts"), c.contacts.map((p) => contactRow(page, p))),
    section(t("customer.timeline"), c.follow_ups.length ? timeline : h("p", { class: "empty" }, t("customer.noFollowUps")), more),
    listCard(page, "opportunity", t("customer.opportunities"), t("customer.noOpportunities"), c.opportunities.map(opportunityRow)),
    listCard(page, "task", t("customer.tasks"), t("customer.noTasks"), [...c.tasks].sort(taskOrder).map((task) => taskRow(page, task))));
}
