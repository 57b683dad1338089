// My to-dos: follow-ups overdue and due today, my open tasks, approvals waiting for me — one call.
import { get, patch } from "../api.js";
import { clear, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { formatTime } from "../time.js";
import { loading, section } from "../ui.js";
import { approvalRow } from "./approvals.js";

function followUpRow(item) {
  return h("li", { class: item.overdue ? "overdue" : "" },
    h("a", { class: "row", href: `#/customers/${item.customer.id}` },
      h("span", { class: "row-title" }, item.customer.name),
      h("span", { class: "row-sub" }, t("home.due", { time: formatTime(item.next_contact_at) }))),
    h("a", { class: "btn small", href: `#/customers/${item.customer.id}/follow-up` }, t("customer.writeFollowUp")));
}

function taskRow(task) {
  const done = h("button", {
    type: "button", class: "btn small",
    onclick: async () => {
      done.disabled = true;
      try {
        await patch(`/tasks/${task.id}`, { status: "done" });
        row.remove();
        toast(t("home.taskDone"));
      } catch (err) {
        done.disabled = false;
        toast(err.message, "error");
      }
    },
  }, t("home.done"));
  const label = [task.customer?.name, task.due_at ? t("home.due", { time: formatTime(task.due_at) }) : null]
    .filter(Boolean).join(" · ");
  const body = [h("span", { class: "row-title" }, task.title), h("span", { class: "row-sub" }, label)];
  const row = h("li", { class: task.overdue ? "overdue" : "" },
    task.customer ? h("a", { class: "row", href: `#/customers/${task.customer.id}` }, body) : h("div", { class: "row" }, body),
    done);
  return row;
}

export default async function home({ el, ctx, setTitle }) {
  setTitle(t("home.title"));
  clear(el, loading());
  const data = await get("/home");
  const overdue = data.follow_ups.filter((f) => f.overdue);
  const today = data.follow_ups.filter((f) => !f.overdue);
  const parts = [h("div", { class: "greeting-bar" }, h("p", { class: "greeting" }, t("home.greeting", { name: ctx.user.name })),
    h("a", { class: "btn small", href: "#/approvals", id: "all-approvals" }, t("approvals.all")))];
  if (overdue.length) parts.push(section(`${t("home.overdue")} (${overdue.length})`,
    h("ul", { class: "list", id: "home-overdue" }, overdue.map(followUpRow))));
  if (today.length) parts.push(section(`${t("home.today")} (${today.length})`,
    h("ul", { class: "list", id: "home-today" }, today.map(followUpRow))));
  if (data.approvals && data.approvals.length) parts.push(section(`${t("home.approvals")} (${data.approvals.length})`,
    h("ul", { class: "list", id: "home-approvals" }, data.approvals.map(approvalRow))));
  if (data.tasks.length) parts.push(section(`${t("home.tasks")} (${data.tasks.length})`,
    h("ul", { class: "list", id: "home-tasks" }, data.tasks.map(taskRow))));
  if (parts.length === 1) parts.push(h("p", { class: "empty" }, t("home.nothing")));
  clear(el, parts);
}
