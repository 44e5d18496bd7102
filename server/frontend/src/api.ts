// The one way the dashboard talks to the server: same origin, relative URLs, the error envelope.
import type { ErrorDetail } from "./types";

/** What the error states tell apart (`data-kind` of `error-state`). */
export type ErrorKind = "no-data" | "unreachable" | "unauthorized" | "not-found" | "error";

export class ApiError extends Error {
  readonly kind: ErrorKind;
  readonly status: number;
  readonly code: string;
  readonly reason: string | undefined;
  readonly requestId: string | undefined;

  constructor(kind: ErrorKind, status: number, message: string, detail?: Partial<ErrorDetail>) {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
    this.code = detail?.code ?? "";
    this.reason = detail?.reason;
    this.requestId = detail?.request_id;
  }
}

const ADMIN_TOKEN = "adminToken";
const VIEWER_TOKEN = "viewerToken";
const TIMEOUT_MS = 20_000;

function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: tokens live only as long as the page
  }
}

const memory: Record<string, string | null> = {};

function readToken(key: string): string | null {
  const store = storage();
  return store ? store.getItem(key) : (memory[key] ?? null);
}

function writeToken(key: string, value: string | null): void {
  const store = storage();
  if (!store) {
    memory[key] = value;
  } else if (value) {
    store.setItem(key, value);
  } else {
    store.removeItem(key);
  }
}

export const tokens = {
  admin: (): string | null => readToken(ADMIN_TOKEN),
  setAdmin: (value: string | null): void => writeToken(ADMIN_TOKEN, value),
  viewer: (): string | null => readToken(VIEWER_TOKEN),
  setViewer: (value: string | null): void => writeToken(VIEWER_TOKEN, value),
};

/** The token sent with reads: a viewer token if one was entered, else the admin token (admins may read). */
export function readAuth(): string | null {
  return tokens.viewer() ?? tokens.admin();
}

function kindOf(status: number, code: string | undefined): ErrorKind {
  if (status === 503 && code === "unavailable") return "no-data";
  if (status === 401 || status === 403) return "unauthorized";
  if (status === 404) return "not-found";
  if (status === 502 || status === 503 || status === 504) return "unreachable"; // a proxy in front
  return "error";
}

/** The error of a non-2xx answer, from the envelope when there is one. */
export function errorFrom(status: number, text: string, statusText = ""): ApiError {
  let detail: Partial<ErrorDetail> | undefined;
  try {
    const body = JSON.parse(text) as { error?: Partial<ErrorDetail> };
    if (body && typeof body.error === "object" && body.error) detail = body.error;
  } catch {
    detail = undefined;
  }
  const message = detail?.message || `${status} ${statusText}`.trim() || "request failed";
  return new ApiError(kindOf(status, detail?.code), status, message, detail);
}

export function unreachable(): ApiError {
  return new ApiError("unreachable", 0, "the appliance server did not answer");
}

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

export interface Answer<T> {
  status: number;
  body: T | null; // null on 304
  etag: string | null;
  version: string | null;
}

export interface RequestOptions {
  method?: "GET" | "POST";
  body?: unknown;
  signal?: AbortSignal;
  token?: string | null; // defaults to the read token
  ifNoneMatch?: string | null;
}

/** Calls the API; resolves with 2xx and 304 answers, rejects with ApiError (or AbortError). */
export async function request<T>(path: string, options: RequestOptions = {}): Promise<Answer<T>> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = options.token === undefined ? readAuth() : options.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.ifNoneMatch) headers["If-None-Match"] = options.ifNoneMatch;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const controller = new AbortController();
  const timer = window.setTimeout(() => controller.abort(), TIMEOUT_MS);
  const outer = options.signal;
  const forward = (): void => controller.abort();
  if (outer) {
    if (outer.aborted) controller.abort();
    else outer.addEventListener("abort", forward, { once: true });
  }
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      body,
      signal: controller.signal,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    if (outer?.aborted) throw new DOMException("aborted", "AbortError");
    throw err instanceof ApiError ? err : unreachable();
  } finally {
    window.clearTimeout(timer);
    outer?.removeEventListener("abort", forward);
  }
  const etag = response.headers.get("ETag");
  const version = response.headers.get("X-Data-Version");
  if (response.status === 304) return { status: 304, body: null, etag, version };
  let text: string;
  try {
    text = await response.text();
  } catch {
    if (outer?.aborted) throw new DOMException("aborted", "AbortError");
    throw unreachable();
  }
  if (!response.ok) throw errorFrom(response.status, text, response.statusText);
  let parsed: T;
  try {
    parsed = JSON.parse(text) as T;
  } catch {
    throw new ApiError("error", response.status, "the server sent an answer that is not JSON");
  }
  return { status: response.status, body: parsed, etag, version };
}

/** GET and return the body (2xx only). */
export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const answer = await request<T>(path, { signal });
  if (answer.body === null) throw new ApiError("error", answer.status, "empty answer");
  return answer.body;
}

/** `api/v1/<path>?<params>` without empty parameters (relative: works behind a path prefix too). */
export function apiPath(path: string, params: Record<string, string | number | null | undefined> = {}): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return `api/v1/${path}${qs ? `?${qs}` : ""}`;
}

export const ITEM_ID = /^[A-Za-z0-9._-]{1,64}$/;
