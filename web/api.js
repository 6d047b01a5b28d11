// HTTP access to the server's API v1: JSON fetches with clear errors, and the browser login.

/** An API failure with the server's message (`{"error": ...}`) and HTTP status (0 = unreachable). */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

let csrf = "";
try { csrf = sessionStorage.getItem("hotpath.csrf") || ""; } catch { csrf = ""; }

/** GET/POST JSON; throws ApiError with the server's own message when there is one. */
export async function fetchJSON(path, { method = "GET", body = undefined, signal = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-Hotpath-CSRF"] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin", signal,
    });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(`server unreachable (${e && e.message ? e.message : e})`, 0);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const msg = data && typeof data.error === "string" ? data.error : `HTTP ${resp.status} ${resp.statusText}`;
    throw new ApiError(msg, resp.status);
  }
  if (data === null) throw new ApiError(`bad JSON from ${path.split("?")[0]}`, resp.status);
  return data;
}

/** Session state: {authenticated, auth_required, scopes}. */
export function getSession() {
  return fetchJSON("/api/v1/session");
}

/** Exchange a read token for the session cookie; remembers the CSRF token for later POST/DELETE. */
export async function login(token) {
  const data = await fetchJSON("/api/v1/session", { method: "POST", body: { token } });
  csrf = data.csrf_token || "";
  try { sessionStorage.setItem("hotpath.csrf", csrf); } catch { /* private mode: keep in memory */ }
  return data;
}
