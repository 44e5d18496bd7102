// Item: forecast with its interval and the actuals, projected stock, each with a table and a CSV;
// both charts show the same days.
import type { PageContext } from "../app";
import { ApiError, ITEM_ID, apiPath, getJson } from "../api";
import { ChartGroup, type DayWindow, type ForecastChart, forecastChart, generatedDay, inventoryChart, type OtherForecast } from "../charts";
import { fill, h } from "../dom";
import { daySeconds, num, pct, plural, utc } from "../format";
import type { Inventory, ItemRevisionSeries, Timeseries } from "../types";
import { exportLink } from "../download";
import { card, empty, errorState, riskCell, table, traceLine } from "../ui";

function notFound(id: string): ApiError {
  return new ApiError("not-found", 404, `no item ${id}`);
}

export async function itemPage(ctx: PageContext): Promise<void> {
  const id = ctx.params[0] ?? "";
  const notFoundText = `There is no item “${id}” in the data served now. Check the id, or find the item on the Items page.`;
  if (!ITEM_ID.test(id)) {
    ctx.root.replaceChildren(errorState(notFound(id), { notFoundTitle: "Item not found", notFoundText }));
    return;
  }
  const against = ctx.query.get("against") ?? "";
  const [tsResult, invResult, revResult] = await Promise.allSettled([
    getJson<Timeseries>(apiPath(`items/${encodeURIComponent(id)}/timeseries`), ctx.signal),
    getJson<Inventory>(apiPath(`inventory/${encodeURIComponent(id)}`), ctx.signal),
    getJson<ItemRevisionSeries>(apiPath(`items/${encodeURIComponent(id)}/revision`, { against }), ctx.signal),
  ]);
  if (tsResult.status === "rejected" && invResult.status === "rejected") {
    const err = tsResult.reason;
    if (err instanceof ApiError && err.kind === "not-found") {
      ctx.root.replaceChildren(errorState(err, { notFoundTitle: `Item ${id} not found`, notFoundText }));
      return;
    }
    throw err;
  }
  const ts = tsResult.status === "fulfilled" ? tsResult.value : null;
  const inv = invResult.status === "fulfilled" ? invResult.value : null;
  const about = ts ?? inv;
  if (!about) throw notFound(id);
  ctx.showing(about.version);
  document.title = `${about.item_id} · Site Analytics`;

  const cost = inv?.unit_cost;
  const group = new ChartGroup(dayRange(ts, inv, DEFAULT_PAST_DAYS));
  // Another version's forecast of this item, for a second line (when there is one to compare).
  const rev = revResult.status === "fulfilled" && ts && revResult.value.current.version === ts.version ? revResult.value : null;
  const previous = rev?.against && rev.against_yhat.some((v) => v !== null) ? new PreviousLine(rev, against !== "") : null;
  const revFailed = against && revResult.status === "rejected" ? revResult.reason : null;
  fill(
    ctx.root,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/items" }, "Items"), h("span", { "aria-hidden": "true" }, " / "), h("span", { "aria-current": "page" }, about.item_id)),
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        null,
        h("h1", { "data-testid": "item-title" }, h("span", { class: "mono" }, about.item_id), h("span", { class: "title-sep", "aria-hidden": "true" }, " — "), about.name),
        h(
          "div",
          { class: "chips" },
          h("span", { class: "chip" }, "Category ", h("strong", null, about.category)),
          h("span", { class: "chip" }, "Site ", h("strong", null, about.site)),
          h("span", { class: "chip" }, "Unit ", h("strong", null, about.unit)),
          inv ? h("span", { class: "chip" }, "Lead time ", h("strong", null, `${inv.lead_time_days} days`)) : null,
          cost !== null && cost !== undefined ? h("span", { class: "chip" }, "Unit cost ", h("strong", null, num(cost, 2))) : null,
        ),
      ),
    ),
    inv ? positionStrip(inv) : null,
    ts?.points || inv?.dates.length ? windowBar(ts, inv, group) : null,
    ts ? forecastCard(ts, previous, revFailed) : card("Demand forecast", {}, errorState(tsResult.status === "rejected" ? tsResult.reason : null)),
    inv ? inventoryCard(inv) : card("Projected stock", {}, errorState(invResult.status === "rejected" ? invResult.reason : null)),
  );
  // Charts need their container in the document to know their width.
  if (ts?.points) {
    mountChart(ctx, () => {
      const chart = forecastChart(ctx.root.querySelector<HTMLElement>('[data-testid="forecast-chart"]')!, ts, group, previous?.line() ?? null);
      previous?.attach(chart);
      return chart;
    });
  }
  if (inv?.dates.length) mountChart(ctx, () => inventoryChart(ctx.root.querySelector<HTMLElement>('[data-testid="inventory-chart"]')!, inv, group));
}

/**
 * The earlier version's forecast as a second line on the demand chart: off until its checkbox (or
 * its legend entry) turns it on; on from the start when the URL names the version (`?against=`,
 * as the revisions page links). The choice is kept in the URL.
 */
class PreviousLine {
  readonly rev: ItemRevisionSeries;
  readonly version: string;
  readonly toggle: HTMLInputElement;
  private chart: ForecastChart | null = null;

  constructor(rev: ItemRevisionSeries, shown: boolean) {
    this.rev = rev;
    this.version = rev.against?.version ?? "";
    this.toggle = h("input", { type: "checkbox", id: "previous-toggle", "data-testid": "previous-toggle" });
    this.toggle.checked = shown;
    this.toggle.addEventListener("change", () => {
      this.chart?.showOther(this.toggle.checked);
      this.keep(this.toggle.checked);
    });
  }

  line(): OtherForecast {
    return {
      label: `${this.version} forecast`,
      dates: this.rev.dates,
      yhat: this.rev.against_yhat,
      shown: this.toggle.checked,
      toggled: (shown) => {
        this.toggle.checked = shown;
        this.keep(shown);
      },
    };
  }

  attach(chart: ForecastChart): void {
    this.chart = chart;
  }

  /** The URL says whether the line is on (`?against=<version>`), so a reload or a link keeps it. */
  private keep(shown: boolean): void {
    const base = location.hash.replace(/\?.*$/, "");
    history.replaceState(history.state, "", shown ? `${base}?against=${encodeURIComponent(this.version)}` : base);
  }

  control(): HTMLElement {
    return h("label", { class: "check previous-check", for: "previous-toggle" }, this.toggle, `Show ${this.version}'s forecast`);
  }

  /** What the line is, and how the two versions' totals differ over the days both forecast. */
  note(unit: string): HTMLElement {
    const a = this.rev.against!;
    const r = this.rev.revision;
    const w = this.rev.window;
    const totals =
      r && w && r.forecast_total_against !== null && r.forecast_total_current !== null
        ? ` Over the ${plural(w.days, "day")} both forecast (${w.start} to ${w.end}) it totals ${num(r.forecast_total_against, 1)} ${unit}, this version ${num(r.forecast_total_current, 1)} ${unit}` +
          (r.forecast_change_pct !== null ? ` (${r.forecast_change_pct > 0 ? "+" : ""}${num(r.forecast_change_pct, 1)}%).` : ".")
        : "";
    return h(
      "p",
      { class: "chart-note muted small", "data-testid": "previous-note" },
      `Dotted line, when turned on: the forecast of ${a.version} (generated ${utc(a.generated_at)}, model ${a.model_version}) on the same days, including its backtest.${totals} `,
      h("a", { href: `#/revisions?against=${encodeURIComponent(a.version)}` }, "Every item's revision"),
    );
  }
}

function mountChart(ctx: PageContext, make: () => { destroy(): void }): void {
  const chart = make();
  ctx.signal.addEventListener("abort", () => chart.destroy(), { once: true });
}

const DAY = 86400;
const DEFAULT_PAST_DAYS = 90;
const PAST_CHOICES: [number | null, string][] = [
  [30, "30 days back"],
  [90, "90 days back"],
  [null, "All days"],
];

/** The days both charts show: from `past` days before the data was generated (all if null) to the last day either has. */
function dayRange(ts: Timeseries | null, inv: Inventory | null, past: number | null): DayWindow {
  const days = [...(ts?.dates ?? []), ...(inv?.dates ?? [])].map(daySeconds);
  if (!days.length) return { min: 0, max: DAY };
  const first = Math.min(...days);
  const last = Math.max(...days);
  const generated = generatedDay((ts ?? inv)!.generated_at);
  const min = past === null ? first : Math.min(Math.max(first, generated - past * DAY), last);
  return { min, max: Math.max(last, min + DAY) };
}

/** The days shown in both charts: a few choices, the same for both. */
function windowBar(ts: Timeseries | null, inv: Inventory | null, group: ChartGroup): HTMLElement {
  const buttons = PAST_CHOICES.map(([past, text]) => {
    const button = h(
      "button",
      { type: "button", class: "seg", "data-testid": `window-${past ?? "all"}`, "aria-pressed": past === DEFAULT_PAST_DAYS ? "true" : "false" },
      text,
    );
    button.addEventListener("click", () => {
      const range = dayRange(ts, inv, past);
      group.show(range.min, range.max);
      for (const b of buttons) b.setAttribute("aria-pressed", b === button ? "true" : "false");
    });
    return button;
  });
  return h(
    "div",
    { class: "window-bar", role: "group", "aria-label": "Days shown in both charts" },
    h("span", { class: "window-label" }, "Days shown"),
    h("div", { class: "segmented" }, buttons),
    h("span", { class: "muted small" }, "Both charts show the same days, up to the end of the horizon; drag across a chart to zoom, double-click to see every day."),
  );
}

/**
 * The item's rows of a table of the version on screen, as the node exports them (CSV and
 * Parquet): the same rows the chart shows, with every column of the pack.
 */
function itemExports(table: string, about: { item_id: string; version: string }, what: string): HTMLElement[] {
  const status = h("span", { class: "export-status muted small", "data-testid": "export-status", role: "status", "aria-live": "polite" });
  const say = (text: string, ok: boolean): void => {
    status.textContent = text;
    status.dataset.state = ok ? "ok" : "error";
  };
  const query = `item=${encodeURIComponent(about.item_id)}&version=${encodeURIComponent(about.version)}`;
  const link = (format: "csv" | "parquet", text: string): HTMLAnchorElement =>
    exportLink(`api/v1/export/${table}.${format}?${query}`, text, `Download the ${what} of ${about.item_id} as ${text}`, { "data-testid": format === "csv" ? "csv-download" : "parquet-download", "data-table": table }, say);
  return [status, link("csv", "CSV"), link("parquet", "Parquet")];
}

function positionStrip(inv: Inventory): HTMLElement {
  const u = ` ${inv.unit}`;
  const stat = (label: string, value: HTMLElement | string, tone = ""): HTMLElement =>
    h("div", { class: `stat ${tone}`.trim() }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value));
  const below = inv.first_below_reorder_point;
  return h(
    "section",
    { class: "stats", "aria-label": "Stock position now" },
    stat("On hand now", `${num(inv.on_hand_now, 1)}${u}`),
    stat("Reorder point", `${num(inv.reorder_point, 1)}${u}`),
    stat("Safety stock", `${num(inv.safety_stock, 1)}${u}`),
    stat("Days of cover", num(inv.days_of_cover_now, 1)),
    stat("Highest stock-out risk", riskCell(inv.max_stockout_risk)),
    stat("First day below reorder point", below ?? "not in horizon", below ? "stat-warn" : ""),
  );
}

function chartBox(testid: string, points: number, label: string): HTMLElement {
  return h("div", { class: "chart", "data-testid": testid, "data-points": String(points), role: "img", "aria-label": label });
}

function scrollTable(label: string, t: HTMLTableElement): HTMLElement {
  return h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": label }, t);
}

/**
 * The rows of a daily table in reading order: the days ahead first, from the next day on, then
 * the past days from the newest back, so the horizon is at the top and nothing needs a long scroll.
 */
function aheadFirst<R extends { date: string }>(rows: R[], generatedAt: string): R[] {
  const today = utc(generatedAt).slice(0, 10);
  const ahead = rows.filter((r) => r.date > today);
  const past = rows.filter((r) => r.date <= today).reverse();
  return [...ahead, ...past];
}

function dayGroup(today: string, ahead: number, past: number) {
  return (r: { date: string }): string =>
    r.date > today ? `Days ahead: the forecast, ${plural(ahead, "day")}` : `Past days, newest first: the backtest and the actual demand, ${plural(past, "day")}`;
}

function forecastCard(ts: Timeseries, previous: PreviousLine | null, revFailed: unknown): HTMLElement {
  const today = utc(ts.generated_at).slice(0, 10);
  const observed = ts.actual.filter((v) => v !== null).length;
  const none = ts.actual.filter((v) => v === 0).length;
  const aheadDays = ts.dates.filter((d) => d > today).length;
  const first = ts.dates[0];
  const last = ts.dates[ts.dates.length - 1];
  const label =
    ts.points === 0
      ? `Chart of the daily demand forecast for ${ts.item_id}: no days in this data version.`
      : `Chart of the daily demand of ${ts.item_id} (${ts.name}) in ${ts.unit}, ${ts.points} days from ${first} to ${last}: ` +
        `the forecast for the ${aheadDays} days ahead and, over the past days, the backtest, each with its interval from lower to upper bound, ` +
        `and ${observed} days of actual demand as bars. The same numbers are in the table below the chart.`;
  const rows = ts.dates.map((date, i) => ({ date, yhat: ts.yhat[i], lower: ts.yhat_lower[i], upper: ts.yhat_upper[i], actual: ts.actual[i] }));
  type Row = (typeof rows)[number];
  const columns = [
    { label: "Date", cell: (r: Row) => r.date },
    { label: `Forecast (${ts.unit})`, num: true, cell: (r: Row) => num(r.yhat, 3) },
    { label: "Lower bound", num: true, cell: (r: Row) => num(r.lower, 3) },
    { label: "Upper bound", num: true, cell: (r: Row) => num(r.upper, 3) },
    { label: "Actual", num: true, cell: (r: Row) => num(r.actual, 3) },
  ];
  return card(
    "Demand forecast",
    {
      sub: traceLine(ts),
      actions: [previous?.control(), ...itemExports("fact_forecast", ts, "forecast")],
      cls: "card-chart",
    },
    ts.points ? chartBox("forecast-chart", ts.points, label) : h("div", { "data-testid": "forecast-chart", "data-points": "0" }, empty("No forecast days for this item.")),
    h(
      "p",
      { class: "chart-note muted small", "data-testid": "forecast-note" },
      `Daily ${ts.unit}, UTC days. Solid line: the forecast for the days ahead. Dashed line over the past days: the backtest, what the model forecast for days whose demand is now known, to compare with what happened. ` +
        `Shaded: the forecast interval. Bars: actual demand (${plural(observed, "day")} observed, ${num(none, 0)} of them without demand, which draw no bar). ` +
        `Dashed vertical line: when the data was generated (${utc(ts.generated_at)}).`,
    ),
    previous?.note(ts.unit),
    revFailed ? h("p", { class: "chart-note muted small", "data-testid": "previous-note" }, `No other version's forecast to draw: ${revFailed instanceof Error ? revFailed.message : String(revFailed)}.`) : null,
    scrollTable(
      `Forecast table of ${ts.item_id}`,
      table(`Forecast of ${ts.item_id}, ${ts.points} days, in ${ts.unit}: the days ahead first, then the past days from the newest`, columns, aheadFirst(rows, ts.generated_at), {
        testid: "forecast-table",
        captionHidden: true,
        cls: "table-compact",
        groupOf: dayGroup(today, aheadDays, ts.points - aheadDays),
        rowAttrs: (r) => ({ "data-testid": "table-row", "data-date": r.date }),
      }),
    ),
  );
}

function inventoryCard(inv: Inventory): HTMLElement {
  const n = inv.dates.length;
  const today = utc(inv.generated_at).slice(0, 10);
  const aheadDays = inv.dates.filter((d) => d > today).length;
  const label =
    n === 0
      ? `Chart of the projected stock of ${inv.item_id}: no days in this data version.`
      : `Chart of the projected stock on hand of ${inv.item_id} (${inv.name}) in ${inv.unit}, ${n} days from ${inv.dates[0]} to ${inv.dates[n - 1]}, ` +
        `with horizontal lines at the reorder point (${num(inv.reorder_point, 1)}) and the safety stock (${num(inv.safety_stock, 1)}). ` +
        `The same numbers are in the table below the chart.`;
  const rows = inv.dates.map((date, i) => ({ date, onHand: inv.on_hand[i], cover: inv.days_of_cover[i], risk: inv.stockout_risk[i] }));
  type Row = (typeof rows)[number];
  const columns = [
    { label: "Date", cell: (r: Row) => r.date },
    { label: `On hand (${inv.unit})`, num: true, cell: (r: Row) => num(r.onHand, 1) },
    { label: "Reorder point", num: true, cell: () => num(inv.reorder_point, 1) },
    { label: "Safety stock", num: true, cell: () => num(inv.safety_stock, 1) },
    { label: "Days of cover", num: true, cell: (r: Row) => num(r.cover, 1) },
    { label: "Stock-out risk", num: true, cell: (r: Row) => pct(r.risk, 1) },
  ];
  return card(
    "Projected stock",
    {
      sub: traceLine(inv),
      actions: itemExports("fact_inventory", inv, "projected stock"),
      cls: "card-chart",
    },
    n ? chartBox("inventory-chart", n, label) : h("div", { "data-testid": "inventory-chart", "data-points": "0" }, empty("No projected stock for this item.")),
    h("p", { class: "chart-note muted small" }, "Projected units on hand per UTC day, over the days ahead only (the past has no projection). Dashed lines: reorder point and safety stock."),
    scrollTable(
      `Projected stock table of ${inv.item_id}`,
      table(`Projected stock of ${inv.item_id}, ${n} days, in ${inv.unit}`, columns, aheadFirst(rows, inv.generated_at), {
        testid: "inventory-table",
        captionHidden: true,
        cls: "table-compact",
        groupOf: aheadDays === n ? undefined : dayGroup(today, aheadDays, n - aheadDays),
        rowAttrs: (r) => ({ "data-testid": "table-row", "data-date": r.date }),
      }),
    ),
  );
}
