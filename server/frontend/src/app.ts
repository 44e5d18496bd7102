// The shell: header with the data version, hash routing, the version poll and its banner.
import { ApiError, isAbort, request } from "./api";
import { fill, h, icon } from "./dom";
import { lastUpdatedText } from "./format";
import type { DataVersion } from "./types";
import { errorState, loading, pageNotFound } from "./ui";

export interface PageContext {
  /** The element the page fills (already in the document). */
  root: HTMLElement;
  /** Aborted when the page is left or re-rendered: cancels requests, frees charts and blob URLs. */
  signal: AbortSignal;
  params: string[];
  query: URLSearchParams;
  /** The data version of what the page shows (for the badge and the banner). */
  showing(version: string | null): void;
  /** An admin action changed the served version: adopt it without offering a reload. */
  adopt(version: string | null): void;
  /** Render the page again (after a retry, a token, ...). */
  rerender(): void;
}

export type Page = (ctx: PageContext) => Promise<void>;

interface Route {
  name: "overview" | "items" | "item" | "revisions" | "data" | "admin" | "unknown";
  params: string[];
  query: URLSearchParams;
}

const DEFAULT_POLL_SECONDS = 15;

/** The poll interval: `?poll=N` (in the URL or the hash), else localStorage.pollSeconds, else 15 s. */
export function pollSeconds(): number {
  const hashQuery = location.hash.includes("?") ? location.hash.slice(location.hash.indexOf("?") + 1) : "";
  let raw = new URLSearchParams(location.search).get("poll") ?? new URLSearchParams(hashQuery).get("poll");
  if (raw === null) {
    try {
      raw = window.localStorage.getItem("pollSeconds");
    } catch {
      raw = null;
    }
  }
  const n = raw === null ? NaN : Number(raw);
  return Number.isFinite(n) && n >= 0.2 ? n : DEFAULT_POLL_SECONDS;
}

function parseRoute(): Route {
  let raw = location.hash.replace(/^#/, "") || "/";
  try {
    raw = decodeURI(raw);
  } catch {
    // a malformed escape: route on the raw text (it ends up as "not found")
  }
  const at = raw.indexOf("?");
  const path = at >= 0 ? raw.slice(0, at) : raw;
  const query = new URLSearchParams(at >= 0 ? raw.slice(at + 1) : "");
  const parts = path.split("/").filter(Boolean);
  if (parts.length === 0) return { name: "overview", params: [], query };
  if (parts[0] === "items" && parts.length === 1) return { name: "items", params: [], query };
  if (parts[0] === "items" && parts.length === 2) return { name: "item", params: [parts[1]], query };
  if (parts[0] === "revisions" && parts.length === 1) return { name: "revisions", params: [], query };
  if (parts[0] === "data" && parts.length === 1) return { name: "data", params: [], query };
  if (parts[0] === "admin" && parts.length === 1) return { name: "admin", params: [], query };
  return { name: "unknown", params: parts, query };
}

/** A route people guess (`#/item/<id>`) as the one it means (`#/items/<id>`), else null. */
function aliasOf(hash: string): string | null {
  const m = /^#\/item\/([^/?]+)(\?.*)?$/.exec(hash);
  return m ? `#/items/${m[1]}${m[2] ?? ""}` : null;
}

const TITLES: Record<Route["name"], string> = {
  overview: "Overview",
  items: "Items",
  item: "Item",
  revisions: "Forecast revisions",
  data: "Data versions",
  admin: "Admin",
  unknown: "Not found",
};

export class App {
  private pages: Record<Exclude<Route["name"], "unknown">, Page>;
  private main!: HTMLElement;
  private badge!: HTMLElement;
  private conn!: HTMLElement;
  private bannerSlot!: HTMLElement;
  private navLinks: Record<string, HTMLAnchorElement> = {};
  private controller: AbortController | null = null;
  private firstRender = true;
  private rendering = false;
  private lastFailure: string | null = null;

  // `served`: the version the server serves now (undefined until known; null = no data).
  // `displayed`: the version of the data on screen (undefined while a page loads).
  private served: string | null | undefined = undefined;
  private displayed: string | null | undefined = undefined;
  private etag: string | null = null;
  private online = true;
  private pollTimer = 0;
  private pollMs = DEFAULT_POLL_SECONDS * 1000;

  constructor(pages: Record<Exclude<Route["name"], "unknown">, Page>) {
    this.pages = pages;
  }

  start(host: HTMLElement): void {
    this.buildShell(host);
    const seconds = pollSeconds(); // read once: the overview rewrites the hash query with its filters
    this.pollMs = seconds * 1000;
    document.documentElement.dataset.pollSeconds = String(seconds);
    window.addEventListener("hashchange", () => void this.render());
    void this.render();
    void this.poll();
    // Ages ("3 days ago") move on while the page stays open.
    window.setInterval(() => {
      for (const el of document.querySelectorAll<HTMLElement>(".js-age[data-generated-at]")) {
        el.textContent = lastUpdatedText(el.dataset.generatedAt ?? "");
      }
    }, 30_000);
  }

  private buildShell(host: HTMLElement): void {
    const skip = h(
      "a",
      {
        class: "skip-link",
        href: "#main",
        onclick: (event: Event) => {
          event.preventDefault(); // the hash is the route: focus the content instead of navigating
          this.main.focus();
        },
      },
      "Skip to content",
    );
    const link = (name: string, href: string, text: string): HTMLAnchorElement => {
      const a = h("a", { href, "data-testid": `nav-${name}`, class: "nav-link" }, text);
      this.navLinks[name] = a;
      return a;
    };
    this.badge = h("span", { class: "badge badge-version", "data-testid": "version-badge", title: "Data version served by this node" }, "…");
    this.conn = h("span", { class: "conn", role: "status", hidden: true }, icon("plug"), "Server unreachable");
    const header = h(
      "header",
      { class: "topbar" },
      h(
        "div",
        { class: "topbar-inner" },
        h("a", { href: "#/", class: "brand", "aria-label": "Site Analytics, overview" }, icon("logo", "brand-logo"), h("span", null, "Site Analytics")),
        h("nav", { class: "nav", "aria-label": "Main" }, link("overview", "#/", "Overview"), link("items", "#/items", "Items"), link("revisions", "#/revisions", "Revisions"), link("data", "#/data", "Data"), link("admin", "#/admin", "Admin")),
        h("div", { class: "topbar-status" }, this.conn, h("span", { class: "badge-label" }, "Data"), this.badge),
      ),
    );
    this.bannerSlot = h("div", { class: "banner-slot" });
    this.main = h("main", { id: "main", tabindex: "-1", class: "main" });
    const footer = h(
      "footer",
      { class: "footer" },
      "Site Analytics shows results precomputed on the ML workstation and served by this appliance. Nothing on these pages is loaded from outside the node.",
    );
    fill(host, skip, header, this.bannerSlot, this.main, footer);
  }

  /** Re-fetch everything: the served version, then the page. */
  async reloadAll(): Promise<void> {
    await this.poll();
    await this.render(false);
  }

  private async render(moveFocus = true): Promise<void> {
    const alias = aliasOf(location.hash);
    if (alias) history.replaceState(history.state, "", alias); // same document: no hashchange
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const route = parseRoute();
    this.displayed = undefined;
    this.rendering = true;
    this.lastFailure = null;
    this.updateBanner();
    for (const [name, a] of Object.entries(this.navLinks)) {
      const active = name === route.name || (name === "items" && route.name === "item");
      if (active) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${TITLES[route.name]} · Site Analytics`;
    const root = h("div", { class: `page page-${route.name}` }, loading());
    fill(this.main, root);
    const ctx: PageContext = {
      root,
      signal: controller.signal,
      params: route.params,
      query: route.query,
      showing: (version) => {
        if (controller.signal.aborted) return;
        this.displayed = version;
        this.setBadge(version);
        this.updateBanner();
      },
      adopt: (version) => {
        if (controller.signal.aborted) return;
        this.served = version;
        this.displayed = version;
        this.setBadge(version);
        this.updateBanner();
      },
      rerender: () => void this.render(false),
    };
    try {
      if (route.name === "unknown") {
        fill(root, pageNotFound(`#/${route.params.join("/")}`)); // the dashboard's own: no request was made
      } else {
        await this.pages[route.name](ctx);
      }
    } catch (err) {
      if (isAbort(err) || controller.signal.aborted) return;
      this.lastFailure = err instanceof ApiError ? err.kind : "error";
      if (err instanceof ApiError && err.kind === "no-data") ctx.showing(null);
      fill(root, errorState(err, { retry: () => void this.reloadAll() }));
    }
    if (controller.signal.aborted) return;
    this.rendering = false;
    if (this.displayed === undefined && this.served !== undefined) {
      this.displayed = this.served;
      this.setBadge(this.served);
    }
    this.updateBanner();
    if (moveFocus && !this.firstRender) {
      const heading = this.main.querySelector<HTMLElement>("h1");
      if (heading) {
        heading.tabIndex = -1;
        heading.focus({ preventScroll: true });
      } else {
        this.main.focus({ preventScroll: true });
      }
      window.scrollTo(0, 0);
    }
    this.firstRender = false;
  }

  private setBadge(version: string | null | undefined): void {
    if (version === undefined) return;
    this.badge.textContent = version ?? "no data";
    this.badge.classList.toggle("badge-empty", version === null);
  }

  /** One look at /data/current (If-None-Match), then the next one is scheduled. */
  private async poll(): Promise<void> {
    window.clearTimeout(this.pollTimer);
    try {
      const answer = await request<DataVersion>("api/v1/data/current", { ifNoneMatch: this.etag });
      this.setOnline(true);
      if (answer.status !== 304 && answer.body) {
        this.etag = answer.etag;
        this.setServed(answer.body.version);
      }
    } catch (err) {
      if (err instanceof ApiError && err.kind === "no-data") {
        this.setOnline(true);
        this.etag = null;
        this.setServed(null);
      } else if (err instanceof ApiError && err.kind === "unreachable") {
        this.setOnline(false);
      } else {
        this.setOnline(true); // 401 and the like: the page shows them
      }
    }
    this.pollTimer = window.setTimeout(() => void this.poll(), this.pollMs);
  }

  private setServed(version: string | null): void {
    this.served = version;
    if (this.displayed === undefined && !this.rendering) this.displayed = version; // a page without versioned data
    if (this.displayed === undefined ? this.badge.textContent === "…" : this.displayed === version) this.setBadge(version);
    this.updateBanner();
  }

  private setOnline(online: boolean): void {
    const wasOffline = !this.online;
    this.online = online;
    this.conn.hidden = online;
    if (online && wasOffline && this.lastFailure === "unreachable") void this.render(false);
  }

  private updateBanner(): void {
    const changed = this.displayed !== undefined && this.served !== undefined && this.served !== this.displayed;
    const existing = this.bannerSlot.querySelector('[data-testid="version-banner"]');
    if (!changed) {
      existing?.remove();
      return;
    }
    const text =
      this.served === null
        ? `The data you are viewing (${this.displayed}) is no longer served: this node has no data version now.`
        : this.displayed === null
          ? `Data is now available: version ${this.served} was imported.`
          : `A new data version is served: ${this.served} (you are viewing ${this.displayed}).`;
    const banner = h(
      "div",
      { class: "banner", "data-testid": "version-banner", role: "status", "aria-live": "polite" },
      h("div", { class: "banner-inner" }, icon("info"), h("span", { class: "banner-text" }, text), h(
        "button",
        { type: "button", class: "btn btn-primary btn-small", "data-testid": "reload-button", onclick: () => void this.reloadAll() },
        icon("refresh"),
        "Reload data",
      )),
    );
    if (existing) existing.replaceWith(banner);
    else this.bannerSlot.append(banner);
  }
}
