// Condition rows (field / operator / value) for flow steps and automation rules, exactly the comparisons the
// server accepts: the fields of FIELD_PATTERN in app/schemas_approvals.py, custom fields as "custom.<key>".
import { clear, h } from "/h5/static/js/dom.js";
import { L } from "./i18n.js";
import { select } from "./pickers.js";
import { button } from "./ui.js";

const OPS = () => [["eq", L("等于", "equals")], ["ne", L("不等于", "is not")], ["gt", L("大于", ">")], ["gte", L("大于等于", "≥")],
  ["lt", L("小于", "<")], ["lte", L("小于等于", "≤")], ["in", L("是其中之一", "is one of")], ["contains", L("包含", "contains")],
  ["exists", L("有值 / 为空", "is set / empty")]];
const NUMERIC_OPS = new Set(["gt", "gte", "lt", "lte"]);

// ctx: { stages: [{key, name}], fields: custom field definitions }. Returns [value, label, kind, choices].
export function conditionFields(ctx) {
  const list = [
    ["amount", L("金额", "Amount"), "number"], ["discount_rate", L("折扣率（0.2 = 20%）", "Discount rate (0.2 = 20%)"), "number"],
    ["stage", L("商机阶段", "Stage"), "select", ctx.stages.map((s) => [s.key, s.name])],
    ["grade", L("客户等级", "Grade"), "select", ["A", "B", "C"].map((g) => [g, g])],
    ["status", L("客户状态", "Status"), "select", [["lead", L("线索", "Lead")], ["prospect", L("意向", "Prospect")],
      ["customer", L("成交客户", "Customer")], ["lost", L("流失", "Lost")]]],
    ["tags", L("标签", "Tags"), "text"], ["industry", L("行业", "Industry"), "text"], ["region", L("地区", "Region"), "text"],
    ["source", L("来源", "Source"), "text"],
  ];
  for (const f of ctx.fields || []) {
    if (!f.active) continue;
    const kind = f.field_type === "number" ? "number" : f.field_type === "select" || f.field_type === "multiselect" ? "select" : "text";
    list.push([`custom.${f.key}`, `${f.label}（${L("自定义", "custom")}）`, kind, f.options.map((o) => [o, o])]);
  }
  return list;
}

// Stored comparison → editor row (value always as typed text).
export function toRow(cmp) {
  const value = cmp.op === "in" && Array.isArray(cmp.value) ? cmp.value.join(", ")
    : cmp.op === "exists" ? String(cmp.value !== false) : cmp.value ?? "";
  return { field: cmp.field, op: cmp.op, value: String(value) };
}

// Editor row → the JSON the server takes. Text that is not a number is sent as typed: the server names the row.
export function fromRow(row, ctx) {
  const kind = conditionFields(ctx).find(([v]) => v === row.field)?.[2];
  const num = (text) => (text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);
  if (row.op === "exists") return { field: row.field, op: "exists", value: row.value !== "false" };
  if (row.op === "in") {
    const parts = row.value.split(/[,，]/).map((x) => x.trim()).filter(Boolean);
    return { field: row.field, op: "in", value: kind === "number" ? parts.map(num) : parts };
  }
  if (NUMERIC_OPS.has(row.op) || kind === "number") return { field: row.field, op: row.op, value: num(row.value) };
  return { field: row.field, op: row.op, value: row.value };
}

function valueInput(row, spec, path) {
  const set = (e) => { row.value = e.target.value; };
  const attrs = { "aria-label": L("比较值", "Value"), "data-role": "value", oninput: set, onchange: set };
  if (row.op === "exists") {
    return select(attrs, [["true", L("有值", "is set")], ["false", L("为空", "is empty")]], row.value || "true");
  }
  if (spec?.[2] === "select" && row.op !== "in" && !NUMERIC_OPS.has(row.op)) {
    const choices = [...(spec[3] || [])];
    if (row.value && !choices.some(([v]) => v === row.value)) choices.push([row.value, row.value]);
    if (!row.value && choices.length) row.value = choices[0][0];
    return select(attrs, choices, row.value);
  }
  const numeric = spec?.[2] === "number" && row.op !== "in";
  return h("input", { ...attrs, value: row.value, inputmode: numeric ? "decimal" : null,
    placeholder: row.op === "in" ? L("多个值用逗号分隔", "comma-separated") : "", "data-path": `${path}.value` });
}

// rows: editor rows, edited in place. path: the JSON path the server uses ("steps.0.condition").
export function conditionEditor(rows, path, ctx) {
  const box = h("div", { class: "conditions", "data-field": path });
  const fields = conditionFields(ctx);
  function draw() {
    clear(box, rows.length ? null : h("p", { class: "muted" }, L("无条件：总是适用", "No condition: always applies")),
      rows.map((row, i) => {
        const spec = fields.find(([v]) => v === row.field);
        const known = spec ? fields : [...fields, [row.field, row.field, "text"]];
        const cell = h("span", { class: "cond-value", "data-field": `${path}.${i}.value` }, valueInput(row, spec, `${path}.${i}`));
        return h("div", { class: "cond-row", "data-field": `${path}.${i}` },
          h("span", { "data-field": `${path}.${i}.field` }, select({ "aria-label": L("字段", "Field"), "data-role": "field",
            onchange: (e) => { row.field = e.target.value; row.value = ""; draw(); } }, known.map(([v, label]) => [v, label]), row.field)),
          h("span", { "data-field": `${path}.${i}.op` }, select({ "aria-label": L("比较", "Operator"), "data-role": "op",
            onchange: (e) => { row.op = e.target.value; if (row.op === "exists") row.value = "true"; draw(); } }, OPS(), row.op)),
          cell,
          button("×", () => { rows.splice(i, 1); draw(); }, { class: "btn small", "aria-label": L("删除条件", "Remove condition") }));
      }),
      button(L("+ 条件", "+ Condition"), () => { rows.push({ field: "amount", op: "gt", value: "" }); draw(); },
        { class: "btn small", "data-action": "add-condition" }));
  }
  draw();
  return box;
}
