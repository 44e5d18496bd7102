// Downloads of the node's exports (`GET /api/v1/export/<table>.<format>`): whole tables of a
// version, or one item's rows, as CSV or Parquet, exactly as the server writes them.
import { errorFrom, readAuth, unreachable } from "./api";
import { h, icon } from "./dom";

/** An export path of the API as a URL relative to the page (so it works behind a path prefix too). */
export function exportUrl(path: string): string {
  return path.replace(/^\/+/, "");
}

/** The file name the server gave (`Content-Disposition`), else `fallback`. */
function fileName(disposition: string | null, fallback: string): string {
  const m = /filename="([^"]+)"/.exec(disposition ?? "");
  return m ? m[1] : fallback;
}

/**
 * Fetch an export with the read token and save it: for a node that asks for a token, which a
 * plain link cannot send (tokens never go in a URL). The whole file passes through the page's
 * memory. An export cut off on the way fails here, and nothing is saved.
 */
async function fetchAndSave(url: string, fallback: string, token: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, credentials: "same-origin", cache: "no-store" });
  } catch {
    throw unreachable();
  }
  if (!response.ok) throw errorFrom(response.status, await response.text().catch(() => ""), response.statusText);
  let blob: Blob;
  try {
    blob = await response.blob();
  } catch {
    throw new Error("the export was cut off on the way; nothing was saved. Try again");
  }
  const name = fileName(response.headers.get("Content-Disposition"), fallback);
  const href = URL.createObjectURL(blob);
  const a = h("a", { href, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return name;
}

/**
 * A download button for an export. Without a token it is a plain link: the browser streams the
 * file to disk and shows its progress (and a failed download as failed). With one, the page
 * fetches it with the token; `status` says how that went.
 */
export function exportLink(path: string, text: string, label: string, attrs: Record<string, string>, status?: (text: string, ok: boolean) => void): HTMLAnchorElement {
  const url = exportUrl(path);
  const fallback = url.split("?")[0].split("/").pop() ?? "export";
  const a = h("a", { class: "btn btn-small", href: url, download: "", "aria-label": label, ...attrs }, icon("download"), text);
  a.addEventListener("click", (event) => {
    const token = readAuth();
    if (!token) return; // the link itself
    event.preventDefault();
    a.setAttribute("aria-busy", "true");
    status?.(`Downloading ${fallback}…`, true);
    fetchAndSave(url, fallback, token)
      .then((name) => status?.(`Saved ${name}.`, true))
      .catch((err: unknown) => status?.(`Download failed: ${err instanceof Error ? err.message : String(err)}.`, false))
      .finally(() => a.removeAttribute("aria-busy"));
  });
  return a;
}
