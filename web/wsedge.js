/*
 * wsedge.js — a small browser client for the wsedge hub (/ws).
 *
 * Classic script, no dependencies, ES2017+. Defines window.WsEdge.
 * Reconnects with capped exponential backoff and full jitter, asks the
 * caller for a fresh one-time token before every attempt, re-subscribes
 * after every reconnect, and detects dead connections with an app-level
 * ping. See docs/client.md.
 *
 * It never writes to the console: tokens and message contents stay out of
 * logs.
 */
(function (global) {
  'use strict';

  function wsError(code, reason) {
    return Object.assign(new Error(reason || code), { code: code, reason: reason || code });
  }

  class WsEdge {
    /**
     * @param {object} opts
     * @param {string} opts.url  ws:// or wss:// URL of the hub (an http(s):// or
     *   relative URL is converted to ws(s):// against the page's location)
     * @param {() => Promise<string|null>} [opts.token]  called before every
     *   connection attempt; null or undefined means "connect without a token"
     * @param {{initialMs?: number, maxMs?: number, resetAfterMs?: number}} [opts.backoff]
     * @param {number} [opts.heartbeatMs]  ping period; 0 turns the heartbeat off
     * @param {number} [opts.heartbeatTimeoutMs]  silence after a ping that counts as dead
     */
    constructor(opts) {
      const url = new URL(opts.url, global.location && global.location.href);
      url.protocol = url.protocol.replace(/^http/, 'ws');
      this._url = url.href;
      this._token = opts.token || null;
      this._backoff = Object.assign({ initialMs: 250, maxMs: 10000, resetAfterMs: 5000 }, opts.backoff);
      this._heartbeatMs = opts.heartbeatMs === undefined ? 20000 : opts.heartbeatMs;
      this._heartbeatTimeoutMs = opts.heartbeatTimeoutMs === undefined ? 10000 : opts.heartbeatTimeoutMs;

      this.state = 'connecting';
      this._listeners = new Map(); // event name -> Set of functions
      this._subs = new Map();      // channel -> Set of handlers
      this._pending = new Map();   // request id -> {resolve, reject}
      this._nextId = 1;
      this._attempt = 0;           // failed attempts since the last stable connection
      this._ws = null;
      this._openedAt = 0;
      this._closed = false;
      this._timers = { reconnect: 0, ping: 0, dead: 0 };
      // Connect on the next turn, so that listeners added right after
      // construction see every event.
      this._timers.reconnect = setTimeout(() => this._connect(), 0);
    }

    /** Adds a listener; returns a function that removes it. */
    on(event, fn) {
      if (!this._listeners.has(event)) this._listeners.set(event, new Set());
      this._listeners.get(event).add(fn);
      return () => this._listeners.get(event).delete(fn);
    }

    /**
     * Calls handler(data, msg) for every message on `channel`, across
     * reconnects. Returns a function that removes this handler (and
     * unsubscribes when it was the channel's last one).
     */
    subscribe(channel, handler) {
      let handlers = this._subs.get(channel);
      if (!handlers) {
        handlers = new Set();
        this._subs.set(channel, handlers);
        if (this.state === 'open') this._sendSubscribe(channel);
      }
      handlers.add(handler);
      return () => {
        if (!handlers.delete(handler) || handlers.size > 0) return;
        this._subs.delete(channel);
        this._request({ type: 'unsubscribe', channel: channel }).catch(() => {});
      };
    }

    /**
     * Publishes `data` (any JSON value) to `channel`. Resolves on the
     * server's ack; rejects with an Error carrying `code` and `reason` on an
     * error frame, when not connected ('not_connected') or when the
     * connection ends first ('disconnected').
     */
    publish(channel, data) {
      return this._request({ type: 'publish', channel: channel, data: data });
    }

    /** Closes for good: no reconnect after this. */
    close() {
      if (this._closed) return;
      this._closed = true;
      clearTimeout(this._timers.reconnect);
      // With a socket, 'close' fires for it; without one (between attempts)
      // the last socket's 'close' has fired already.
      if (this._ws) this._drop(1000, 'closed by client', true);
      else this._setState('closed');
    }

    // --- connection lifecycle -------------------------------------------

    async _connect() {
      let token = null;
      if (this._token) {
        try {
          token = await this._token();
        } catch (err) {
          if (this._closed) return;
          this._emit('error', wsError('token_failed', err && err.message));
          this._scheduleReconnect();
          return;
        }
      }
      if (this._closed) return;
      // The token travels as a subprotocol, not as ?ws_token=: the browser
      // prints a failed socket's URL to the console, and proxies log URLs.
      let ws;
      try {
        ws = token == null
          ? new WebSocket(this._url)
          : new WebSocket(this._url, ['wsedge', 'ws_token.' + token]);
      } catch (err) {
        // A token with characters a subprotocol cannot carry, or a URL the page may not reach.
        this._emit('error', wsError('connect_failed', err.message));
        this._scheduleReconnect();
        return;
      }
      this._ws = ws;
      ws.onopen = () => this._onOpen();
      ws.onmessage = (ev) => this._onMessage(ev.data);
      // A failed or broken socket always fires close after error; the
      // reconnect is decided there.
      ws.onerror = () => this._emit('error', wsError('socket_error', 'WebSocket error'));
      ws.onclose = (ev) => this._drop(ev.code, ev.reason, ev.wasClean);
    }

    _onOpen() {
      this._openedAt = Date.now();
      this._setState('open');
      for (const channel of this._subs.keys()) this._sendSubscribe(channel);
      if (this._heartbeatMs > 0) {
        this._timers.ping = setInterval(() => this._ping(), this._heartbeatMs);
      }
      this._emit('open');
    }

    /** Detaches the current socket, fails what was pending, and reconnects unless closed. */
    _drop(code, reason, wasClean) {
      const ws = this._ws;
      this._ws = null;
      clearInterval(this._timers.ping);
      clearTimeout(this._timers.dead);
      this._timers.dead = 0;
      if (ws) {
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
      }
      for (const p of this._pending.values()) p.reject(wsError('disconnected', 'connection closed'));
      this._pending.clear();
      if (this._openedAt && Date.now() - this._openedAt >= this._backoff.resetAfterMs) this._attempt = 0;
      this._openedAt = 0;
      this._emit('close', { code: code, reason: reason, wasClean: wasClean });
      // A 'close' listener may have called close().
      if (this._closed) this._setState('closed');
      else this._scheduleReconnect();
    }

    _scheduleReconnect() {
      // Full jitter: uniform in [0, min(max, initial * 2^attempt)).
      const cap = Math.min(this._backoff.maxMs, this._backoff.initialMs * Math.pow(2, this._attempt));
      const delayMs = Math.floor(Math.random() * cap);
      this._attempt += 1;
      this._setState('reconnecting');
      this._emit('reconnecting', { attempt: this._attempt, delayMs: delayMs });
      this._timers.reconnect = setTimeout(() => this._connect(), delayMs);
    }

    // --- heartbeat ------------------------------------------------------

    /**
     * The browser answers the server's WebSocket pings itself but never
     * tells the page when a connection silently died (NAT timeout, sleep,
     * network switch). So: ping at the app level, and if nothing at all
     * arrives within heartbeatTimeoutMs, drop the socket and reconnect.
     */
    _ping() {
      this._send({ type: 'ping', id: this._nextId++ });
      if (!this._timers.dead) {
        this._timers.dead = setTimeout(() => this._drop(1006, 'heartbeat timeout', false), this._heartbeatTimeoutMs);
      }
    }

    // --- frames ---------------------------------------------------------

    _onMessage(text) {
      clearTimeout(this._timers.dead); // any frame proves the connection alive
      this._timers.dead = 0;
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (_) {
        this._emit('error', wsError('bad_frame', 'server sent invalid JSON'));
        return;
      }
      const pending = msg.id !== undefined ? this._pending.get(msg.id) : undefined;
      if (msg.type === 'message') {
        this._emit('message', msg);
        const handlers = msg.channel !== undefined && this._subs.get(msg.channel);
        if (handlers) for (const h of [...handlers]) callSafely(h, msg.data, msg);
      } else if (msg.type === 'ack' && pending) {
        this._pending.delete(msg.id);
        pending.resolve(msg);
      } else if (msg.type === 'error') {
        const err = wsError(msg.code, msg.reason);
        if (pending) {
          this._pending.delete(msg.id);
          pending.reject(err);
        } else {
          this._emit('error', err);
        }
      }
      // 'pong' (and anything unknown) only counts as a sign of life.
    }

    _sendSubscribe(channel) {
      this._request({ type: 'subscribe', channel: channel }).catch((err) => {
        if (err.code !== 'disconnected') this._emit('error', Object.assign(err, { channel: channel }));
      });
    }

    /** Sends msg with a fresh id; settles on the matching ack or error frame. */
    _request(msg) {
      const id = this._nextId++;
      if (!this._send(Object.assign({}, msg, { id: id }))) {
        return Promise.reject(wsError('not_connected', 'not connected'));
      }
      return new Promise((resolve, reject) => this._pending.set(id, { resolve: resolve, reject: reject }));
    }

    /** Sends msg if the socket is open; returns whether it did. */
    _send(msg) {
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
      this._ws.send(JSON.stringify(msg));
      return true;
    }

    // --- events ---------------------------------------------------------

    _setState(state) {
      if (this.state === state) return;
      this.state = state;
      this._emit('state', state);
    }

    _emit(event, arg) {
      const fns = this._listeners.get(event);
      if (fns) for (const fn of [...fns]) callSafely(fn, arg);
    }
  }

  /**
   * Calls an application callback. One that throws must not break the
   * client, so the error is rethrown outside our call stack, where it still
   * shows up as an uncaught error.
   */
  function callSafely(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      setTimeout(() => { throw err; });
    }
  }

  global.WsEdge = WsEdge;
})(typeof window !== 'undefined' ? window : globalThis);
