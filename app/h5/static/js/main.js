// The app shell: boot, sign-in when needed, a hash router (`#/customers/12`) and the tab bar.
import { ApiError, get } from "./api.js";
import { clear, h } from "./dom.js";
import { t } from "./i18n.js";
import { signIn } from "./signin.js";
import { setZone } from "./time.js";
import { errorBox } from "./ui.js";
import home from "./pages/home.js";
import customerList from "./pages/customer_list.js";
import customerDetail from "./pages/customer_detail.js";
import customerForm from "./pages/customer_form.js";
import followUpForm from "./pages/follow_up_form.js";
import opportunities from "./pages/opportunities.js";
import { approvalDetail, approvalForm, approvalList } from "./pages/approvals.js";
import { mePage, notFound } from "./pages/misc.js";

const root = document.getElementById("app");
const boot = JSON.parse(document.getElementById("boot").textContent);
const state = { ctx: null };

const ROUTES = [
  [/^\/?$/, "home", home],
  [/^\/customers$/, "customers", customerList],
  [/^\/customers\/new$/, "customers", customerForm],
  [/^\/customers\/(\d+)$/, "customers", customerDetail],
  [/^\/customers\/(\d+)\/edit$/, "customers", customerForm],
  [/^\/customers\/(\d+)\/follow-up$/, "customers", followUpForm],
  [/^\/opportunities$/, "opportunities", opportunities],
  [/^\/approvals$/, "home", approvalList],
  [/^\/approvals\/new$/, "opportunities", approvalForm],
  [/^\/approvals\/(\d+)$/, "home", approvalDetail],
  [/^\/me$/, "me", mePage],
  // Lazy: the home page must not pay for the dashboard's code.
  [/^\/dashboard$/, "dashboard", async (args) => (await import("./pages/dashboard.js")).default(args)],
];

const TABS = [["home", "#/", "nav.home"], ["customers", "#/customers", "nav.customers"],
  ["opportunities", "#/opportunities", "nav.opportunities"], ["dashboard", "#/dashboard", "nav.dashboard"],
  ["me", "#/me", "nav.me"]];

export function go(path, { replace = false } = {}) {
  const target = `#${path}`;
  if (replace) window.location.replace(target);
  else window.location.hash = target;
}

function currentPath() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  return raw.split("?")[0];
}

function shell(tab, title, back) {
  const titleEl = h("h1", { class: "title", id: "page-title" }, title);
  const view = h("main", { class: "view", id: "view" });
  const header = h("header", { class: "topbar" },
    back ? h("button", { class: "back", type: "button", "aria-label": t("common.back"),
      onclick: () => (window.history.length > 1 ? window.history.back() : go(back)) }, "‹") : h("span", { class: "back-space" }),
    titleEl, h("span", { class: "back-space" }));
  const nav = h("nav", { class: "tabbar" }, TABS.map(([key, href, label]) =>
    h("a", { href, class: key === tab ? "tab active" : "tab", "aria-current": key === tab ? "page" : null,
      dataset: { tab: key } }, t(label))));
  clear(root, header, view, nav);
  return { view, setTitle: (text) => { titleEl.textContent = text; document.title = text; } };
}

async function route() {
  if (!state.ctx) return;
  const path = currentPath();
  const match = ROUTES.map(([re, tab, page]) => [path.match(re), tab, page]).find(([m]) => m);
  const [params, tab, page] = match || [[], "home", notFound];
  const isTop = ["/", "/customers", "/opportunities", "/dashboard", "/me"].includes(path);
  const { view, setTitle } = shell(tab, "", isTop ? null : "/");
  window.scrollTo(0, 0);
  try {
    await page({ el: view, params: params.slice(1), ctx: state.ctx, go, setTitle, reloadContext });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return start();
    clear(view, errorBox(err, route));
  }
  return undefined;
}

async function reloadContext() {
  state.ctx = await get("/h5/context");
  setZone(state.ctx.corp.timezone);
  return state.ctx;
}

let justSignedIn = false;

async function afterSignIn() {
  justSignedIn = true;
  return start();
}

async function start() {
  try {
    await reloadContext();
  } catch (err) {
    state.ctx = null;
    // A sign-in that "worked" but left no session (cookies blocked, clock skew) must not loop forever.
    if (err instanceof ApiError && err.status === 401 && !justSignedIn) return signIn(root, boot, afterSignIn);
    justSignedIn = false;
    return clear(root, h("main", { class: "page center" }, errorBox(err, () => signIn(root, boot, afterSignIn))));
  }
  justSignedIn = false;
  return route();
}

window.addEventListener("hashchange", route);
start();
