// Opportunity stages: add, rename, set the win probability, retire. Fields, flows, rules and lead
// assignment have their own pages.
import { get, patch, post } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { errorBox, field, formError, liveToggle, table } from "../ui.js";

function editable(value, save, label) {
  return h("input", { value, "aria-label": label, class: "inline", onchange: async (e) => {
    try {
      await save(e.target.value);
      e.target.classList.remove("invalid");
      toast(L("已保存", "Saved"));
    } catch (err) {
      e.target.classList.add("invalid");
      toast(err.message, "error");
    }
  } });
}

async function section(title, id, loader) {
  const box = h("section", { class: "card", id }, h("h2", {}, title));
  try {
    box.append(await loader());
  } catch (err) {
    box.append(errorBox(err));
  }
  return box;
}

export default async function configPage(main) {
  const stages = async () => {
    const { items } = await get("/admin/stages");
    const form = h("form", { class: "inline-form", id: "stage-form", novalidate: true },
      field("key", "key", h("input", { name: "key", placeholder: "trial" })),
      field("name", L("名称", "Name"), h("input", { name: "name" })),
      field("probability", L("赢率 %", "Win %"), h("input", { name: "probability", type: "number", min: 0, max: 100 })),
      h("button", { type: "submit", class: "btn" }, L("添加阶段", "Add stage")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const el = form.elements;
      try {
        await post("/admin/stages", { key: el.key.value.trim(), name: el.name.value.trim(), probability: Number(el.probability.value || 0) });
        toast(L("已添加", "Added"));
        route();
      } catch (err) {
        formError(form, err);
      }
    });
    return h("div", {}, table([L("顺序", "Order"), "key", L("名称", "Name"), L("赢率 %", "Win %"), L("启用", "Active")],
      items.map((s) => h("tr", { "data-stage": s.key }, h("td", {}, s.sort_order), h("td", {}, h("code", {}, s.key)),
        h("td", {}, editable(s.name, (name) => patch(`/admin/stages/${s.id}`, { name }), L("名称", "Name"))),
        h("td", {}, editable(String(s.probability), (p) => patch(`/admin/stages/${s.id}`, { probability: Number(p) }), L("赢率", "Win %"))),
        h("td", {}, s.is_won || s.is_lost ? L("（结束阶段）", "(closing)") : liveToggle(s.active, (active) => patch(`/admin/stages/${s.id}`, { active }), L("启用", "Active")))))), form);
  };

  async function route() {
    clear(main, h("header", { class: "page-head" }, h("h1", {}, L("商机阶段", "Opportunity stages"))),
      await section(L("商机阶段", "Opportunity stages"), "stages", stages));
  }
  await route();
}
