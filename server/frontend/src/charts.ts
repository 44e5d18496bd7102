// The two charts of the item page, drawn with uPlot (canvas), sized to their container.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { dayOf, daySeconds, num } from "./format";
import type { Inventory, Timeseries } from "./types";

const COLORS = {
  forecast: "#2f5fc4",
  band: "rgba(47, 95, 196, 0.16)",
  bandEdge: "rgba(47, 95, 196, 0.35)",
  actual: "#1f2733",
  actualDot: "rgba(31, 39, 51, 0.75)",
  onHand: "#178a6b",
  onHandFill: "rgba(23, 138, 107, 0.10)",
  reorder: "#c26a00",
  safety: "#c23030",
  marker: "#8a94a6",
  grid: "#e9edf2",
  axis: "#5b6472",
};

const NO_POINTS = { show: false };

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
  const monthly = incr >= 28 * 86400;
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
const dayValue = (_u: uPlot, v: number | null): string => (v === null || v === undefined ? "–" : dayOf(v));
const unitValue =
  (digits: number) =>
  (_u: uPlot, v: number | null): string =>
    v === null || v === undefined ? "–" : num(v, digits);

/** A dashed vertical line where the data was generated: left of it actuals, right of it the horizon. */
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

export interface Chart {
  destroy(): void;
}

/** Mount a chart in `host`, following its width; `destroy` frees it (route change). */
function mount(host: HTMLElement, opts: () => Omit<uPlot.Options, "width" | "height">, data: uPlot.AlignedData): Chart {
  const width = (): number => Math.max(280, Math.floor(host.clientWidth || 600));
  const height = (): number => (window.innerWidth < 820 ? 240 : 280);
  const plot = new uPlot({ ...opts(), width: width(), height: height() }, data, host);
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
      plot.destroy();
    },
  };
}

export function forecastChart(host: HTMLElement, ts: Timeseries): Chart {
  const xs = ts.dates.map(daySeconds);
  const generated = Date.parse(ts.generated_at) / 1000;
  const data: uPlot.AlignedData = [xs, ts.yhat_upper, ts.yhat_lower, ts.yhat, ts.actual];
  return mount(
    host,
    () => ({
      tzDate: utcDate,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.05 : 1] } },
      axes: axes(ts.unit),
      cursor: { points: { size: 7 }, drag: { x: true, y: false } },
      legend: { live: true },
      series: [
        { label: "Date", value: dayValue },
        { label: "Upper bound", stroke: COLORS.bandEdge, width: 1, points: NO_POINTS, value: unitValue(3) },
        { label: "Lower bound", stroke: COLORS.bandEdge, width: 1, points: NO_POINTS, value: unitValue(3) },
        { label: "Forecast", stroke: COLORS.forecast, width: 2, points: NO_POINTS, value: unitValue(3) },
        {
          label: "Actual",
          stroke: COLORS.actual,
          width: 1,
          paths: () => null,
          points: { show: true, size: 3, width: 0, fill: COLORS.actualDot, stroke: COLORS.actualDot },
          value: unitValue(3),
        },
      ],
      bands: [{ series: [1, 2], fill: COLORS.band }],
      hooks: { draw: [generatedMarker(generated)] },
    }),
    data,
  );
}

export function inventoryChart(host: HTMLElement, inv: Inventory): Chart {
  const xs = inv.dates.map(daySeconds);
  const series: uPlot.Series[] = [
    { label: "Date", value: dayValue },
    {
      label: "On hand",
      stroke: COLORS.onHand,
      fill: COLORS.onHandFill,
      width: 2,
      points: NO_POINTS,
      value: unitValue(1),
    },
  ];
  const data: (number | null)[][] = [xs, inv.on_hand];
  if (inv.reorder_point !== null) {
    series.push({ label: "Reorder point", stroke: COLORS.reorder, width: 1.5, dash: [6, 4], points: NO_POINTS, value: unitValue(1) });
    data.push(xs.map(() => inv.reorder_point));
  }
  if (inv.safety_stock !== null) {
    series.push({ label: "Safety stock", stroke: COLORS.safety, width: 1.5, dash: [2, 3], points: NO_POINTS, value: unitValue(1) });
    data.push(xs.map(() => inv.safety_stock));
  }
  return mount(
    host,
    () => ({
      tzDate: utcDate,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] } },
      axes: axes(inv.unit),
      cursor: { points: { size: 7 }, drag: { x: true, y: false } },
      legend: { live: true },
      series,
    }),
    data as uPlot.AlignedData,
  );
}
