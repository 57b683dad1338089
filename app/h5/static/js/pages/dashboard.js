// The dashboard: funnel, leaderboard, customers by source, new customers this vs last month, stale customers —
// from one call, drawn as small hand-made SVG/CSS charts. Loaded only when #/dashboard is opened.
// Every bar and slice is a button: tapping it writes its exact figures into the card's read-out line.
import { get } from "../api.js";
import { clear, h } from "../dom.js";
import { lang, t } from "../i18n.js";
import { loading, section } from "../ui.js";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1677ff", "#52c41a", "#faad14", "#eb2f96", "#13c2c2", "#722ed1", "#fa541c", "#a0d911", "#8c8c8c"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

// The page's CSP has no 'unsafe-inline' for styles: sizes and colours go in through the CSSOM, not `style=""`.
function styled(el, props) {
  Object.assign(el.style, props);
  return el;
}

const numberFmt = () => new Intl.NumberFormat(lang === "en" ? "en-US" : "zh-CN");
const money = (value) => `¥${new Intl.NumberFormat(lang === "en" ? "en-US" : "zh-CN",
  { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(Number(value))}`;
const percent = (rate) => (rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1).replace(/\.0$/, "")}%`);

// A read-out line under a chart, and a way for the chart's parts to fill it on tap (or keyboard).
function readout(id) {
  const line = h("p", { class: "readout", id, "aria-live": "polite" }, t("dash.tapHint"));
  const bind = (el, text) => {
    const show = () => {
      line.textContent = text;
      for (const on of line.parentElement?.querySelectorAll(".picked") || []) on.classList.remove("picked");
      el.classList.add("picked");
    };
    el.addEventListener("click", show);
    el.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); show(); } });
    return el;
  };
  return { line, bind };
}

function funnelCard(funnel) {
  const { line, bind } = readout("funnel-readout");
  const open = funnel.stages.filter((st) => !st.lost);
  const lost = funnel.stages.filter((st) => st.lost);
  const max = Math.max(1, ...open.map((st) => st.count));
  const rows = [];
  open.forEach((st, i) => {
    const text = t("dash.stageFigure", { stage: st.name, count: st.count, amount: money(st.amount) })
      + (st.conversion !== null ? ` · ${t("dash.toNext", { rate: percent(st.conversion) })}` : "");
    const width = Math.max(6, (st.count / max) * 100);
    rows.push(bind(h("button", { type: "button", class: `funnel-bar${st.won ? " won" : ""}`, dataset: { stage: st.key },
      "aria-label": text },
    styled(h("span", { class: "funnel-fill" }), { width: `${width}%`, background: PALETTE[i % PALETTE.length] }),
    h("span", { class: "funnel-label" }, h("span", {}, st.name), h("b", { class: "funnel-count" }, String(st.count)))), text));
    if (st.conversion !== null && i < open.length - 1) {
      rows.push(h("div", { class: "funnel-rate", dataset: { from: st.key } }, `↓ ${percent(st.conversion)}`));
    }
  });
  const lostLine = lost.map((st) => {
    const text = t("dash.stageFigure", { stage: st.name, count: st.count, amount: money(st.amount) });
    return bind(h("button", { type: "button", class: "chip", dataset: { stage: st.key }, "aria-label": text },
      `${st.name} ${st.count}`), text);
  });
  return section(t("dash.funnel"),
    h("div", { class: "funnel", id: "dash-funnel" }, rows),
    h("div", { class: "dash-foot" }, lostLine,
      h("span", { class: "muted", id: "dash-win-rate" }, t("dash.winRate", { rate: percent(funnel.win_rate) })),
      h("span", { class: "muted" }, t("dash.openAmount", { amount: money(funnel.open_amount) }))),
    line);
}

function leaderboardCard(rows) {
  const { line, bind } = readout("leaderboard-readout");
  if (!rows.length) return section(t("dash.leaderboard"), h("p", { class: "empty" }, t("dash.noActivity")));
  const max = Math.max(1, ...rows.map((r) => Number(r.won_amount)));
  const fmt = numberFmt();
  return section(t("dash.leaderboard"),
    h("ol", { class: "board", id: "dash-leaderboard" }, rows.map((r) => {
      const text = t("dash.boardFigure", { name: r.user.name, amount: money(r.won_amount),
        followUps: fmt.format(r.follow_ups), customers: fmt.format(r.new_customers) });
      return h("li", {}, bind(h("button", { type: "button", class: "board-row", dataset: { user: String(r.user.id) },
        "aria-label": text },
      h("span", { class: "board-rank" }, String(r.rank)),
      h("span", { class: "board-main" },
        h("span", { class: "board-name" }, r.user.name),
        h("span", { class: "board-track" }, styled(h("span", { class: "board-fill" }),
          { width: `${(Number(r.won_amount) / max) * 100}%` }))),
      h("span", { class: "board-nums" }, h("b", {}, money(r.won_amount)),
        h("small", {}, t("dash.boardSmall", { followUps: r.follow_ups, customers: r.new_customers })))), text));
    })),
    line);
}

function arc(cx, cy, r, from, to) {
  const point = (angle) => [cx + r * Math.sin(angle), cy - r * Math.cos(angle)];
  const [x1, y1] = point(from);
  const [x2, y2] = point(to);
  return `M${cx},${cy} L${x1.toFixed(2)},${y1.toFixed(2)} A${r},${r} 0 ${to - from > Math.PI ? 1 : 0} 1 `
    + `${x2.toFixed(2)},${y2.toFixed(2)} Z`;
}

function sourcesCard(sources) {
  const { line, bind } = readout("sources-readout");
  const total = sources.reduce((sum, src) => sum + src.count, 0);
  if (!total) return section(t("dash.sources"), h("p", { class: "empty" }, t("dash.noCustomers")));
  let angle = 0;
  const slices = [];
  const legend = [];
  sources.forEach((src, i) => {
    const name = src.source ?? t("dash.noSource");
    const color = PALETTE[Math.min(i, PALETTE.length - 1)];
    const text = t("dash.sourceFigure", { source: name, count: src.count, share: percent(src.count / total) });
    const sweep = (src.count / total) * Math.PI * 2;
    const shape = sweep >= Math.PI * 2 - 1e-9
      ? s("circle", { cx: 60, cy: 60, r: 56 })
      : s("path", { d: arc(60, 60, 56, angle, angle + sweep) });
    shape.setAttribute("fill", color);
    shape.setAttribute("tabindex", "0");
    shape.setAttribute("role", "button");
    shape.setAttribute("aria-label", text);
    shape.setAttribute("class", "slice");
    shape.dataset.source = name;
    slices.push(bind(shape, text));
    legend.push(bind(h("button", { type: "button", class: "legend-item", dataset: { source: name }, "aria-label": text },
      styled(h("i"), { background: color }), `${name} ${src.count}`), text));
    angle += sweep;
  });
  return section(t("dash.sources"),
    h("div", { class: "pie-wrap" },
      s("svg", { viewBox: "0 0 120 120", class: "pie", id: "dash-pie", role: "img", "aria-label": t("dash.sources") },
        slices),
      h("div", { class: "legend" }, legend)),
    line);
}

function newCustomersCard(data) {
  const { line, bind } = readout("new-readout");
  const max = Math.max(1, data.this_month, data.last_month);
  const change = data.last_month ? (data.this_month - data.last_month) / data.last_month : null;
  const bar = (key, value, label) => {
    const text = t("dash.newFigure", { label, count: value });
    return bind(h("button", { type: "button", class: `month-bar ${key}`, dataset: { month: key }, "aria-label": text },
      h("b", {}, String(value)),
      h("span", { class: "month-col" }, styled(h("span", { class: "month-fill" }), { height: `${(value / max) * 100}%` })),
      h("span", {}, label)), text);
  };
  return section(t("dash.newCustomers"),
    h("div", { class: "months", id: "dash-new" },
      bar("last", data.last_month, t("dash.lastMonth")), bar("this", data.this_month, t("dash.thisMonth")),
      h("p", { class: `change ${change > 0 ? "up" : change < 0 ? "down" : ""}` },
        change === null ? "" : `${change > 0 ? "↑" : change < 0 ? "↓" : ""} ${percent(Math.abs(change))}`)),
    line);
}

function staleCard(stale) {
  const head = t("dash.staleTitle", { days: stale.days });
  if (!stale.count) return section(head, h("p", { class: "empty", id: "dash-stale-count" }, t("dash.noStale")));
  return section(`${head} (${stale.count})`,
    h("p", { class: "muted", id: "dash-stale-count", dataset: { count: String(stale.count) } },
      t("dash.staleCount", { count: stale.count })),
    h("ul", { class: "list", id: "dash-stale" }, stale.items.map((c) => h("li", {},
      h("a", { class: "row", href: `#/customers/${c.id}` },
        h("span", { class: "row-title" }, c.name),
        h("span", { class: "row-sub" }, t("dash.staleRow", { days: c.days, owner: c.owner || "" })))))),
    stale.more ? h("p", { class: "muted" }, t("dash.staleMore", { shown: stale.items.length })) : null);
}

export default async function dashboard({ el, setTitle }) {
  setTitle(t("dash.title"));
  clear(el, loading());
  const data = await get("/dashboard?period=month");
  clear(el,
    h("p", { class: "greeting", id: "dash-scope" }, t(`dash.scope.${data.scope}`)),
    h("div", { class: "dash-grid" },
      funnelCard(data.funnel), leaderboardCard(data.leaderboard), sourcesCard(data.sources),
      newCustomersCard(data.new_customers), staleCard(data.stale)));
}
