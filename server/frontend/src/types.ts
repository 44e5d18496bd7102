// Shapes of the API answers (server/schemas.py is the source of truth).

export interface Traceability {
  version: string;
  dataset_id: string;
  model_version: string;
  source: string;
  generated_at: string;
}

export interface ErrorDetail {
  status: number;
  code: string;
  message: string;
  request_id: string;
  reason?: string;
}

export interface Timeseries extends Traceability {
  item_id: string;
  name: string;
  category: string;
  site: string;
  unit: string;
  points: number;
  dates: string[];
  yhat: number[];
  yhat_lower: number[];
  yhat_upper: number[];
  actual: (number | null)[];
}

export interface Inventory extends Traceability {
  item_id: string;
  name: string;
  category: string;
  site: string;
  unit: string;
  lead_time_days: number;
  unit_cost: number | null;
  on_hand_now: number | null;
  reorder_point: number | null;
  safety_stock: number | null;
  days_of_cover_now: number | null;
  max_stockout_risk: number | null;
  first_below_reorder_point: string | null;
  dates: string[];
  on_hand: number[];
  days_of_cover: (number | null)[];
  stockout_risk: number[];
}

export interface ItemSummary {
  item_id: string;
  name: string;
  category: string;
  site: string;
  unit: string;
  max_stockout_risk: number | null;
  days_of_cover_now: number | null;
  forecast_next_30d: number;
}

export interface ItemsPage {
  items: ItemSummary[];
  next: string | null;
  total: number;
  data: Traceability;
}

export interface Kpi {
  metric: string;
  value: number;
  period: string;
}

export interface ForecastSummary {
  category: string | null;
  site: string | null;
  kpi_scope: string;
  items: number;
  items_at_risk: number;
  forecast_units_next_30d: number;
  kpis: Kpi[];
  categories: string[];
  sites: string[];
  data: Traceability;
}

export interface DataVersion {
  version: string;
  current: boolean;
  pack_id: string;
  dataset_id: string;
  model_version: string;
  source: string;
  generated_at: string;
  imported_at: string;
  imported_by: string | null;
  /** How the import came (the `by` of its audit-trail event); absent from older servers' answers. */
  imported_via?: ChangedBy | null;
  signer: Record<string, string> | null;
  rows: Record<string, number>;
}

/** Who made a change (`by` of an audit-trail line): a user on the node's command line, or an API token. */
export interface ChangedBy {
  via?: "cli" | "api" | string;
  host?: string;
  user?: string | null;
  token?: string | null;
  role?: string | null;
  client?: string | null;
  request_id?: string | null;
}

export interface HistoryEvent {
  ts?: string;
  event?: string;
  actor?: string;
  by?: ChangedBy;
  version?: string;
  previous?: string | null;
  reason?: string;
  message?: string;
  [key: string]: unknown;
}

/** One table of a kept version as the export endpoint offers it. */
export interface ExportTable {
  table: string;
  rows: number;
  filters: string[];
  csv: string;
  parquet: string;
}

export interface ExportVersion {
  version: string;
  current: boolean;
  dataset_id: string;
  generated_at: string;
  tables: ExportTable[];
}

export interface DataVersions {
  current: string | null;
  versions: DataVersion[];
  history: HistoryEvent[];
  /** Each kept version's tables for download (absent from servers without exports). */
  exports?: ExportVersion[];
}

export interface ImportResult {
  version: string;
  previous: string | null;
  pack_id: string;
  dataset_id: string;
  generated_at: string;
  rows: Record<string, number>;
}

// Forecast revisions: what changed between the served version and another (server/schemas.py).

export interface RevisionVersion {
  version: string;
  dataset_id: string;
  model_version: string;
  source: string;
  generated_at: string;
  horizon_start: string | null;
  horizon_end: string | null;
  items: number;
}

export interface RevisionWindow {
  rule: string;
  start: string;
  end: string;
  days: number;
}

export interface RevisionTotals {
  items_compared: number;
  items_new: number;
  items_dropped: number;
  items_changed: number;
  forecast_total_current: number | null;
  forecast_total_against: number | null;
  forecast_change: number | null;
  forecast_change_pct: number | null;
  forecast_total_new_items: number | null;
  forecast_total_dropped_items: number | null;
  items_at_risk_current: number;
  items_at_risk_against: number;
  items_below_reorder_point_current: number;
  items_below_reorder_point_against: number;
  category?: string;
  site?: string;
}

export interface ItemRevision {
  item_id: string;
  name: string;
  category: string;
  site: string;
  unit: string;
  status: "compared" | "new" | "dropped";
  days_current: number;
  days_against: number;
  forecast_total_current: number | null;
  forecast_total_against: number | null;
  forecast_change: number | null;
  forecast_change_pct: number | null;
  first_below_reorder_point_current: string | null;
  first_below_reorder_point_against: string | null;
  first_below_reorder_point_change_days: number | null;
  max_stockout_risk_current: number | null;
  max_stockout_risk_against: number | null;
  max_stockout_risk_change: number | null;
}

export interface Revisions {
  current: RevisionVersion;
  against: RevisionVersion | null;
  note: string | null;
  window: RevisionWindow | null;
  precomputed: boolean;
  totals: RevisionTotals | null;
  by_category: RevisionTotals[];
  by_site: RevisionTotals[];
  items: ItemRevision[];
  total: number;
  next_offset: number | null;
  data: Traceability;
}

export interface ItemRevisionSeries {
  item_id: string;
  name: string;
  unit: string;
  current: RevisionVersion;
  against: RevisionVersion | null;
  note: string | null;
  window: RevisionWindow | null;
  revision: ItemRevision | null;
  dates: string[];
  yhat: (number | null)[];
  against_yhat: (number | null)[];
  against_yhat_lower: (number | null)[];
  against_yhat_upper: (number | null)[];
  against_days_outside: number;
  data: Traceability;
}
