// The dashboard's live parts, over the same /v1 API as any other client: quotes polled about once
// a second, balances, positions (with marks) and orders every few seconds, and an order ticket.
// The page is complete without this script (the server renders what the store holds).
//
// Everything a broker or a user named reaches the page as text (textContent), never parsed as HTML.
"use strict";

(() => {
  const QUOTES_EVERY_MS = 1000;
  const HOLDINGS_EVERY_MS = 3000;
  const RETRY_MS = 3000;
  const QUOTE_SYMBOLS = 6;
  const RECENT_ORDERS = 20;
  const OPEN_STATUSES = new Set(["pending_new", "new", "partially_filled"]);
  const CSRF_COOKIE = "brokerlink_csrf";
  const DASH = "—";

  let sessionOver = false;

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // --- HTTP ---------------------------------------------------------------------------------

  function cookie(name) {
    const prefix = name + "=";
    const found = document.cookie.split("; ").find((c) => c.startsWith(prefix));
    return found ? decodeURIComponent(found.slice(prefix.length)) : "";
  }

  async function csrfToken() {
    // Litestar's CSRF middleware sets this (readable) cookie with the page; the header must echo it.
    return cookie(CSRF_COOKIE) || (await api("/v1/auth/csrf")).csrf_token;
  }

  async function api(path, method = "GET", body = undefined) {
    const headers = { accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") headers["x-csrf-token"] = await csrfToken();
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (response.status === 401) endSession();
    if (!response.ok) {
      const detail = (data && (data.detail || data.title)) || `HTTP ${response.status}`;
      throw new ApiError(response.status, detail);
    }
    return data;
  }

  function endSession() {
    if (sessionOver) return;
    sessionOver = true; // every loop checks this and stops
    const note = el("p", "error session-ended", "Your session has ended. ");
    note.setAttribute("role", "alert");
    const link = el("a", "", "Sign in again");
    link.href = "/login?next=/";
    note.append(link);
    document.querySelector("main").prepend(note);
  }

  // --- formatting and DOM -------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cell(value, className) {
    return el("td", className, value === null || value === undefined ? DASH : value);
  }

  function iso(value) {
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? null : date.toISOString();
  }

  function timeCell(value, part = "datetime") {
    const td = el("td");
    const text = iso(value);
    if (text === null) {
      td.textContent = DASH;
      return td;
    }
    const time = el("time", "", part === "clock" ? text.slice(11, 23) : text.slice(0, 19).replace("T", " "));
    time.dateTime = text;
    td.append(time);
    return td;
  }

  // Decimals arrive as strings and stay strings: shown, compared and signed as text, never as
  // binary floats.

  // As the server renders them (web/routes.py plain): exact, no exponent, trailing zeros trimmed
  // to two places. Quotes are shown as the broker sends them, on its tick grid.
  function plain(value) {
    if (value === null || value === undefined) return null;
    let text = String(value);
    const exponent = /^(-?)(\d+)(?:\.(\d*))?[eE]([+-]?\d+)$/.exec(text);
    if (exponent) {
      const [, minus, whole, fraction = "", power] = exponent;
      const digits = whole + fraction;
      const point = whole.length + Number(power);
      const padded = point <= 0 ? "0".repeat(1 - point) + digits : digits.padEnd(point, "0");
      const at = Math.max(point, 1);
      text = minus + (padded.slice(0, at).replace(/^0+(?=\d)/, "") + "." + padded.slice(at)).replace(/\.$/, "");
    }
    if (!text.includes(".")) return text;
    const [whole, fraction] = text.split(".");
    return whole + "." + fraction.replace(/0+$/, "").padEnd(2, "0");
  }

  function sign(value) {
    if (typeof value !== "string") return 0;
    const digits = value.split(/e/i)[0];
    if (!/[1-9]/.test(digits)) return 0;
    return digits.startsWith("-") ? -1 : 1;
  }

  function comparePrices(a, b) {
    // Positive decimals without exponents, as the API writes prices.
    const [ai, af = ""] = a.split(".");
    const [bi, bf = ""] = b.split(".");
    if (ai.length !== bi.length) return ai.length < bi.length ? -1 : 1;
    const width = Math.max(af.length, bf.length);
    const x = ai + af.padEnd(width, "0");
    const y = bi + bf.padEnd(width, "0");
    return x < y ? -1 : x > y ? 1 : 0;
  }

  function numberCell(value) {
    return cell(plain(value), "n");
  }

  function signedCell(value) {
    const td = numberCell(value);
    const s = sign(value);
    if (s !== 0) td.replaceChildren(el("span", s > 0 ? "pos" : "neg", plain(value)));
    return td;
  }

  function emptyRow(columns, text) {
    const tr = el("tr", "none");
    const td = el("td", "", text);
    td.colSpan = columns;
    tr.append(td);
    return tr;
  }

  function randomId() {
    // crypto.randomUUID needs a secure context; getRandomValues works everywhere.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function later(fn, ms) {
    window.setTimeout(() => {
      if (!sessionOver) fn();
    }, ms);
  }

  // --- one account --------------------------------------------------------------------------

  class AccountPanel {
    constructor(section) {
      this.id = section.dataset.accountId;
      this.section = section;
      this.base = "/v1/accounts/" + encodeURIComponent(this.id);
      this.quotes = section.querySelector("[data-role=quotes]");
      this.quoteStatus = section.querySelector("[data-role=quote-status]");
      this.quoteRows = section.querySelector("[data-role=quote-rows]");
      this.ticket = section.querySelector("[data-role=ticket]");
      this.ticketStatus = section.querySelector("[data-role=ticket-status]");
      this.rows = new Map(); // symbol -> {bid, ask, time, last}
      this.symbols = [];
      this.positionSymbols = [];
      this.rendered = {}; // what each table last showed, to leave unchanged ones (and their focus) alone
      this.quoteState = "";
    }

    start() {
      this.setQuoteState("connecting", "Connecting to the broker…");
      this.ticket.addEventListener("submit", (event) => this.placeOrder(event));
      this.ticket.elements.type.addEventListener("change", () => this.syncTicket());
      this.section.querySelector("[data-role=orders]").addEventListener("click", (event) => {
        const button = event.target.closest("button.cancel");
        if (button) this.cancelOrder(button);
      });
      // Positions first: held symbols lead the quotes panel.
      this.refreshHoldings().finally(() => {
        this.loadInstruments();
        this.holdingsLoop();
      });
    }

    // Instruments, then quotes. A 503 means the broker connection is down: say so and retry.
    async loadInstruments() {
      let instruments;
      try {
        instruments = (await api(this.base + "/instruments")).data.filter((i) => i.tradable);
      } catch (error) {
        this.quoteFailed(error);
        later(() => this.loadInstruments(), RETRY_MS);
        return;
      }
      const symbols = instruments.map((i) => i.symbol);
      // Held symbols first: their quotes are the ones that move the account.
      const chosen = [...new Set([...this.positionSymbols.filter((s) => symbols.includes(s)), ...symbols])];
      this.symbols = chosen.slice(0, QUOTE_SYMBOLS);
      this.buildQuoteRows();
      if (symbols.length === 0) {
        this.setQuoteState("empty", "The broker lists nothing tradable for this account.");
        return;
      }
      this.fillTicket(symbols);
      this.pollQuotes();
    }

    buildQuoteRows() {
      this.rows.clear();
      const rows = this.symbols.map((symbol) => {
        const tr = el("tr");
        tr.dataset.symbol = symbol;
        const th = el("th", "", symbol);
        th.scope = "row";
        const row = { bid: cell(null, "n bid"), ask: cell(null, "n ask"), time: cell(null, "time"), last: null };
        tr.append(th, row.bid, row.ask, row.time);
        this.rows.set(symbol, row);
        return tr;
      });
      this.quoteRows.replaceChildren(...rows);
    }

    async pollQuotes() {
      let wait = QUOTES_EVERY_MS;
      if (!document.hidden) {
        try {
          const query = encodeURIComponent(this.symbols.join(","));
          const body = await api(`${this.base}/quotes?symbols=${query}`);
          body.data.forEach((quote) => this.showQuote(quote));
          this.setQuoteState("live", `Live · ${this.symbols.length} symbols, refreshed every second`);
        } catch (error) {
          this.quoteFailed(error);
          wait = RETRY_MS;
        }
      }
      later(() => this.pollQuotes(), wait);
    }

    showQuote(quote) {
      const row = this.rows.get(quote.symbol);
      if (!row) return;
      for (const side of ["bid", "ask"]) {
        const td = row[side];
        if (row.last !== null && row.last[side] !== quote[side]) {
          const direction = comparePrices(quote[side], row.last[side]);
          td.classList.toggle("up", direction > 0);
          td.classList.toggle("down", direction < 0);
        }
        td.textContent = quote[side];
      }
      const time = timeCell(quote.ts, "clock");
      row.time.replaceWith(time);
      row.time = time;
      row.last = quote;
    }

    quoteFailed(error) {
      if (error instanceof ApiError && error.status === 503) {
        this.setQuoteState("down", "Connection down — retrying…");
      } else {
        this.setQuoteState("down", `Quotes unavailable: ${error.message}`);
      }
    }

    setQuoteState(state, text) {
      // The status line is a live region: change it only when the state changes.
      if (this.quoteState === state && this.quoteStatus.textContent === text) return;
      this.quoteState = state;
      this.quoteStatus.textContent = text;
      this.quoteStatus.classList.toggle("down", state === "down");
      this.quotes.classList.toggle("stale", state === "down");
      this.quotes.dataset.state = state;
    }

    // --- balances, positions, orders ------------------------------------------------------

    async refreshHoldings() {
      if (!document.hidden) {
        const results = await Promise.allSettled([
          api(this.base + "/balances"),
          api(this.base + "/positions"),
          api(`${this.base}/orders?limit=${RECENT_ORDERS}`),
        ]);
        const [balances, positions, orders] = results.map((r) => (r.status === "fulfilled" ? r.value.data : null));
        if (balances) this.render("balances", balances, (b) => this.balanceRow(b), 6, "No balance reported yet.");
        if (positions) {
          this.positionSymbols = positions.map((p) => p.symbol);
          this.render("positions", positions, (p) => this.positionRow(p), 6, "No open positions.");
        }
        if (orders) this.render("orders", orders, (o) => this.orderRow(o), 10, "No orders yet.");
      }
    }

    holdingsLoop() {
      later(() => this.refreshHoldings().finally(() => this.holdingsLoop()), HOLDINGS_EVERY_MS);
    }

    render(role, items, toRow, columns, emptyText) {
      const key = JSON.stringify(items);
      if (this.rendered[role] === key) return;
      this.rendered[role] = key;
      const tbody = this.section.querySelector(`[data-role=${role}] tbody`);
      tbody.replaceChildren(...(items.length ? items.map(toRow) : [emptyRow(columns, emptyText)]));
    }

    balanceRow(b) {
      const tr = el("tr");
      tr.append(
        cell(b.currency),
        numberCell(b.cash),
        numberCell(b.equity),
        numberCell(b.buying_power),
        numberCell(b.margin_used),
        timeCell(b.ts),
      );
      return tr;
    }

    positionRow(p) {
      const tr = el("tr");
      tr.append(
        cell(p.symbol),
        numberCell(p.qty),
        numberCell(p.avg_price),
        cell(p.mark_price, "n"),
        signedCell(p.unrealized_pnl),
        signedCell(p.realized_pnl),
      );
      return tr;
    }

    orderRow(o) {
      const tr = el("tr");
      tr.dataset.orderId = o.id;
      const status = el("td");
      status.append(el("span", "status " + o.status, o.status));
      if (o.reject_reason) status.title = o.reject_reason;
      const actions = el("td");
      if (OPEN_STATUSES.has(o.status)) {
        const button = el("button", "cancel", "Cancel");
        button.type = "button";
        button.dataset.orderId = o.id;
        button.setAttribute("aria-label", `Cancel ${o.side} ${o.qty} ${o.symbol}`);
        actions.append(button);
      }
      tr.append(
        timeCell(o.created_at),
        cell(o.symbol),
        cell(o.side, "side " + o.side),
        cell(o.type),
        numberCell(o.qty),
        numberCell(o.limit_price),
        status,
        numberCell(o.filled_qty),
        numberCell(o.avg_fill_price),
        actions,
      );
      return tr;
    }

    // --- order ticket -----------------------------------------------------------------------

    fillTicket(symbols) {
      const select = this.ticket.elements.symbol;
      const current = select.value;
      select.replaceChildren(...symbols.map((s) => new Option(s, s, false, s === current)));
      this.syncTicket();
      this.ticket.hidden = false;
    }

    syncTicket() {
      const limit = this.ticket.elements.limit_price;
      const isLimit = this.ticket.elements.type.value === "limit";
      limit.disabled = !isLimit;
      limit.required = isLimit;
    }

    say(text, isError = false) {
      this.ticketStatus.textContent = text;
      this.ticketStatus.classList.toggle("error", isError);
    }

    async placeOrder(event) {
      event.preventDefault();
      const form = this.ticket.elements;
      const body = {
        symbol: form.symbol.value,
        side: form.side.value,
        qty: form.qty.value.trim(),
        type: form.type.value,
        client_order_id: randomId(),
      };
      if (body.type === "limit") body.limit_price = form.limit_price.value.trim();
      const button = this.ticket.querySelector("button[type=submit]");
      button.disabled = true;
      this.say("Sending…");
      try {
        const order = await api(this.base + "/orders", "POST", body);
        const outcome = order.reject_reason ? `${order.status}: ${order.reject_reason}` : order.status;
        this.say(`${order.side} ${order.qty} ${order.symbol}: ${outcome}`, order.status === "rejected");
      } catch (error) {
        this.say(`Not placed: ${error.message}`, true);
      } finally {
        button.disabled = false;
      }
      await this.refreshHoldings();
    }

    async cancelOrder(button) {
      button.disabled = true;
      try {
        const order = await api("/v1/orders/" + encodeURIComponent(button.dataset.orderId), "DELETE");
        this.say(`${order.side} ${order.qty} ${order.symbol}: ${order.status}`);
      } catch (error) {
        this.say(`Not canceled: ${error.message}`, true);
        button.disabled = false;
      }
      await this.refreshHoldings();
    }
  }

  // --- the page -----------------------------------------------------------------------------

  async function refreshConnections() {
    try {
      const accounts = (await api("/v1/accounts")).data;
      for (const account of accounts) {
        const selector = `[data-account-id="${CSS.escape(account.id)}"] [data-role=connection]`;
        for (const badge of document.querySelectorAll(selector)) {
          badge.textContent = account.connection_status;
          badge.className = "state " + account.connection_status;
        }
      }
    } catch {
      // Shown by the panels themselves; try again next round.
    }
    later(refreshConnections, HOLDINGS_EVERY_MS);
  }

  function start() {
    const sections = document.querySelectorAll("section.account[data-account-id]");
    if (sections.length === 0) return;
    sections.forEach((section) => new AccountPanel(section).start());
    later(refreshConnections, HOLDINGS_EVERY_MS);
  }

  start();
})();
