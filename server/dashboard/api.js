// The admin API client. The token lives in sessionStorage only: it is sent
// as a bearer token to this origin, never in a cookie or a URL.

const TOKEN_KEY = 'latchkey.admin-token';

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

// me is the signed-in caller as GET /admin/me tells it: name, role,
// whether it is the bootstrap token, and its effective permissions (the
// role's, narrowed by the token). Views read it through can() to leave out
// what the token may not do; the API refuses it anyway.
export const me = { name: '', role: '', bootstrap: false, permissions: [] };

export async function loadMe() {
  Object.assign(me, await api('GET', 'me'));
  return me;
}

export function can(permission) {
  return me.permissions.includes(permission);
}

// ApiError is an error answer of the admin API: its status, its error code
// and its error_description, Retry-After in seconds when it gave one, and
// the permission a 403 insufficient_permissions lacked.
export class ApiError extends Error {
  constructor(status, code, description, retryAfter = null, permission = null) {
    super(description);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.description = description;
    this.retryAfter = retryAfter;
    this.permission = permission;
  }
}

let onUnauthorized = () => {};
let onForbidden = () => {};

// setForbiddenHandler sets what happens when the API refuses a call for a
// permission the page thought the token had: its role changed (another
// owner demoted the admin) or its admin token was replaced meanwhile.
export function setForbiddenHandler(fn) {
  onForbidden = fn;
}

// setUnauthorizedHandler sets what happens when the signed-in token stops
// working (expired, revoked, its admin removed): the app signs out.
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// api calls the admin API at path (relative to /admin/) and returns the
// decoded JSON, or null for 204. It throws ApiError on an error answer.
// With an explicit token (signing in), a 401 is the caller's business.
export async function api(method, path, body, token) {
  const explicit = token !== undefined;
  const bearer = explicit ? token : session.token;
  const headers = { Accept: 'application/json', Authorization: `Bearer ${bearer}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network_error', 'Cannot reach the latchkey server. Check the connection and try again.');
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // An error page from a proxy, or an empty body.
  }
  if (res.ok) return data;
  const retry = Number.parseInt(res.headers.get('Retry-After') ?? '', 10);
  const err = new ApiError(
    res.status,
    data?.error ?? `http_${res.status}`,
    data?.error_description || `The server answered ${res.status} ${res.statusText}.`.replace(' .', '.'),
    Number.isFinite(retry) ? retry : null,
    data?.permission ?? null,
  );
  if (res.status === 401 && !explicit) onUnauthorized(err);
  if (res.status === 403 && err.code === 'insufficient_permissions' && !explicit) onForbidden(err);
  throw err;
}

// listAll follows next_page_token to the end and returns every item.
export async function listAll(path) {
  const items = [];
  let pageToken = '';
  const sep = path.includes('?') ? '&' : '?';
  do {
    const q = pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : '';
    const page = await api('GET', `${path}${sep}limit=1000${q}`);
    items.push(...(page.items ?? []));
    pageToken = page.next_page_token;
  } while (pageToken);
  return items;
}

// path builds a path from literal parts and values that are escaped.
export function path(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}
