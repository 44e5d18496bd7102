// Data: the version served now and where it came from; every version; the import history.
import type { PageContext } from "../app";
import { ApiError, apiPath, getJson } from "../api";
import { fill, h } from "../dom";
import { age, num, utc } from "../format";
import type { DataVersion, DataVersions, HistoryEvent } from "../types";
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
  const current = currentResult.status === "fulfilled" ? currentResult.value : null;
  const versions = versionsResult.status === "fulfilled" ? versionsResult.value : null;
  ctx.showing(current ? current.version : null);

  fill(
    ctx.root,
    h("div", { class: "page-head" }, h("div", null, h("h1", null, "Data versions"), h("p", { class: "muted" }, "What this node serves, where it came from, and every import, refusal and rollback."))),
    current ? currentCard(current) : card("Served now", {}, errorState(currentResult.status === "rejected" ? currentResult.reason : null)),
    versions ? versionsCard(versions) : card("Versions", {}, errorState(versionsResult.status === "rejected" ? versionsResult.reason : null)),
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
      ["Imported by", v.imported_by ?? "–"],
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

const EVENT_LABELS: Record<string, [string, string]> = {
  import: ["Imported", "tag-ok"],
  reject: ["Refused", "tag-bad"],
  rollback: ["Rolled back", "tag-info"],
  "import-discarded": ["Discarded", "tag-warn"],
};

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
    case "rollback":
      parts.push(h("span", null, `Serving ${e.version ?? "?"} again${e.previous ? ` instead of ${e.previous}` : ""}`));
      break;
    default:
      parts.push(h("span", null, [e.version, e.reason, e.message].filter((x) => typeof x === "string" && x).join(" · ") || "–"));
  }
  return h("div", { class: "event-details" }, parts);
}

function historyCard(history: HistoryEvent[]): HTMLElement {
  const rows = [...history].reverse(); // newest first
  const columns = [
    { label: "When", cell: (e: HistoryEvent) => h("span", null, timeCell(e.ts ?? null), e.ts ? h("span", { class: "muted small block" }, age(e.ts)) : null) },
    {
      label: "Event",
      cell: (e: HistoryEvent) => {
        const [text, tone] = EVENT_LABELS[e.event ?? ""] ?? [e.event ?? "?", "tag-info"];
        return h("span", { class: `tag ${tone}` }, text);
      },
    },
    { label: "Version", cell: (e: HistoryEvent) => h("span", { class: "mono" }, e.version ?? "–") },
    { label: "Details", cell: eventDetails },
    { label: "By", cls: "hide-narrow", cell: (e: HistoryEvent) => e.actor ?? "–" },
  ];
  return card(
    "History",
    { sub: "Imports, refusals and rollbacks recorded on this node (the latest 200), newest first" },
    rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          table("Import history", columns, rows, {
            captionHidden: true,
            cls: "table-history",
            rowAttrs: (e) => ({ "data-testid": "history-row", "data-event": e.event ?? "" }),
          }),
        )
      : empty("Nothing has been imported on this node yet."),
  );
}
