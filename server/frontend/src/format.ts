// Numbers, percentages, dates and ages, the same way on every page (en-US digits, UTC times).

const numberFormats = new Map<number, Intl.NumberFormat>();

export function num(value: number | null | undefined, maxFractionDigits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  let format = numberFormats.get(maxFractionDigits);
  if (!format) {
    format = new Intl.NumberFormat("en-US", { maximumFractionDigits: maxFractionDigits });
    numberFormats.set(maxFractionDigits, format);
  }
  return format.format(value);
}

/** A ratio as a percentage: 0.5489 -> "54.9%"; `signed` adds "+" to positive values. */
export function pct(ratio: number | null | undefined, digits = 1, signed = false): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "–";
  const value = ratio * 100;
  const text = `${Math.abs(value).toFixed(digits)}%`;
  if (value < 0 && Number(Math.abs(value).toFixed(digits)) !== 0) return `−${text}`;
  return signed && value > 0 ? `+${text}` : text;
}

export function parseTime(iso: string): Date | null {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

const pad = (n: number): string => String(n).padStart(2, "0");

/** "2026-11-19 06:00 UTC" (the raw string if it is not a timestamp). */
export function utc(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = parseTime(iso);
  if (!d) return iso;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

/** How long ago `iso` was, relative to `now`: "just now", "5 minutes ago", "3 days ago", "in 2 hours". */
export function age(iso: string, now: number = Date.now()): string {
  const d = parseTime(iso);
  if (!d) return "unknown age";
  const seconds = Math.round((now - d.getTime()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return "just now";
  const units: [number, string][] = [
    [365 * 86400, "year"],
    [30 * 86400, "month"],
    [7 * 86400, "week"],
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [size, name] of units) {
    if (abs >= size) {
      const n = Math.floor(abs / size);
      const text = `${n} ${name}${n === 1 ? "" : "s"}`;
      return seconds >= 0 ? `${text} ago` : `in ${text}`;
    }
  }
  return "just now";
}

/** "Last updated 2026-11-19 06:00 UTC (3 days ago)". */
export function lastUpdatedText(generatedAt: string): string {
  return `Last updated ${utc(generatedAt)} (${age(generatedAt)})`;
}

/** Unix seconds (UTC midnight) of a YYYY-MM-DD day. */
export function daySeconds(day: string): number {
  return Date.UTC(Number(day.slice(0, 4)), Number(day.slice(5, 7)) - 1, Number(day.slice(8, 10))) / 1000;
}

/** YYYY-MM-DD of unix seconds, in UTC. */
export function dayOf(seconds: number): string {
  const d = new Date(seconds * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** "backtest_90d" -> "backtest, 90 days"; "next_30d" -> "next 30 days". */
export function period(p: string): string {
  const m = /^(.*?)_?(\d+)d$/.exec(p);
  if (!m) return p.replace(/_/g, " ");
  const head = m[1].replace(/_/g, " ");
  if (head === "next" || head === "last") return `${head} ${m[2]} days`;
  return `${head}, ${m[2]} days`;
}

export function plural(n: number, word: string, many = `${word}s`): string {
  return `${num(n, 0)} ${n === 1 ? word : many}`;
}
