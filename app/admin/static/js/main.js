// The console shell: side navigation (a top strip on phones), hash routing, and the language switch.
import { clear, h } from "/h5/static/js/dom.js";
import { L, lang, languages, setLang } from "./i18n.js";
import { errorBox } from "./ui.js";
import bind from "./pages/bind.js";
import sync from "./pages/sync.js";
import deliveries from "./pages/deliveries.js";
import users from "./pages/users.js";
import settings from "./pages/settings.js";
import config from "./pages/config.js";
import fields from "./pages/fields.js";
import flows from "./pages/flows.js";
import rules from "./pages/rules.js";
import assignment from "./pages/assignment.js";
import audit from "./pages/audit.js";

const boot = JSON.parse(document.getElementById("boot").textContent);
const PAGES = [
  ["bind", () => L("企业绑定", "Corp binding"), bind],
  ["sync", () => L("通讯录同步", "Org sync"), sync],
  ["deliveries", () => L("消息投递", "Deliveries"), deliveries],
  ["users", () => L("用户与角色", "Users & roles"), users],
  ["settings", () => L("规则设置", "Settings"), settings],
  ["fields", () => L("自定义字段", "Custom fields"), fields],
  ["config", () => L("商机阶段", "Opportunity stages"), config],
  ["flows", () => L("审批流程", "Approval flows"), flows],
  ["rules", () => L("自动化规则", "Automation rules"), rules],
  ["assignment", () => L("线索分配", "Lead assignment"), assignment],
  ["audit", () => L("审计日志", "Audit log"), audit],
];

let stopCurrent = null;

async function route() {
  if (stopCurrent) stopCurrent();
  stopCurrent = null;
  const name = (location.hash.replace(/^#\/?/, "").split("?")[0]) || "sync";
  const page = PAGES.find(([key]) => key === name) || PAGES[1];
  const main = h("main", { class: "main", id: "main", "data-page": page[0] });
  const nav = h("nav", { class: "nav" },
    h("div", { class: "brand" }, L("CRM 管理后台", "CRM admin"), h("small", {}, boot.corp.name)),
    PAGES.map(([key, title]) => h("a", { href: `#/${key}`, class: key === page[0] ? "active" : "", "data-nav": key }, title())),
    h("div", { class: "nav-foot" }, h("span", {}, boot.user.name),
      h("select", { "aria-label": "Language", onchange: (e) => { setLang(e.target.value); route(); } },
        languages.map(([code, label]) => h("option", { value: code, selected: code === lang }, label)))));
  clear(document.getElementById("shell"), nav, main);
  document.title = `${page[1]()} · ${L("CRM 管理后台", "CRM admin")}`;
  try {
    stopCurrent = (await page[2](main, { boot })) || null;
  } catch (err) {
    clear(main, errorBox(err));
  }
}

window.addEventListener("hashchange", route);
route();
