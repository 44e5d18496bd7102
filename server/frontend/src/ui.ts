// Building blocks shared by the pages: loading and error states, freshness lines, cards, tables, CSV.
import { ApiError, isAbort, tokens } from "./api";
import { fill, h, icon, type Child } from "./dom";
import { lastUpdatedText, pct, utc } from "./format";
import type { Traceability } from "./types";

export function loading(text = "Loading…"): HTMLElement {
  return h(
    "div",
    { class: "loading", "data-testid": "loading", role: "status", "aria-live": "polite" },
    h("span", { class: "spinner", "aria-hidden": "true" }),
    text,
  );
}

export interface ErrorOptions {
  retry?: () => void;
  notFoundTitle?: string;
  notFoundText?: string;
}

/** The `error-state` of a failed load; `data-kind` tells the reason apart. */
export function errorState(err: unknown, options: ErrorOptions = {}): HTMLElement {
  const e = err instanceof ApiError ? err : new ApiError("error", 0, err instanceof Error ? err.message : String(err));
  let iconName = "alert";
  let title: string;
  let body: Child[];
  const retry = options.retry
    ? h("button", { type: "button", class: "btn", onclick: () => options.retry?.() }, icon("refresh"), "Try again")
    : null;
  switch (e.kind) {
    case "no-data":
      iconName = "inbox";
      title = "No data imported yet";
      body = [
        h(
          "p",
          null,
          "This appliance has not imported a result pack yet, so there is nothing to show. An admin can import one with ",
          h("code", null, "appliance import <file>.pack"),
          " or upload it on the ",
          h("a", { href: "#/admin" }, "Admin page"),
          ". The dashboard notices the new data by itself.",
        ),
      ];
      break;
    case "unreachable":
      iconName = "plug";
      title = "Server unreachable";
      body = [
        h(
          "p",
          null,
          "The dashboard could not reach the appliance server. It may be restarting or stopped, or the network between you and the node is down. The page keeps checking; you can also try again now.",
        ),
      ];
      break;
    case "unauthorized":
      iconName = "lock";
      title = e.status === 403 ? "Access refused" : "Access token required";
      body = [h("p", null, e.status === 401 ? tokenRefusal(e) : `The server answered: ${e.message}.`), viewerTokenForm(options.retry)];
      break;
    case "not-found":
      iconName = "search";
      title = options.notFoundTitle ?? "Not found";
      body = [
        h("p", null, options.notFoundText ?? `The server answered: ${e.message}.`),
        h("p", null, h("a", { href: "#/" }, "Back to the overview")),
      ];
      break;
    default:
      title = "Something went wrong";
      body = [h("p", null, `The server answered${e.status ? ` ${e.status}` : ""}: ${e.message}.`)];
  }
  return h(
    "div",
    { class: `state state-${e.kind}`, "data-testid": "error-state", "data-kind": e.kind, role: "alert" },
    icon(iconName, "state-icon"),
    h("div", { class: "state-body" }, h("h2", null, title), body, e.requestId ? h("p", { class: "muted small" }, `Request id ${e.requestId}`) : null, e.kind !== "not-found" && e.kind !== "unauthorized" ? retry : null),
  );
}

/**
 * The not-found state of a route this dashboard does not have: found out in the browser, before
 * any request, so it names the dashboard's pages rather than blaming the server.
 */
export function pageNotFound(route: string): HTMLElement {
  const page = (href: string, text: string): HTMLElement => h("li", null, h("a", { href }, text));
  return h(
    "div",
    { class: "state state-not-found", "data-testid": "error-state", "data-kind": "not-found", "data-where": "dashboard", role: "alert" },
    icon("search", "state-icon"),
    h(
      "div",
      { class: "state-body" },
      h("h2", null, "Page not found"),
      h("p", null, "This dashboard has no page at ", h("code", null, route), ". Its pages are:"),
      h(
        "ul",
        { class: "page-list" },
        page("#/", "Overview"),
        page("#/items", "Items: every item, sorted and filtered"),
        h("li", null, "An item: ", h("code", null, "#/items/<item id>"), ", for example ", h("a", { href: "#/items/IT-0000001" }, "#/items/IT-0000001")),
        page("#/revisions", "Forecast revisions: what changed since an earlier version"),
        page("#/data", "Data versions and their history"),
        page("#/admin", "Admin"),
      ),
    ),
  );
}

/** A refused token (401) in words: what its reason code means, with the server's message. */
export function tokenRefusal(err: ApiError): string {
  switch (err.reason) {
    case "token_expired":
      return `The token has expired (${err.message}). Ask the node's admin for a new one.`;
    case "token_revoked":
      return `The token has been revoked (${err.message}) and is refused from now on. Ask the node's admin for a new one.`;
    case "token_invalid":
      return `This node does not know that token (${err.message}). Check that it was copied whole.`;
    default:
      return `The server answered: ${err.message}.`;
  }
}

/** Lets a reader enter the viewer token a node may require for reading (kept for this browser tab). */
function viewerTokenForm(retry?: () => void): HTMLElement {
  const input = h("input", { type: "password", id: "viewer-token", autocomplete: "off", spellcheck: "false", required: true });
  return h(
    "form",
    {
      class: "inline-form",
      onsubmit: (event: Event) => {
        event.preventDefault();
        tokens.setViewer(input.value.trim() || null);
        retry?.();
      },
    },
    h("label", { for: "viewer-token" }, "Access token"),
    input,
    h("button", { type: "submit", class: "btn btn-primary" }, "Continue"),
  );
}

/** The empty state of a part of a page (no rows, no results). */
export function empty(text: string, iconName = "info"): HTMLElement {
  return h("div", { class: "empty" }, icon(iconName), h("span", null, text));
}

/** "Last updated …" with the absolute UTC time and the age; refreshed every 30 s by main.ts. */
export function lastUpdated(generatedAt: string): HTMLElement {
  return h(
    "span",
    { class: "last-updated js-age", "data-testid": "last-updated", "data-generated-at": generatedAt, title: `generated_at ${generatedAt}` },
    lastUpdatedText(generatedAt),
  );
}

/** Where the numbers come from: freshness, model version, source, dataset and data version. */
export function traceLine(t: Traceability): HTMLElement {
  return h(
    "div",
    { class: "trace" },
    h("span", { class: "dot", "aria-hidden": "true" }),
    lastUpdated(t.generated_at),
    h("span", { "data-testid": "model-info", class: "model-info" }, `Model ${t.model_version} · source ${t.source}`),
    h("span", { class: "muted" }, `Dataset ${t.dataset_id} · data ${t.version}`),
  );
}

let ids = 0;
export function uid(prefix: string): string {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A titled card; `actions` go to the right of the title. */
export function card(title: string, options: { sub?: Child; actions?: Child; cls?: string; id?: string } = {}, ...body: Child[]): HTMLElement {
  const headingId = options.id ?? uid("card");
  return h(
    "section",
    { class: `card ${options.cls ?? ""}`.trim(), "aria-labelledby": headingId },
    h(
      "header",
      { class: "card-head" },
      h("div", { class: "card-titles" }, h("h2", { id: headingId }, title), options.sub ? h("div", { class: "card-sub" }, options.sub) : null),
      options.actions ? h("div", { class: "card-actions" }, options.actions) : null,
    ),
    body,
  );
}

export interface Column<R> {
  label: string;
  head?: Child; // the heading's content when it is more than the label (a sort button)
  sort?: "ascending" | "descending"; // aria-sort of the column the rows are ordered by
  num?: boolean;
  cls?: string; // e.g. "hide-narrow": left out below tablet width
  cell: (row: R) => Child;
}

const colClass = (c: { num?: boolean; cls?: string }): string => [c.num ? "num" : "", c.cls ?? ""].filter(Boolean).join(" ");

/**
 * A table with a caption, numeric columns right-aligned; `rowAttrs` adds test ids and the like.
 * `stacked`: on phone widths each row is laid out as a list of "label value" lines instead of
 * being cut off at the screen's edge; the explicit ARIA roles keep it a table for screen readers,
 * which a table's CSS display otherwise decides.
 */
export function table<R>(
  caption: string,
  columns: Column<R>[],
  rows: R[],
  options: {
    testid?: string;
    rowAttrs?: (row: R) => Record<string, string>;
    captionHidden?: boolean;
    cls?: string;
    stacked?: boolean;
    groupOf?: (row: R) => string; // a heading row before each run of rows of one group
  } = {},
): HTMLTableElement {
  const role = (name: string): string | null => (options.stacked ? name : null);
  let group: string | null = null;
  const heading = (row: R): HTMLElement | null => {
    const next = options.groupOf?.(row) ?? null;
    if (next === null || next === group) return null;
    group = next;
    return h("tr", { class: "table-group", "data-testid": "table-group" }, h("th", { scope: "colgroup", colspan: columns.length }, next));
  };
  return h(
    "table",
    { class: ["table", options.stacked ? "table-stacked" : "", options.cls ?? ""].filter(Boolean).join(" "), "data-testid": options.testid, role: role("table") },
    h("caption", { class: options.captionHidden ? "sr-only" : "" }, caption),
    h("thead", { role: role("rowgroup") }, h("tr", { role: role("row") }, columns.map((c) => h("th", { scope: "col", class: colClass(c) || null, role: role("columnheader"), "aria-sort": c.sort ?? null }, c.head ?? c.label)))),
    h(
      "tbody",
      { role: role("rowgroup") },
      rows.map((row) => [
        heading(row),
        h(
          "tr",
          { ...options.rowAttrs?.(row), role: role("row") },
          columns.map((c) => h("td", { class: colClass(c) || null, role: role("cell"), "data-label": options.stacked ? c.label : null }, c.cell(row))),
        ),
      ]),
    ),
  );
}

/**
 * Loads pages of a list so that the latest request wins: each call aborts the one before, and
 * only the latest one's answer or error is shown. While it runs, `status` says so and `slot` is
 * busy; a failure fills `slot` with the error and a retry. `more(at)`: `at` asks for a further
 * page (added to the list) rather than a new list.
 */
export function latestPage<K, T>(
  signal: AbortSignal,
  slot: HTMLElement,
  status: HTMLElement,
  load: { get: (at: K, signal: AbortSignal) => Promise<T>; got: (answer: T, at: K) => void; more: (at: K) => boolean },
): (at: K) => Promise<void> {
  let seq = 0;
  let pending: AbortController | null = null;
  const fetchPage = async (at: K): Promise<void> => {
    seq += 1;
    const mine = seq;
    pending?.abort();
    const controller = new AbortController();
    pending = controller;
    signal.addEventListener("abort", () => controller.abort(), { once: true });
    fill(status, loading(load.more(at) ? "Loading more…" : "Updating…"));
    slot.setAttribute("aria-busy", "true");
    try {
      const answer = await load.get(at, controller.signal);
      if (mine === seq) load.got(answer, at);
    } catch (err) {
      if (isAbort(err) || mine !== seq) return;
      fill(slot, errorState(err, { retry: () => void fetchPage(at) }));
    } finally {
      if (mine === seq) {
        status.replaceChildren();
        slot.removeAttribute("aria-busy");
      }
    }
  };
  return fetchPage;
}

/** A key/value list. */
export function facts(pairs: [string, Child][]): HTMLElement {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => h("div", { class: "fact" }, h("dt", null, k), h("dd", null, v))));
}

export function timeCell(iso: string | null | undefined): HTMLElement {
  return h("time", { datetime: iso ?? "", title: iso ?? "" }, utc(iso));
}

const AT_RISK = 0.5; // a stock-out risk from which an item counts as at risk (as the API's items_at_risk)

function riskTone(risk: number | null): string {
  if (risk === null) return "risk-none";
  if (risk >= 0.8) return "risk-high";
  if (risk >= AT_RISK) return "risk-mid";
  return "risk-low";
}

export function riskCell(risk: number | null): HTMLElement {
  const width = risk === null ? 0 : Math.max(0, Math.min(1, risk)) * 100;
  return h(
    "span",
    { class: `risk ${riskTone(risk)}` },
    h("span", { class: "risk-bar", "aria-hidden": "true" }, h("span", { style: `width:${width.toFixed(1)}%` })),
    h("span", { class: "risk-text" }, pct(risk, 0)),
  );
}

export function itemLink(item: { item_id: string }): HTMLElement {
  return h("a", { href: `#/items/${encodeURIComponent(item.item_id)}`, class: "mono" }, item.item_id);
}

/** A filter's select (id and test id `name`): "all" first, then the values the API accepts. */
export function filterSelect(name: string, all: string, values: string[], value: string): HTMLSelectElement {
  const options = [h("option", { value: "" }, all), ...values.map((v) => h("option", { value: v }, v))];
  if (value && !values.includes(value)) options.push(h("option", { value }, value)); // from an old URL
  const el = h("select", { id: name, "data-testid": name, class: "select" }, options);
  el.value = value;
  return el;
}
