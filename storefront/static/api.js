// The public JSON API with the customer's token: the pages' only way in. Tokens are kept in
// localStorage so the customer stays signed in across the bank's 3-D Secure page.
const TOKENS = "kassa.tokens";

export class Problem extends Error {
  // A refusal of the API (problem+json): `status`, its machine-readable `code`, and the body.
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code;
    this.body = body;
  }
}

export function signedIn() {
  return localStorage.getItem(TOKENS) !== null;
}

export function keepTokens(pair) {
  localStorage.setItem(TOKENS, JSON.stringify(pair));
}

export function forgetTokens() {
  localStorage.removeItem(TOKENS);
}

function tokens() {
  return JSON.parse(localStorage.getItem(TOKENS) || "null");
}

async function send(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// A new token pair from the refresh token, once; signed out when it is refused.
let refreshing = null;
async function refresh() {
  const pair = tokens();
  if (!pair) return false;
  refreshing ??= send("POST", "/auth/refresh", { refresh_token: pair.refresh_token })
    .then(async (answer) => {
      if (!answer.ok) {
        forgetTokens();
        return false;
      }
      keepTokens(await answer.json());
      return true;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

// The answer's JSON; a refusal is thrown as a Problem, except the statuses in `accepted`
// (Pay Now's 402, whose body still names the order).
export async function call(method, path, body, { accepted = [] } = {}) {
  let answer = await send(method, path, body, tokens()?.access_token);
  if (answer.status === 401 && await refresh()) {
    answer = await send(method, path, body, tokens()?.access_token);
  }
  if (answer.status === 204) return null;
  const json = await answer.json().catch(() => ({}));
  if (answer.ok) return json;
  if (accepted.includes(answer.status)) return json;
  if (answer.status === 401) forgetTokens();
  throw new Problem(answer.status, json);
}

export const get = (path) => call("GET", path);
export const post = (path, body, options) => call("POST", path, body, options);

export async function logOut() {
  const pair = tokens();
  forgetTokens();
  if (pair) await send("POST", "/auth/logout", { refresh_token: pair.refresh_token }).catch(() => {});
}
