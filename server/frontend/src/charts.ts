// The two charts of the item page, drawn with uPlot (canvas), sized to their container. They share
// one date window and one cursor, so a day reads the same in both.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { dayOf, daySeconds, num } from "./format";
import type { Inventory, Timeseries } from "./types";

const COLORS = {
  forecast: "#2f5fc4",
  backtest: "#7f9bd6",
  previous: "#b15fc4",
  band: "rgba(47, 95, 196, 0.16)",
  bandEdge: "rgba(47, 95, 196, 0.35)",
  actual: "#3d4654",
  actualBar: "rgba(61, 70, 84, 0.55)",
  onHand: "#178a6b",
  onHandFill: "rgba(23, 138, 107, 0.10)",
  reorder: "#c26a00",
  safety: "#c23030",
  marker: "#8a94a6",
  grid: "#e9edf2",
  axis: "#5b6472",
};

const NO_POINTS = { show: false };
const DAY = 86400;
const SYNC_KEY = "item-days";

const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

function axes(unit: string): uPlot.Axis[] {
  const common = {
    stroke: COLORS.axis,
    font: FONT,
    grid: { stroke: COLORS.grid, width: 1 },
    ticks: { stroke: COLORS.grid, width: 1, size: 4 },
  };
  return [
    { ...common, values: timeLabels, space: 60 },
    {
      ...common,
      label: unit,
      labelFont: FONT,
      labelSize: 18,
      size: 56,
      values: (_u, splits) => splits.map((v) => num(v, 2)),
    },
  ];
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** x tick labels in UTC: "Nov 24" for day steps, "Nov" for month steps; the year under the first tick and each January. */
function timeLabels(_u: uPlot, splits: number[], _axis: number, _space: number, incr: number): string[] {
  const monthly = incr >= 28 * DAY;
  let lastYear = -1;
  return splits.map((v) => {
    const d = new Date(v * 1000);
    const year = d.getUTCFullYear();
    const label = monthly ? MONTHS[d.getUTCMonth()] : `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    const withYear = year !== lastYear;
    lastYear = year;
    return withYear ? `${label}\n${year}` : label;
  });
}

const utcDate = (ts: number): Date => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

/** The first index of `xs` at or after `day` (the last index if none is). */
function indexFrom(xs: number[], day: number): number {
  const at = xs.findIndex((x) => x >= day);
  return at < 0 ? xs.length - 1 : at;
}

/**
 * Legend values: the day under the cursor, and while the cursor is elsewhere the "focus" day (the
 * day the data was generated, or the first day after it that the chart has), so the legend shows
 * numbers before anything is hovered.
 */
function legendValue(focus: number, digits: number | "day", today = 0) {
  return (u: uPlot, v: number | null, seriesIdx: number, idx: number | null): string => {
    const value = idx === null ? ((u.data[seriesIdx]?.[focus] as number | null | undefined) ?? null) : v;
    if (value === null || value === undefined) return "–";
    if (digits !== "day") return num(value, digits);
    if (idx !== null) return dayOf(value);
    return `${dayOf(value)} (${value === today ? "the day the data was generated" : "the first day ahead"})`;
  };
}

/** A dashed vertical line where the data was generated: left of it the past, right of it the days ahead. */
function generatedMarker(at: number) {
  return (u: uPlot): void => {
    const x = Math.round(u.valToPos(at, "x", true));
    const { left, top, width, height } = u.bbox;
    if (x < left || x > left + width) return;
    const ctx = u.ctx;
    const ratio = uPlot.pxRatio;
    ctx.save();
    ctx.strokeStyle = COLORS.marker;
    ctx.lineWidth = ratio;
    ctx.setLineDash([4 * ratio, 4 * ratio]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLORS.axis;
    ctx.font = FONT.replace("12px", `${11 * ratio}px`);
    ctx.textBaseline = "top";
    const label = "generated";
    const w = ctx.measureText(label).width;
    ctx.fillText(label, x + 4 * ratio + w > left + width ? x - w - 4 * ratio : x + 4 * ratio, top + 4 * ratio);
    ctx.restore();
  };
}

/** The days both charts show, in unix seconds (UTC midnights); shared and changed together. */
export interface DayWindow {
  min: number;
  max: number;
}

export interface Chart {
  destroy(): void;
}

/**
 * The item page's charts as one group: the same date window (`show`), the same cursor (uPlot's
 * sync), and a drag-zoom in one is the zoom of the other.
 */
export class ChartGroup {
  readonly window: DayWindow;
  private plots: uPlot[] = [];
  private following = false;

  constructor(window: DayWindow) {
    this.window = { ...window };
  }

  /** Show the days from `min` to `max` in every chart of the group. */
  show(min: number, max: number): void {
    this.window.min = min;
    this.window.max = max;
    for (const plot of this.plots) plot.setScale("x", { min, max });
  }

  /** The setScale hook that carries one chart's zoom (a drag, a double click) to the others. */
  follow(): (u: uPlot, key: string) => void {
    return (u, key) => {
      if (key !== "x" || this.following || !this.plots.includes(u)) return; // not while it is made
      const { min, max } = u.scales.x;
      if (min === undefined || max === undefined) return;
      this.following = true;
      for (const other of this.plots) if (other !== u) other.setScale("x", { min, max });
      this.following = false;
    };
  }

  /** Join the group, showing its window. */
  add(plot: uPlot): void {
    plot.setScale("x", { min: this.window.min, max: this.window.max });
    this.plots.push(plot);
  }

  remove(plot: uPlot): void {
    this.plots = this.plots.filter((p) => p !== plot);
  }
}

/** Mount a chart in `host`, following its width; `destroy` frees it (route change). */
function mount(host: HTMLElement, group: ChartGroup, opts: Omit<uPlot.Options, "width" | "height">, data: uPlot.AlignedData): Chart {
  const width = (): number => Math.max(280, Math.floor(host.clientWidth || 600));
  const height = (): number => (window.innerWidth < 820 ? 240 : 280);
  // The days shown, on the host as data-shown-from/-to (YYYY-MM-DD), for people's tools and tests.
  const noteShown = (u: uPlot, key: string): void => {
    const { min, max } = u.scales.x;
    if (key !== "x" || min === undefined || max === undefined) return;
    host.dataset.shownFrom = dayOf(Math.round(min));
    host.dataset.shownTo = dayOf(Math.round(max));
  };
  const hooks = { ...opts.hooks, setScale: [...(opts.hooks?.setScale ?? []), noteShown, group.follow()] };
  const plot = new uPlot({ ...opts, hooks, width: width(), height: height() }, data, host);
  group.add(plot);
  let frame = 0;
  const observer = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      const w = width();
      const hgt = height();
      if (w !== plot.width || hgt !== plot.height) plot.setSize({ width: w, height: hgt });
    });
  });
  observer.observe(host);
  return {
    destroy(): void {
      cancelAnimationFrame(frame);
      observer.disconnect();
      group.remove(plot);
      plot.destroy();
    },
  };
}

const cursor = (): uPlot.Cursor => ({ points: { size: 7 }, drag: { x: true, y: false }, sync: { key: SYNC_KEY } });

/** The UTC midnight of the day the data was generated. */
export function generatedDay(generatedAt: string): number {
  return Math.floor(Date.parse(generatedAt) / 1000 / DAY) * DAY;
}

/** A forecast of the same item from another data version, drawn as a line of its own. */
export interface OtherForecast {
  label: string;
  dates: string[];
  yhat: (number | null)[];
  shown: boolean;
  /** Called when the line is turned on or off (by `showOther`, or a click on its legend entry). */
  toggled: (shown: boolean) => void;
}

export interface ForecastChart extends Chart {
  /** Turn the other version's line on or off. */
  showOther(shown: boolean): void;
}

/** `values` over `xs`, placed on the days of `dates` (null where `dates` has no such day). */
function onDays(xs: number[], dates: string[], values: (number | null)[]): (number | null)[] {
  const at = new Map(dates.map((d, i) => [daySeconds(d), values[i]]));
  return xs.map((x) => at.get(x) ?? null);
}

/**
 * Demand: the interval band, the forecast line (over past days it is the backtest: what the model
 * forecast for days whose demand is now known, drawn lighter), actual demand as bars (a day
 * without demand draws nothing), optionally an earlier version's forecast.
 */
export function forecastChart(host: HTMLElement, ts: Timeseries, group: ChartGroup, other: OtherForecast | null = null): ForecastChart {
  const xs = ts.dates.map(daySeconds);
  const generated = Date.parse(ts.generated_at) / 1000;
  const today = generatedDay(ts.generated_at);
  const focus = indexFrom(xs, today);
  // The two parts of the line meet on the day the data was generated.
  const backtest = ts.yhat.map((v, i) => (xs[i] <= today ? v : null));
  const ahead = ts.yhat.map((v, i) => (xs[i] >= today ? v : null));
  const data: (number | null)[][] = [xs, ts.yhat_upper, ts.yhat_lower, backtest, ahead, ts.actual];
  const series: uPlot.Series[] = [
    { label: "Date", value: legendValue(focus, "day", today) },
    { label: "Upper bound", stroke: COLORS.bandEdge, width: 1, points: NO_POINTS, value: legendValue(focus, 3) },
    { label: "Lower bound", stroke: COLORS.bandEdge, width: 1, points: NO_POINTS, value: legendValue(focus, 3) },
    { label: "Backtest", stroke: COLORS.backtest, width: 2, dash: [5, 3], points: NO_POINTS, value: legendValue(focus, 3) },
    { label: "Forecast", stroke: COLORS.forecast, width: 2, points: NO_POINTS, value: legendValue(focus, 3) },
    {
      label: "Actual",
      stroke: COLORS.actual,
      fill: COLORS.actualBar,
      width: 0,
      paths: uPlot.paths.bars?.({ size: [0.6, 12], align: 0 }),
      points: NO_POINTS,
      value: legendValue(focus, 3),
    },
  ];
  const otherIdx = series.length;
  if (other) {
    const line = onDays(xs, other.dates, other.yhat);
    data.push(line);
    series.push({ label: other.label, show: other.shown, stroke: COLORS.previous, width: 1.5, dash: [2, 2], points: NO_POINTS, value: legendValue(focus, 3) });
    host.dataset.otherPoints = String(line.filter((v) => v !== null).length);
    host.dataset.otherShown = String(other.shown);
  }
  const toggled = (u: uPlot, idx: number | null): void => {
    if (!other || idx !== otherIdx) return;
    const shown = u.series[otherIdx].show !== false;
    host.dataset.otherShown = String(shown);
    other.toggled(shown);
  };
  let plot: uPlot | null = null;
  const chart = mount(
    host,
    group,
    {
      tzDate: utcDate,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.05 : 1] } },
      axes: axes(ts.unit),
      cursor: cursor(),
      legend: { live: true },
      series,
      bands: [{ series: [1, 2], fill: COLORS.band }],
      hooks: {
        draw: [generatedMarker(generated)],
        init: [(u: uPlot) => void (plot = u)],
        setSeries: [toggled],
      },
    },
    data as uPlot.AlignedData,
  );
  return {
    destroy: () => chart.destroy(),
    showOther(shown: boolean): void {
      if (other && plot && (plot.series[otherIdx].show !== false) !== shown) plot.setSeries(otherIdx, { show: shown });
    },
  };
}

/** Projected stock over the days ahead, with the reorder point and the safety stock. */
export function inventoryChart(host: HTMLElement, inv: Inventory, group: ChartGroup): Chart {
  const xs = inv.dates.map(daySeconds);
  const generated = Date.parse(inv.generated_at) / 1000;
  const today = generatedDay(inv.generated_at);
  const focus = indexFrom(xs, today);
  const series: uPlot.Series[] = [
    { label: "Date", value: legendValue(focus, "day", today) },
    {
      label: "On hand",
      stroke: COLORS.onHand,
      fill: COLORS.onHandFill,
      width: 2,
      points: NO_POINTS,
      value: legendValue(focus, 1),
    },
  ];
  const data: (number | null)[][] = [xs, inv.on_hand];
  if (inv.reorder_point !== null) {
    series.push({ label: "Reorder point", stroke: COLORS.reorder, width: 1.5, dash: [6, 4], points: NO_POINTS, value: legendValue(focus, 1) });
    data.push(xs.map(() => inv.reorder_point));
  }
  if (inv.safety_stock !== null) {
    series.push({ label: "Safety stock", stroke: COLORS.safety, width: 1.5, dash: [2, 3], points: NO_POINTS, value: legendValue(focus, 1) });
    data.push(xs.map(() => inv.safety_stock));
  }
  return mount(
    host,
    group,
    {
      tzDate: utcDate,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] } },
      axes: axes(inv.unit),
      cursor: cursor(),
      legend: { live: true },
      series,
      hooks: { draw: [generatedMarker(generated)] },
    },
    data as uPlot.AlignedData,
  );
}
