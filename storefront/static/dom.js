// A small element builder: text is always set as text, never parsed as HTML.
// Only real children: a page leaves out a part by giving null or false in its place.
function present(children) {
  return children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false);
}

// `element`'s content becomes `children`.
export function put(element, ...children) {
  element.replaceChildren(...present(children));
}

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  element.append(...present(children));
  return element;
}

let fieldCount = 0;

// An input with its label, tied by id.
export function field(label, attributes = {}) {
  const id = attributes.id || `field-${++fieldCount}`;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { ...attributes, id }));
}

export function alert(message) {
  return h("p", { class: "alert", role: "alert" }, message);
}

// A product's picture; one that cannot be loaded (an address out of reach) leaves no broken box.
export function picture(src, alt) {
  return h("img", { src, alt, loading: "lazy", onerror: (event) => { event.target.hidden = true; } });
}
