// Small pieces the console pages share: plain-word error boxes, field errors beside inputs, labelled inputs.
import { fieldMessage } from "/h5/static/js/api.js";
import { h } from "/h5/static/js/dom.js";
import { L } from "./i18n.js";

export function errorBox(err) {
  return h("div", { class: "error-box", role: "alert" }, err?.message || L("出错了，请重试", "Something went wrong"));
}

export function field(name, label, input, help) {
  return h("label", { class: "field", "data-field": name }, h("span", { class: "label" }, label), input,
    help ? h("small", { class: "help" }, help) : null);
}

// Mark the inputs the API named; what the user typed stays. Returns messages no input claimed.
export function showFieldErrors(form, fields) {
  for (const old of form.querySelectorAll(".field-error")) old.remove();
  for (const old of form.querySelectorAll(".invalid")) old.classList.remove("invalid");
  const unclaimed = [];
  for (const [name, raw] of Object.entries(fields || {})) {
    const target = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (!target) {
      unclaimed.push(`${name}: ${fieldMessage(raw)}`);
      continue;
    }
    target.classList.add("invalid");
    target.append(h("span", { class: "field-error" }, fieldMessage(raw) === raw ? raw : `${fieldMessage(raw)}（${raw}）`));
  }
  return unclaimed;
}

export function formError(form, err) {
  const unclaimed = showFieldErrors(form, err.fields);
  form.querySelector(".form-error")?.remove();
  form.prepend(h("div", { class: "error-box form-error", role: "alert" }, err.message, ...unclaimed.map((m) => h("div", {}, m))));
}

export function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty || L("暂无数据", "Nothing yet"));
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows)));
}
