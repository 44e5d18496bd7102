// Admin: the token gate, pack upload with progress, refresh, rollback. Nothing else changes data.
import type { PageContext } from "../app";
import { ApiError, apiPath, errorFrom, getJson, request, tokens, unreachable } from "../api";
import { fill, h, icon } from "../dom";
import { num, utc } from "../format";
import { sendsInClear } from "../transport";
import type { DataVersion, DataVersions, ImportResult } from "../types";
import { card, tokenRefusal } from "../ui";

type Tone = "ok" | "error" | "info";

export async function adminPage(ctx: PageContext): Promise<void> {
  const message = h("div", { class: "message", "data-testid": "admin-message", role: "status", "aria-live": "polite" });
  const say = (text: string, tone: Tone): void => {
    message.dataset.state = tone;
    message.textContent = text;
  };
  const body = h("div", { class: "admin-body" });
  fill(
    ctx.root,
    h(
      "div",
      { class: "page-head" },
      h("div", null, h("h1", null, "Admin"), h("p", { class: "muted" }, "Import result packs and choose which data version this node serves. Every action is recorded in the history.")),
    ),
    message,
    body,
  );
  const token = tokens.admin();
  if (token) fill(body, panel(ctx, token, say));
  else fill(body, tokenForm(ctx, say, (t) => fill(body, panel(ctx, t, say))));
}

/** The message of a failed admin call, for people. */
function explain(err: unknown): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : String(err);
  if (err.kind === "unreachable") return "The server is unreachable; nothing was changed. Try again when it is back.";
  if (err.status === 401) return `Token rejected. ${tokenRefusal(err)}`;
  if (err.status === 403) return `Not allowed: ${err.message}.`;
  if (err.status === 429) return `Too many admin requests: ${err.message}. Wait a minute and try again.`;
  return `${err.message} (${err.status}${err.code ? ` ${err.code}` : ""}).`;
}

/** Says that a token sent from this page crosses the network in clear; `confirm` is the admin's explicit yes. */
function plainHttpWarning(confirm: HTMLInputElement): HTMLElement {
  return h(
    "div",
    { class: "warning", id: "plain-http-warning", "data-testid": "plain-http-warning" },
    icon("alert", "warning-icon"),
    h(
      "div",
      { class: "warning-body" },
      h("p", { class: "warning-title" }, "This connection is not encrypted"),
      h(
        "p",
        null,
        `This page came over plain HTTP from ${location.host}, another machine. The admin token would cross the network in clear: anyone on the way could read it and use it to change the data this node serves. Use the node's HTTPS address instead; a node without one gets it with `,
        h("code", null, "appliance tls self-signed"),
        " and ",
        h("code", null, "appliance serve --tls-cert --tls-key"),
        " (admin guide, “HTTPS”).",
      ),
      h("label", { class: "check", for: "plain-http-confirm" }, confirm, "Send the token over plain HTTP anyway"),
    ),
  );
}

function tokenForm(ctx: PageContext, say: (text: string, tone: Tone) => void, unlocked: (token: string) => void): HTMLElement {
  const inClear = sendsInClear();
  const input = h("input", {
    type: "password",
    id: "admin-token",
    class: "input",
    "data-testid": "admin-token-input",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": inClear ? "plain-http-warning admin-token-help" : "admin-token-help",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "admin-token-submit" }, "Unlock admin actions");
  const confirm = h("input", { type: "checkbox", id: "plain-http-confirm", "data-testid": "plain-http-confirm" });
  const form = h(
    "form",
    { class: "token-form", novalidate: true },
    inClear ? plainHttpWarning(confirm) : null,
    h("label", { for: "admin-token" }, "Admin token"),
    h("div", { class: "row" }, input, submit),
    h(
      "p",
      { id: "admin-token-help", class: "muted small" },
      "The token is checked with the server, kept in this browser tab only (sessionStorage) and sent as a bearer token to the admin endpoints.",
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      say("Enter the admin token first.", "error");
      input.focus();
      return;
    }
    if (inClear && !confirm.checked) {
      say("The token was not sent: this connection is not encrypted. Open the node's HTTPS address, or tick “Send the token over plain HTTP anyway”.", "error");
      confirm.focus();
      return;
    }
    submit.disabled = true;
    say("Checking the token…", "info");
    // Refresh only re-reads the served version: harmless, and it tells whether the token is good.
    request<DataVersion>(apiPath("data/refresh"), { method: "POST", token: value, signal: ctx.signal })
      .then((answer) => {
        tokens.setAdmin(value);
        const v = answer.body;
        say(v ? `Token accepted. This node serves ${v.version}.` : "Token accepted.", "ok");
        if (v) ctx.adopt(v.version);
        unlocked(value);
      })
      .catch((err: unknown) => {
        if (ctx.signal.aborted) return;
        if (err instanceof ApiError && err.kind === "no-data") {
          tokens.setAdmin(value);
          say("Token accepted. No data has been imported on this node yet.", "ok");
          unlocked(value);
          return;
        }
        say(explain(err), "error");
        submit.disabled = false;
        input.select();
        input.focus();
      });
  });
  return card("Sign in", { cls: "card-narrow", sub: "Admin actions need the node's admin token." }, h("div", { class: "gate" }, icon("lock", "gate-icon"), form));
}

function panel(ctx: PageContext, token: string, say: (text: string, tone: Tone) => void): HTMLElement {
  let versions: DataVersions | null = null;
  const rollbackSelect = h("select", { id: "rollback-version", class: "select", "data-testid": "rollback-select" });
  const rollbackButton = h("button", { type: "button", class: "btn", "data-testid": "rollback-button" }, "Roll back");
  const rollbackNote = h("p", { class: "muted small" });
  const refreshButton = h("button", { type: "button", class: "btn", "data-testid": "refresh-button" }, icon("refresh"), "Refresh now");

  const loadVersions = async (): Promise<void> => {
    try {
      versions = await getJson<DataVersions>(apiPath("data/versions"), ctx.signal);
    } catch (err) {
      if (ctx.signal.aborted) return;
      rollbackNote.textContent = `Could not list the versions: ${explain(err)}`;
      return;
    }
    const list = [...versions.versions].reverse(); // newest first
    const previous = rollbackSelect.value;
    fill(
      rollbackSelect,
      list.map((v) =>
        h("option", { value: v.version }, `${v.version} · generated ${utc(v.generated_at)} · ${v.model_version}${v.current ? " (served now)" : ""}`),
      ),
    );
    const keep = list.find((v) => v.version === previous && !v.current);
    const pick = keep ?? list.find((v) => !v.current) ?? list[0];
    if (pick) rollbackSelect.value = pick.version;
    rollbackSelect.disabled = list.length === 0;
    rollbackNote.textContent =
      list.length === 0
        ? "No version has been published yet."
        : list.length === 1
          ? `Only ${list[0].version} exists on this node: there is nothing to roll back to.`
          : `${list.length} versions on this node; ${versions.current ?? "none"} is served now.`;
  };

  const busy = (on: boolean): void => {
    for (const b of [rollbackButton, refreshButton, uploadButton]) b.disabled = on;
  };

  refreshButton.addEventListener("click", () => {
    busy(true);
    say("Refreshing…", "info");
    request<DataVersion>(apiPath("data/refresh"), { method: "POST", token, signal: ctx.signal })
      .then((answer) => {
        const v = answer.body;
        if (v) {
          say(`Refreshed: this node serves ${v.version} (generated ${utc(v.generated_at)}, model ${v.model_version}).`, "ok");
          ctx.adopt(v.version);
        }
      })
      .catch((err: unknown) => {
        if (ctx.signal.aborted) return;
        if (err instanceof ApiError && err.kind === "no-data") say("Refreshed: no data has been imported on this node yet.", "info");
        else say(explain(err), "error");
      })
      .finally(() => busy(false));
  });

  rollbackButton.addEventListener("click", () => {
    const version = rollbackSelect.value;
    if (!version) {
      say("Choose a version to roll back to.", "error");
      return;
    }
    busy(true);
    say(`Rolling back to ${version}…`, "info");
    request<DataVersion>(apiPath("data/rollback"), { method: "POST", token, body: { version }, signal: ctx.signal })
      .then((answer) => {
        const v = answer.body;
        say(`Rolled back: this node serves ${v?.version ?? version} again.`, "ok");
        ctx.adopt(v?.version ?? version);
        return loadVersions();
      })
      .catch((err: unknown) => {
        if (!ctx.signal.aborted) say(`Rollback refused: ${explain(err)}`, "error");
      })
      .finally(() => busy(false));
  });

  // Upload: XMLHttpRequest, for its upload progress events; the body is the .pack file itself.
  const fileInput = h("input", { type: "file", id: "upload-file", class: "file", accept: ".pack", "data-testid": "upload-input" });
  const uploadButton = h("button", { type: "button", class: "btn btn-primary", "data-testid": "upload-button" }, "Upload and import");
  const progress = h("progress", { id: "upload-progress", "data-testid": "upload-progress", max: "100", value: "0" });
  const progressText = h("span", { class: "progress-text muted small", "aria-live": "polite" }, "");
  const resultSlot = h("div", { class: "result-slot" });
  const verdict = (status: "ok" | "refused" | "error", text: string, details?: string): void => {
    fill(
      resultSlot,
      h("div", { class: `verdict verdict-${status}`, "data-testid": "upload-result", "data-status": status, role: "status" }, text),
      details ? h("p", { class: "muted small verdict-details" }, details) : null,
    );
  };

  uploadButton.addEventListener("click", () => {
    const file = fileInput.files?.[0];
    if (!file) {
      verdict("error", "Choose a .pack file first.");
      fileInput.focus();
      return;
    }
    busy(true);
    say("", "info");
    resultSlot.replaceChildren();
    progress.value = 0;
    progressText.textContent = `Uploading ${file.name}…`;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiPath("data/packs"));
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const p = (event.loaded / event.total) * 100;
      progress.value = p;
      progressText.textContent = `Uploading ${file.name}: ${Math.floor(p)}% of ${num(event.total / 1048576, 1)} MB`;
    });
    xhr.upload.addEventListener("load", () => {
      progress.value = 100;
      progressText.textContent = "Uploaded. The server is verifying and importing the pack…";
    });
    xhr.addEventListener("load", () => {
      busy(false);
      progress.value = 100;
      progressText.textContent = "";
      if (xhr.status === 201) {
        let result: ImportResult | null = null;
        try {
          result = JSON.parse(xhr.responseText) as ImportResult;
        } catch {
          result = null;
        }
        if (!result) {
          verdict("error", "The server imported the pack but its answer could not be read.");
          return;
        }
        const rows = Object.entries(result.rows).map(([t, n]) => `${t} ${num(n, 0)}`).join(", ");
        verdict(
          "ok",
          `Imported as ${result.version}`,
          `Now served. Previous version: ${result.previous ?? "none"}. Dataset ${result.dataset_id}, generated ${utc(result.generated_at)}. Rows: ${rows}. Pack id ${result.pack_id}.`,
        );
        ctx.adopt(result.version);
        void loadVersions();
        return;
      }
      const err = errorFrom(xhr.status, xhr.responseText, xhr.statusText);
      if (xhr.status === 422) {
        verdict("refused", `Refused (${err.reason ?? err.code}): ${err.message}`, "Nothing was changed; the refusal is recorded in the history.");
        void loadVersions();
        return;
      }
      verdict("error", `Upload failed: ${explain(err)}`);
      if (xhr.status === 401 || xhr.status === 403) say(explain(err), "error");
    });
    const failed = (): void => {
      busy(false);
      progressText.textContent = "";
      verdict("error", `Upload failed: ${explain(unreachable())}`);
    };
    xhr.addEventListener("error", failed);
    xhr.addEventListener("timeout", failed);
    xhr.send(file);
  });

  const forget = h(
    "button",
    {
      type: "button",
      class: "btn btn-quiet",
      onclick: () => {
        tokens.setAdmin(null);
        ctx.rerender();
      },
    },
    "Forget the token",
  );

  void loadVersions();
  return h(
    "div",
    { class: "admin-grid", "data-testid": "admin-panel" },
    card(
      "Upload a result pack",
      { cls: "card-upload", sub: "A signed .pack file from the ML workstation. It is verified and imported exactly like the “appliance import” command, then served at once." },
      h(
        "div",
        { class: "upload" },
        h("label", { for: "upload-file" }, "Result pack (.pack)"),
        fileInput,
        h("div", { class: "row" }, uploadButton),
        h("div", { class: "progress-row" }, h("label", { for: "upload-progress", class: "small" }, "Upload progress"), progress, progressText),
        resultSlot,
      ),
    ),
    card(
      "Refresh",
      { sub: "Make the server re-read which version is current (after an import from the command line, for example)." },
      h("div", { class: "row" }, refreshButton),
    ),
    card(
      "Roll back",
      { sub: "Serve an earlier version again. It can be undone by rolling back to the newer one." },
      h("div", { class: "field" }, h("label", { for: "rollback-version" }, "Version to serve"), rollbackSelect),
      rollbackNote,
      h("div", { class: "row" }, rollbackButton),
    ),
    h("div", { class: "admin-foot muted small" }, "Admin token kept for this browser tab. ", forget),
  );
}
