// Custom fields: create (entity, label, key, type with its options or limits, required), edit, deactivate
// and reactivate. entity, key and type are fixed once created (stored values depend on them).
import { api, get, patch, post } from "/h5/static/js/api.js";
import { clear, h, toast } from "/h5/static/js/dom.js";
import { L } from "../i18n.js";
import { select } from "../pickers.js";
import { checkbox, field, hashParams, liveToggle, pageHead, placeErrors, table } from "../ui.js";

const ENTITIES = () => [["customer", L("客户", "Customer")], ["contact", L("联系人", "Contact")], ["opportunity", L("商机", "Opportunity")]];
const TYPES = () => [["text", L("文本", "Text")], ["number", L("数字", "Number")], ["date", L("日期", "Date")],
  ["select", L("单选", "Single choice")], ["multiselect", L("多选", "Multiple choice")]];
const word = (pairs, key) => pairs.find(([k]) => k === key)?.[1] || key;
const num = (v) => (String(v ?? "").trim() === "" ? null : Number.isFinite(Number(v)) ? Number(v) : v);

function editor(main, def) {
  const isNew = !def.id;
  const state = { entity: def.entity || "customer", key: def.key || "", label: def.label || "", field_type: def.field_type || "text",
    required: Boolean(def.required), options: (def.options || []).join("\n"), min_value: def.min_value ?? "", max_value: def.max_value ?? "",
    max_length: def.max_length ?? "", sort_order: def.sort_order ?? 0 };
  const typeBox = h("div", {});
  const input = (key, attrs = {}) => h("input", { name: key, value: state[key], ...attrs, oninput: (e) => { state[key] = e.target.value; } });
  const drawType = () => {
    const t = state.field_type;
    clear(typeBox,
      t === "select" || t === "multiselect" ? field("options", L("选项（每行一个）", "Options (one per line)"),
        h("textarea", { name: "options", rows: 5, oninput: (e) => { state.options = e.target.value; } }, state.options)) : null,
      t === "number" ? h("div", { class: "inline-form" }, field("min_value", L("最小值", "Min"), input("min_value", { inputmode: "decimal" })),
        field("max_value", L("最大值", "Max"), input("max_value", { inputmode: "decimal" }))) : null,
      t === "text" ? field("max_length", L("最多字数", "Max length"), input("max_length", { type: "number", min: 1, max: 2000 })) : null);
  };
  drawType();
  const form = h("form", { class: "card editor", id: "field-form", novalidate: true },
    isNew ? field("entity", L("用于", "For"), select({ name: "entity", onchange: (e) => { state.entity = e.target.value; } }, ENTITIES(), state.entity))
      : h("p", { class: "muted" }, `${word(ENTITIES(), def.entity)} · ${word(TYPES(), def.field_type)} · `, h("code", {}, def.key)),
    field("label", L("名称", "Label"), input("label")),
    isNew ? field("key", L("标识（英文小写、数字、下划线，创建后不可改）", "Key (a–z, 0–9, _; fixed once created)"), input("key", { placeholder: "industry_detail", autocapitalize: "off" })) : null,
    isNew ? field("field_type", L("类型", "Type"), select({ name: "field_type", onchange: (e) => { state.field_type = e.target.value; drawType(); } }, TYPES(), state.field_type)) : null,
    typeBox,
    field("sort_order", L("排序（小的在前）", "Order (smaller first)"), input("sort_order", { type: "number" })),
    checkbox(state.required, (on) => { state.required = on; }, L("必填", "Required"), { name: "required" }),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn primary", id: "save-field" }, L("保存", "Save")),
      h("a", { class: "btn", href: "#/fields" }, L("返回", "Back"))));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = isNew ? state.field_type : def.field_type;
    const choice = t === "select" || t === "multiselect";
    const body = { label: state.label, required: state.required, sort_order: num(state.sort_order) ?? 0,
      options: choice ? state.options.split("\n").map((o) => o.trim()).filter(Boolean) : [],
      min_value: t === "number" ? num(state.min_value) : null, max_value: t === "number" ? num(state.max_value) : null,
      max_length: t === "text" ? num(state.max_length) : null };
    const saveButton = form.querySelector("#save-field");
    saveButton.disabled = true;
    try {
      const saved = isNew ? await post("/fields", { ...body, entity: state.entity, key: state.key.trim(), field_type: state.field_type })
        : await patch(`/fields/${def.id}`, body);
      toast(L("已保存", "Saved"));
      location.hash = `#/fields?saved=${saved.id}`;
    } catch (err) {
      placeErrors(form, err);
    } finally {
      saveButton.disabled = false;
    }
  });
  clear(main, pageHead(isNew ? L("新建自定义字段", "New custom field") : `${L("编辑字段", "Edit field")}：${def.label}`), form);
}

function listing(main, items) {
  const rows = items.map((f) => h("tr", { "data-field-id": f.id, "data-key": `${f.entity}.${f.key}`, class: f.active ? "" : "muted" },
    h("td", {}, word(ENTITIES(), f.entity)), h("td", {}, f.label), h("td", {}, h("code", {}, f.key)),
    h("td", {}, word(TYPES(), f.field_type), f.options.length ? h("div", { class: "muted" }, f.options.join("、")) : null),
    h("td", {}, f.required ? L("必填", "required") : "—"),
    h("td", {}, liveToggle(f.active, (active) => (active ? patch(`/fields/${f.id}`, { active: true }) : api("DELETE", `/fields/${f.id}`)),
      L("启用", "Active"), { "data-action": "active" })),
    h("td", { class: "actions" }, h("a", { class: "btn small", href: `#/fields?id=${f.id}`, "data-action": "edit" }, L("编辑", "Edit")))));
  clear(main, pageHead(L("自定义字段", "Custom fields"), h("a", { class: "btn primary", href: "#/fields?new=1", id: "new-field" }, L("新建字段", "New field"))),
    h("p", { class: "muted" }, L("停用的字段不再出现在表单中，已填写的值保留；重新启用即可恢复。", "Inactive fields leave the forms; stored values stay and come back when reactivated.")),
    table([L("对象", "Entity"), L("名称", "Label"), "key", L("类型", "Type"), L("必填", "Required"), L("启用", "Active"), ""], rows));
}

export default async function fieldsPage(main) {
  const params = hashParams();
  const { items } = await get("/fields?include_inactive=true");
  if (params.get("new")) return editor(main, {});
  if (params.get("id")) {
    const def = items.find((f) => f.id === Number(params.get("id")));
    if (def) return editor(main, def);
  }
  listing(main, items);
}
