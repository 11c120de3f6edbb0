// The job list: one row per job id, newest first, kept current by events and shown through filters.

import { el } from "./dom.js";

export const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled"]);

export class JobTable {
  constructor(tbody, { onSelect }) {
    this.tbody = tbody;
    this.onSelect = onSelect;
    this.jobs = new Map(); // id -> job record, kept current by events
    this.rows = new Map(); // id -> <tr>
    this.events = new Map(); // id -> event types seen on this page, in order
    this.filter = { state: "", tool: "" };
    this.selected = null;
  }

  clear() {
    this.jobs.clear();
    this.rows.clear();
    this.events.clear();
    this.tbody.replaceChildren();
  }

  matches(job) {
    return (!this.filter.state || job.state === this.filter.state) && (!this.filter.tool || job.tool === this.filter.tool);
  }

  // A record from the API: fills in what events cannot tell (input, created_at), and takes the
  // state of whichever of the two is further along, so neither an older fetch nor a stale stream
  // undoes a newer state.
  put(record) {
    const known = this.jobs.get(record.id);
    const merged = known && progressed(known) > progressed(record) ? { ...record, ...moving(known) } : record;
    this.jobs.set(record.id, merged);
    this.render(record.id);
  }

  // An event about a job; false when the job is not known here (the caller fetches it).
  apply(event) {
    const data = event.data;
    const types = this.events.get(data.job_id) ?? [];
    types.push(`${event.id} ${event.type.replace("jobwarden.job.", "")}`);
    this.events.set(data.job_id, types);
    const job = this.jobs.get(data.job_id);
    if (!job) return false;
    if (progressed(data) < progressed(job)) return true; // a fetch already showed what follows
    job.state = data.state;
    job.attempt = data.attempt;
    if (data.progress !== null) job.progress = data.progress;
    if (data.state === "running" && event.type !== "jobwarden.job.progress") job.started_at = event.time;
    if (TERMINAL.has(data.state)) {
      job.finished_at = event.time;
      job.result = data.result;
      job.error = data.error;
    }
    this.render(data.job_id);
    return true;
  }

  render(id) {
    const job = this.jobs.get(id);
    let row = this.rows.get(id);
    if (!this.matches(job)) {
      row?.remove();
      this.rows.delete(id);
      return;
    }
    if (!row) {
      row = el("tr", { "data-job-id": id, tabindex: "0", onclick: () => this.onSelect(id) });
      row.addEventListener("keydown", (e) => e.key === "Enter" && this.onSelect(id));
      this.rows.set(id, row);
      this.place(id, row);
    }
    const progress = el("progress", { max: "1", "aria-label": "progress" });
    const value = job.state === "succeeded" ? 1 : job.progress;
    if (value !== null && value !== undefined) progress.value = value;
    else if (job.state !== "running") progress.value = 0;
    row.dataset.state = job.state;
    row.classList.toggle("selected", id === this.selected);
    row.replaceChildren(
      el("td", {}, el("code", { text: id.slice(-8), title: id })),
      el("td", { class: "tool", text: job.tool }),
      el("td", {}, el("span", { class: `state ${job.state}`, text: job.state })),
      el("td", {}, progress),
      el("td", { class: "duration", text: duration(job) }),
      el("td", { text: job.created_at ? new Date(job.created_at).toLocaleTimeString() : "" }),
    );
  }

  // Ids sort by creation time: keep the rows in descending id order.
  place(id, row) {
    for (const other of this.tbody.children) {
      if (other.dataset.jobId < id) {
        this.tbody.insertBefore(row, other);
        return;
      }
    }
    this.tbody.append(row);
  }

  tick() {
    for (const [id, row] of this.rows) {
      const job = this.jobs.get(id);
      if (job.state === "running") row.querySelector(".duration").textContent = duration(job);
    }
  }
}

// How far along a job is: attempts only grow, and within one it goes queued, running, finished.
function progressed(job) {
  const step = TERMINAL.has(job.state) ? 2 : job.state === "running" ? 1 : 0;
  return job.attempt * 3 + step;
}

// The members that change as a job moves, as events brought them.
function moving(job) {
  const changed = { state: job.state, attempt: job.attempt };
  for (const name of ["progress", "started_at", "finished_at", "result", "error"]) {
    if (job[name] !== undefined && job[name] !== null) changed[name] = job[name];
  }
  return changed;
}

export function duration(job) {
  if (!job.started_at) return "";
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  const ms = Math.max(0, end - Date.parse(job.started_at));
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
