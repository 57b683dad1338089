// Who is using the app: DingTalk (JSAPI auth code), WeCom (OAuth redirect), the sandbox picker in a plain
// browser beside the sandbox, or a page saying to open the app from the workbench.
import { ApiError, get, post } from "./api.js";
import { clear, h } from "./dom.js";
import { t } from "./i18n.js";

// Official script URLs, used only inside the platform's own webview (nothing else is loaded from outside).
const DINGTALK_JSAPI = "https://g.alicdn.com/dingding/dingtalk-jsapi/3.0.25/dingtalk.open.js";

export function detectPlatform(ua = navigator.userAgent) {
  if (/DingTalk/i.test(ua)) return "dingtalk";
  if (/wxwork/i.test(ua)) return "wecom";
  return "browser";
}

// The corp id from the homepage URL: DingTalk substitutes its `$CORPID$` placeholder; an unsubstituted
// placeholder means the page was opened some other way and counts as missing.
export function corpIdFromUrl(loc = window.location) {
  const params = new URLSearchParams(loc.search);
  const hashQuery = loc.hash.includes("?") ? new URLSearchParams(loc.hash.split("?")[1]) : new URLSearchParams();
  for (const name of ["corpId", "corpid", "corp"]) {
    const value = params.get(name) || hashQuery.get(name);
    if (value && value !== "$CORPID$") return value;
  }
  return null;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement("script");
    el.src = src;
    el.onload = resolve;
    el.onerror = () => reject(new Error("script"));
    document.head.append(el);
  });
}

function message(root, title, body, extra = []) {
  clear(root, h("main", { class: "page center" },
    h("div", { class: "notice" }, h("h1", {}, title), body ? h("p", {}, body) : null, ...extra)));
}

async function dingtalk(corpId) {
  await loadScript(DINGTALK_JSAPI);
  const dd = window.dd;
  const code = await new Promise((resolve, reject) => {
    dd.ready(() => dd.runtime.permission.requestAuthCode({
      corpId,
      onSuccess: (res) => resolve(res.code),
      onFail: (err) => reject(new Error((err && (err.errorMessage || err.message)) || `errorCode ${err && err.errorCode}`)),
    }));
    dd.error((err) => reject(new Error((err && err.errorMessage) || "jsapi")));
  });
  await post("/auth/dingtalk", { corpId, authCode: code });
}

// The sandbox picker: the sandbox's own employee list and sign-in when that API is there, otherwise the
// development sign-in over the app's own user list (both exist only while the sandbox runs).
async function loadEmployees(q = "") {
  try {
    const data = await get(`/auth/sandbox/employees${q ? `?q=${encodeURIComponent(q)}` : ""}`);
    return { via: "sandbox", items: (data.items || []).map((e) => ({ ...e, corpId: data.corpId, corp_name: data.corpName })) };
  } catch (err) {
    // 404: the sandbox is off or no sandbox corp is bound; tests and seeded set-ups use development sign-in.
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  const data = await get("/h5/sandbox-employees");
  return { via: "dev", items: data.items };
}

async function signInAs(via, employee) {
  if (via === "sandbox") {
    const body = { userid: employee.userid };
    if (employee.corpId) body.corpId = employee.corpId;
    await post("/auth/sandbox/sign-in", body);
  } else {
    await post("/auth/dev", { corpId: employee.corpId, userid: employee.userid });
  }
}

function picker(root, done) {
  const list = h("ul", { class: "list picker", id: "picker-list" });
  const errorBox = h("p", { class: "error-text", role: "alert" });
  const filter = h("input", { type: "search", placeholder: t("signin.filter"), class: "input", id: "picker-filter" });
  message(root, t("signin.pickTitle"), t("signin.pickHint"), [filter, errorBox, list]);
  let state = { via: "dev", items: [] };
  const render = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = state.items.filter((e) => !needle || e.name.toLowerCase().includes(needle));
    clear(list, shown.length ? shown.map((e) => h("li", {},
      h("button", {
        type: "button", class: "row-button", dataset: { userid: e.userid },
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          errorBox.textContent = t("signin.inProgress");
          try {
            await signInAs(state.via, e);
            done();
          } catch (err) {
            errorBox.textContent = err.message;
            event.currentTarget.disabled = false;
          }
        },
      }, h("span", { class: "row-title" }, e.name),
      h("span", { class: "row-sub" }, [e.title, (e.departments || []).join("、"), e.corp_name || e.corpId,
        e.role ? t(`me.role.${e.role}`) : null].filter(Boolean).join(" · "))))) : h("li", { class: "empty" }, t("signin.noEmployees")));
  };
  const load = (q) => loadEmployees(q).then((loaded) => {
    state = loaded;
    render();
  }).catch((err) => {
    errorBox.textContent = err.message;
  });
  let timer;
  // The sandbox lists at most 50 people, so a name typed here is searched on the server too.
  filter.addEventListener("input", () => {
    render();
    clearTimeout(timer);
    if (state.via === "sandbox") timer = setTimeout(() => load(filter.value.trim()), 250);
  });
  load("");
}

export async function signIn(root, boot, done) {
  const platform = detectPlatform();
  if (platform === "dingtalk") {
    const corpId = corpIdFromUrl();
    if (!corpId) return message(root, t("signin.title"), t("signin.noCorp"));
    message(root, t("signin.inProgress"), "");
    try {
      await dingtalk(corpId);
      return done();
    } catch (err) {
      return message(root, t("signin.title"), t("signin.dingtalkFailed", { reason: err.message }));
    }
  }
  if (platform === "wecom") {
    const corp = corpIdFromUrl();
    if (!corp) return message(root, t("signin.title"), t("signin.noCorp"));
    const next = window.location.pathname + window.location.search + window.location.hash;
    window.location.assign(`/auth/wecom/start?corp=${encodeURIComponent(corp)}&next=${encodeURIComponent(next)}`);
    return undefined;
  }
  if (boot.sandbox) return picker(root, done);
  return message(root, t("signin.openFromWorkbench"), t("signin.openFromWorkbenchHint"));
}
