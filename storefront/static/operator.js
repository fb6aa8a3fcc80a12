// The operator's pages: every customer's orders, and one order's story (the admin dossier) with
// the link to its run in Temporal UI.
import { get } from "./api.js";
import { go, signedInProfile } from "./app.js";
import { alert, field, h, put } from "./dom.js";
import { dateTime, money, t } from "./i18n.js";
import { orderLines, statusBadge, timeline } from "./orders.js";

const STATUSES = ["PENDING_PAYMENT", "PAID", "PAYMENT_FAILED", "EXPIRED", "CANCELLED", "REFUNDED"];

async function staffOnly(view) {
  const profile = await signedInProfile();
  if (profile?.role === "customer") {
    put(view, h("h1", {}, t("nav.operator")), alert(t("admin.not_staff")));
    return false;
  }
  return true;
}

export async function adminOrdersPage(view, params) {
  if (!await staffOnly(view)) return;
  const query = new URLSearchParams();
  for (const name of ["status", "cursor"]) if (params.get(name)) query.set(name, params.get(name));
  const page = await get(`/admin/orders?${query}`);
  const filter = h("form", {
    class: "inline",
    onsubmit: (event) => {
      event.preventDefault();
      const status = new FormData(event.target).get("status");
      go(`/operator${status ? `?status=${status}` : ""}`);
    },
  }, h("div", { class: "field" }, h("label", { for: "admin-status" }, t("admin.status")),
    h("select", { id: "admin-status", name: "status" }, h("option", { value: "" }, t("admin.all")),
      STATUSES.map((status) => h("option", { value: status, selected: params.get("status") === status }, t(`status.${status}`))))),
  h("button", { type: "submit" }, t("catalog.find")));
  const open = h("form", {
    class: "inline",
    onsubmit: (event) => {
      event.preventDefault();
      go(`/operator/orders/${new FormData(event.target).get("order").trim()}`);
    },
  }, field(t("admin.order_id"), { name: "order", id: "admin-order", required: true, pattern: "[0-9a-fA-F-]{36}" }),
  h("button", { type: "submit" }, t("more")));
  const next = new URLSearchParams(query);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  put(view, h("h1", {}, t("admin.title")), filter, open,
    h("ul", { class: "lines orders" }, page.items.map((order) => h("li", { class: "line" },
      h("a", { href: `#/operator/orders/${order.id}`, class: "title" }, order.id),
      h("time", { datetime: order.created_at, class: "muted" }, dateTime(order.created_at)),
      statusBadge(order.status),
      h("strong", { class: "amount" }, money(order.total))))),
    page.next_cursor ? h("a", { href: `#/operator?${next}` }, t("admin.next")) : null);
}

export async function adminOrderPage(view, params, orderId) {
  if (!await staffOnly(view)) return;
  const order = await get(`/admin/orders/${orderId}`);
  const table = (title, headings, rows) => rows.length === 0 ? null : h("section", {}, h("h2", {}, title),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, headings.map((heading) => h("th", { scope: "col" }, t(heading))))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))))));
  put(view,
    h("h1", {}, `${t("order.title")} ${order.id}`),
    h("dl", { class: "totals" },
      h("dt", {}, t("order.status")), h("dd", {}, statusBadge(order.status), order.reason ? ` ${order.reason}` : ""),
      h("dt", {}, t("admin.customer")), h("dd", {}, order.customer_id),
      h("dt", {}, t("admin.workflow_id")), h("dd", {}, order.workflow.id, order.workflow.status ? ` (${order.workflow.status})` : "")),
    order.workflow.url ? h("p", {}, h("a", { href: order.workflow.url, id: "temporal-link", target: "_blank", rel: "noopener" }, t("admin.workflow"))) : null,
    timeline(order.events),
    table(t("admin.payments"), ["admin.attempt", "admin.intent", "order.status", "admin.amount", "admin.decline"], order.payments.map((payment) =>
      [String(payment.attempt), payment.intent_id, payment.status, money(payment.amount), payment.decline_code ?? ""])),
    table(t("admin.refunds"), ["admin.intent", "admin.amount", "admin.reason", "admin.at"], order.refunds.map((refund) =>
      [refund.intent_id, money(refund.amount), refund.reason, dateTime(refund.created_at)])),
    table(t("admin.ledger"), ["admin.kind", "admin.account", "admin.amount", "admin.at"], order.ledger.flatMap((transaction) =>
      transaction.postings.map((posting) => [transaction.kind, posting.account, money(posting.amount), dateTime(transaction.created_at)]))),
    orderLines(order));
}
