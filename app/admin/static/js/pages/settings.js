// Pool, reminder, quiet-hour, escalation, leaver and quota settings: one form; a rejected key is marked
// beside its input and everything typed stays.
import { get, patch } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { errorBox, field, formError } from "../ui.js";

const NUMBERS = [
  ["stale_days", ["客户多少天未跟进算沉睡", "Days without follow-up before a customer is stale"]],
  ["pool_reclaim_days", ["多少天未跟进收回公海", "Days without follow-up before reclaim to the pool"]],
  ["pool_warn_days", ["收回前几天提醒负责人", "Days before reclaim the owner is warned"]],
  ["approval_escalate_hours", ["审批超过多少小时升级", "Hours before a pending approval escalates"]],
  ["monthly_api_quota", ["每月接口调用额度", "Monthly API quota"]],
  ["pool_hold_cap", ["每人最多持有客户数", "Customers one person may hold"]],
  ["pool_daily_claims", ["每人每天最多领取", "Pool claims per person per day"]],
  ["pool_reclaim_ban_days", ["被收回后几天内不可再领", "Days before a reclaimed customer can be claimed back"]],
];

export default async function settingsPage(main) {
  let data;
  try {
    data = await get("/admin/settings");
  } catch (err) {
    clear(main, errorBox(err));
    return;
  }
  const s = data.settings;
  const quiet = s.quiet_hours || ["", ""];
  const num = (name) => h("input", { type: "number", name, value: s[name], inputmode: "numeric" });
  const time = (name, value) => h("input", { type: "time", name, value: value ?? "" });
  const form = h("form", { class: "card settings", id: "settings-form", novalidate: true },
    NUMBERS.map(([name, words]) => field(name, L(...words), num(name))),
    field("agenda_time", L("每日日程推送时间", "Daily agenda time"), time("agenda_time", s.agenda_time)),
    field("org_sync_time", L("每晚全量同步时间", "Nightly full sync time"), time("org_sync_time", s.org_sync_time)),
    field("quiet_hours", L("免打扰时段（开始–结束，留空为不设）", "Quiet hours (start–end; blank for none)"),
      h("span", { class: "pair" }, time("quiet_start", quiet[0]), " – ", time("quiet_end", quiet[1]))),
    field("quiet_hours_approvals", L("免打扰时段仍发送审批", "Send approvals during quiet hours"),
      h("input", { type: "checkbox", name: "quiet_hours_approvals", checked: s.quiet_hours_approvals })),
    field("leaver_policy", L("离职员工的客户交给", "A leaver's customers go to"), h("select", { name: "leaver_policy" },
      [["leader", L("其主部门主管", "their department leader")], ["pool", L("公海", "the public pool")]].map(([v, w]) => h("option", { value: v, selected: s.leaver_policy === v }, w)))),
    h("p", { class: "help" }, L(`时间按企业时区 ${data.timezone}`, `Times are in the corp's zone, ${data.timezone}`)),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn primary", id: "save-settings" }, L("保存", "Save"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const el = form.elements;
    const changes = {};
    for (const [name] of NUMBERS) {
      const raw = el[name].value.trim();
      changes[name] = raw === "" || Number.isNaN(Number(raw)) ? raw : Number(raw);
    }
    changes.agenda_time = el.agenda_time.value;
    changes.org_sync_time = el.org_sync_time.value;
    changes.quiet_hours = el.quiet_start.value || el.quiet_end.value ? [el.quiet_start.value, el.quiet_end.value] : null;
    changes.quiet_hours_approvals = el.quiet_hours_approvals.checked;
    changes.leaver_policy = el.leaver_policy.value;
    for (const key of Object.keys(changes)) if (JSON.stringify(changes[key]) === JSON.stringify(s[key])) delete changes[key];
    if (!Object.keys(changes).length) {
      toast(L("没有修改", "Nothing changed"));
      return;
    }
    try {
      Object.assign(s, (await patch("/admin/settings", changes)).settings);
      form.querySelector(".form-error")?.remove();
      for (const old of form.querySelectorAll(".field-error")) old.remove();
      toast(L("已保存", "Saved"));
    } catch (err) {
      formError(form, err);
    }
  });
  clear(main, h("header", { class: "page-head" }, h("h1", {}, L("规则设置", "Settings"))), form);
}
