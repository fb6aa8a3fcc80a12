// The storefront's router: `#/path?query` picks a page; each page renders into <main>.
import { Problem, get, logOut, signedIn } from "./api.js";
import { alert, h, put } from "./dom.js";
import { LANGUAGES, language, setLanguage, t } from "./i18n.js";
import { adminOrderPage, adminOrdersPage } from "./operator.js";
import { orderPage, ordersPage, returnPage } from "./orders.js";
import { accountPage, loginPage } from "./account.js";
import { cartPage, catalogPage, productPage } from "./shop.js";

const PAGES = [
  [/^\/$/, catalogPage],
  [/^\/product\/(.+)$/, productPage],
  [/^\/cart$/, cartPage],
  [/^\/orders$/, ordersPage],
  [/^\/orders\/([0-9a-f-]+)$/, orderPage],
  [/^\/return$/, returnPage],
  [/^\/account$/, accountPage],
  [/^\/login$/, loginPage],
  [/^\/operator$/, adminOrdersPage],
  [/^\/operator\/orders\/([0-9a-f-]+)$/, adminOrderPage],
];
const NEEDS_SIGN_IN = new Set([cartPage, ordersPage, orderPage, returnPage, accountPage,
  adminOrdersPage, adminOrderPage]);

let profile = null; // GET /me of the signed-in account, for the menu
let leaving = []; // what the current page stops when another is shown (its polling, its timers)

export function onLeave(stop) {
  leaving.push(stop);
}

export function go(path) {
  window.location.hash = `#${path}`;
}

// The current page drawn again, with what the API says now.
export function showAgain() {
  render();
}

export function say(message) {
  const notice = document.getElementById("notice");
  notice.textContent = message;
  if (message) setTimeout(() => { if (notice.textContent === message) notice.textContent = ""; }, 6000);
}

export function showError(where, error) {
  const message = error instanceof Problem ? error.message : t("error.network");
  put(where, alert(message));
  if (!(error instanceof Problem)) console.error(error);
}

export async function signedInProfile() {
  if (!signedIn()) return null;
  profile ??= await get("/me").catch(() => null);
  return profile;
}

export function forgetProfile() {
  profile = null;
}

function route() {
  const [path, query] = (window.location.hash.slice(1) || "/").split("?");
  for (const [pattern, page] of PAGES) {
    const found = path.match(pattern);
    if (found) return { page, args: found.slice(1).map(decodeURIComponent), params: new URLSearchParams(query) };
  }
  return { page: catalogPage, args: [], params: new URLSearchParams() };
}

let shown = 0; // the latest page asked for: a slower earlier one must not replace it

async function render() {
  const mine = ++shown;
  for (const stop of leaving) stop();
  leaving = [];
  const { page, args, params } = route();
  if (NEEDS_SIGN_IN.has(page) && !signedIn()) {
    sessionStorage.setItem("kassa.after_login", window.location.hash);
    go("/login");
    return;
  }
  await renderMenu();
  const view = document.getElementById("view");
  const content = h("div", { class: "page" });
  put(view, h("p", { class: "muted" }, t("loading")));
  try {
    await page(content, params, ...args);
  } catch (error) {
    if (error instanceof Problem && error.status === 401) {
      // Signed out meanwhile (the refresh token expired or was revoked): log in, then come back.
      sessionStorage.setItem("kassa.after_login", window.location.hash);
      go("/login");
      return;
    }
    showError(content, error);
  }
  if (mine !== shown) return;
  put(view, content);
  document.title = `${content.querySelector("h1")?.textContent ?? ""} · Kassa`;
}

async function renderMenu() {
  const account = await signedInProfile();
  const link = (href, key) => {
    const current = window.location.hash.split("?")[0] === href || (href === "#/" && !window.location.hash);
    return h("a", { href, "aria-current": current ? "page" : null }, t(key));
  };
  const links = [link("#/", "nav.catalog")];
  if (account?.role === "customer") {
    links.push(link("#/cart", "nav.cart"), link("#/orders", "nav.orders"), link("#/account", "nav.account"));
  }
  if (account && account.role !== "customer") links.push(link("#/operator", "nav.operator"));
  if (account) {
    links.push(h("button", {
      type: "button", class: "link",
      onclick: async () => { await logOut(); forgetProfile(); go("/login"); },
    }, t("nav.logout")), h("span", { class: "who muted" }, account.email));
  } else {
    links.push(link("#/login", "nav.login"));
  }
  const picker = h("select", {
    id: "language", onchange: (event) => { setLanguage(event.target.value); render(); },
  }, Object.entries(LANGUAGES).map(([code, name]) => h("option", { value: code, selected: code === language() }, name)));
  links.push(h("span", { class: "language" }, h("label", { for: "language", class: "visually-hidden" }, t("language")), picker));
  put(document.getElementById("nav"), ...links);
  document.getElementById("skip-link").textContent = t("skip");
}

// The skip link moves the focus; following its `#view` would leave the page for the router.
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("view").focus();
});
window.addEventListener("hashchange", () => {
  // A new page starts at its top, with the focus on it (for a screen reader and the keyboard).
  render().then(() => {
    window.scrollTo(0, 0);
    document.getElementById("view").focus({ preventScroll: true });
  });
});
render();
