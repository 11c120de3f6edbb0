// The live event stream: one websocket on /v1/events that resumes after the last event it saw.
//
// Each event is handled once: the id is a strictly increasing offset, so anything at or before the
// last id seen (a replay overlapping a reconnect) is dropped, and a reconnect asks for `since` it.
// Before any event, the offset is the one the server's `subscribed` frame says the stream starts
// after, so a drop before the first event loses nothing either.
// A connection that stops answering pings is given up on: a dead network path never says so.

import { websocketUrl } from "./api.js";

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 10000;
const PING_EVERY_MS = 15000;

export class EventStream {
  constructor({ onEvent, onReset, onStatus }) {
    this.onEvent = onEvent;
    this.onReset = onReset;
    this.onStatus = onStatus;
    this.lastId = null;
    this.socket = null;
    this.delay = FIRST_DELAY_MS;
    this.timer = null;
    this.pinger = null;
    this.heard = 0;
    this.paused = false;
    this.reconnects = 0;
    // Resolved once the first subscription is confirmed: the job list loads after it, so no
    // change falls between the listing and the stream.
    this.live = new Promise((resolve) => {
      this.resolveLive = resolve;
    });
  }

  start() {
    this.paused = false;
    this.connect();
  }

  pause() {
    this.paused = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.drop();
    socket?.close(1000, "paused");
    this.onStatus("paused");
  }

  connect() {
    clearTimeout(this.timer);
    const socket = new WebSocket(websocketUrl("v1/events"));
    this.socket = socket;
    this.onStatus("connecting");
    socket.addEventListener("open", () => {
      const frame = { op: "subscribe" };
      if (this.lastId !== null) frame.since = Number(this.lastId);
      socket.send(JSON.stringify(frame));
      this.heard = Date.now();
      this.pinger = setInterval(() => this.ping(socket), PING_EVERY_MS);
    });
    socket.addEventListener("message", (message) => {
      if (this.socket !== socket) return;
      this.heard = Date.now();
      this.receive(message.data);
    });
    socket.addEventListener("close", () => this.lost(socket));
  }

  // The server's first frame for a subscription: it is in place, and delivers the events after
  // `since` (the one asked for, or lower where that was past the newest event).
  subscribed(since) {
    this.lastId = String(since);
    this.delay = FIRST_DELAY_MS;
    this.onStatus("live");
    this.resolveLive();
  }

  ping(socket) {
    if (Date.now() - this.heard > 2 * PING_EVERY_MS) {
      this.lost(socket);
      socket.close(4000, "no answer to pings");
    } else {
      socket.send(JSON.stringify({ op: "ping" }));
    }
  }

  drop() {
    clearInterval(this.pinger);
    this.socket = null;
  }

  // The socket closed or went silent: try again after a growing delay (unless paused).
  lost(socket) {
    if (this.socket !== socket) return;
    this.drop();
    if (this.paused) return;
    this.reconnects += 1;
    this.onStatus("reconnecting", this.delay);
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
  }

  receive(text) {
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      return;
    }
    if (event.type === "subscribed" && Number.isSafeInteger(event.since)) {
      this.subscribed(event.since);
      return;
    }
    if (typeof event.id !== "string" || typeof event.type !== "string") return;
    if (event.type === "jobwarden.stream.reset") {
      this.lastId = event.id;
      this.onReset(event);
      return;
    }
    if (this.lastId !== null && BigInt(event.id) <= BigInt(this.lastId)) return;
    this.lastId = event.id;
    this.onEvent(event);
  }
}
