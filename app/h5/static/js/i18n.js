// The language in use (zh-CN unless the user switched) and `t(key, vars)` over one dictionary per language.
import zh from "./i18n/zh-CN.js";
import en from "./i18n/en.js";

const DICTIONARIES = { "zh-CN": zh, en };
const STORE_KEY = "crm.lang";

export let lang = DICTIONARIES[localStorage.getItem(STORE_KEY)] ? localStorage.getItem(STORE_KEY) : "zh-CN";
document.documentElement.lang = lang;

export function setLang(next) {
  if (!DICTIONARIES[next]) return;
  localStorage.setItem(STORE_KEY, next);
  lang = next;
  document.documentElement.lang = next;
}

export const languages = [["zh-CN", "中文"], ["en", "English"]];

export function t(key, vars = {}) {
  const text = DICTIONARIES[lang][key] ?? zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

// Server messages are written "中文 / English"; show the half that matches the language in use.
export function localPart(message) {
  if (typeof message !== "string" || !message) return "";
  const parts = message.split(" / ");
  if (parts.length < 2) return message;
  return lang === "zh-CN" ? parts[0] : parts.slice(1).join(" / ");
}
