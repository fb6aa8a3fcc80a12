// Orders: one order followed live (status, the hold's countdown, paying again, cancelling), the
// order history, and the way back from the bank's page.
import { get, post } from "./api.js";
import { go, onLeave, showAgain, showError } from "./app.js";
import { alert, h, put } from "./dom.js";
import { dateTime, money, t } from "./i18n.js";
import { orderBeingPaid, payWith, paymentChoices } from "./payment.js";

const POLL_MS = 1000;
// An attempt the bank is still deciding: no new one is offered meanwhile.
const IN_FLIGHT = new Set(["requires_action", "processing", "authorized", "succeeded"]);

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, t(`status.${status}`));
}

export function orderLines(order) {
  return h("section", {},
    h("h2", {}, t("order.lines")),
    h("ul", { class: "lines" }, order.lines.map((line) => h("li", { class: "line" },
      h("span", { class: "title" }, line.title),
      h("span", { class: "muted" }, `${money(line.unit_price)} × ${line.quantity}`),
      h("strong", { class: "amount" }, money(line.line_total))))),
    h("dl", { class: "totals" },
      h("dt", {}, t("cart.subtotal")), h("dd", {}, money(order.subtotal)),
      order.discount ? [h("dt", {}, t("cart.discount")), h("dd", {}, `−${money(order.discount)}`)] : null,
      order.points ? [h("dt", {}, t("cart.points_used")), h("dd", {}, `−${money(order.points)}`)] : null,
      h("dt", {}, t("cart.total")), h("dd", { id: "order-total" }, money(order.total))));
}

export function timeline(events) {
  return h("section", {}, h("h2", {}, t("order.timeline")),
    h("ol", { class: "timeline" }, events.map((event) => h("li", {},
      h("time", { datetime: event.at }, dateTime(event.at)), " ", statusBadge(event.status),
      event.reason ? h("span", { class: "muted" }, ` ${event.reason}`) : null))));
}

function remaining(until) {
  const seconds = Math.max(0, Math.round((new Date(until) - Date.now()) / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

export async function orderPage(view, params, orderId) {
  const choices = await paymentChoices();
  const status = h("div", { id: "order-status", "aria-live": "polite" });
  const countdown = h("p", { id: "hold", class: "hold", role: "timer", "aria-live": "off" });
  const actions = h("div", { id: "order-actions" });
  const details = h("div");
  let order = null;
  let shown = null; // what the actions were drawn for: redrawn only when it changes, not each poll

  const tick = () => {
    if (order?.status !== "PENDING_PAYMENT" || !order.hold_expires_at) {
      put(countdown);
      return;
    }
    const left = remaining(order.hold_expires_at);
    countdown.textContent = left === "0:00" ? t("order.hold_over") : t("order.hold", { time: left });
  };

  const draw = () => {
    const payment = order.payment;
    put(status, h("p", {}, t("order.status"), ": ", statusBadge(order.status)),
      order.status === "PAID" ? h("p", { class: "success" }, t("order.paid")) : null,
      ["CANCELLED", "EXPIRED", "PAYMENT_FAILED"].includes(order.status) ? h("p", {}, t("order.ended")) : null);
    put(details, orderLines(order), timeline(order.events));
    const state = `${order.status}/${payment?.attempt}/${payment?.status}`;
    if (state === shown) return;
    shown = state;
    put(actions);
    if (order.status !== "PENDING_PAYMENT") return;
    if (payment?.status === "requires_action" && payment.payment_url) {
      actions.append(h("p", {}, h("a", { class: "button primary", href: payment.payment_url, id: "to-bank" }, t("order.to_bank"))));
    } else if (!IN_FLIGHT.has(payment?.status)) {
      // Declined, or the bank did not answer: another try within the hold.
      actions.append(
        alert(payment?.status === "failed" ? t("order.declined", { code: payment.decline_code ?? "" }) : t("order.unanswered")),
        payWith(choices, t("order.retry"), (method) =>
          post(`/orders/${orderId}/pay`, { payment_method: method }, { accepted: [402, 503] })));
    }
    actions.append(h("button", {
      type: "button", class: "secondary", id: "cancel",
      onclick: async () => {
        try {
          await post(`/orders/${orderId}/cancel`);
          showAgain();
        } catch (error) {
          showError(actions, error);
        }
      },
    }, t("order.cancel")));
  };

  const refresh = async () => {
    order = await get(`/orders/${orderId}`);
    draw();
    tick();
  };

  await refresh();
  put(view, h("h1", {}, `${t("order.title")} ${orderId.slice(0, 8)}`), status, countdown, actions, details);

  // Followed live while it waits for its payment: the workflow moves it, the page asks again.
  let polling = true;
  const timer = setInterval(tick, 1000);
  const poll = async () => {
    while (polling && order.status === "PENDING_PAYMENT") {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (!polling) return;
      await refresh().catch(() => {}); // a poll the server missed: the next one asks again
    }
  };
  poll();
  onLeave(() => {
    polling = false;
    clearInterval(timer);
  });
}

export async function ordersPage(view) {
  const orders = await get("/orders?limit=50");
  put(view, h("h1", {}, t("orders.title")),
    orders.length === 0 ? h("p", {}, t("orders.none")) : h("ul", { class: "lines orders" }, orders.map((order) =>
      h("li", { class: "line" },
        h("a", { href: `#/orders/${order.id}`, class: "title" }, `${t("order.title")} ${order.id.slice(0, 8)}`),
        h("time", { datetime: order.created_at, class: "muted" }, dateTime(order.created_at)),
        statusBadge(order.status),
        h("strong", { class: "amount" }, money(order.total))))));
}

// Back from the provider's page: the order whose payment it confirmed, remembered before leaving,
// or found among the customer's orders by the payment the provider names.
export async function returnPage(view, params) {
  put(view, h("h1", {}, t("order.finding")));
  let orderId = orderBeingPaid();
  const intent = params.get("payment_intent");
  if (intent) {
    const orders = await get("/orders?limit=20");
    orderId = orders.find((order) => order.payment?.intent_id === intent)?.id ?? orderId;
  }
  if (orderId) {
    window.location.replace(`#/orders/${orderId}`);
  } else {
    go("/orders");
  }
}
