// Talking to the API: the same origin as the page, with the visitor's key when the server wants one.

const KEY = "jobwarden.api_key";
const BASE = new URL(".", document.baseURI);

export class ApiError extends Error {
  constructor(status, envelope) {
    const info = envelope?.error ?? {};
    super(info.message || `HTTP ${status}`);
    this.status = status;
    this.type = info.type || "http_error";
  }
}

let askForKey = async () => null;

export function onKeyNeeded(handler) {
  askForKey = handler;
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export function url(path, params = {}) {
  const target = new URL(path, BASE);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

export function websocketUrl(path, params = {}) {
  const target = url(path, { ...params, api_key: apiKey() });
  target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
  return target;
}

// A JSON request; on 401 asks for a key (once per refusal) and tries again with it.
export async function request(method, path, { params, body } = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url(path, params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const payload = await response.json().catch(() => null);
    if (response.status === 401) {
      const given = await askForKey(key ? "That key was refused; try another." : payload?.error?.message);
      if (given) {
        sessionStorage.setItem(KEY, given);
        continue;
      }
    }
    if (!response.ok) throw new ApiError(response.status, payload);
    return payload;
  }
}
