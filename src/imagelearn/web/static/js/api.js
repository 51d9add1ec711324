// The REST API as the page uses it: JSON in, JSON out, errors as ApiError with the server's message.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.detail;
    const message = typeof detail === "string" ? detail : `${response.status} ${response.statusText}`;
    throw new ApiError(message, response.status);
  }
  return body;
}

/** GET (or another method with `options`) a JSON route; `params` become the query string. */
export async function api(path, params = {}, options = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  let response;
  try {
    response = await fetch(text ? `${path}?${text}` : path, { credentials: "same-origin", ...options });
  } catch {
    throw new ApiError("the server cannot be reached (is it still running?)", 0);
  }
  return answer(response);
}

/** POST a multipart form. */
export function postForm(path, form, method = "POST") {
  return api(path, {}, { method, body: form });
}

export const thumbnailUrl = (id) => `/api/images/${id}/thumbnail`;
export const fileUrl = (id) => `/api/images/${id}/file`;

let infoPromise = null;
/**
 * What the server serves (cached; `refresh` asks again, e.g. after adding images); each answer
 * is also announced as the window event "imagelearn:info" (the header shows it).
 */
export function serverInfo(refresh = false) {
  if (refresh || !infoPromise) {
    infoPromise = api("/api/info");
    infoPromise.then((info) => window.dispatchEvent(new CustomEvent("imagelearn:info", { detail: info })), () => {});
  }
  return infoPromise;
}
