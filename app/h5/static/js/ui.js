// Pieces shared by pages: error boxes in plain words, field errors on forms, infinite scroll, chips.
import { fieldMessage } from "./api.js";
import { clear, h } from "./dom.js";
import { t } from "./i18n.js";

export function errorBox(err, retry) {
  return h("div", { class: "error-box", role: "alert" },
    h("p", {}, err && err.message ? err.message : t("err.generic")),
    retry ? h("button", { type: "button", class: "btn", onclick: () => retry() }, t("common.retry")) : null);
}

export function loading() {
  return h("p", { class: "loading" }, t("common.loading"));
}

// Show the API's `error.fields` next to the inputs they name (`data-field`); returns the messages no input
// claimed so the caller can show them at the top. What the user typed is left untouched.
export function showFieldErrors(form, fields) {
  for (const old of form.querySelectorAll(".field-error")) old.remove();
  for (const old of form.querySelectorAll(".invalid")) old.classList.remove("invalid");
  const unclaimed = [];
  for (const [name, raw] of Object.entries(fields || {})) {
    const target = form.querySelector(`[data-field="${CSS.escape(name)}"]`)
      || form.querySelector(`[data-field="${CSS.escape(name.split(".").slice(0, 2).join("."))}"]`);
    if (!target) {
      unclaimed.push(fieldMessage(raw));
      continue;
    }
    target.classList.add("invalid");
    target.append(h("span", { class: "field-error" }, fieldMessage(raw)));
  }
  return unclaimed;
}

// Keep loading cursor pages while the sentinel at the end of the list scrolls into view.
export function infiniteList(container, fetchPage, renderItem, emptyText) {
  const list = h("ul", { class: "list" });
  const sentinel = h("div", { class: "sentinel" });
  const status = h("p", { class: "list-status" });
  clear(container, list, status, sentinel);
  let cursor = null;
  let done = false;
  let busy = false;
  let count = 0;
  const more = async () => {
    if (busy || done) return;
    busy = true;
    status.textContent = t("common.loading");
    try {
      const page = await fetchPage(cursor);
      for (const item of page.items) list.append(renderItem(item));
      count += page.items.length;
      cursor = page.next_cursor;
      done = !cursor;
      status.textContent = done ? (count ? t("common.noMore") : emptyText) : "";
    } catch (err) {
      clear(status, errorBox(err, more));
      done = false;
    } finally {
      busy = false;
    }
    if (!done && sentinel.getBoundingClientRect().top < window.innerHeight + 200) more();
  };
  const observer = new IntersectionObserver((entries) => {
    if (!container.isConnected) return observer.disconnect();
    if (entries.some((e) => e.isIntersecting)) more();
    return undefined;
  }, { rootMargin: "200px" });
  observer.observe(sentinel);
  more();
  return { list };
}

export function chips(options, selected, { multiple = true, onChange } = {}) {
  const box = h("div", { class: "chips" });
  const set = new Set(selected.map(String));
  const draw = () => clear(box, options.map(([value, label]) => h("button", {
    type: "button", class: set.has(String(value)) ? "chip on" : "chip", "aria-pressed": String(set.has(String(value))),
    dataset: { value: String(value) },
    onclick: () => {
      const key = String(value);
      if (set.has(key)) set.delete(key);
      else {
        if (!multiple) set.clear();
        set.add(key);
      }
      draw();
      if (onChange) onChange([...set]);
    },
  }, label)));
  draw();
  box.values = () => [...set];
  return box;
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}
