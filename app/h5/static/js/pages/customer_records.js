// In-place editors on a customer's page: add or change a contact, add or change a task and tick it off, add a
// deal. Imported on first tap (never on the home page's first load). A rejected save keeps what was typed and
// puts each message in plain words next to its field.
import { ApiError, fieldMessage, patch, post } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { daysToNextMonday, localAt, toLocalInput } from "../time.js";
import { chips, showFieldErrors } from "../ui.js";
import { contactRow, opportunityRow, taskOrder, taskRow } from "./customer_detail.js";

// Where the API can only say "invalid", say what a valid value looks like.
const HINTS = { mobile: "contact.err.mobile", email: "contact.err.email", amount: "opp.err.amount",
  expected_close_date: "opp.err.date", due_at: "task.err.due" };

function field(name, label, control, { required = false } = {}) {
  return h("label", { class: "field", dataset: { field: name } },
    h("span", { class: "label" }, label, required ? h("em", {}, " *") : null), control);
}

function input(name, value, attrs = {}) {
  return h("input", { class: "input", name, value: value ?? "", ...attrs });
}

function explain(form, banner, err, extra) {
  const fields = err instanceof ApiError ? err.fields : {};
  const leftover = showFieldErrors(form, fields);
  for (const [name, raw] of Object.entries(fields)) {
    const slot = HINTS[name] && fieldMessage(raw) === t("err.field.invalid")
      && form.querySelector(`[data-field="${name}"] .field-error`);
    if (slot) slot.textContent = t(HINTS[name]);
  }
  const claimed = Object.keys(fields).length > leftover.length;
  clear(banner, extra || h("div", { class: "error-box", role: "alert", dataset: { formError: form.id } },
    h("p", {}, err.message), claimed ? h("p", {}, t("form.fixErrors")) : null, leftover.map((m) => h("p", {}, m))));
}

// A small form with save and cancel. `save(form)` throws to keep the form open; `onError(err)` may return a
// box to show instead of the plain error (the duplicate warning).
function editorForm(id, fields, { save, cancel, onError }) {
  const banner = h("div", { class: "banner" });
  const submit = h("button", { type: "submit", class: "btn primary", dataset: { save: id } }, t("common.save"));
  const form = h("form", { class: "form inline-form", id, novalidate: true }, banner, fields,
    h("div", { class: "actions" }, submit, h("button", { type: "button", class: "btn", onclick: cancel }, t("common.cancel"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    submit.textContent = t("common.saving");
    clear(banner);
    showFieldErrors(form, {});
    try {
      await save(form);
    } catch (err) {
      explain(form, banner, err, onError ? onError(err) : null);
      banner.scrollIntoView({ block: "nearest" });
    } finally {
      submit.disabled = false;
      submit.textContent = t("common.save");
    }
  });
  return form;
}

// Shows `form` where the row `li` was (edit) or above the list (add); one editor per list at a time.
// Returns close(replacement): puts back the row, or the replacement row, or just removes an add form.
function mount(page, kind, form, li) {
  page.editors = page.editors || {};
  page.editors[kind]?.();
  const holder = li ? h("li", { class: "editing" }, form) : form;
  holder.task = li?.task; // an open task editor keeps its place when the list is re-sorted
  if (li) li.replaceWith(holder);
  else page.lists[kind].before(holder);
  const close = (replacement) => {
    if (page.editors[kind] === close) delete page.editors[kind];
    if (replacement || li) holder.replaceWith(replacement || li);
    else holder.remove();
  };
  page.editors[kind] = close;
  form.querySelector("input")?.focus();
  form.scrollIntoView({ block: "nearest" });
  return close;
}

const value = (form, name) => form.elements[name].value.trim() || null;

function duplicateBox(page, match, override) {
  const owner = match.in_pool ? t("dup.inPool") : match.owner?.name || t("common.none");
  const may = page.ctx.user.role === "manager" || page.ctx.user.role === "admin";
  return h("div", { class: "warning-box", role: "alert", dataset: { duplicate: "contact" } },
    h("strong", {}, t("contact.dupTitle")),
    h("p", {}, t("contact.dupBody", { name: match.name, owner })),
    h("div", { class: "actions" },
      h("a", { class: "btn small", href: `#/customers/${match.id}` }, t("dup.open")),
      may ? h("button", { type: "button", class: "btn small danger", dataset: { override: "contact" }, onclick: override },
        t("contact.dupOverride")) : h("p", { class: "row-sub" }, t("dup.noOverride"))));
}

export function contactForm(page, contact, li) {
  let allowDuplicate = false;
  let close;
  const form = editorForm("contact-form", [
    field("name", t("contact.name"), input("name", contact?.name, { maxlength: 100, autocomplete: "name" }), { required: true }),
    field("title", t("contact.title"), input("title", contact?.title, { maxlength: 100, autocomplete: "organization-title" })),
    field("mobile", t("contact.mobile"), input("mobile", contact?.mobile || contact?.phone, {
      type: "tel", inputmode: "tel", autocomplete: "tel", maxlength: 32 })),
    field("email", t("contact.email"), input("email", contact?.email, {
      type: "email", inputmode: "email", autocomplete: "email", maxlength: 200 })),
  ], {
    cancel: () => close(),
    onError: (err) => (err instanceof ApiError && err.status === 409 && err.detail.match
      ? duplicateBox(page, err.detail.match, () => {
        allowDuplicate = true;
        form.requestSubmit();
      }) : null),
    save: async (f) => {
      const body = { name: value(f, "name") || "", title: value(f, "title"), mobile: value(f, "mobile"),
        email: value(f, "email"), allow_duplicate: allowDuplicate };
      // The form shows one number: a contact that only had a landline keeps it there.
      if (contact && !contact.mobile && contact.phone) {
        body.phone = body.mobile;
        delete body.mobile;
      }
      allowDuplicate = false;
      const saved = contact ? await patch(`/contacts/${contact.id}`, body)
        : await post(`/customers/${page.id}/contacts`, body);
      const row = contactRow(page, saved);
      if (contact) close(row);
      else {
        page.lists.contact.append(row);
        close();
      }
      toast(t(contact ? "contact.saved" : "contact.added"));
    },
  });
  close = mount(page, "contact", form, li);
}

function resortTasks(list) {
  list.append(...[...list.children].sort((a, b) => taskOrder(a.task, b.task)));
}

export function taskForm(page, task, li) {
  let close;
  const due = input("due_at", toLocalInput(task?.due_at), { type: "datetime-local" });
  const quick = [["tomorrow", t("fu.next.tomorrow"), () => localAt(1, 10)], ["3days", t("fu.next.3days"), () => localAt(3, 10)],
    ["week", t("fu.next.week"), () => localAt(daysToNextMonday(), 10)], ["none", t("fu.next.none"), () => ""]];
  const picks = chips(quick.map(([key, label]) => [key, label]), [], {
    multiple: false,
    onChange: ([key]) => {
      const pick = quick.find(([k]) => k === key);
      if (pick) due.value = pick[2]();
    },
  });
  picks.id = "task-due-quick";
  const form = editorForm("task-form", [
    field("title", t("task.titleLabel"), input("title", task?.title, { maxlength: 200, placeholder: t("task.titlePlaceholder") }),
      { required: true }),
    h("div", { class: "field", dataset: { field: "due_at" } }, h("span", { class: "label" }, t("task.due")), picks, due),
  ], {
    cancel: () => close(),
    save: async (f) => {
      const body = { title: value(f, "title") || "", due_at: due.value || null };
      // A time without an offset is the corp's local time to the API, as typed.
      const saved = task ? await patch(`/tasks/${task.id}`, body)
        : await post("/tasks", { ...body, customer_id: page.id });
      const row = taskRow(page, saved);
      if (task) close(row);
      else {
        page.lists.task.append(row);
        close();
      }
      resortTasks(page.lists.task);
      toast(t(task ? "task.saved" : "task.added"));
    },
  });
  close = mount(page, "task", form, li);
}

export async function setTaskStatus(page, task, li, status) {
  const button = li.querySelector("[data-toggle]");
  button.disabled = true;
  try {
    const saved = await patch(`/tasks/${task.id}`, { status });
    li.replaceWith(taskRow(page, saved));
    resortTasks(page.lists.task);
    toast(t(status === "done" ? "home.taskDone" : "task.reopened"));
  } catch (err) {
    button.disabled = false;
    toast(err.message, "error");
  }
}

export function opportunityForm(page) {
  let close;
  // A deal is not created lost: that needs a reason and belongs on the deal itself.
  const stages = page.ctx.stages.filter((s) => !s.is_lost);
  const form = editorForm("opportunity-form", [
    field("name", t("opp.name"), input("name", "", { maxlength: 200 }), { required: true }),
    field("amount", t("opp.amountLabel"), input("amount", "", { inputmode: "decimal", placeholder: "0" })),
    field("stage_key", t("opp.stage"), h("select", { class: "input", name: "stage_key" },
      stages.map((s) => h("option", { value: s.key }, `${s.name} ${s.probability}%`)))),
    field("expected_close_date", t("opp.expectedClose"), input("expected_close_date", "", { type: "date" })),
  ], {
    cancel: () => close(),
    save: async (f) => {
      const body = { customer_id: page.id, name: value(f, "name") || "", stage_key: f.elements.stage_key.value || null,
        expected_close_date: value(f, "expected_close_date") };
      // Thousands separators and a currency sign are how people type money; the API wants the number.
      const amount = (value(f, "amount") || "").replace(/[,，\s¥￥]/g, "");
      if (amount) body.amount = amount;
      const saved = await post("/opportunities", body);
      page.lists.opportunity.prepend(opportunityRow(saved));
      close();
      toast(t("opp.added"));
    },
  });
  close = mount(page, "opportunity", form, null);
}
