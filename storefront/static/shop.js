// Shopping: the catalog's search with its facets and cursors, a product, the cart and Pay Now.
import { Problem, call, get, post } from "./api.js";
import { go, say, showAgain, showError, signedInProfile } from "./app.js";
import { field, h, picture, put } from "./dom.js";
import { money, named, number, t } from "./i18n.js";
import { payWith, paymentChoices } from "./payment.js";

const SORTS = ["relevance", "popularity", "price_asc", "price_desc", "rating", "newest"];

function catalogLink(params, changes) {
  const next = new URLSearchParams(params);
  next.delete("cursor");
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) next.delete(name);
    else if (name === "brand") {
      const brands = next.getAll("brand");
      next.delete("brand");
      for (const brand of brands.includes(value) ? brands.filter((b) => b !== value) : [...brands, value]) {
        next.append("brand", brand);
      }
    } else next.set(name, value);
  }
  const query = next.toString();
  return `#/${query ? `?${query}` : ""}`;
}

export async function catalogPage(view, params) {
  const query = new URLSearchParams();
  for (const name of ["q", "category", "sort", "price_min", "price_max", "cursor", "in_stock"]) {
    if (params.get(name)) query.set(name, params.get(name));
  }
  for (const brand of params.getAll("brand")) query.append("brand", brand);
  const result = await get(`/catalog/products?${query}`);

  const search = h("form", {
    class: "search", role: "search",
    onsubmit: (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      go(catalogLink(params, {
        q: form.get("q") || null, sort: form.get("sort"), in_stock: form.get("in_stock") ? "true" : null,
      }).slice(1));
    },
  },
  field(t("catalog.search"), { name: "q", type: "search", value: params.get("q") || "", id: "search-q" }),
  h("div", { class: "field" },
    h("label", { for: "search-sort" }, t("catalog.sort")),
    h("select", { name: "sort", id: "search-sort" },
      SORTS.map((sort) => h("option", { value: sort, selected: (params.get("sort") || "relevance") === sort }, t(`sort.${sort}`))))),
  h("div", { class: "check" },
    h("input", { type: "checkbox", name: "in_stock", id: "search-stock", checked: params.get("in_stock") === "true" }),
    h("label", { for: "search-stock" }, t("catalog.in_stock"))),
  h("button", { type: "submit" }, t("catalog.find")));

  const facets = result.facets;
  const facetList = (title, entries) => entries.length === 0 ? null : h("section", { class: "facet" },
    h("h2", {}, title), h("ul", {}, entries));
  const chosen = (name, value) => params.getAll(name).includes(value);
  // Folded on a phone, where the results come first; open beside them on a wider screen.
  const filters = h("details", { class: "facets", open: window.matchMedia("(min-width: 48rem)").matches },
    h("summary", {}, t("facet.title")),
    facetList(t("facet.categories"), facets.categories.map((c) => h("li", {},
      h("a", { href: catalogLink(params, { category: c.value }), "aria-current": params.get("category") === c.value ? "true" : null },
        `${c.name} (${number(c.count)})`)))),
    facetList(t("facet.brands"), facets.brands.map((b) => h("li", {},
      h("a", { href: catalogLink(params, { brand: b.value }), "aria-current": chosen("brand", b.value) ? "true" : null },
        `${chosen("brand", b.value) ? "✓ " : ""}${b.value} (${number(b.count)})`)))),
    facetList(t("facet.price"), facets.price.filter((p) => p.count > 0).map((p) => h("li", {},
      // A bucket's max is exclusive, the search's price_max inclusive.
      h("a", { href: catalogLink(params, { price_min: p.min ?? null, price_max: p.max === null ? null : p.max - 1 }) },
        `${priceRange(p)} (${number(p.count)})`)))),
    h("p", {}, h("a", { href: "#/" }, t("facet.clear"))));

  const items = result.items.map((product) => h("li", { class: "card" },
    product.image ? picture(product.image, "") : null,
    h("a", { href: `#/product/${encodeURIComponent(product.sku)}`, class: "title" }, product.title),
    h("p", { class: "muted" }, product.brand),
    priceTag(product),
    product.available > 0
      ? h("button", { type: "button", onclick: () => addToCart(product.sku, 1) }, t("product.add"))
      : h("p", { class: "muted" }, t("product.sold_out"))));

  const paging = h("nav", { class: "paging", "aria-label": t("catalog.next") },
    params.get("cursor") ? h("a", { href: catalogLink(params, {}) }, t("catalog.first")) : null,
    result.next_cursor ? h("a", { href: `#/?${withCursor(params, result.next_cursor)}`, rel: "next" }, t("catalog.next")) : null);
  const corrected = Object.values(result.corrections);
  put(view,
    h("h1", {}, t("catalog.title")),
    search,
    corrected.length ? h("p", { class: "muted" }, t("catalog.corrected", { words: corrected.join(", ") })) : null,
    h("p", { class: "muted", id: "found" }, t(result.exact ? "catalog.found" : "catalog.found_about", { total: number(result.total) })),
    h("div", { class: "catalog" }, filters,
      h("div", {}, items.length ? h("ul", { class: "grid" }, items) : h("p", {}, t("catalog.nothing")), paging)));
}

function withCursor(params, cursor) {
  const next = new URLSearchParams(params);
  next.set("cursor", cursor);
  return next.toString();
}

function priceRange(bucket) {
  if (bucket.min === null) return t("facet.under", { max: money(bucket.max) });
  if (bucket.max === null) return t("facet.from", { min: money(bucket.min) });
  return `${money(bucket.min)} – ${money(bucket.max)}`;
}

function priceTag(product) {
  return h("p", { class: "price" },
    h("strong", {}, money(product.price)), " ",
    product.old_price ? h("s", { class: "muted" }, money(product.old_price)) : null);
}

async function addToCart(sku, quantity) {
  if (!await signedInProfile()) {
    sessionStorage.setItem("kassa.after_login", window.location.hash);
    go("/login");
    return;
  }
  try {
    await post("/cart/items", { sku, quantity });
    say(t("product.added"));
  } catch (error) {
    say(error.message);
  }
}

export async function productPage(view, params, sku) {
  const product = await get(`/catalog/products/${encodeURIComponent(sku)}`);
  const quantity = field(t("product.quantity"), {
    type: "number", min: 1, max: Math.max(1, Math.min(product.available, product.max_per_order ?? 99)), value: 1, id: "product-quantity",
  });
  put(view,
    h("nav", { class: "crumbs", "aria-label": "breadcrumbs" }, product.breadcrumbs.map((crumb) =>
      h("a", { href: `#/?category=${encodeURIComponent(crumb.slug)}` }, crumb.name))),
    h("h1", {}, product.title),
    h("div", { class: "product" },
      h("div", { class: "images" }, product.images.map((src, index) => picture(src, index === 0 ? product.title : ""))),
      h("div", {},
        h("p", { class: "muted" }, product.brand),
        priceTag(product),
        h("p", {}, product.available > 0 ? t("product.available", { count: number(product.available) }) : t("product.sold_out")),
        h("form", {
          class: "inline",
          onsubmit: (event) => {
            event.preventDefault();
            addToCart(product.sku, Number(event.target.querySelector("input").value));
          },
        }, quantity, h("button", { type: "submit", disabled: product.available === 0 }, t("product.add"))),
        h("p", {}, product.description),
        Object.keys(product.attributes).length ? h("section", {}, h("h2", {}, t("product.details")),
          h("dl", { class: "facts" }, Object.entries(product.attributes).map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]))) : null)));
}

export async function cartPage(view, params) {
  const message = h("div", { "aria-live": "polite" });
  let points = Number(params.get("points") || 0);
  const choices = await paymentChoices();
  let cart;
  try {
    cart = await get(`/cart?redeem_points=${points}`);
  } catch (error) {
    // More points than the customer has now (spent on another order meanwhile): said, and none.
    if (!(error instanceof Problem) || points === 0) throw error;
    showError(message, error);
    points = 0;
    cart = await get("/cart");
  }
  const reload = (changes = {}) => {
    const next = new URLSearchParams(params);
    for (const [name, value] of Object.entries(changes)) next.set(name, value);
    if (next.toString() === params.toString()) showAgain();
    else go(`/cart?${next}`);
  };
  const act = async (work) => {
    try {
      await work();
      reload();
    } catch (error) {
      showError(message, error);
    }
  };
  if (cart.items.length === 0) {
    put(view, h("h1", {}, t("cart.title")), h("p", {}, t("cart.empty")),
      h("p", {}, h("a", { href: "#/" }, t("nav.catalog"))));
    return;
  }
  const lines = cart.items.map((line) => h("li", { class: "line" },
    h("a", { href: `#/product/${encodeURIComponent(line.sku)}`, class: "title" }, line.title),
    h("span", { class: "muted" }, `${money(line.unit_price)} × ${line.quantity}`),
    h("form", {
      class: "inline",
      onsubmit: (event) => {
        event.preventDefault();
        const quantity = Number(event.target.querySelector("input").value);
        act(() => call("PATCH", `/cart/items/${encodeURIComponent(line.sku)}`, { quantity }));
      },
    },
    field(t("cart.quantity_of", { title: line.title }), {
      type: "number", min: 1, max: line.max_quantity, value: line.quantity, class: "quantity",
      onchange: (event) => event.target.form.requestSubmit(),
    })),
    h("strong", { class: "amount" }, money(line.line_total)),
    h("button", {
      type: "button", class: "secondary",
      "aria-label": `${t("cart.remove")}: ${line.title}`,
      onclick: () => act(() => call("DELETE", `/cart/items/${encodeURIComponent(line.sku)}`)),
    }, t("cart.remove")),
    line.price_changed ? h("p", { class: "notice" }, t("cart.price_changed", { old: money(line.price_when_added), new: money(line.unit_price) })) : null,
    line.out_of_stock ? h("p", { class: "notice" }, t("cart.out_of_stock", { available: line.available })) : null));

  const promo = cart.promo
    ? h("div", { class: "promo" },
      h("p", { id: "promo-status" }, cart.promo.status === "applied"
        ? t("promo.applied", { code: cart.promo.code, discount: money(cart.promo.discount) })
        : t("promo.other", { code: cart.promo.code, status: named("promo", cart.promo.status) })),
      h("button", { type: "button", class: "secondary", onclick: () => act(() => call("DELETE", "/cart/promo")) }, t("cart.promo_remove")))
    : h("form", {
      class: "inline",
      onsubmit: (event) => {
        event.preventDefault();
        act(() => post("/cart/promo", { code: event.target.querySelector("input").value.trim() }));
      },
    }, field(t("cart.promo"), { name: "code", id: "promo-code", required: true, maxlength: 32, autocomplete: "off" }),
    h("button", { type: "submit" }, t("cart.promo_apply")));

  const pointsForm = cart.points_available > 0 ? h("form", {
    class: "inline",
    onsubmit: (event) => {
      event.preventDefault();
      reload({ points: Number(event.target.querySelector("input").value) || 0 });
    },
  }, field(t("cart.points", { available: number(cart.points_available), max: number(cart.points_max) }), {
    type: "number", min: 0, max: cart.points_max, value: points, id: "points",
  }), h("button", { type: "submit" }, t("cart.points_apply"))) : null;

  const row = (key, amount, id) => [h("dt", {}, t(key)), h("dd", { id }, amount)];
  const totals = h("dl", { class: "totals" },
    row("cart.subtotal", money(cart.subtotal), "subtotal"),
    cart.discount ? row("cart.discount", `−${money(cart.discount)}`, "discount") : null,
    cart.points ? row("cart.points_used", `−${money(cart.points)}`, "points-used") : null,
    row("cart.vat", money(cart.vat), "vat"),
    row("cart.total", money(cart.total), "total"));

  const pay = payWith(choices, t("cart.pay_now"), async (method) => {
    const body = { cart_id: cart.id, cart_version: cart.version, payment_method: method, redeem_points: cart.points };
    return post("/checkout", body, { accepted: [402, 503] });
  }, (error) => {
    if (error.code === "cart_changed") say(t("cart.changed"));
    if (error.code === "cart_changed" || error.code === "cart_checked_out") reload();
  });
  put(view, h("h1", {}, t("cart.title")), h("ul", { class: "lines" }, lines), message,
    promo, pointsForm, totals, pay);
}
