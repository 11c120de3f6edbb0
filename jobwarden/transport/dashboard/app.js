// The dashboard's wiring: load tools and jobs, follow the event stream, submit, cancel, poll health.

import { ApiError, apiKey, forgetKey, onKeyNeeded, request } from "./api.js";
import { pretty, show } from "./dom.js";
import { EventStream } from "./events.js";
import { HealthPanel } from "./health.js";
import { JobTable, TERMINAL } from "./jobs.js";
import { buildForm, FormInputError } from "./schema_form.js";

const PAGE_SIZE = 50;
const HEALTH_EVERY_MS = 2000;
const LIVE_WAIT_MS = 3000;
const $ = (id) => document.getElementById(id);

const table = new JobTable($("jobs").tBodies[0], { onSelect: select });
const health = new HealthPanel({ tbody: $("tools").tBodies[0], chart: $("chart"), now: $("chart-now"), max: $("chart-max") });
const fetching = new Set();
let tools = [];
let nextCursor = null;
let form = null;

// --- the API key ------------------------------------------------------------------------------

let pendingKey = null;
onKeyNeeded((reason) => {
  pendingKey ??= new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-reason").textContent = reason || "This server needs an API key.";
    $("key-input").value = "";
    dialog.addEventListener(
      "close",
      () => {
        pendingKey = null;
        resolve($("key-input").value.trim() || null);
      },
      { once: true },
    );
    dialog.showModal();
  });
  return pendingKey.then((key) => {
    $("forget-key").hidden = !key;
    return key;
  });
});

$("forget-key").addEventListener("click", () => {
  forgetKey();
  location.reload();
});

// --- jobs -------------------------------------------------------------------------------------

// Bumped by each fresh listing, so a slower, older one that answers late is dropped.
let listing = 0;

async function loadJobs({ more = false } = {}) {
  if (!more) {
    table.clear();
    nextCursor = null;
    listing += 1;
  }
  const mine = listing;
  const page = await request("GET", "v1/jobs", {
    params: { ...table.filter, limit: PAGE_SIZE, cursor: more ? nextCursor : null },
  });
  if (mine !== listing) return;
  for (const job of page.jobs) table.put(job);
  nextCursor = page.next_cursor;
  $("load-more").hidden = !nextCursor;
  $("jobs-empty").hidden = table.rows.size > 0;
}

async function fetchJob(id) {
  if (fetching.has(id)) return;
  fetching.add(id);
  try {
    const body = await request("GET", `v1/jobs/${encodeURIComponent(id)}`);
    table.put(body.job);
    $("jobs-empty").hidden = table.rows.size > 0;
    if (table.selected === id) renderDetail();
  } catch (error) {
    banner(error);
  } finally {
    fetching.delete(id);
  }
}

async function select(id) {
  table.selected = id;
  for (const [rowId, row] of table.rows) row.classList.toggle("selected", rowId === id);
  show($("cancel-error"), "");
  renderDetail();
  await fetchJob(id);
}

function renderDetail() {
  const job = table.jobs.get(table.selected);
  $("detail").hidden = !job;
  if (!job) return;
  $("detail-id").textContent = job.id;
  const facts = [
    ["tool", job.tool],
    ["state", job.state],
    ["attempt", job.attempt],
    ["created", job.created_at],
    ["started", job.started_at],
    ["finished", job.finished_at],
  ];
  $("detail-facts").replaceChildren(
    ...facts.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value ?? "–";
      dd.dataset.fact = name;
      return [dt, dd];
    }),
  );
  $("detail-input").textContent = job.input === undefined ? "(loading…)" : pretty(job.input);
  const failed = job.error !== null && job.error !== undefined;
  $("detail-outcome-title").textContent = failed ? "Error" : "Result";
  $("detail-outcome").textContent = TERMINAL.has(job.state)
    ? pretty(failed ? { error: job.error } : job.result)
    : "(not finished)";
  $("cancel").disabled = TERMINAL.has(job.state);
  $("detail-events").replaceChildren(
    ...(table.events.get(job.id) ?? []).map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
}

$("cancel").addEventListener("click", async () => {
  const id = table.selected;
  show($("cancel-error"), "");
  try {
    const body = await request("POST", `v1/jobs/${encodeURIComponent(id)}/cancel`);
    table.put(body.job);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const why = error.status === 409 ? "Cannot cancel: the job already finished." : "Cancel refused.";
    show($("cancel-error"), `${why} (${error.status} ${error.type}: ${error.message})`);
    await fetchJob(id);
  }
  renderDetail();
});

$("load-more").addEventListener("click", () => loadJobs({ more: true }).catch(banner));

$("filters").addEventListener("change", () => {
  table.filter = { state: $("filter-state").value, tool: $("filter-tool").value };
  loadJobs().catch(banner);
});

// --- live events ------------------------------------------------------------------------------

const stream = new EventStream({
  onEvent(event) {
    const data = event.data;
    if (!table.apply(event) && table.matches({ state: data.state, tool: data.tool })) fetchJob(data.job_id);
    if (data.job_id === table.selected) renderDetail();
  },
  onReset() {
    loadJobs().catch(banner);
  },
  onStatus(state, delay) {
    const node = $("connection");
    node.dataset.state = state;
    node.dataset.reconnects = String(stream.reconnects);
    node.dataset.lastEventId = stream.lastId ?? "";
    const words = {
      connecting: "connecting…",
      live: "live",
      paused: "paused",
      reconnecting: `reconnecting in ${((delay ?? 0) / 1000).toFixed(1)} s`,
    };
    node.textContent = words[state] ?? state;
  },
});

$("pause").addEventListener("click", () => {
  const pausing = !stream.paused;
  $("pause").setAttribute("aria-pressed", String(pausing));
  $("pause").textContent = pausing ? "Resume live updates" : "Pause live updates";
  if (pausing) stream.pause();
  else stream.start();
});

// --- submitting -------------------------------------------------------------------------------

function chooseTool() {
  const tool = tools.find((t) => t.name === $("submit-tool").value);
  if (!tool) return;
  $("submit-tool-description").textContent = tool.description;
  form = buildForm(tool.input_schema);
  $("submit-fields").replaceChildren(form.node);
  $("submit-json").value = "{}";
  show($("submit-error"), "");
}

function formInput() {
  if ($("submit-raw").checked) {
    try {
      return JSON.parse($("submit-json").value || "{}");
    } catch (error) {
      throw new FormInputError(`input is not valid JSON: ${error.message}`);
    }
  }
  return form.read();
}

$("submit-tool").addEventListener("change", chooseTool);

$("submit-raw").addEventListener("change", () => {
  const raw = $("submit-raw").checked;
  if (raw) {
    try {
      $("submit-json").value = pretty(form.read());
    } catch {
      $("submit-json").value = "{}";
    }
  }
  $("submit-json").hidden = !raw;
  $("submit-fields").hidden = raw;
});

$("submit").addEventListener("submit", async (e) => {
  e.preventDefault();
  show($("submit-error"), "");
  show($("submit-ok"), "");
  try {
    const body = await request("POST", "v1/jobs", { body: { tool: $("submit-tool").value, input: formInput() } });
    table.put(body.job);
    $("jobs-empty").hidden = table.rows.size > 0;
    show($("submit-ok"), `Submitted job ${body.job.id}`);
  } catch (error) {
    if (error instanceof FormInputError) show($("submit-error"), error.message);
    else if (error instanceof ApiError) show($("submit-error"), `${error.type}: ${error.message}`);
    else throw error;
  }
});

// --- start ------------------------------------------------------------------------------------

// Refusals stay until the next one; a lost connection clears itself once the server answers.
function banner(error) {
  const refused = error instanceof ApiError;
  $("banner").dataset.kind = refused ? "refused" : "unreachable";
  show($("banner"), refused ? `${error.status} ${error.type}: ${error.message}` : `Could not reach the server: ${error.message}`);
}

async function pollHealth() {
  try {
    await health.refresh();
    if ($("banner").dataset.kind === "unreachable") show($("banner"), "");
  } catch (error) {
    banner(error);
  }
  setTimeout(pollHealth, HEALTH_EVERY_MS);
}

async function start() {
  $("forget-key").hidden = !apiKey();
  tools = (await request("GET", "v1/tools")).tools;
  for (const tool of tools) {
    $("submit-tool").append(new Option(tool.name, tool.name));
    $("filter-tool").append(new Option(tool.name, tool.name));
  }
  chooseTool();
  stream.start();
  // Without a working websocket (a proxy that drops them, say) the list still loads.
  await Promise.race([stream.live, new Promise((resolve) => setTimeout(resolve, LIVE_WAIT_MS))]);
  await loadJobs();
  pollHealth();
  setInterval(() => table.tick(), 1000);
  document.body.dataset.ready = "true";
}

start().catch(banner);
