// Deals by stage: pick a stage, scroll the list, move a deal to another stage (a lost stage asks why).
import { get, patch, query } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { formatTime } from "../time.js";
import { chips, infiniteList } from "../ui.js";

// The stage last looked at; the customer page sets it so a tap on a deal opens that deal's stage.
export const STAGE_STORE = "crm.oppStage";

function card(o, stages) {
  const status = h("span", { class: "row-sub" });
  const mover = h("select", { class: "input small", "aria-label": t("opp.moveTo"), dataset: { opportunityId: String(o.id) } },
    stages.map((s) => h("option", { value: s.key, selected: s.key === o.stage.key }, s.name)));
  mover.addEventListener("change", async () => {
    const stage = stages.find((s) => s.key === mover.value);
    const body = { stage_key: stage.key };
    if (stage.is_lost) {
      const reason = window.prompt(t("opp.lostReason"));
      if (!reason) {
        mover.value = o.stage.key;
        return;
      }
      body.lost_reason = reason;
    }
    mover.disabled = true;
    try {
      const saved = await patch(`/opportunities/${o.id}`, body);
      o.stage = saved.stage;
      toast(t("opp.moved", { stage: saved.stage.name }));
    } catch (err) {
      mover.value = o.stage.key;
      toast(err.message, "error");
    } finally {
      mover.disabled = false;
    }
  });
  return h("li", { class: "opp" },
    h("a", { class: "row", href: `#/customers/${o.customer.id}` },
      h("span", { class: "row-title" }, o.name),
      h("span", { class: "row-sub" }, [o.customer.name, t("opp.amount", { amount: o.amount }),
        o.expected_close_date ? t("opp.closeDate", { date: o.expected_close_date }) : null,
        o.updated_at ? formatTime(o.updated_at) : null].filter(Boolean).join(" · "))),
    h("div", { class: "mover" }, h("label", { class: "inline" }, h("span", { class: "row-sub" }, t("opp.moveTo")), mover),
      h("a", { class: "btn small", href: `#/approvals/new?opportunity=${o.id}`, dataset: { requestApproval: String(o.id) } },
        t("approvals.request"))), status);
}

export default async function opportunities({ el, ctx, setTitle }) {
  setTitle(t("opp.title"));
  const stages = ctx.stages;
  const results = h("div", { class: "results", id: "opportunity-results" });
  const selected = sessionStorage.getItem(STAGE_STORE) || "";
  const load = (key) => {
    sessionStorage.setItem(STAGE_STORE, key || "");
    infiniteList(results, (cursor) => get(`/opportunities${query({ stage_key: key, cursor, limit: 20 })}`),
      (o) => card(o, stages), t("opp.empty"));
  };
  const stageChips = chips([["", t("opp.allStages")], ...stages.map((s) => [s.key, `${s.name} ${s.probability}%`])],
    [selected], { multiple: false, onChange: ([key]) => load(key || "") });
  stageChips.id = "stage-chips";
  stageChips.classList.add("scroll");
  clear(el, stageChips, results);
  load(selected);
}
