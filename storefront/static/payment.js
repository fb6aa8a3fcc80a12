// Paying: the choices this deployment offers (its provider's test cards outside production, or
// the provider's own page), and what follows Pay Now: the bank's 3-D Secure page, or the order.
import { Problem, get } from "./api.js";
import { go, showAgain } from "./app.js";
import { alert, h, put } from "./dom.js";
import { t } from "./i18n.js";

const PAYING = "kassa.paying"; // the order whose payment the bank's page is confirming

let settings = null;
export async function paymentChoices() {
  settings ??= await get("/storefront/settings");
  return settings.choices;
}

// Read once, on the way back from the provider's page.
export function orderBeingPaid() {
  const orderId = sessionStorage.getItem(PAYING);
  sessionStorage.removeItem(PAYING);
  return orderId;
}

// Where an answer of Pay Now (or of paying again) leads: the provider's page when it asks for
// the customer, else the order's own page, which says how the attempt went.
export function followPayment(answer) {
  if (answer.payment_url) {
    sessionStorage.setItem(PAYING, answer.order_id);
    window.location.assign(answer.payment_url);
  } else if (window.location.hash === `#/orders/${answer.order_id}`) {
    showAgain(); // paid again from the order's own page
  } else {
    go(`/orders/${answer.order_id}`);
  }
}

// The payment choices as radio buttons and a submit button; `pay(method)` makes the request.
export function payWith(choices, label, pay, onProblem = () => {}) {
  const message = h("div", { "aria-live": "polite" });
  if (choices.length === 0) return h("p", { class: "notice" }, t("cart.no_choices"));
  const options = choices.map((choice, index) => h("div", { class: "check" },
    h("input", {
      type: "radio", name: "payment", id: `pay-${index}`, value: String(index), checked: index === 0,
    }),
    h("label", { for: `pay-${index}` }, t(`choice.${choice.kind}`))));
  const button = h("button", { type: "submit", class: "primary" }, label);
  return h("form", {
    class: "pay",
    onsubmit: async (event) => {
      event.preventDefault();
      const chosen = choices[Number(new FormData(event.target).get("payment"))];
      const method = chosen.token ? { type: "card", token: chosen.token } : { type: "card" };
      button.disabled = true;
      try {
        followPayment(await pay(method));
      } catch (error) {
        put(message, alert(error instanceof Problem ? error.message : t("error.network")));
        if (error instanceof Problem) onProblem(error);
      } finally {
        button.disabled = false;
      }
    },
  }, h("fieldset", {}, h("legend", {}, t("cart.pay_with")), options), message, button);
}
