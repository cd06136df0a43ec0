// The v2 API as the page uses it: relative paths (the page is at
// <base>/ui/, the API at <base>/v2/), so the same page works on calipso-api
// and through a channel's proxy. The token lives in this tab's session
// storage and travels in the X-Auth-Token header only: never in a URL,
// never logged.

const TOKEN_KEY = 'calipso.token';
const API_ROOT = new URL('../v2/', document.baseURI);

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// params: an object or a list of [name, value] pairs; empty values are
// left out.
export function apiUrl(path, params) {
  const url = new URL(path, API_ROOT);
  const pairs = Array.isArray(params) ? params : Object.entries(params || {});
  for (const [name, value] of pairs) {
    if (value !== undefined && value !== null && value !== '') {
      url.searchParams.append(name, value);
    }
  }
  return url;
}

// {body, etag}, or {notModified: true} when etag still holds.
export async function fetchJSON(path, params, etag) {
  const headers = {Accept: 'application/json'};
  const current = token.get();
  if (current) headers['X-Auth-Token'] = current;
  if (etag) headers['If-None-Match'] = etag;
  const response = await fetch(apiUrl(path, params), {
    headers, cache: 'no-store', credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (response.status === 304) return {notModified: true, etag};
  if (response.status === 401) {
    throw new AuthError('The token was refused or has expired');
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.error_message?.faultstring || message;
    } catch (ignored) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message);
  }
  return {body: await response.json(), etag: response.headers.get('ETag')};
}

export async function get(path, params) {
  return (await fetchJSON(path, params)).body;
}

const item = (id) => `inventory/${encodeURIComponent(id)}`;

export const inventory = {
  list: (filters) => get('inventory', filters),
  object: (id) => get(item(id)),
  links: (id) => get(`${item(id)}/links`),
  clique: (id, etag) => fetchJSON(`${item(id)}/clique`, {}, etag),
  impact: (id) => get(`${item(id)}/impact`),
  path: (id) => get(`${item(id)}/path`),
};

// The last hour of one meter of one resource, in 5-minute periods.
export function meterStatistics(meter, resourceId, now = new Date()) {
  const hourAgo = new Date(now.getTime() - 3600 * 1000);
  return get(`meters/${encodeURIComponent(meter)}/statistics`, [
    ['q.field', 'resource_id'], ['q.op', 'eq'], ['q.value', resourceId],
    ['q.field', 'timestamp'], ['q.op', 'ge'],
    ['q.value', hourAgo.toISOString().replace('Z', '')],
    ['period', 300],
  ]);
}

// --- answers of the inventory routes, as the page reads them -----------

// An impact or path entry: the object, with the path of links from the
// start when the answer gives one.
export function objectOf(entry) {
  if (entry && typeof entry === 'object' && entry.object) {
    return {...entry.object, path: entry.path ?? entry.object.path};
  }
  return entry;
}

export function graphOf(body) {
  return {
    nodes: body?.nodes ?? body?.objects ?? [],
    edges: body?.edges ?? body?.links ?? [],
  };
}

export function edgeEnds(edge) {
  return [edge.source_id ?? edge.source, edge.target_id ?? edge.target];
}

export function dependentsOf(body) {
  const list = Array.isArray(body) ? body :
    (body?.dependents ?? body?.impacted ?? body?.objects ?? body?.nodes ?? []);
  return list.map(objectOf);
}

export function chainOf(body) {
  const list = Array.isArray(body) ? body :
    (body?.path ?? body?.chain ?? body?.nodes ?? body?.objects ?? []);
  return list.map(objectOf);
}

// A dependent's path as text: the ids from the start, " > "-joined. A
// path is a list of links (walked from ``startId``, whatever their
// direction) or of ids.
export function pathText(path, startId) {
  if (!Array.isArray(path)) return path ? String(path) : '';
  const ids = startId === undefined ? [] : [startId];
  for (const step of path) {
    if (typeof step !== 'object' || step === null) {
      if (ids[ids.length - 1] !== step) ids.push(step);
      continue;
    }
    const [source, target] = edgeEnds(step);
    const last = ids[ids.length - 1];
    if (last === source) ids.push(target);
    else if (last === target) ids.push(source);
    else ids.push(source, target);
  }
  return ids.join(' > ');
}

// An infrastructure object a tenant may not see is opaque: its type and
// state only (its id is a token, not a name).
export function labelOf(object) {
  if (object.opaque) return `${object.type} (not shown)`;
  return object.name || object.id || object.type;
}
