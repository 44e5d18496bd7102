// Items: every item of the served version, sorted by risk, cover or units, filtered by category,
// site and text; what is chosen is kept in the URL (`#/items?sort=cover&category=Radio`).
import type { PageContext } from "../app";
import { apiPath, getJson } from "../api";
import { fill, h, icon } from "../dom";
import { num, plural } from "../format";
import type { ForecastSummary, ItemSummary, ItemsPage } from "../types";
import { card, empty, filterSelect, itemLink, latestPage, riskCell, table, traceLine, type Column } from "../ui";

const PAGE_SIZE = 50;
const DEFAULT_SORT = "risk";

/** The orders `GET /items` knows, as the table heads and the status line say them. */
const SORTS: Record<string, { head: string; says: string; ascending: boolean }> = {
  risk: { head: "Stock-out risk", says: "highest stock-out risk first", ascending: false },
  cover: { head: "Cover, days", says: "fewest days of cover first", ascending: true },
  units: { head: "Next 30 days", says: "highest forecast for the next 30 days first", ascending: false },
  item_id: { head: "Item", says: "by item id", ascending: true },
};

interface Choice {
  q: string;
  category: string;
  site: string;
  sort: string;
}

function chosen(query: URLSearchParams): Choice {
  const sort = query.get("sort") ?? DEFAULT_SORT;
  return {
    q: (query.get("q") ?? "").trim(),
    category: query.get("category") ?? "",
    site: query.get("site") ?? "",
    sort: sort in SORTS ? sort : DEFAULT_SORT,
  };
}

/** `#/items?...` of a choice: only what differs from the defaults. */
export function itemsHash(c: Partial<Choice>): string {
  const query = new URLSearchParams();
  if (c.q) query.set("q", c.q);
  if (c.category) query.set("category", c.category);
  if (c.site) query.set("site", c.site);
  if (c.sort && c.sort !== DEFAULT_SORT) query.set("sort", c.sort);
  const qs = query.toString();
  return `#/items${qs ? `?${qs}` : ""}`;
}

function listPath(c: Choice, cursor: string | null): string {
  return apiPath("items", { q: c.q, category: c.category, site: c.site, sort: c.sort, limit: PAGE_SIZE, cursor });
}

export async function itemsPage(ctx: PageContext): Promise<void> {
  const choice = chosen(ctx.query);
  const [summary, first] = await Promise.all([
    getJson<ForecastSummary>(apiPath("forecasts/summary"), ctx.signal),
    getJson<ItemsPage>(listPath(choice, null), ctx.signal),
  ]);
  ctx.showing(first.data.version);

  const trace = h("div", { class: "page-trace" }, traceLine(first.data));
  const status = h("div", { class: "toolbar-status", "aria-live": "polite" });
  const listSlot = h("div", { class: "items-slot" });
  let rows: ItemSummary[] = [];
  let page = first;
  let focusAfter: string | null = null; // what gets the focus once the list is drawn again

  const search = h("input", {
    type: "search",
    id: "items-search",
    "data-testid": "items-search",
    class: "input",
    placeholder: "Id or name",
    autocomplete: "off",
    spellcheck: "false",
    value: choice.q,
  });
  const categorySelect = filterSelect("items-category", "All categories", summary.categories, choice.category);
  const siteSelect = filterSelect("items-site", "All sites", summary.sites, choice.site);
  const clear = h("button", { type: "button", class: "btn btn-link", "data-testid": "items-clear" }, "Clear filters");
  const syncClear = (): void => {
    clear.hidden = !choice.q && !choice.category && !choice.site;
  };
  syncClear();

  const show = (): void => {
    fill(listSlot, listCard(rows, page, choice, sortBy, more));
    if (focusAfter) listSlot.querySelector<HTMLElement>(focusAfter)?.focus();
    focusAfter = null;
  };
  const fetchPage = latestPage<string | null, ItemsPage>(ctx.signal, listSlot, status, {
    get: (cursor, signal) => getJson<ItemsPage>(listPath(choice, cursor), signal),
    got: (next, cursor) => {
      page = next;
      rows = cursor ? [...rows, ...next.items] : next.items;
      fill(trace, traceLine(next.data));
      ctx.showing(next.data.version);
      show();
    },
    more: (cursor) => cursor !== null,
  });
  const changed = (): void => {
    history.replaceState(history.state, "", itemsHash(choice));
    syncClear();
    void fetchPage(null);
  };
  function sortBy(sort: string): void {
    if (sort === choice.sort) return;
    choice.sort = sort;
    focusAfter = `[data-testid="sort-${sort}"]`;
    changed();
  }
  function more(): void {
    if (!page.next) return;
    focusAfter = `[data-testid="item-row"]:nth-child(${rows.length + 1}) a`; // the first new row
    void fetchPage(page.next);
  }

  let timer = 0;
  search.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      const q = search.value.trim();
      if (q === choice.q) return;
      choice.q = q;
      changed();
    }, 250);
  });
  ctx.signal.addEventListener("abort", () => window.clearTimeout(timer), { once: true });
  categorySelect.addEventListener("change", () => {
    choice.category = categorySelect.value;
    changed();
  });
  siteSelect.addEventListener("change", () => {
    choice.site = siteSelect.value;
    changed();
  });
  clear.addEventListener("click", () => {
    Object.assign(choice, { q: "", category: "", site: "" });
    search.value = "";
    categorySelect.value = "";
    siteSelect.value = "";
    search.focus();
    changed();
  });

  fill(
    ctx.root,
    h("div", { class: "page-head" }, h("div", null, h("h1", null, "Items"), trace)),
    h(
      "div",
      { class: "toolbar", role: "group", "aria-label": "Filters" },
      h("div", { class: "field field-grow" }, h("label", { for: "items-search" }, "Id or name"), h("div", { class: "input-icon" }, icon("search"), search)),
      h("div", { class: "field" }, h("label", { for: "items-category" }, "Category"), categorySelect),
      h("div", { class: "field" }, h("label", { for: "items-site" }, "Site"), siteSelect),
      status,
      clear,
    ),
    listSlot,
  );
  rows = first.items;
  show();
}

function listCard(rows: ItemSummary[], page: ItemsPage, c: Choice, sortBy: (sort: string) => void, more: () => void): HTMLElement {
  const head = (sort: string): HTMLElement => {
    const active = c.sort === sort;
    return h(
      "button",
      {
        type: "button",
        class: `sort-button${active ? " sort-active" : ""}`,
        "data-testid": `sort-${sort}`,
        "aria-pressed": active ? "true" : "false",
        title: `Sort: ${SORTS[sort].says}`,
        onclick: () => sortBy(sort),
      },
      SORTS[sort].head,
      h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (SORTS[sort].ascending ? " ▲" : " ▼") : ""),
    );
  };
  const ariaSort = (sort: string): "ascending" | "descending" | undefined =>
    c.sort === sort ? (SORTS[sort].ascending ? "ascending" : "descending") : undefined;
  const columns: Column<ItemSummary>[] = [
    { label: "Item", head: head("item_id"), sort: ariaSort("item_id"), cell: (r) => itemLink(r) },
    {
      label: "Name",
      cls: "name-cell",
      cell: (r) => [h("span", null, r.name), h("span", { class: "show-narrow muted small" }, `${r.category} · ${r.site}`)],
    },
    { label: "Category", cls: "hide-narrow", cell: (r) => r.category },
    { label: "Site", cls: "hide-narrow", cell: (r) => r.site },
    { label: "Stock-out risk", head: head("risk"), sort: ariaSort("risk"), num: true, cell: (r) => riskCell(r.max_stockout_risk) },
    { label: "Cover, days", head: head("cover"), sort: ariaSort("cover"), num: true, cell: (r) => num(r.days_of_cover_now, 1) },
    {
      label: "Next 30 days",
      head: head("units"),
      sort: ariaSort("units"),
      num: true,
      cell: (r) => h("span", null, num(r.forecast_next_30d, 0), h("span", { class: "unit" }, ` ${r.unit}`)),
    },
  ];
  const where = [c.q ? `“${c.q}”` : "", c.category, c.site].filter(Boolean).join(", ") || "all items";
  const count = h(
    "span",
    { "data-testid": "items-count", "data-shown": String(rows.length), "data-total": String(page.total) },
    page.total ? `${num(rows.length, 0)} of ${plural(page.total, "item")} (${where}), ${SORTS[c.sort].says}` : `No items (${where})`,
  );
  return card(
    "Matching items",
    { sub: count, cls: "card-items" },
    rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          table("Items", columns, rows, {
            captionHidden: true,
            cls: "table-items",
            rowAttrs: (r) => ({ "data-testid": "item-row", "data-item-id": r.item_id }),
          }),
        )
      : empty("No items match these filters."),
    page.next
      ? h(
          "div",
          { class: "pad more" },
          h("button", { type: "button", class: "btn", "data-testid": "items-more", onclick: more }, `Show ${Math.min(PAGE_SIZE, page.total - rows.length)} more`),
        )
      : null,
  );
}
