// Approvals: the three inboxes, one approval with its subject's key facts and steps (approve / reject with a
// comment, withdraw), and the request form opened from a deal. Pushed messages link to #/approvals/<id>.
import { ApiError, get, post, query } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { localPart, t } from "../i18n.js";
import { formatTime } from "../time.js";
import { chips, infiniteList, loading, section, showFieldErrors } from "../ui.js";

const BOXES = ["waiting", "submitted", "done"];
const STORE = "crm.approvalBox";

function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, dataset: { state } }, t(`approvals.state.${state}`));
}

export function approvalRow(a) {
  return h("li", {}, h("a", { class: "row", href: `#/approvals/${a.id}`, dataset: { approvalId: String(a.id) } },
    h("span", { class: "row-title" }, a.title, stateBadge(a.state)),
    h("span", { class: "row-sub" }, [a.applicant?.name, formatTime(a.created_at)].filter(Boolean).join(" · "))));
}

export async function approvalList({ el, setTitle }) {
  setTitle(t("approvals.title"));
  const results = h("div", { class: "results", id: "approval-results" });
  const load = (box) => {
    sessionStorage.setItem(STORE, box);
    infiniteList(results, (cursor) => get(`/approvals${query({ box, cursor, limit: 20 })}`), approvalRow,
      t("approvals.empty"));
  };
  const current = BOXES.includes(sessionStorage.getItem(STORE)) ? sessionStorage.getItem(STORE) : "waiting";
  const tabs = chips(BOXES.map((b) => [b, t(`approvals.box.${b}`)]), [current], {
    multiple: false, onChange: ([box]) => load(box || "waiting") });
  tabs.id = "approval-boxes";
  clear(el, tabs, results);
  load(current);
}

function percent(rate) {
  return `${(Number(rate) * 100).toFixed(2).replace(/\.?0+$/, "")}%`;
}

export async function approvalDetail({ el, params, setTitle }) {
  const id = params[0];
  clear(el, loading());
  const a = await get(`/approvals/${id}`);
  setTitle(t(`approvals.kind.${a.kind}`));
  const facts = a.subject_now || a.subject_facts || {};
  const info = [
    [t("approvals.applicant"), a.applicant?.name], [t("approvals.submittedAt"), formatTime(a.created_at)],
    [t("approvals.discount"), a.outcome?.discount_rate !== undefined ? percent(a.outcome.discount_rate) : null],
    [t("approvals.amount"), a.outcome?.amount !== undefined ? `¥${a.outcome.amount}` : null],
    [t("approvals.reason"), a.reason],
  ].filter(([, v]) => v);
  const subject = [
    [t("approvals.subject"), facts.name], [t("approvals.customer"), facts.customer_name],
    [t("approvals.currentAmount"), facts.amount !== undefined ? `¥${facts.amount}` : null],
    [t("approvals.stage"), facts.stage_name],
  ].filter(([, v]) => v);
  const dl = (rows) => h("dl", { class: "info" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const steps = h("ol", { class: "steps", id: "approval-steps" }, a.steps.map((s) => h("li", { class: `step step-${s.status}` },
    h("div", { class: "timeline-head" }, h("strong", {}, localPart(s.name)), h("span", { class: "row-sub" }, t(`approvals.step.${s.status}`))),
    s.tasks.map((task) => h("p", { class: "row-sub" }, [task.approver?.name, t(`approvals.task.${task.state}`),
      task.comment, task.decided_at ? formatTime(task.decided_at) : null].filter(Boolean).join(" · "))))));
  const parts = [
    h("section", { class: "card hero" }, h("h2", { id: "approval-title" }, a.title), h("div", { class: "tags" }, stateBadge(a.state)),
      dl(info)),
    subject.length ? section(t("approvals.subject"), dl(subject),
      facts.customer_id ? h("a", { class: "btn small", href: `#/customers/${facts.customer_id}` }, facts.customer_name) : null) : null,
    section(t("approvals.steps"), steps),
  ];
  if (a.can_decide) {
    const comment = h("textarea", { class: "input", name: "comment", rows: 3, maxlength: 2000,
      placeholder: t("approvals.commentPlaceholder") });
    const banner = h("div", { class: "banner" });
    const form = h("form", { class: "form", id: "decision-form", novalidate: true }, banner,
      h("label", { class: "field", dataset: { field: "comment" } }, h("span", { class: "label" }, t("approvals.comment")), comment));
    const decide = async (decision, button) => {
      button.disabled = true;
      clear(banner);
      showFieldErrors(form, {});
      try {
        await post(`/approvals/${id}/decision`, { decision, comment: comment.value.trim() || null, step: a.current_step });
        toast(t("approvals.decided"));
        approvalDetail({ el, params, setTitle });
      } catch (err) {
        const leftover = err instanceof ApiError ? showFieldErrors(form, err.fields) : [];
        clear(banner, h("div", { class: "error-box", role: "alert", id: "form-error" }, h("p", {}, err.message),
          leftover.map((m) => h("p", {}, m))));
        button.disabled = false;
      }
    };
    const approve = h("button", { type: "button", class: "btn primary", id: "approve",
      onclick: () => decide("approve", approve) }, t("approvals.approve"));
    const reject = h("button", { type: "button", class: "btn danger", id: "reject",
      onclick: () => decide("reject", reject) }, t("approvals.reject"));
    form.append(h("div", { class: "actions" }, approve, reject));
    parts.push(form);
  }
  if (a.can_withdraw) {
    const withdraw = h("button", { type: "button", class: "btn block", id: "withdraw", onclick: async () => {
      withdraw.disabled = true;
      try {
        await post(`/approvals/${id}/withdraw`);
        toast(t("approvals.withdrawn"));
        approvalDetail({ el, params, setTitle });
      } catch (err) {
        withdraw.disabled = false;
        toast(err.message, "error");
      }
    } }, t("approvals.withdraw"));
    parts.push(withdraw);
  }
  clear(el, parts);
}

// #/approvals/new?opportunity=<id>
export async function approvalForm({ el, go, setTitle }) {
  setTitle(t("approvals.newTitle"));
  const hashQuery = new URLSearchParams(window.location.hash.split("?")[1] || "");
  const opportunityId = Number(hashQuery.get("opportunity"));
  clear(el, loading());
  const opp = await get(`/opportunities/${opportunityId}`);
  const kind = chips([["discount", t("approvals.kind.discount")], ["contract", t("approvals.kind.contract")]],
    [hashQuery.get("kind") === "contract" ? "contract" : "discount"], { multiple: false,
      onChange: ([k]) => { discountField.hidden = k !== "discount"; } });
  kind.id = "approval-kind";
  const discount = h("input", { class: "input", type: "number", name: "discount", min: 0, max: 99.99, step: "0.01",
    inputmode: "decimal" });
  const discountField = h("label", { class: "field", dataset: { field: "outcome.discount_rate" } },
    h("span", { class: "label" }, t("approvals.discountPercent"), h("small", {}, ` ${t("approvals.discountHint")}`)), discount);
  discountField.hidden = kind.values()[0] !== "discount";
  const reason = h("textarea", { class: "input", name: "reason", rows: 4, maxlength: 2000 });
  const banner = h("div", { class: "banner" });
  const submit = h("button", { type: "submit", class: "btn primary block", id: "submit-approval" }, t("approvals.submit"));
  const form = h("form", { class: "form", id: "approval-form", novalidate: true }, banner,
    h("p", { class: "row-sub" }, `${opp.customer.name} · ${opp.name} · ${t("opp.amount", { amount: opp.amount })}`),
    h("div", { class: "field", dataset: { field: "kind" } }, h("span", { class: "label" }, t("approvals.kind")), kind),
    discountField,
    h("label", { class: "field", dataset: { field: "reason" } }, h("span", { class: "label" }, t("approvals.reason")), reason),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clear(banner);
    showFieldErrors(form, {});
    const chosen = kind.values()[0] || "discount";
    const body = { kind: chosen, subject_type: "opportunity", subject_id: opportunityId, reason: reason.value.trim() || null,
      outcome: {} };
    if (chosen === "discount" && discount.value !== "") {
      // The API takes a rate (0.15); people type a percentage (15). Rounded to the API's 4 decimals.
      body.outcome.discount_rate = Math.round(Number(discount.value) * 100) / 10000;
    }
    try {
      const created = await post("/approvals", body);
      toast(t("approvals.submitted"));
      go(`/approvals/${created.id}`, { replace: true });
    } catch (err) {
      const leftover = err instanceof ApiError ? showFieldErrors(form, err.fields) : [];
      clear(banner, h("div", { class: "error-box", role: "alert", id: "form-error" }, h("p", {}, err.message),
        leftover.map((m) => h("p", {}, m))));
    } finally {
      submit.disabled = false;
    }
  });
  clear(el, form);
}
