// Overview: KPI cards, category/site filters, the items most at risk of a stock-out, item search.
import type { PageContext } from "../app";
import { apiPath, getJson, isAbort } from "../api";
import { fill, h, icon } from "../dom";
import { num, pct, period, plural } from "../format";
import type { ForecastSummary, ItemSummary, ItemsPage, Kpi } from "../types";
import { card, empty, errorState, filterSelect, itemLink, loading, riskCell, table, traceLine } from "../ui";
import { itemsHash } from "./items";

const RISK_LIMIT = 10;
const SEARCH_LIMIT = 20;

interface Filters {
  category: string;
  site: string;
}

interface KpiInfo {
  label: string;
  ratio: boolean;
  short: string; // under the value
  hint: string; // tooltip
  signed?: boolean;
  counts?: boolean;
  ahead?: boolean;
  order: number;
}

// Ratios are shown as percentages; anything unknown is shown as a plain number, after the known ones.
// `ahead`: a figure about the days to come, not about how good the forecast was: it goes with the
// stock and demand counts. `counts`: a whole number of items or units.
const KPI_INFO: Record<string, KpiInfo> = {
  wape: { label: "WAPE", ratio: true, short: "lower is better", hint: "Weighted absolute percentage error: the absolute errors of all days added up, divided by the total demand. Days without demand count with their error, so it suits intermittent demand", order: 1 },
  mape: { label: "MAPE", ratio: true, short: "lower is better", hint: "Mean absolute percentage error: the average of each day's error as a share of that day's demand. A day without demand has no percentage, so those days are left out, and small issues weigh heavily: with intermittent demand it runs high", order: 2 },
  smape: { label: "sMAPE", ratio: true, short: "lower is better", hint: "Symmetric mean absolute percentage error", order: 3 },
  bias: { label: "Bias", ratio: true, signed: true, short: "0% is unbiased", hint: "Total forecast minus total actual demand, relative to the actual: above 0% the forecast was too high", order: 4 },
  coverage: { label: "Coverage", ratio: true, short: "actuals in interval", hint: "Share of days whose actual demand fell inside the forecast interval", order: 5 },
  service_level: { label: "Service level", ratio: true, short: "", hint: "Demand served from stock", order: 6 },
  fill_rate: { label: "Fill rate", ratio: true, short: "", hint: "Units served from stock", order: 7 },
  forecast_units: { label: "Units", ratio: false, counts: true, ahead: true, short: "forecast total", hint: "Sum of the daily forecasts, as the workstation computed it", order: 8 },
  stockout_items: { label: "Stock-outs", ratio: false, counts: true, ahead: true, short: "items expected to run short", hint: "Items whose stock-out risk reaches the workstation's threshold within the period, as the workstation computed it", order: 9 },
};

function kpiInfo(metric: string): KpiInfo {
  return (
    KPI_INFO[metric] ?? {
      label: metric.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()),
      ratio: false,
      short: "",
      hint: metric,
      order: 100,
    }
  );
}

function kpiCard(metric: string, label: string, value: string, sub: string, tone = "", title = ""): HTMLElement {
  return h(
    "div",
    { class: `kpi ${tone}`.trim(), "data-testid": "kpi-card", "data-metric": metric, title: title || null },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value),
    h("div", { class: "kpi-sub" }, sub),
  );
}

function summaryPath(f: Filters): string {
  return apiPath("forecasts/summary", { category: f.category, site: f.site });
}

function riskPath(f: Filters): string {
  return apiPath("items", { sort: "risk", limit: RISK_LIMIT, category: f.category, site: f.site });
}

export async function overviewPage(ctx: PageContext): Promise<void> {
  const filters: Filters = { category: ctx.query.get("category") ?? "", site: ctx.query.get("site") ?? "" };
  const [summary, risky] = await Promise.all([
    getJson<ForecastSummary>(summaryPath(filters), ctx.signal),
    getJson<ItemsPage>(riskPath(filters), ctx.signal),
  ]);

  const trace = h("div", { class: "page-trace" });
  const toolbarStatus = h("div", { class: "toolbar-status", "aria-live": "polite" });
  const kpiSlot = h("div", { class: "kpi-slot" });
  const riskSlot = h("div", { class: "risk-slot" });

  const categorySelect = filterSelect("filter-category", "All categories", summary.categories, filters.category);
  const siteSelect = filterSelect("filter-site", "All sites", summary.sites, filters.site);

  let seq = 0;
  let pending: AbortController | null = null;
  const show = (s: ForecastSummary, r: ItemsPage): void => {
    fill(trace, traceLine(s.data));
    fill(kpiSlot, kpiSection(s));
    fill(riskSlot, riskSection(s, r, filters));
    ctx.showing(s.data.version);
  };
  const reload = async (): Promise<void> => {
    seq += 1;
    const mine = seq;
    pending?.abort();
    const controller = new AbortController();
    pending = controller;
    ctx.signal.addEventListener("abort", () => controller.abort(), { once: true });
    const query = new URLSearchParams();
    if (filters.category) query.set("category", filters.category);
    if (filters.site) query.set("site", filters.site);
    const qs = query.toString();
    history.replaceState(history.state, "", `#/${qs ? `?${qs}` : ""}`);
    fill(toolbarStatus, loading("Updating…"));
    kpiSlot.setAttribute("aria-busy", "true");
    riskSlot.setAttribute("aria-busy", "true");
    try {
      const [s, r] = await Promise.all([
        getJson<ForecastSummary>(summaryPath(filters), controller.signal),
        getJson<ItemsPage>(riskPath(filters), controller.signal),
      ]);
      if (mine !== seq) return;
      show(s, r);
    } catch (err) {
      if (isAbort(err) || mine !== seq) return;
      fill(kpiSlot, errorState(err, { retry: () => void reload() }));
      riskSlot.replaceChildren();
    } finally {
      if (mine === seq) {
        toolbarStatus.replaceChildren();
        kpiSlot.removeAttribute("aria-busy");
        riskSlot.removeAttribute("aria-busy");
      }
    }
  };
  const clear = h("button", { type: "button", class: "btn btn-link", hidden: !filters.category && !filters.site }, "Clear filters");
  const syncClear = (): void => {
    clear.hidden = !filters.category && !filters.site;
  };
  clear.addEventListener("click", () => {
    filters.category = "";
    filters.site = "";
    categorySelect.value = "";
    siteSelect.value = "";
    syncClear();
    categorySelect.focus();
    void reload();
  });
  categorySelect.addEventListener("change", () => {
    filters.category = categorySelect.value;
    syncClear();
    void reload();
  });
  siteSelect.addEventListener("change", () => {
    filters.site = siteSelect.value;
    syncClear();
    void reload();
  });

  const toolbar = h(
    "div",
    { class: "toolbar", role: "group", "aria-label": "Filters" },
    h("div", { class: "field" }, h("label", { for: "filter-category" }, "Category"), categorySelect),
    h("div", { class: "field" }, h("label", { for: "filter-site" }, "Site"), siteSelect),
    toolbarStatus,
    clear,
    h("p", { class: "toolbar-note" }, "Filters apply to the key figures and to the risk list."),
  );

  fill(
    ctx.root,
    h("div", { class: "page-head" }, h("div", null, h("h1", null, "Overview"), trace)),
    toolbar,
    kpiSlot,
    h("div", { class: "overview-grid" }, riskSlot, searchSection(ctx)),
  );
  show(summary, risky);
}

/** What a KPI scope covers, in words ("all items", "category Radio"); `none`: no scope has KPIs. */
export function scopeWords(s: ForecastSummary): string {
  switch (s.kpi_scope) {
    case "global":
      return "all items";
    case "category":
      return `category ${s.category ?? ""}`.trim();
    case "site":
      return `site ${s.site ?? ""}`.trim();
    default:
      return s.kpi_scope.replace(/_/g, " ");
  }
}

/** The node's own 30-day total, which a `forecast_units` KPI over the same days only repeats. */
const NODE_UNITS_PERIOD = "next_30d";

function kpiSection(s: ForecastSummary): HTMLElement {
  const where = s.category && s.site ? `${s.category} at ${s.site}` : s.category ? `category ${s.category}` : s.site ? `site ${s.site}` : "all items";
  const sorted = [...s.kpis].sort((a, b) => kpiInfo(a.metric).order - kpiInfo(b.metric).order || a.metric.localeCompare(b.metric));
  // Figures about the days ahead are stock and demand, not forecast quality.
  const ahead = sorted.filter((k) => kpiInfo(k.metric).ahead || k.period.startsWith("next_"));
  const quality = sorted.filter((k) => !ahead.includes(k));
  const repeat = ahead.find((k) => k.metric === "forecast_units" && k.period === NODE_UNITS_PERIOD);
  const counts = [
    kpiCard("items", "Items", num(s.items, 0), where),
    kpiCard("items_at_risk", "Items at risk", num(s.items_at_risk, 0), "risk ≥ 50%, whole horizon", s.items_at_risk > 0 ? "kpi-warn" : "", "Items whose projected stock-out risk reaches 50% on some day of the horizon"),
    kpiCard(
      "forecast_units_next_30d",
      "Units, next 30 days",
      num(s.forecast_units_next_30d, 0),
      "forecast total",
      "",
      `Sum of the forecast over the next 30 days, all items in scope${repeat ? ` (the workstation's forecast_units KPI: ${num(repeat.value, 1)})` : ""}`,
    ),
    ...ahead
      .filter((k) => k !== repeat)
      .map((k) => {
        const info = kpiInfo(k.metric);
        const value = info.ratio ? pct(k.value, 1, info.signed) : num(k.value, info.counts ? 0 : 1);
        return kpiCard(k.metric, `${info.label}, ${period(k.period)}`, value, info.short || period(k.period), "", `${info.hint} (${period(k.period)})`);
      }),
  ];
  // The period most quality KPIs share goes in the heading; a card names its own only when it differs.
  const periods = new Map<string, number>();
  for (const k of quality) periods.set(k.period, (periods.get(k.period) ?? 0) + 1);
  const main = [...periods.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
  const cards = quality.map((k: Kpi) => {
    const info = kpiInfo(k.metric);
    const value = info.ratio ? pct(k.value, 1, info.signed) : num(k.value, info.counts ? 0 : 1);
    const sub = k.period !== main ? period(k.period) : info.short || period(k.period);
    return kpiCard(k.metric, info.label, value, sub, "kpi-quality", `${info.hint} (${period(k.period)})`);
  });
  const intermittent = quality.some((k) => k.metric === "mape" || k.metric === "wape")
    ? h(
        "p",
        { class: "kpi-note", "data-testid": "kpi-note" },
        "Spare-part demand is intermittent: many days have none. WAPE (all errors ÷ all demand) stays meaningful; MAPE cannot use days without demand and runs high. Hover a card for its definition.",
      )
    : null;
  const qualityBody = cards.length
    ? [h("div", { class: "kpi-grid" }, cards), intermittent]
    : s.kpi_scope === "none"
      ? empty("The workstation computes these figures for all items, per category and per site, not for a category and a site together. Clear one of the two filters to see them.")
      : empty("No forecast-quality figures in this data version for this scope.");
  const qualityTitle =
    s.kpi_scope === "none"
      ? " · not computed for a category and a site together"
      : [main ? period(main) : "", `for ${scopeWords(s)}`].filter(Boolean).map((x) => ` · ${x}`).join("");
  return h(
    "section",
    { class: "kpis", "aria-label": "Key figures" },
    h("div", { class: "kpi-group kpi-group-counts", style: `--cards:${counts.length}` }, h("h2", { class: "section-title" }, "Stock and demand"), h("div", { class: "kpi-grid" }, counts)),
    h(
      "div",
      { class: "kpi-group kpi-group-quality", style: `--cards:${Math.max(cards.length, 3)}`, "data-scope": s.kpi_scope },
      h("h2", { class: "section-title" }, "Forecast quality", h("span", { class: "muted", "data-testid": "kpi-scope" }, qualityTitle)),
      qualityBody,
    ),
  );
}

function riskSection(s: ForecastSummary, page: ItemsPage, f: Filters): HTMLElement {
  const columns = [
    { label: "Item", cell: (r: ItemSummary) => itemLink(r) },
    {
      label: "Name",
      cell: (r: ItemSummary) => [
        h("span", { class: "name" }, r.name),
        h("span", { class: "show-narrow muted small" }, `${r.category} · ${r.site}`),
      ],
    },
    { label: "Category", cls: "hide-narrow", cell: (r: ItemSummary) => r.category },
    { label: "Site", cls: "hide-narrow", cell: (r: ItemSummary) => r.site },
    { label: "Stock-out risk", num: true, cell: (r: ItemSummary) => riskCell(r.max_stockout_risk) },
    { label: "Cover, days", num: true, cell: (r: ItemSummary) => num(r.days_of_cover_now, 1) },
    { label: "Next 30 days", num: true, cell: (r: ItemSummary) => h("span", null, num(r.forecast_next_30d, 0), h("span", { class: "unit" }, ` ${r.unit}`)) },
  ];
  const where = [f.category, f.site].filter(Boolean).join(", ") || "all items";
  const all = h(
    "a",
    { class: "btn btn-small", href: itemsHash({ category: f.category, site: f.site, sort: "risk" }), "data-testid": "all-items-link" },
    `All ${plural(page.total, "item")}`,
  );
  const content = page.items.length
    ? h(
        "div",
        { class: "table-wrap" },
        table("Items with the highest stock-out risk", columns, page.items, {
          captionHidden: true,
          cls: "table-risk",
          rowAttrs: (r) => ({ "data-testid": "risk-row", "data-item-id": r.item_id }),
        }),
      )
    : empty("No items match these filters.");
  return card(
    "Highest stock-out risk",
    {
      sub: page.items.length
        ? `Top ${page.items.length} of ${plural(page.total, "item")} (${where}), by the highest projected risk over the horizon`
        : `No items (${where})`,
      cls: "card-risk",
      actions: page.total > page.items.length ? all : null,
    },
    content,
    page.items.length && s.items_at_risk === 0 ? h("p", { class: "muted small pad" }, "No item reaches a stock-out risk of 50% in this scope.") : null,
  );
}

function searchSection(ctx: PageContext): HTMLElement {
  const input = h("input", {
    type: "search",
    id: "item-search",
    "data-testid": "search-input",
    class: "input",
    placeholder: "Id or name, e.g. battery",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "item-search-status",
  });
  const status = h("p", { id: "item-search-status", class: "muted small", "aria-live": "polite" }, "Type part of an item id or name.");
  const results = h("ul", { class: "results", "aria-label": "Search results" });
  let timer = 0;
  let seq = 0;
  let pending: AbortController | null = null;
  let lastQuery = "";

  const run = async (): Promise<void> => {
    window.clearTimeout(timer);
    const q = input.value.trim();
    if (q === lastQuery) return;
    lastQuery = q;
    seq += 1;
    const mine = seq;
    pending?.abort();
    if (!q) {
      results.replaceChildren();
      status.textContent = "Type part of an item id or name.";
      return;
    }
    const controller = new AbortController();
    pending = controller;
    ctx.signal.addEventListener("abort", () => controller.abort(), { once: true });
    status.textContent = "Searching…";
    try {
      const page = await getJson<ItemsPage>(apiPath("items", { q, limit: SEARCH_LIMIT }), controller.signal);
      if (mine !== seq) return;
      fill(
        results,
        page.items.map((item) =>
          h(
            "li",
            null,
            h(
              "a",
              { href: `#/items/${encodeURIComponent(item.item_id)}`, class: "result", "data-testid": "search-result", "data-item-id": item.item_id },
              h("span", { class: "result-main" }, h("span", { class: "mono" }, item.item_id), h("span", { class: "result-name" }, item.name)),
              h("span", { class: "result-meta" }, `${item.category} · ${item.site}`, riskCell(item.max_stockout_risk)),
            ),
          ),
        ),
      );
      status.textContent =
        page.total === 0
          ? `No item matches “${q}”.`
          : page.total > page.items.length
            ? `Showing ${page.items.length} of ${plural(page.total, "matching item")}.`
            : `${plural(page.total, "matching item")}.`;
    } catch (err) {
      if (isAbort(err) || mine !== seq) return;
      lastQuery = "";
      results.replaceChildren();
      status.textContent = `Search failed: ${err instanceof Error ? err.message : String(err)}.`;
    }
  };
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void run(), 250);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      void run();
    }
  });
  ctx.signal.addEventListener("abort", () => window.clearTimeout(timer), { once: true });

  return card(
    "Find an item",
    { cls: "card-search", sub: h("span", null, "Search every item by id or name, or browse them all on the ", h("a", { href: "#/items" }, "Items"), " page.") },
    h(
      "div",
      { class: "search" },
      h("label", { for: "item-search", class: "sr-only" }, "Search items"),
      h("div", { class: "input-icon" }, icon("search"), input),
      status,
      results,
    ),
  );
}
