// Times arrive in UTC and are shown in the corp's time zone (from /api/v1/h5/context), whatever the phone says.
import { lang, t } from "./i18n.js";

let zone = "Asia/Shanghai";
export function setZone(tz) {
  if (tz) zone = tz;
}
export const currentZone = () => zone;

function parts(date) {
  const fmt = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  });
  const out = {};
  for (const p of fmt.formatToParts(date)) out[p.type] = p.value;
  return out;
}

function dayKey(date) {
  const p = parts(date);
  return `${p.year}-${p.month}-${p.day}`;
}

// "今天 14:30", "昨天 09:00", "11月28日 16:00" (with the year when it is not this year).
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const p = parts(date);
  const hm = `${p.hour}:${p.minute}`;
  const now = new Date();
  const day = dayKey(date);
  const shift = (days) => dayKey(new Date(now.getTime() + days * 86400000));
  if (day === shift(0)) return `${t("time.today")} ${hm}`;
  if (day === shift(1)) return `${t("time.tomorrow")} ${hm}`;
  if (day === shift(-1)) return `${t("time.yesterday")} ${hm}`;
  const sameYear = p.year === parts(now).year;
  if (lang === "zh-CN") return `${sameYear ? "" : `${p.year}年`}${Number(p.month)}月${Number(p.day)}日 ${hm}`;
  return `${sameYear ? "" : `${p.year}-`}${p.month}-${p.day} ${hm}`;
}

// The value for an <input type="datetime-local"> showing `iso` in the corp's zone.
export function toLocalInput(iso) {
  if (!iso) return "";
  const p = parts(new Date(iso));
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}

// A corp-local wall time `days` from today at hh:mm, as typed into a datetime-local input. The API reads a
// time without an offset as the corp's local time, so this string is sent as is.
export function localAt(days, hour, minute = 0) {
  const p = parts(new Date());
  const base = new Date(Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day) + days));
  const pad = (n) => String(n).padStart(2, "0");
  return `${base.getUTCFullYear()}-${pad(base.getUTCMonth() + 1)}-${pad(base.getUTCDate())}T${pad(hour)}:${pad(minute)}`;
}

// Days until next Monday in the corp's zone (7 on a Monday).
export function daysToNextMonday() {
  const p = parts(new Date());
  const weekday = new Date(Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day))).getUTCDay();
  return ((8 - weekday) % 7) || 7;
}
