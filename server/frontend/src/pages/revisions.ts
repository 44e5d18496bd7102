// Revisions: what changed in the forecasts between the served version and an earlier one (by
// default the one before), over the days both horizons cover: totals, by category and by site,
// and item by item. What is chosen is kept in the URL (`#/revisions?against=v0001&sort=risk`).
import type { PageContext } from "../app";
import { apiPath, getJson } from "../api";
import { fill, h } from "../dom";
import { num, pct, plural, utc } from "../format";
import type { DataVersions, ItemRevision, Revisions, RevisionTotals } from "../types";
import { card, empty, filterSelect, latestPage, table, traceLine, type Column } from "../ui";

const PAGE_SIZE = 50;
const STATUSES: Record<string, string> = { all: "All items", compared: "In both versions", new: "New items", dropped: "Dropped items" };
const SORTS: Record<string, { head: string; says: string }> = {
  change: { head: "Change", says: "largest forecast change first" },
  change_pct: { head: "Change %", says: "largest change in percent first" },
  risk: { head: "Risk change", says: "largest stock-out risk change first" },
  item_id: { head: "Item", says: "by item id" },
};

interface Choice {
  against: string;
  category: string;
  site: string;
  status: string;
  sort: string;
}

function chosen(query: URLSearchParams): Choice {
  const status = query.get("status") ?? "all";
  const sort = query.get("sort") ?? "change";
  return {
    against: query.get("against") ?? "",
    category: query.get("category") ?? "",
    site: query.get("site") ?? "",
    status: status in STATUSES ? status : "all",
    sort: sort in SORTS ? sort : "change",
  };
}

function hashOf(c: Choice): string {
  const query = new URLSearchParams();
  if (c.against) query.set("against", c.against);
  if (c.category) query.set("category", c.category);
  if (c.site) query.set("site", c.site);
  if (c.status !== "all") query.set("status", c.status);
  if (c.sort !== "change") query.set("sort", c.sort);
  const qs = query.toString();
  return `#/revisions${qs ? `?${qs}` : ""}`;
}

function revisionsPath(c: Choice, offset: number): string {
  return apiPath("revisions", { against: c.against, category: c.category, site: c.site, status: c.status, sort: c.sort, offset, limit: PAGE_SIZE });
}

/** A signed number: "+12.5", "−3" (a true minus sign), "0". */
function signed(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const text = num(Math.abs(value), digits);
  if (text === num(0, digits)) return text;
  return value > 0 ? `+${text}` : `−${text}`;
}

function signedPct(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : `${signed(value, 1)}%`;
}

/** "up" or "down" for a change as shown with `digits` decimals ("" when it shows as 0). */
function tone(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || Math.abs(value) < 0.5 * 10 ** -digits) return "";
  return value > 0 ? "up" : "down";
}

export async function revisionsPage(ctx: PageContext): Promise<void> {
  const choice = chosen(ctx.query);
  const [first, versions] = await Promise.all([
    getJson<Revisions>(revisionsPath(choice, 0), ctx.signal),
    getJson<DataVersions>(apiPath("data/versions"), ctx.signal),
  ]);
  ctx.showing(first.data.version);
  const trace = h("div", { class: "page-trace" }, traceLine(first.data));
  const status = h("div", { class: "toolbar-status", "aria-live": "polite" });
  const body = h("div", { class: "revisions-body" });
  let answer = first;
  let rows: ItemRevision[] = first.items;

  const others = versions.versions.filter((v) => v.version !== first.current.version).reverse();
  const againstSelect = h(
    "select",
    { id: "revisions-against", "data-testid": "revisions-against", class: "select" },
    others.length ? null : h("option", { value: "" }, "no other version"),
    others.map((v) => h("option", { value: v.version }, `${v.version} · generated ${utc(v.generated_at)}`)),
  );
  againstSelect.value = first.against?.version ?? choice.against;
  const summaryGroups = first.by_category.map((g) => g.category ?? "");
  const categorySelect = filterSelect("revisions-category", "All categories", summaryGroups, choice.category);
  const siteSelect = filterSelect("revisions-site", "All sites", first.by_site.map((g) => g.site ?? ""), choice.site);
  const statusSelect = h(
    "select",
    { id: "revisions-status", "data-testid": "revisions-status", class: "select" },
    Object.entries(STATUSES).map(([value, text]) => h("option", { value }, text)),
  );
  statusSelect.value = choice.status;

  const show = (): void => fill(body, content(answer, rows, choice, sortBy, more));
  const fetchPage = latestPage<number, Revisions>(ctx.signal, body, status, {
    get: (offset, signal) => getJson<Revisions>(revisionsPath(choice, offset), signal),
    got: (next, offset) => {
      answer = next;
      rows = offset ? [...rows, ...next.items] : next.items;
      fill(trace, traceLine(next.data));
      ctx.showing(next.data.version);
      show();
    },
    more: (offset) => offset > 0,
  });
  const changed = (): void => {
    history.replaceState(history.state, "", hashOf(choice));
    void fetchPage(0);
  };
  function sortBy(sort: string): void {
    if (sort === choice.sort) return;
    choice.sort = sort;
    changed();
  }
  function more(): void {
    if (answer.next_offset !== null) void fetchPage(answer.next_offset);
  }
  const bind = (select: HTMLSelectElement, key: keyof Choice): void => {
    select.addEventListener("change", () => {
      choice[key] = select.value;
      changed();
    });
  };
  bind(againstSelect, "against");
  bind(categorySelect, "category");
  bind(siteSelect, "site");
  bind(statusSelect, "status");

  fill(
    ctx.root,
    h(
      "div",
      { class: "page-head" },
      h("div", null, h("h1", null, "Forecast revisions"), h("p", { class: "muted" }, "How the forecasts of the version served now differ from an earlier version's, over the days both forecast."), trace),
    ),
    h(
      "div",
      { class: "toolbar", role: "group", "aria-label": "Comparison" },
      h("div", { class: "field" }, h("label", { for: "revisions-against" }, "Compared with"), againstSelect),
      first.against
        ? [
            h("div", { class: "field" }, h("label", { for: "revisions-category" }, "Category"), categorySelect),
            h("div", { class: "field" }, h("label", { for: "revisions-site" }, "Site"), siteSelect),
            h("div", { class: "field" }, h("label", { for: "revisions-status" }, "Items"), statusSelect),
          ]
        : null,
      status,
    ),
    body,
  );
  againstSelect.disabled = !others.length;
  show();
}

function content(r: Revisions, rows: ItemRevision[], c: Choice, sortBy: (sort: string) => void, more: () => void): (HTMLElement | null)[] {
  const note = r.note ? h("p", { class: "note", "data-testid": "revision-note" }, r.note) : null;
  if (!r.against || !r.totals) {
    return [h("div", { "data-testid": "revision-note" }, empty(r.note ?? "There is no other version to compare with."))];
  }
  const against = r.against;
  const w = r.window;
  const where = [c.category, c.site].filter(Boolean).join(", ") || "all items";
  return [
    h(
      "p",
      { class: "revision-head", "data-testid": "revision-versions" },
      h("strong", null, r.current.version), ` (generated ${utc(r.current.generated_at)}, model ${r.current.model_version}) compared with `,
      h("strong", null, against.version), ` (generated ${utc(against.generated_at)}, model ${against.model_version})`,
      w ? `, over the ${plural(w.days, "day")} both forecast: ${w.start} to ${w.end}.` : ": their horizons do not overlap, so no forecast is compared.",
    ),
    note,
    totalsSection(r.totals, against.version, r.current.version, where),
    h("div", { class: "revision-groups" }, groupCard("By category", "category", r.by_category), groupCard("By site", "site", r.by_site)),
    itemsCard(r, rows, c, sortBy, more),
  ];
}

function totalCard(metric: string, label: string, value: string, sub: string, cls = ""): HTMLElement {
  return h(
    "div",
    { class: `kpi ${cls}`.trim(), "data-testid": "revision-total", "data-metric": metric },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value),
    h("div", { class: "kpi-sub" }, sub),
  );
}

function totalsSection(t: RevisionTotals, before: string, now: string, where: string): HTMLElement {
  return h(
    "section",
    { class: "kpi-grid revision-totals", "aria-label": `Totals, ${where}` },
    totalCard("forecast_change", "Forecast change", signed(t.forecast_change, 0), `units: ${before} ${num(t.forecast_total_against, 0)} → ${now} ${num(t.forecast_total_current, 0)}`, `kpi-${tone(t.forecast_change, 0)}`),
    totalCard("forecast_change_pct", "Change in percent", signedPct(t.forecast_change_pct), "of the earlier total", `kpi-${tone(t.forecast_change_pct)}`),
    totalCard("items_changed", "Items changed", num(t.items_changed, 0), `of ${plural(t.items_compared, "item")} in both`),
    totalCard("items_new", "New / dropped", `${num(t.items_new, 0)} / ${num(t.items_dropped, 0)}`, "items only in one version"),
    totalCard("items_at_risk", "Items at risk", `${num(t.items_at_risk_against, 0)} → ${num(t.items_at_risk_current, 0)}`, "stock-out risk ≥ 50%", t.items_at_risk_current > t.items_at_risk_against ? "kpi-warn" : ""),
    totalCard("items_below_reorder_point", "Below reorder point", `${num(t.items_below_reorder_point_against, 0)} → ${num(t.items_below_reorder_point_current, 0)}`, "items, some day of the horizon"),
  );
}

/** A change in percent as a bar from the middle: right for more, left for less (capped at ±100%). */
function changeBar(value: number | null): HTMLElement {
  const width = value === null ? 0 : Math.min(50, (Math.abs(value) / 100) * 50);
  const style = value === null ? "" : value >= 0 ? `left:50%;width:${width.toFixed(1)}%` : `left:${(50 - width).toFixed(1)}%;width:${width.toFixed(1)}%`;
  return h("span", { class: "change-bar", "aria-hidden": "true" }, h("span", { class: `change-fill ${tone(value)}`, style }));
}

function groupCard(title: string, key: "category" | "site", groups: RevisionTotals[]): HTMLElement {
  const columns: Column<RevisionTotals>[] = [
    { label: key === "category" ? "Category" : "Site", cell: (g) => g[key] ?? "" },
    { label: "Changed", num: true, cell: (g) => `${num(g.items_changed, 0)} / ${num(g.items_compared, 0)}` },
    { label: "Before", num: true, cls: "hide-narrow", cell: (g) => num(g.forecast_total_against, 0) },
    { label: "Now", num: true, cls: "hide-narrow", cell: (g) => num(g.forecast_total_current, 0) },
    { label: "Change %", num: true, cell: (g) => h("span", { class: "change" }, changeBar(g.forecast_change_pct), h("span", { class: `change-text ${tone(g.forecast_change_pct)}` }, signedPct(g.forecast_change_pct))) },
    { label: "At risk", num: true, cell: (g) => `${num(g.items_at_risk_against, 0)} → ${num(g.items_at_risk_current, 0)}` },
  ];
  return card(
    title,
    { sub: "Every item of each, whatever the filters", cls: "card-group" },
    groups.length
      ? h(
          "div",
          { class: "table-wrap" },
          table(`Forecast revisions ${title.toLowerCase()}`, columns, groups, {
            captionHidden: true,
            cls: "table-groups",
            rowAttrs: (g) => ({ "data-testid": "revision-group", "data-group": key, "data-name": g[key] ?? "" }),
          }),
        )
      : empty("Nothing to group."),
  );
}

const STATUS_TAGS: Record<string, [string, string]> = { compared: ["both", "tag-info"], new: ["new", "tag-ok"], dropped: ["dropped", "tag-warn"] };

function itemsCard(r: Revisions, rows: ItemRevision[], c: Choice, sortBy: (sort: string) => void, more: () => void): HTMLElement {
  const against = r.against?.version ?? "";
  const head = (sort: string): HTMLElement => {
    const active = c.sort === sort;
    return h(
      "button",
      { type: "button", class: `sort-button${active ? " sort-active" : ""}`, "data-testid": `revisions-sort-${sort}`, "aria-pressed": active ? "true" : "false", title: `Sort: ${SORTS[sort].says}`, onclick: () => sortBy(sort) },
      SORTS[sort].head,
      h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (sort === "item_id" ? " ▲" : " ▼") : ""),
    );
  };
  const ariaSort = (sort: string): "ascending" | "descending" | undefined => (c.sort === sort ? (sort === "item_id" ? "ascending" : "descending") : undefined);
  const crossing = (x: ItemRevision): string => {
    const before = x.first_below_reorder_point_against ?? "never";
    const now = x.first_below_reorder_point_current ?? "never";
    const moved = x.first_below_reorder_point_change_days;
    return before === now ? now : `${before} → ${now}${moved ? ` (${signed(moved)} days)` : ""}`;
  };
  const columns: Column<ItemRevision>[] = [
    {
      label: "Item",
      head: head("item_id"),
      sort: ariaSort("item_id"),
      cell: (x) => h("a", { href: `#/items/${encodeURIComponent(x.item_id)}?against=${encodeURIComponent(against)}`, class: "mono", title: `${x.item_id} with ${against}'s forecast beside it` }, x.item_id),
    },
    { label: "Name", cls: "name-cell", cell: (x) => [h("span", null, x.name), h("span", { class: "show-narrow muted small" }, `${x.category} · ${x.site}`)] },
    { label: "In", cell: (x) => h("span", { class: `tag ${STATUS_TAGS[x.status]?.[1] ?? ""}` }, STATUS_TAGS[x.status]?.[0] ?? x.status) },
    { label: "Before", num: true, cls: "hide-narrow", cell: (x) => num(x.forecast_total_against, 1) },
    { label: "Now", num: true, cls: "hide-narrow", cell: (x) => num(x.forecast_total_current, 1) },
    { label: "Change", head: head("change"), sort: ariaSort("change"), num: true, cell: (x) => h("span", { class: tone(x.forecast_change, 1) }, signed(x.forecast_change, 1), h("span", { class: "unit" }, ` ${x.unit}`)) },
    { label: "Change %", head: head("change_pct"), sort: ariaSort("change_pct"), num: true, cell: (x) => h("span", { class: tone(x.forecast_change_pct) }, signedPct(x.forecast_change_pct)) },
    { label: "First day below reorder point", cls: "hide-narrow", cell: crossing },
    {
      label: "Stock-out risk",
      head: head("risk"),
      sort: ariaSort("risk"),
      num: true,
      cell: (x) => `${pct(x.max_stockout_risk_against, 0)} → ${pct(x.max_stockout_risk_current, 0)}`,
    },
  ];
  const count = h(
    "span",
    { "data-testid": "revisions-count", "data-shown": String(rows.length), "data-total": String(r.total) },
    r.total ? `${num(rows.length, 0)} of ${plural(r.total, "item")}, ${SORTS[c.sort].says}; totals over the days both forecast` : "No items match these filters",
  );
  return card(
    "Item by item",
    { sub: count, cls: "card-items" },
    rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          table("Forecast revisions item by item", columns, rows, {
            captionHidden: true,
            cls: "table-items",
            rowAttrs: (x) => ({ "data-testid": "revision-row", "data-item-id": x.item_id, "data-status": x.status }),
          }),
        )
      : empty("No items match these filters."),
    r.next_offset !== null
      ? h("div", { class: "pad more" }, h("button", { type: "button", class: "btn", "data-testid": "revisions-more", onclick: more }, `Show ${Math.min(PAGE_SIZE, r.total - rows.length)} more`))
      : null,
  );
}
