// One customer: info, contacts (tap to call), follow-up timeline, opportunities, tasks — one call.
import { get, query } from "../api.js";
import { clear, h } from "../dom.js";
import { t } from "../i18n.js";
import { formatTime } from "../time.js";
import { errorBox, loading, section } from "../ui.js";

export function customFieldText(def, value) {
  if (value === undefined || value === null || value === "") return null;
  return Array.isArray(value) ? value.join("、") : String(value);
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
        const page = await get(`/customers/${id}/follow-ups${query({ cursor, limit: 100 })}`);
        items.push(...page.items);
        cursor = page.next_cursor;
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
    section(t("customer.contacts"), c.contacts.length ? h("ul", { class: "list", id: "contacts" }, c.contacts.map((p) =>
      h("li", {}, h("div", { class: "row" }, h("span", { class: "row-title" }, p.name, p.title ? h("small", {}, ` ${p.title}`) : null),
        h("span", { class: "row-sub" }, p.mobile || p.phone || p.email || "")),
      (p.mobile || p.phone) ? h("a", { class: "btn small", href: `tel:${p.mobile || p.phone}` }, t("customer.call")) : null)))
      : h("p", { class: "empty" }, t("customer.noContacts"))),
    section(t("customer.timeline"), c.follow_ups.length ? timeline : h("p", { class: "empty" }, t("customer.noFollowUps")), more),
    section(t("customer.opportunities"), c.opportunities.length ? h("ul", { class: "list" }, c.opportunities.map((o) =>
      h("li", {}, h("a", { class: "row", href: "#/opportunities" }, h("span", { class: "row-title" }, o.name),
        h("span", { class: "row-sub" }, `${o.stage.name} · ${t("opp.amount", { amount: o.amount })}`)))))
      : h("p", { class: "empty" }, t("customer.noOpportunities"))),
    section(t("customer.tasks"), c.tasks.length ? h("ul", { class: "list" }, c.tasks.map((task) =>
      h("li", { class: task.status }, h("div", { class: "row" }, h("span", { class: "row-title" }, task.title),
        h("span", { class: "row-sub" }, [task.assignee?.name, task.due_at ? formatTime(task.due_at) : null].filter(Boolean).join(" · "))))))
      : h("p", { class: "empty" }, t("customer.noTasks"))));
}
