// Write a follow-up in a few taps: kind, what happened, optional place, next contact time.
import { ApiError, post } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { daysToNextMonday, localAt } from "../time.js";
import { chips, showFieldErrors } from "../ui.js";

const KINDS = ["call", "visit", "meeting", "wechat", "other"];

export default async function followUpForm({ el, params, go, setTitle }) {
  const id = params[0];
  setTitle(t("fu.title"));
  const kind = chips(KINDS.map((k) => [k, t(`fu.kind.${k}`)]), ["call"], { multiple: false });
  kind.id = "fu-kind";
  const content = h("textarea", { class: "input", name: "content", rows: 5, maxlength: 5000, placeholder: t("fu.contentPlaceholder") });
  const location = h("input", { class: "input", name: "location", maxlength: 300 });
  const nextInput = h("input", { class: "input", type: "datetime-local", name: "next_contact_at" });
  const quick = [["none", t("fu.next.none"), ""], ["tomorrow", t("fu.next.tomorrow"), () => localAt(1, 10)],
    ["3days", t("fu.next.3days"), () => localAt(3, 10)], ["week", t("fu.next.week"), () => localAt(daysToNextMonday(), 10)]];
  const nextChips = chips(quick.map(([key, label]) => [key, label]), ["none"], {
    multiple: false,
    onChange: ([key]) => {
      const pick = quick.find(([k]) => k === key);
      nextInput.value = pick && typeof pick[2] === "function" ? pick[2]() : "";
    },
  });
  nextChips.id = "fu-next-quick";
  const coords = {};
  const locate = h("button", { type: "button", class: "btn small", onclick: () => {
    if (!navigator.geolocation) return toast(t("fu.locateFailed"), "error");
    locate.textContent = t("fu.locating");
    navigator.geolocation.getCurrentPosition((pos) => {
      coords.latitude = Number(pos.coords.latitude.toFixed(6));
      coords.longitude = Number(pos.coords.longitude.toFixed(6));
      if (!location.value) location.value = `${coords.latitude}, ${coords.longitude}`;
      locate.textContent = t("fu.locate");
    }, () => {
      toast(t("fu.locateFailed"), "error");
      locate.textContent = t("fu.locate");
    }, { timeout: 8000 });
    return undefined;
  } }, t("fu.locate"));
  const banner = h("div", { class: "banner" });
  const submit = h("button", { type: "submit", class: "btn primary block", id: "save-follow-up" }, t("common.save"));
  const form = h("form", { class: "form", id: "follow-up-form", novalidate: true }, banner,
    h("div", { class: "field", dataset: { field: "kind" } }, h("span", { class: "label" }, t("fu.kind")), kind),
    h("label", { class: "field", dataset: { field: "content" } }, h("span", { class: "label" }, t("fu.content"), h("em", {}, " *")), content),
    h("div", { class: "field", dataset: { field: "location" } }, h("span", { class: "label" }, t("fu.location"),
      h("small", {}, ` (${t("common.optional")})`)), h("div", { class: "inline" }, location, locate)),
    h("div", { class: "field", dataset: { field: "next_contact_at" } }, h("span", { class: "label" }, t("fu.next")), nextChips, nextInput),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clear(banner);
    showFieldErrors(form, {});
    const body = { kind: kind.values()[0] || "call", content: content.value.trim(), location: location.value.trim() || null,
      next_contact_at: nextInput.value || null };
    if (coords.latitude !== undefined && body.location) Object.assign(body, coords);
    try {
      await post(`/customers/${id}/follow-ups`, body);
      toast(t("fu.saved"));
      go(`/customers/${id}`, { replace: true });
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
