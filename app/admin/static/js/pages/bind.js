// Corp binding: the bound corps with a test button, and a short wizard — platform, credentials, test
// connection (the platform's answer in plain words and what to fix), then what to paste into the platform.
import { get, patch, post } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { errorBox, field, formError, table } from "../ui.js";

const PLATFORM_NAMES = { dingtalk: () => L("钉钉", "DingTalk"), wecom: () => L("企业微信", "WeCom") };

function testResult(result) {
  return h("div", { class: `result ${result.ok ? "ok" : "fail"}`, id: "test-result", role: "status" },
    h("strong", {}, result.ok ? L("连接成功", "Connected") : L("连接失败", "Connection failed")),
    h("p", { class: "message" }, result.message),
    result.hints.length ? h("div", { class: "hints" }, h("span", {}, L("请这样修复：", "What to fix:")),
      h("ul", {}, result.hints.map((x) => h("li", {}, x)))) : null);
}

function callbackBox(corp, shown) {
  return h("div", { class: "card callback", id: "callback-box" },
    h("h3", {}, L("粘贴到平台开发者后台的「事件订阅」", "Paste into the platform console (event subscription)")),
    h("dl", {},
      h("dt", {}, L("回调地址", "Callback URL")), h("dd", {}, h("code", { id: "callback-url" }, corp.callback_url)),
      shown ? [h("dt", {}, "Token"), h("dd", {}, h("code", { id: "callback-token" }, shown.token)),
        h("dt", {}, "AES Key"), h("dd", {}, h("code", { id: "callback-aes" }, shown.aes_key))] : null),
    shown ? h("p", { class: "help" }, L("Token 和 AES Key 只显示这一次，请现在复制。",
      "The token and AES key are shown only this once: copy them now.")) : null);
}

export default async function bindPage(main) {
  const state = { step: 0, platform: "dingtalk", sandbox: false, values: {}, corp: null, shown: null, result: null };
  let listing;

  async function refresh() {
    try {
      listing = await get("/admin/corps");
    } catch (err) {
      clear(main, errorBox(err));
      return;
    }
    render();
  }

  function corpRows() {
    return listing.items.map((corp) => h("tr", { "data-corp": corp.corp_id },
      h("td", {}, corp.name), h("td", {}, PLATFORM_NAMES[corp.platform]?.() || corp.platform),
      h("td", {}, h("code", {}, corp.corp_id)), h("td", {}, corp.app_key || corp.agent_id || "—"),
      h("td", {}, h("code", { class: "small" }, corp.callback_url)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn small", onclick: () => quickTest(corp) }, L("测试连接", "Test")),
        h("button", { type: "button", class: "btn small", onclick: () => startWizard(corp) }, L("更新凭证", "Update")))));
  }

  async function quickTest(corp) {
    const box = main.querySelector("#quick-result");
    clear(box, h("p", { class: "loading" }, L("正在连接…", "Connecting…")));
    try {
      clear(box, testResult(await post(`/admin/corps/${corp.id}/test`)));
    } catch (err) {
      clear(box, errorBox(err));
    }
  }

  function startWizard(corp) {
    Object.assign(state, { step: corp ? 1 : 0, corp: corp || null, shown: null, result: null,
      platform: corp ? corp.platform : "dingtalk", sandbox: Boolean(listing.sandbox && !corp),
      values: corp ? { name: corp.name, app_key: corp.app_key || "", agent_id: corp.agent_id || "", corp_id: corp.corp_id } : {} });
    render();
  }

  function steps() {
    const names = [L("选择平台", "Platform"), L("填写凭证", "Credentials"), L("测试连接", "Test"), L("配置回调", "Callback")];
    return h("ol", { class: "steps" }, names.map((n, i) => h("li", { class: i === state.step ? "current" : i < state.step ? "done" : "" }, n)));
  }

  function platformStep() {
    const choice = (value) => h("label", { class: "choice" },
      h("input", { type: "radio", name: "platform", value, checked: state.platform === value, onchange: () => { state.platform = value; } }),
      PLATFORM_NAMES[value]());
    return h("div", { class: "card wizard-step", id: "step-platform" },
      h("h3", {}, L("绑定哪个平台的企业？", "Which platform is the corp on?")),
      h("div", { class: "choices" }, choice("dingtalk"), choice("wecom")),
      listing.sandbox ? h("label", { class: "choice" }, h("input", { type: "checkbox", id: "sandbox-box", checked: state.sandbox,
        onchange: (e) => { state.sandbox = e.target.checked; } }), L("连接本机沙箱（演示用）", "Use the local sandbox (demo)")) : null,
      h("div", { class: "buttons" }, h("button", { type: "button", class: "btn primary", id: "next-platform",
        onclick: () => { state.step = 1; render(); } }, L("下一步", "Next"))));
  }

  function credentialsStep() {
    const v = state.values;
    const input = (name, attrs = {}) => h("input", { name, value: v[name] ?? "", autocomplete: "off", ...attrs,
      oninput: (e) => { v[name] = e.target.value; } });
    const ding = state.platform === "dingtalk";
    const updating = Boolean(state.corp);
    const keep = updating ? L("留空则保持不变", "leave blank to keep") : null;
    const form = h("form", { class: "card wizard-step", id: "credentials-form", novalidate: true },
      h("h3", {}, updating ? L("更新凭证", "Update credentials") : L("填写应用凭证", "App credentials")),
      field("corp_id", "CorpId", input("corp_id", { disabled: updating, required: true })),
      field("name", L("企业名称", "Corp name"), input("name")),
      ding ? field("app_key", "AppKey", input("app_key", { required: !updating })) : null,
      ding ? field("app_secret", "AppSecret", input("app_secret", { type: "password" }), keep)
        : field("secret", L("应用 Secret", "App Secret"), input("secret", { type: "password" }), keep),
      field("agent_id", "AgentId", input("agent_id")),
      field("callback_token", L("回调 Token", "Callback token"), input("callback_token"), L("留空则自动生成", "blank: generated for you")),
      field("aes_key", L("回调 AES Key（43 位）", "Callback AES key (43 chars)"), input("aes_key"), L("留空则自动生成", "blank: generated for you")),
      h("div", { class: "buttons" },
        updating ? null : h("button", { type: "button", class: "btn", onclick: () => { state.step = 0; render(); } }, L("上一步", "Back")),
        h("button", { type: "submit", class: "btn primary", id: "save-credentials" }, L("保存并测试连接", "Save and test"))));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("#save-credentials");
      button.disabled = true;
      const payload = {};
      for (const [key, value] of Object.entries(v)) if (value !== "" && key !== "corp_id") payload[key] = value.trim();
      try {
        if (state.corp) {
          const corp = await patch(`/admin/corps/${state.corp.id}`, payload);
          state.corp = corp;
          if (corp.callback) state.shown = corp.callback;
        } else {
          const corp = await post("/admin/corps", { ...payload, corp_id: (v.corp_id || "").trim(), platform: state.platform, sandbox: state.sandbox });
          state.corp = corp;
          state.shown = corp.callback;
        }
        for (const secret of ["app_secret", "secret"]) delete v[secret];
        state.step = 2;
        state.result = null;
        render();
      } catch (err) {
        button.disabled = false;
        formError(form, err);
      }
    });
    return form;
  }

  function testStep() {
    const box = h("div", { class: "card wizard-step", id: "step-test" }, h("h3", {}, L("测试连接", "Test connection")));
    const buttons = h("div", { class: "buttons" },
      h("button", { type: "button", class: "btn", id: "fix-credentials", onclick: () => { state.step = 1; render(); } }, L("修改凭证", "Change credentials")),
      h("button", { type: "button", class: "btn", id: "retest", onclick: () => run() }, L("重新测试", "Test again")),
      h("button", { type: "button", class: "btn primary", id: "to-callback", disabled: !state.result?.ok,
        onclick: () => { state.step = 3; render(); } }, L("下一步", "Next")));
    const slot = h("div", {});
    box.append(slot, buttons);
    async function run() {
      clear(slot, h("p", { class: "loading" }, L("正在连接平台…", "Connecting to the platform…")));
      try {
        state.result = await post(`/admin/corps/${state.corp.id}/test`);
        clear(slot, testResult(state.result));
        buttons.querySelector("#to-callback").disabled = !state.result.ok;
      } catch (err) {
        clear(slot, errorBox(err));
      }
    }
    if (state.result) clear(slot, testResult(state.result));
    else run();
    return box;
  }

  function callbackStep() {
    return h("div", { class: "wizard-step", id: "step-callback" }, callbackBox(state.corp, state.shown),
      h("div", { class: "buttons" }, h("button", { type: "button", class: "btn primary", id: "finish",
        onclick: () => { toast(L("绑定完成", "Corp bound")); state.step = -1; refresh(); } }, L("完成", "Done"))));
  }

  function render() {
    const wizard = state.step >= 0 && (state.corp || listing.can_add || state.step > 0)
      ? h("section", { class: "wizard", id: "wizard" }, steps(),
        [platformStep, credentialsStep, testStep, callbackStep][state.step]())
      : null;
    clear(main,
      h("header", { class: "page-head" }, h("h1", {}, L("企业绑定", "Corp binding")),
        listing.can_add ? h("button", { type: "button", class: "btn primary", id: "new-corp", onclick: () => startWizard(null) },
          L("绑定新企业", "Bind a new corp")) : null),
      table([L("名称", "Name"), L("平台", "Platform"), "CorpId", "AppKey / AgentId", L("回调地址", "Callback URL"), ""], corpRows()),
      h("div", { id: "quick-result" }),
      listing.can_add ? null : h("p", { class: "help" }, L("新企业请在服务器上用 crm corp add 绑定；这里可更新本企业的凭证并测试连接。",
        "Bind a new corp on the server with `crm corp add`; here you update this corp's credentials and test them.")),
      wizard);
  }

  state.step = -1;
  await refresh();
}
