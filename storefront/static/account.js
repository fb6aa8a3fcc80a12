// The account: logging in or registering, and the loyalty balance and tier.
import { get, keepTokens, post } from "./api.js";
import { forgetProfile, go, say, showError } from "./app.js";
import { field, h, put } from "./dom.js";
import { dateTime, money, named, number, t } from "./i18n.js";

export async function loginPage(view) {
  const message = h("div", { "aria-live": "polite" });
  const logIn = async (email, password) => {
    keepTokens(await post("/auth/login", { email, password }));
    forgetProfile();
    const profile = await get("/me");
    const back = sessionStorage.getItem("kassa.after_login");
    sessionStorage.removeItem("kassa.after_login");
    if (back && !back.startsWith("#/login")) window.location.hash = back;
    else go(profile.role === "customer" ? "/" : "/operator");
  };
  const form = h("form", {
    class: "login",
    onsubmit: async (event) => {
      event.preventDefault();
      const data = new FormData(event.target);
      const [email, password] = [data.get("email"), data.get("password")];
      try {
        if (event.submitter?.value === "register") {
          await post("/auth/register", { email, password });
          say(t("login.registered"));
        }
        await logIn(email, password);
      } catch (error) {
        showError(message, error);
      }
    },
  },
  field(t("login.email"), { type: "email", name: "email", id: "login-email", required: true, autocomplete: "email" }),
  field(t("login.password"), { type: "password", name: "password", id: "login-password", required: true, autocomplete: "current-password" }),
  message,
  h("div", { class: "buttons" },
    h("button", { type: "submit", class: "primary", value: "login" }, t("login.submit")),
    h("button", { type: "submit", class: "secondary", value: "register" }, t("login.register"))));
  put(view, h("h1", {}, t("login.title")), h("p", { class: "muted" }, t("login.needed")), form);
}

export async function accountPage(view) {
  const loyalty = await get("/me/loyalty");
  const row = (key, value, id) => [h("dt", {}, t(key)), h("dd", { id }, value)];
  put(view,
    h("h1", {}, t("account.title")),
    h("dl", { class: "totals" },
      row("account.balance", number(loyalty.balance), "points-balance"),
      row("account.available", number(loyalty.available), "points-available"),
      loyalty.held ? row("account.held", number(loyalty.held), "points-held") : null,
      row("account.tier", named("tier", loyalty.tier), "tier")),
    h("p", {}, t("account.rate", { rate: loyalty.rate_percent })),
    h("p", {}, loyalty.next_tier
      ? t("account.next", { amount: money(loyalty.spend_to_next_tier), tier: named("tier", loyalty.next_tier) })
      : t("account.top")),
    loyalty.history.length ? h("section", {}, h("h2", {}, t("account.history")),
      h("ul", { class: "lines" }, loyalty.history.map((move) => h("li", { class: "line" },
        h("time", { datetime: move.at, class: "muted" }, dateTime(move.at)),
        h("span", {}, named("movement", move.kind)),
        h("a", { href: `#/orders/${move.order_id}` }, move.order_id.slice(0, 8)),
        h("strong", { class: "amount" }, `${move.points > 0 ? "+" : ""}${number(move.points)}`))))) : null);
}
