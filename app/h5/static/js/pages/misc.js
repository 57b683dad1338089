// Small pages: me (language, sign out) and not found.
import { post } from "../api.js";
import { clear, h } from "../dom.js";
import { languages, lang, setLang, t } from "../i18n.js";
import { section } from "../ui.js";

export async function mePage({ el, ctx, setTitle }) {
  setTitle(t("me.title"));
  clear(el,
    section(ctx.user.name, h("dl", { class: "info" },
      h("dt", {}, t("me.roleLabel")), h("dd", {}, t(`me.role.${ctx.user.role}`)),
      h("dt", {}, t("me.corp")), h("dd", {}, ctx.corp.name),
      h("dt", {}, t("me.timezone")), h("dd", {}, ctx.corp.timezone))),
    section(t("me.language"), h("div", { class: "chips", id: "language" }, languages.map(([code, label]) =>
      h("button", { type: "button", class: code === lang ? "chip on" : "chip", dataset: { lang: code }, onclick: () => {
        setLang(code);
        window.location.reload();
      } }, label)))),
    h("button", { type: "button", class: "btn block", id: "sign-out", onclick: async () => {
      await post("/auth/logout").catch(() => {});
      window.location.assign("/h5/");
    } }, t("signin.signOut")));
}

export async function notFound({ el, setTitle }) {
  setTitle(t("notFound.title"));
  clear(el, h("p", { class: "empty" }, t("notFound.body")), h("a", { class: "btn", href: "#/" }, t("nav.home")));
}
