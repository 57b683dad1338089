// Small pieces the console pages share: plain-word error boxes, field errors beside inputs, labelled inputs.
import { fieldMessage } from "/h5/static/js/api.js";
import { h, toast } from "/h5/static/js/dom.js";
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

// Pydantic names a union member in the error path ("steps.0.approvers.1.nth_leader.n"); the editors mark
// inputs by their JSON path without it ("steps.0.approvers.1.n").
const UNION_TAG = /\.(\d+)\.(direct_leader|nth_leader|dept_leader|users|role|create_task|notify|assign_owner|add_tag|remove_tag|start_approval)(?=\.|$)/g;

// Errors for nested editors: each message goes to the deepest element whose data-field is the path or a
// prefix of it, so "steps.0.condition.1" (a whole-row problem) lands on that row. What was typed stays.
// A validator sentence is added after the plain phrase only when it helps ("greater than or equal to 1");
// one quoting a regular expression or a type name would only confuse.
function plainWords(raw) {
  if (/at least 1 (item|character)|field required|missing/i.test(String(raw))) return fieldMessage("required");
  const plain = fieldMessage(raw);
  if (plain === raw || /pattern|[\\^$[\]{}]|valid (integer|string|list|dict)|union|tag/i.test(String(raw))) return plain;
  return `${plain}（${raw}）`;
}

export function placeErrors(form, err) {
  for (const old of form.querySelectorAll(".field-error, .form-error")) old.remove();
  for (const old of form.querySelectorAll(".invalid")) old.classList.remove("invalid");
  const unclaimed = [];
  for (const [name, raw] of Object.entries(err.fields || {})) {
    // A whole-body check that names its field in the sentence ("amount_crossed needs params.threshold").
    const named = name === "body" ? String(raw).match(/\b[a-z_]+(\.[a-z_0-9]+)+\b/) : null;
    let key = (named && form.querySelector(`[data-field="${CSS.escape(named[0])}"]`) ? named[0] : name).replace(UNION_TAG, ".$1");
    let target = null;
    while (key && !target) {
      target = form.querySelector(`[data-field="${CSS.escape(key)}"]`);
      key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "";
    }
    const words = plainWords(raw);
    if (!target) {
      unclaimed.push(`${name}: ${words}`);
      continue;
    }
    target.classList.add("invalid");
    target.append(h("span", { class: "field-error" }, words));
  }
  form.prepend(h("div", { class: "error-box form-error", role: "alert" }, err.message, ...unclaimed.map((m) => h("div", {}, m))));
  (form.querySelector(".invalid") || form).scrollIntoView({ block: "center" });
}

export function pageHead(title, ...actions) {
  return h("header", { class: "page-head" }, h("h1", {}, title), actions.length ? h("div", { class: "buttons" }, actions) : null);
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", class: "btn", ...attrs, onclick }, label);
}

// Move an item of a list one place up or down (the editors keep their rows in plain arrays).
export function move(list, index, delta) {
  const to = index + delta;
  if (to < 0 || to >= list.length) return;
  [list[index], list[to]] = [list[to], list[index]];
}

// "#/flows?id=3" → URLSearchParams("id=3"): editors are addressable, so reload and back work.
export function hashParams() {
  const hash = location.hash;
  return new URLSearchParams(hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "");
}

export function checkbox(checked, onchange, label, attrs = {}) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", checked, ...attrs,
    onchange: (e) => onchange(e.target.checked) }), label);
}

// A toggle that saves at once and flips back (with the reason) when the server refuses.
export function liveToggle(checked, save, label, attrs = {}) {
  return h("input", { type: "checkbox", checked, "aria-label": label, ...attrs, onchange: async (e) => {
    e.target.disabled = true;
    try {
      await save(e.target.checked);
      toast(L("已保存", "Saved"));
    } catch (err) {
      e.target.checked = !e.target.checked;
      toast(err.message, "error");
    } finally {
      e.target.disabled = false;
    }
  } });
}
