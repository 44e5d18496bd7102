// Data: the version served now and where it came from; every version; the import history.
import type { PageContext } from "../app";
import { ApiError, apiPath, getJson } from "../api";
import { fill, h } from "../dom";
import { age, num, utc } from "../format";
import { exportLink } from "../download";
import type { ChangedBy, DataVersion, DataVersions, ExportTable, ExportVersion, HistoryEvent } from "../types";
import { card, empty, errorState, facts, table, timeCell } from "../ui";

export async function dataPage(ctx: PageContext): Promise<void> {
  const [currentResult, versionsResult] = await Promise.allSettled([
    getJson<DataVersion>(apiPath("data/current"), ctx.signal),
    getJson<DataVersions>(apiPath("data/versions"), ctx.signal),
  ]);
  // Without any answer there is nothing to show: the page-wide error state says why.
  if (currentResult.status === "rejected") {
    const err = currentResult.reason;
    const noData = err instanceof ApiError && err.kind === "no-data";
    if (!noData || versionsResult.status === "rejected") throw err;
  }
  const versions = versionsResult.status === "fulfilled" ? versionsResult.value : null;
  const current = currentResult.status === "fulfilled" ? currentResult.value : null;
  ctx.showing(current ? current.version : null);

  fill(
    ctx.root,
    h("div", { class: "page-head" }, h("div", null, h("h1", null, "Data versions"), h("p", { class: "muted" }, "What this node serves, where it came from, and every change made to it, with who made it."))),
    current ? currentCard(current) : card("Served now", {}, errorState(currentResult.status === "rejected" ? currentResult.reason : null)),
    versions ? versionsCard(versions) : card("Versions", {}, errorState(versionsResult.status === "rejected" ? versionsResult.reason : null)),
    versions?.exports ? exportsCard(versions.exports) : null,
    versions ? historyCard(versions.history) : null,
  );
}

function signerText(signer: Record<string, string> | null): HTMLElement | string {
  if (!signer) return "–";
  return h("span", null, signer.principal ?? "", signer.fingerprint ? h("span", { class: "mono muted small block" }, signer.fingerprint) : null);
}

function rowsText(rows: Record<string, number>): string {
  const entries = Object.entries(rows);
  return entries.length ? entries.map(([t, n]) => `${t} ${num(n, 0)}`).join(", ") : "–";
}

function currentCard(v: DataVersion): HTMLElement {
  return h(
    "section",
    { class: "card card-current", "data-testid": "current-version", "data-version": v.version, "aria-labelledby": "current-title" },
    h(
      "header",
      { class: "card-head" },
      h("div", { class: "card-titles" }, h("h2", { id: "current-title" }, "Served now ", h("span", { class: "badge badge-version badge-large" }, v.version)),
        h("div", { class: "card-sub" }, `Generated ${utc(v.generated_at)} (${age(v.generated_at)}), imported ${utc(v.imported_at)} (${age(v.imported_at)})`)),
    ),
    facts([
      ["Version", h("span", { class: "mono" }, v.version)],
      ["Dataset", v.dataset_id],
      ["Model version", v.model_version],
      ["Source", v.source],
      ["Generated at", timeCell(v.generated_at)],
      ["Imported at", timeCell(v.imported_at)],
      ["Imported by", changedBy(v.imported_via, v.imported_by, "imported-by", UPLOADED)],
      ["Signer", signerText(v.signer)],
      ["Pack id", h("span", { class: "mono small" }, v.pack_id)],
      ["Rows", rowsText(v.rows)],
    ]),
  );
}

function versionsCard(all: DataVersions): HTMLElement {
  const rows = [...all.versions].reverse(); // newest first
  const columns = [
    { label: "Version", cell: (v: DataVersion) => h("span", null, h("span", { class: "mono" }, v.version), v.current ? h("span", { class: "tag tag-ok" }, "served") : null) },
    { label: "Generated", cell: (v: DataVersion) => timeCell(v.generated_at) },
    { label: "Imported", cell: (v: DataVersion) => timeCell(v.imported_at) },
    { label: "Dataset", cls: "hide-narrow", cell: (v: DataVersion) => v.dataset_id },
    { label: "Model version", cell: (v: DataVersion) => v.model_version },
    { label: "Source", cell: (v: DataVersion) => v.source },
    { label: "Imported by", cls: "hide-narrow", cell: (v: DataVersion) => changedBy(v.imported_via, v.imported_by, "version-imported-by", UPLOADED_SHORT) },
    { label: "Signer", cls: "hide-narrow", cell: (v: DataVersion) => v.signer?.principal ?? "–" },
  ];
  return card(
    "Versions",
    { sub: `${all.versions.length} published on this node, newest first` },
    rows.length
      ? h("div", { class: "table-wrap" }, table("Published data versions", columns, rows, { captionHidden: true, rowAttrs: (v) => ({ "data-version": v.version }) }))
      : empty("No version has been published on this node yet."),
  );
}

const TABLE_WORDS: Record<string, string> = {
  dim_item: "the items: name, category, site, unit, lead time, cost",
  fact_forecast: "the daily forecast with its interval, and the actual demand",
  fact_inventory: "the projected stock per day: on hand, reorder point, safety stock, cover, risk",
  fact_metrics: "the forecast-quality and outlook figures, for all items, per category, site and item",
};

/** Every kept version's tables, as CSV or Parquet, exactly as the node holds them. */
function exportsCard(versions: ExportVersion[]): HTMLElement {
  const status = h("p", { class: "muted small pad", "data-testid": "export-status", role: "status", "aria-live": "polite" });
  const say = (text: string, ok: boolean): void => {
    status.textContent = text;
    status.dataset.state = ok ? "ok" : "error";
  };
  type Row = { v: ExportVersion; t: ExportTable; first: boolean };
  const rows: Row[] = [...versions].reverse().flatMap((v) => v.tables.map((t, i) => ({ v, t, first: i === 0 })));
  const columns = [
    {
      label: "Version",
      cell: (r: Row) => (r.first ? h("span", null, h("span", { class: "mono" }, r.v.version), r.v.current ? h("span", { class: "tag tag-ok" }, "served") : null, h("span", { class: "muted small block" }, `generated ${utc(r.v.generated_at)}`)) : ""),
    },
    { label: "Table", cell: (r: Row) => h("span", null, h("span", { class: "mono" }, r.t.table), h("span", { class: "muted small block" }, TABLE_WORDS[r.t.table] ?? "")) },
    { label: "Rows", num: true, cell: (r: Row) => num(r.t.rows, 0) },
    {
      label: "Download",
      cell: (r: Row) =>
        h(
          "span",
          { class: "row" },
          (["csv", "parquet"] as const).map((format) =>
            exportLink(r.t[format], format === "csv" ? "CSV" : "Parquet", `Download ${r.t.table} of ${r.v.version} as ${format === "csv" ? "CSV" : "Parquet"}`, { "data-testid": "export-link", "data-version": r.v.version, "data-table": r.t.table, "data-format": format }, say),
          ),
        ),
    },
  ];
  return card(
    "Downloads",
    { sub: "Each kept version's tables, whole, as the node holds them: CSV (opens in a spreadsheet) or Parquet (for analysis tools). An item's own rows are on its page.", cls: "card-exports", id: "downloads" },
    h(
      "div",
      { class: "table-wrap" },
      table("Tables of each kept version", columns, rows, {
        captionHidden: true,
        cls: "table-exports",
        stacked: true,
        rowAttrs: (r) => ({ "data-testid": "export-row", "data-version": r.v.version, "data-table": r.t.table, class: r.first ? "group-first" : "" }),
      }),
    ),
    status,
  );
}

const EVENT_LABELS: Record<string, [string, string]> = {
  import: ["Imported", "tag-ok"],
  reject: ["Refused", "tag-bad"],
  fault: ["Import failed", "tag-warn"],
  rollback: ["Rolled back", "tag-info"],
  "import-discarded": ["Discarded", "tag-warn"],
  refresh: ["Refreshed", "tag-info"],
  "token-create": ["Token made", "tag-info"],
  "token-revoke": ["Token revoked", "tag-warn"],
  "trust-update": ["Trust updated", "tag-ok"],
  "trust-update-refused": ["Trust refused", "tag-bad"],
};

/** Whose keys a trust update is about (`role` of trust-update events). */
const TRUST_ROLES: Record<string, string> = {
  pack: "the keys that may sign result packs",
  bundle: "the keys that may sign installation bundles",
};

/** The keys a trust event's role stands for, in words. */
function trustRole(role: string | null): string {
  return TRUST_ROLES[role ?? ""] ?? `the ${role ?? "?"} keys`;
}

/** "2 keys", "1 key". */
function keys(n: number): string {
  return `${n} key${n === 1 ? "" : "s"}`;
}

/** The file name of a pack path (uploads are kept under a temporary name; the full path is in the tooltip). */
function packName(path: string | null): HTMLElement | null {
  if (!path) return null;
  const name = path.split(/[\\/]/).pop() ?? path;
  return h("span", { class: "mono", title: path }, /^upload-.*\.pack$/.test(name) ? "an uploaded pack" : name);
}

function eventDetails(e: HistoryEvent): HTMLElement {
  const str = (k: string): string | null => (typeof e[k] === "string" ? (e[k] as string) : null);
  const parts: (HTMLElement | string)[] = [];
  switch (e.event) {
    case "import": {
      const rows = e.rows && typeof e.rows === "object" ? rowsText(e.rows as Record<string, number>) : null;
      parts.push(
        h("span", null, `Published ${e.version ?? "?"}${e.previous ? ` (was ${e.previous})` : ""} from `, packName(str("pack_file")) ?? "a pack"),
        h("span", { class: "muted small block" }, [str("dataset_id"), str("model_version"), str("source"), str("generated_at") ? `generated ${utc(str("generated_at"))}` : null].filter(Boolean).join(" · ")),
      );
      if (rows) parts.push(h("span", { class: "muted small block" }, rows));
      break;
    }
    case "reject":
      parts.push(
        h("span", null, h("span", { class: "tag tag-bad mono" }, e.reason ?? "refused"), " ", e.message ?? ""),
        str("pack_file") ? h("span", { class: "muted small block" }, "From ", packName(str("pack_file"))) : "",
      );
      break;
    case "fault":
      parts.push(
        h("span", null, h("span", { class: "tag tag-warn mono" }, e.reason ?? "fault"), " ", e.message ?? ""),
        h("span", { class: "muted small block" }, "A fault of the node, not of the pack: it can be imported once the node is fixed", str("pack_file") ? h("span", null, "; from ", packName(str("pack_file"))) : null),
      );
      break;
    case "rollback":
      parts.push(h("span", null, `Serving ${e.version ?? "?"} again${e.previous ? ` instead of ${e.previous}` : ""}`));
      break;
    case "refresh":
      parts.push(h("span", null, e.version ? `The server re-read the served version: ${e.version}` : "The server re-read the served version: no data yet"));
      break;
    case "token-create":
      parts.push(
        h("span", null, `Made ${str("role") ?? ""} token `, h("span", { class: "mono" }, str("token") ?? "?")),
        h("span", { class: "muted small block" }, str("expires") ? `Expires ${utc(str("expires"))}` : "Does not expire"),
      );
      break;
    case "token-revoke":
      parts.push(h("span", null, `Revoked ${str("role") ?? ""} token `, h("span", { class: "mono" }, str("token") ?? "?"), ": refused from now on"));
      break;
    case "trust-update": {
      const count = (k: string): number => (Array.isArray(e[k]) ? (e[k] as unknown[]).length : 0);
      const counts: [string, number][] = [["added", count("added")], ["removed", count("removed")], ["revoked", count("revoked")], ["no longer revoked", count("unrevoked")]];
      const changes = counts.filter(([, n]) => n > 0).map(([what, n]) => `${keys(n)} ${what}`);
      const serial = typeof e.serial === "number" ? `serial ${e.serial}${typeof e.previous_serial === "number" ? ` (was ${e.previous_serial})` : ""}` : "a new serial";
      parts.push(
        h("span", null, `Installed ${serial} of ${trustRole(str("role"))}`),
        h("span", { class: "muted small block" }, [changes.join(", ") || "no key changed", str("signer") ? `signed by ${str("signer")}` : null].filter(Boolean).join(" · ")),
        str("file") ? h("span", { class: "muted small block" }, "From ", h("span", { class: "mono" }, str("file"))) : "",
      );
      break;
    }
    case "trust-update-refused":
      parts.push(
        h("span", null, h("span", { class: "tag tag-bad mono" }, e.reason ?? "refused"), " ", e.message ?? ""),
        h(
          "span",
          { class: "muted small block" },
          `Nothing was changed${str("role") ? ` in ${trustRole(str("role"))}` : ""}`,
          str("file") ? h("span", null, "; from ", h("span", { class: "mono" }, str("file"))) : null,
        ),
      );
      break;
    default:
      parts.push(h("span", null, [e.version, e.reason, e.message].filter((x) => typeof x === "string" && x).join(" · ") || "–"));
  }
  return h("div", { class: "event-details", "data-testid": "history-details" }, parts);
}

/** How a change came, in words under its maker: through the API (from where), or on the node. */
interface How {
  api: (client: string) => string;
  cli: string;
}

const CHANGED: How = { api: (client) => `from ${client}`, cli: "on the command line" };
const UPLOADED: How = { api: (client) => `uploaded through the API (admin page or a script) from ${client}`, cli: "imported on the node's command line" };
const UPLOADED_SHORT: How = { api: (client) => `upload from ${client}`, cli: "command line" };

/** Who made a change: the token, its role and the client's address, or the user on the node's command line. */
function changedBy(by: ChangedBy | null | undefined, actor: string | null | undefined, testid: string, how: How = CHANGED): HTMLElement {
  if (by?.via === "api" && by.token) {
    return h(
      "span",
      { "data-testid": testid, "data-via": "api" },
      "token ",
      h("span", { class: "mono" }, by.token),
      by.role ? h("span", { class: "tag" }, by.role) : null,
      h("span", { class: "muted small block" }, how.api(by.client ?? "an unknown address")),
      by.request_id ? h("span", { class: "muted small block mono" }, `request ${by.request_id}`) : null,
    );
  }
  if (by?.via === "cli" && by.user) {
    return h(
      "span",
      { "data-testid": testid, "data-via": "cli" },
      h("span", { class: "mono" }, by.host ? `${by.user}@${by.host}` : by.user),
      h("span", { class: "muted small block" }, how.cli),
    );
  }
  return h("span", { "data-testid": testid }, actor ?? "–");
}

function historyCard(history: HistoryEvent[]): HTMLElement {
  const rows = [...history].reverse(); // newest first
  const columns = [
    { label: "When", cell: (e: HistoryEvent) => h("span", null, timeCell(e.ts ?? null), e.ts ? h("span", { class: "muted small block" }, age(e.ts)) : null) },
    {
      label: "Event",
      cell: (e: HistoryEvent) => {
        const [text, tone] = EVENT_LABELS[e.event ?? ""] ?? [e.event ?? "?", "tag-info"];
        return h("span", { class: `tag ${tone}`, "data-testid": "history-event" }, text);
      },
    },
    { label: "Version", cell: (e: HistoryEvent) => h("span", { class: "mono" }, e.version ?? "–") },
    { label: "By", cell: (e: HistoryEvent) => changedBy(e.by, e.actor, "history-actor") },
    { label: "Details", cls: "history-details", cell: eventDetails },
  ];
  return card(
    "History",
    { sub: "Imports, refusals, rollbacks, refreshes, token and trust changes recorded on this node (the latest 200), newest first, with who made each" },
    rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          table("History of changes", columns, rows, {
            captionHidden: true,
            cls: "table-history",
            stacked: true,
            rowAttrs: (e) => ({ "data-testid": "history-row", "data-event": e.event ?? "" }),
          }),
        )
      : empty("Nothing has been imported on this node yet."),
  );
}
