// Create or edit a customer, with the corp's custom fields and the duplicate warning. When the server says
// no, the form stays as typed and each message sits next to its field.
import { ApiError, get, patch, post } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { toLocalInput } from "../time.js";
import { loading, showFieldErrors } from "../ui.js";

const GRADES = ["A", "B", "C"];
const STATUSES = ["lead", "prospect", "customer", "lost"];

function field(name, label, input, { required = false } = {}) {
  return h("label", { class: "field", dataset: { field: name } },
    h("span", { class: "label" }, label, required ? h("em", {}, " *") : null), input);
}

function select(name, options, value, { blank = true } = {}) {
  return h("select", { class: "input", name },
    blank ? h("option", { value: "" }, t("field.choose")) : null,
    options.map(([v, label]) => h("option", { value: v, selected: String(value ?? "") === String(v) }, label)));
}

function customInput(def, value) {
  const name = `custom.${def.key}`;
  switch (def.field_type) {
    case "number":
      return h("input", { class: "input", type: "number", step: "any", name, value: value ?? "",
        min: def.min_value ?? null, max: def.max_value ?? null });
    case "date":
      return h("input", { class: "input", type: "date", name, value: value ?? "" });
    case "select":
      return select(name, def.options.map((o) => [o, o]), value);
    case "multiselect":
      return h("div", { class: "checks", dataset: { multi: name } }, def.options.map((o) => h("label", { class: "check" },
        h("input", { type: "checkbox", value: o, checked: Array.isArray(value) && value.includes(o) }), o)));
    default:
      return h("input", { class: "input", type: "text", name, value: value ?? "", maxlength: def.max_length ?? null });
  }
}

function readCustom(form, defs) {
  const out = {};
  for (const def of defs) {
    const name = `custom.${def.key}`;
    if (def.field_type === "multiselect") {
      const boxes = form.querySelectorAll(`[data-multi="${CSS.escape(name)}"] input:checked`);
      out[def.key] = [...boxes].map((b) => b.value);
      continue;
    }
    const raw = form.elements[name].value.trim();
    if (raw === "") out[def.key] = null;
    else if (def.field_type === "number") out[def.key] = Number.isNaN(Number(raw)) ? raw : Number(raw);
    else out[def.key] = raw;
  }
  return out;
}

function duplicateBox(match, canOverride, onOverride) {
  const owner = match.in_pool ? t("dup.inPool") : match.owner?.name || t("common.none");
  const matched = match.matched_on === "phone" ? t("dup.matchedPhone") : t("dup.matchedName");
  return h("div", { class: "warning-box", id: "duplicate-warning", role: "alert" },
    h("strong", {}, t("dup.title")),
    h("p", {}, t("dup.body", { name: match.name, matched, owner })),
    h("div", { class: "actions" },
      h("a", { class: "btn", href: `#/customers/${match.id}`, id: "duplicate-open" }, t("dup.open")),
      canOverride ? h("button", { type: "button", class: "btn danger", id: "duplicate-override", onclick: onOverride },
        t("dup.override")) : h("p", { class: "row-sub" }, t("dup.noOverride"))));
}

export default async function customerForm({ el, params, ctx, go, setTitle }) {
  const id = params[0];
  setTitle(t(id ? "form.editTitle" : "form.newTitle"));
  let c = { custom: {}, status: "lead" };
  if (id) {
    clear(el, loading());
    c = await get(`/customers/${id}`);
  }
  const defs = ctx.fields.filter((d) => d.entity === "customer");
  const banner = h("div", { class: "banner", id: "form-banner" });
  const submit = h("button", { type: "submit", class: "btn primary block", id: "save-customer" }, t("common.save"));
  const form = h("form", { class: "form", id: "customer-form", novalidate: true },
    banner,
    field("name", t("field.name"), h("input", { class: "input", name: "name", value: c.name ?? "", maxlength: 200,
      autocomplete: "organization" }), { required: true }),
    field("grade", t("field.grade"), select("grade", GRADES.map((g) => [g, t(`grade.${g}`)]), c.grade)),
    field("status", t("field.status"), select("status", STATUSES.map((s) => [s, t(`status.${s}`)]), c.status, { blank: false })),
    id ? null : h("fieldset", { class: "group", dataset: { field: "contacts" } },
      field("contacts.0.name", t("field.contactName"), h("input", { class: "input", name: "contact_name", autocomplete: "name" })),
      field("contacts.0.mobile", t("field.contactMobile"), h("input", { class: "input", name: "contact_mobile", type: "tel",
        inputmode: "tel", autocomplete: "tel" }))),
    field("source", t("field.source"), h("input", { class: "input", name: "source", value: c.source ?? "" })),
    field("industry", t("field.industry"), h("input", { class: "input", name: "industry", value: c.industry ?? "" })),
    field("region", t("field.region"), h("input", { class: "input", name: "region", value: c.region ?? "" })),
    field("address", t("field.address"), h("input", { class: "input", name: "address", value: c.address ?? "" })),
    field("next_contact_at", t("field.nextContact"), h("input", { class: "input", type: "datetime-local",
      name: "next_contact_at", value: toLocalInput(c.next_contact_at) })),
    defs.length ? h("h3", {}, t("field.customFields")) : null,
    defs.map((d) => field(`custom.${d.key}`, d.label, customInput(d, c.custom[d.key]), { required: d.required })),
    submit);

  const payload = () => {
    const v = (name) => form.elements[name].value.trim();
    const body = { name: v("name"), grade: v("grade") || null, status: v("status"), source: v("source") || null,
      industry: v("industry") || null, region: v("region") || null, address: v("address") || null,
      next_contact_at: v("next_contact_at") || null, custom: readCustom(form, defs) };
    if (!id) {
      const name = v("contact_name");
      const mobile = v("contact_mobile");
      body.contacts = name || mobile ? [{ name, mobile: mobile || null, is_primary: true }] : [];
    }
    return body;
  };

  const save = async (allowDuplicate = false) => {
    submit.disabled = true;
    submit.textContent = t("common.saving");
    clear(banner);
    showFieldErrors(form, {});
    try {
      const body = { ...payload(), allow_duplicate: allowDuplicate };
      const saved = id ? await patch(`/customers/${id}`, body) : await post("/customers", body);
      toast(t(id ? "form.saved" : "form.created"));
      go(`/customers/${saved.id}`, { replace: true });
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && err.detail.match) {
        const canOverride = ctx.user.role === "manager" || ctx.user.role === "admin";
        clear(banner, duplicateBox(err.detail.match, canOverride, () => save(true)));
      } else {
        const leftover = err instanceof ApiError ? showFieldErrors(form, err.fields) : [];
        const hasFieldErrors = Object.keys(err.fields || {}).length > leftover.length;
        clear(banner, h("div", { class: "error-box", role: "alert", id: "form-error" },
          h("p", {}, err.message), hasFieldErrors ? h("p", {}, t("form.fixErrors")) : null,
          leftover.map((m) => h("p", {}, m))));
      }
      banner.scrollIntoView({ block: "nearest" });
    } finally {
      submit.disabled = false;
      submit.textContent = t("common.save");
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(false);
  });
  clear(el, form);
}
