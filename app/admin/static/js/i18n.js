// The console's words: written inline as L("中文", "English"); the language is the one the H5 app stores.
import { lang, languages, setLang } from "/h5/static/js/i18n.js";

export const L = (zh, en) => (lang === "en" ? en : zh);
export { lang, languages, setLang };

// Times are shown in the corp's time zone (from the boot document), whatever the admin's machine uses.
const boot = JSON.parse(document.getElementById("boot")?.textContent || "{}");
const zone = boot.corp?.timezone;

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const options = { hour12: false, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" };
  try {
    return d.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", zone ? { ...options, timeZone: zone } : options);
  } catch {
    return d.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", options);
  }
}
