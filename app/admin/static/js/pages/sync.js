// Org sync: run now, live progress (polled), the history of runs with counts and errors, and the synced tree.
import { get, post } from "/h5/static/js/api.js";
import { clear, h } from "/h5/static/js/dom.js";
import { L, when } from "../i18n.js";
import { errorBox, table } from "../ui.js";

const POLL_MS = 1000;
const STATUS = {
  running: () => L("进行中", "running"), succeeded: () => L("已完成", "done"), failed: () => L("失败", "failed"),
  pending: () => L("排队中", "queued"),
};
const statusWord = (s) => (STATUS[s] ? STATUS[s]() : s);

function progress(run) {
  const { done, total } = run.progress || {};
  const pct = total ? Math.min(100, Math.round((100 * done) / total)) : run.status === "succeeded" ? 100 : 0;
  const bar = h("div", { class: "bar" });
  bar.style.width = `${pct}%`; // set through the CSSOM: the CSP forbids style attributes
  return h("div", { class: "progress-wrap", id: "sync-progress", "data-status": run.status },
    h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct }, bar),
    h("p", {}, `${statusWord(run.status)} · ${L("部门", "departments")} ${done ?? 0} / ${total ?? "?"}`,
      ` · ${L("新增", "added")} ${run.added} · ${L("更新", "updated")} ${run.updated} · ${L("停用", "deactivated")} ${run.deactivated}`),
    run.errors && run.errors.length ? h("ul", { class: "errors" }, run.errors.slice(0, 5).map((e) => h("li", {}, typeof e === "string" ? e : JSON.stringify(e)))) : null);
}

function tree(nodes) {
  return h("ul", { class: "tree" }, nodes.map((d) => h("li", {},
    h("span", { class: "dept" }, d.name), h("span", { class: "muted" }, ` · ${d.member_count} ${L("人", "people")}`),
    d.leaders.length ? h("span", { class: "leaders" }, ` · ${L("主管", "leaders")}: ${d.leaders.map((x) => x.name).join("、")}`) : null,
    d.children.length ? tree(d.children) : null)));
}

export default async function syncPage(main) {
  let timer = null;
  let stopped = false;
  const live = h("div", { id: "sync-live" });
  const history = h("div", { id: "sync-history" });
  const treeBox = h("div", { id: "org-tree" });
  const runButton = h("button", { type: "button", class: "btn primary", id: "run-sync", onclick: start }, L("立即同步", "Sync now"));
  clear(main, h("header", { class: "page-head" }, h("h1", {}, L("通讯录同步", "Org sync")), runButton), live,
    h("h2", {}, L("同步记录", "History")), history, h("h2", {}, L("组织架构", "Org tree")), treeBox);

  async function loadHistory() {
    const runs = (await get("/admin/org/sync-runs?limit=20")).items;
    clear(history, table([L("开始", "Started"), L("状态", "Status"), L("进度", "Progress"), L("调用", "Calls"),
      L("新增/更新/停用/删除", "Added/updated/deactivated/removed"), L("耗时", "Duration"), L("错误", "Errors")],
    runs.map((r) => h("tr", { "data-run": r.id }, h("td", {}, when(r.startedAt)), h("td", {}, statusWord(r.status)),
      h("td", {}, `${r.progress.done ?? 0}/${r.progress.total ?? "?"}`), h("td", {}, r.callsMade),
      h("td", {}, `${r.added} / ${r.updated} / ${r.deactivated} / ${r.removed}`),
      h("td", {}, r.durationSeconds == null ? "—" : `${r.durationSeconds}s`),
      h("td", { class: "errors" }, (r.errors || []).length ? (r.errors || []).map((e) => (typeof e === "string" ? e : JSON.stringify(e))).join("; ") : "—"))),
    L("还没有同步过", "No sync yet")));
    return runs;
  }

  async function loadTree() {
    try {
      clear(treeBox, tree((await get("/org/departments")).items));
    } catch (err) {
      clear(treeBox, errorBox(err));
    }
  }

  async function poll(id) {
    if (stopped) return;
    try {
      const run = await get(`/admin/org/sync-runs/${id}`);
      clear(live, progress(run));
      if (run.status === "running" || run.status === "pending") {
        runButton.disabled = true;
        timer = setTimeout(() => poll(id), POLL_MS);
        return;
      }
      runButton.disabled = false;
      await loadHistory();
      await loadTree();
    } catch (err) {
      runButton.disabled = false;
      clear(live, errorBox(err));
    }
  }

  async function start() {
    runButton.disabled = true;
    try {
      const run = await post("/admin/org/sync");
      clear(live, progress(run));
      poll(run.id);
    } catch (err) {
      runButton.disabled = false;
      clear(live, errorBox(err));
    }
  }

  try {
    const runs = await loadHistory();
    if (runs[0] && runs[0].status === "running") poll(runs[0].id);
  } catch (err) {
    clear(history, errorBox(err));
  }
  loadTree();
  return () => { stopped = true; clearTimeout(timer); };
}
