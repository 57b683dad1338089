// fetch wrappers for /api/v1: JSON in and out, and every failure turned into an ApiError with plain words.
import { localPart, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message, fields = {}, detail = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.detail = detail;
  }
}

const STATUS_WORDS = { 401: "err.signin", 403: "err.forbidden", 404: "err.notFound", 429: "err.tooMany" };

function plainMessage(status, error) {
  if (status >= 500 || !error) return t("err.server");
  if (status === 401) return t("err.signin");
  const local = localPart(error.message);
  // A message that looks like machine output (JSON, a traceback) is never shown as is.
  if (local && !/[{}<>]|Traceback|Error:/.test(local) && local.length < 200) return local;
  return t(STATUS_WORDS[status] || "err.generic");
}

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, "network", t("err.network"));
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) return data;
  const error = data && typeof data.error === "object" ? data.error : null;
  throw new ApiError(response.status, error?.code || "error", plainMessage(response.status, error),
    error?.fields || {}, error || {});
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const patch = (path, body) => api("PATCH", path, body);

export function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) continue;
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(Array.isArray(value) ? value.join(",") : value)}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

// A field message from the API in plain words: codes and validator sentences become short local phrases.
export function fieldMessage(raw) {
  const text = String(raw || "");
  // Bilingual messages from the services are already plain words.
  if (text.includes(" / ")) return localPart(text);
  if (/[\u4e00-\u9fff]/.test(text)) return text;
  if (/required|missing|at least 1 character/i.test(text)) return t("err.field.required");
  if (/duplicate/i.test(text)) return t("err.field.duplicate");
  if (/at most|too long/i.test(text)) return t("err.field.tooLong");
  return t("err.field.invalid");
}
