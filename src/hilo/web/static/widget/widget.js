/*
 * Hilo web chat widget. Served as /widget/{channel_id}.js with the channel's settings and
 * strings built in; plain JavaScript, no build step.
 *
 *   <script src="https://hilo.example.com/widget/CHANNEL_ID.js" async
 *           data-user-id="42" data-user-hash="HMAC" data-email="..." data-name="..."></script>
 *
 * window.Hilo: open(), close(), toggle(), identify({userId, userHash, email, emailHash,
 * phone, phoneHash, name}), reset() (on sign-out). Customer and agent text is only ever
 * set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var BOOT = /*@HILO_BOOT@*/null;
  if (!BOOT || !window.JSON || !document.querySelector) return;
  window.__hiloWidgets = window.__hiloWidgets || {};
  if (window.__hiloWidgets[BOOT.channel]) return;
  window.__hiloWidgets[BOOT.channel] = true;

  var script = document.currentScript;
  var BASE = BOOT.base + "/webchat/" + BOOT.channel;
  var STORE_KEY = "hilo:" + BOOT.channel;
  var MAX_TEXT = 4000;
  var ACK_TIMEOUT_MS = 10000;

  // -- settings: data-* attributes, then window.HiloSettings --------------------------------
  function attr(name) {
    return script ? script.getAttribute("data-" + name) : null;
  }
  var given = window.HiloSettings || {};
  var identity = {
    user_id: given.userId || attr("user-id"),
    user_hash: given.userHash || attr("user-hash"),
    email: given.email || attr("email"),
    email_hash: given.emailHash || attr("email-hash"),
    phone: given.phone || attr("phone"),
    phone_hash: given.phoneHash || attr("phone-hash"),
    name: given.name || attr("name")
  };

  function pickLocale() {
    var wanted = attr("locale") || given.locale;
    if (!wanted && BOOT.config.locale && BOOT.config.locale !== "auto") wanted = BOOT.config.locale;
    wanted = wanted || document.documentElement.lang || navigator.language || "es";
    return String(wanted).toLowerCase().indexOf("es") === 0 ? "es" : "en";
  }
  var locale = pickLocale();
  var t = BOOT.strings[locale] || BOOT.strings.en;

  // -- storage (private modes may refuse it: then the visitor lasts one page) ---------------
  var memory = {};
  function load() {
    try {
      return JSON.parse(window.localStorage.getItem(STORE_KEY) || "{}") || {};
    } catch (e) {
      return memory;
    }
  }
  function save(value) {
    memory = value;
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify(value));
    } catch (e) { /* kept in memory */ }
  }

  // -- DOM helpers ---------------------------------------------------------------------------
  function el(tag, props, children) {
    var node = document.createElement(tag);
    var key;
    for (key in props || {}) {
      if (key === "text") node.textContent = props[key];
      else if (key === "className") node.className = props[key];
      else node.setAttribute(key, props[key]);
    }
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }
  function icon(path) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.appendChild(p);
    return svg;
  }
  function newId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var out = "";
    for (var i = 0; i < 32; i++) out += Math.floor(Math.random() * 16).toString(16);
    return out;
  }

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
    ".bubble{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;",
    "border:0;background:var(--hilo-color);color:#fff;cursor:pointer;z-index:2147483646;",
    "box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}",
    ".bubble svg{width:28px;height:28px;fill:currentColor}",
    ".bubble:focus-visible,button:focus-visible,textarea:focus-visible,input:focus-visible,",
    ".log:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}",
    ".badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;border-radius:11px;",
    "background:#d1242f;color:#fff;font-size:12px;line-height:22px;padding:0 6px;text-align:center}",
    ".panel{position:fixed;right:20px;bottom:88px;width:370px;max-width:calc(100vw - 24px);",
    "height:540px;max-height:calc(100vh - 110px);background:#fff;color:#1f2328;border-radius:12px;",
    "box-shadow:0 8px 30px rgba(0,0,0,.3);display:flex;flex-direction:column;overflow:hidden;",
    "z-index:2147483647;font-size:15px}",
    ".panel[hidden],.email[hidden],.badge[hidden]{display:none}",
    "header{background:var(--hilo-color);color:#fff;padding:14px 16px;display:flex;",
    "align-items:center;justify-content:space-between;gap:8px}",
    "h2{margin:0;font-size:17px;font-weight:600}",
    ".close{background:transparent;border:0;color:#fff;font-size:26px;line-height:1;cursor:pointer;",
    "width:36px;height:36px;border-radius:6px}",
    ".intro{margin:0;padding:10px 16px;color:#59636e;font-size:14px;border-bottom:1px solid #eee}",
    ".log{list-style:none;margin:0;padding:12px 16px;flex:1;overflow-y:auto;display:flex;",
    "flex-direction:column;gap:8px}",
    ".msg{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;",
    "overflow-wrap:anywhere}",
    ".msg .who{display:block;font-size:12px;font-weight:600;margin-bottom:2px;opacity:.8}",
    ".msg time{display:block;font-size:11px;opacity:.7;margin-top:2px}",
    ".visitor{align-self:flex-end;background:var(--hilo-color);color:#fff}",
    ".agent,.bot,.system{align-self:flex-start;background:#f0f2f5;color:#1f2328}",
    ".pending{opacity:.7}",
    ".failed{outline:2px solid #d1242f}",
    ".failed button{margin-left:6px;background:#fff;color:#d1242f;border:1px solid #d1242f;",
    "border-radius:6px;cursor:pointer;font-size:12px}",
    ".status{margin:0;padding:0 16px;min-height:18px;font-size:12px;color:#59636e}",
    ".email{padding:8px 16px;border-top:1px solid #eee;font-size:13px}",
    ".email p{margin:0 0 6px}",
    ".row{display:flex;gap:6px}",
    "input,textarea{flex:1;font-size:15px;padding:8px;border:1px solid #8c959f;border-radius:8px;",
    "color:#1f2328;background:#fff}",
    "textarea{resize:none;min-height:44px;max-height:120px}",
    ".compose{display:flex;gap:6px;padding:10px 16px;border-top:1px solid #eee}",
    ".send,.save{background:var(--hilo-color);color:#fff;border:0;border-radius:8px;",
    "padding:0 14px;cursor:pointer;font-size:14px;min-height:44px}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);",
    "white-space:nowrap}",
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;max-width:100vw;",
    "height:100vh;max-height:100vh;border-radius:0}}"
  ].join("");

  // -- the interface -------------------------------------------------------------------------
  var ids = { panel: "hilo-panel", title: "hilo-title", input: "hilo-input", email: "hilo-email" };
  var host = el("div", { id: "hilo-chat-" + BOOT.channel });
  host.style.setProperty("--hilo-color", BOOT.config.color || "#1f6feb");
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  root.appendChild(el("style", { text: CSS }));

  var badge = el("span", { className: "badge", "aria-hidden": "true" });
  badge.hidden = true;
  var bubble = el("button", {
    className: "bubble", type: "button", "aria-expanded": "false", "aria-controls": ids.panel,
    "aria-label": t.open
  }, [icon("M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"), badge]);

  var closeButton = el("button", { className: "close", type: "button", "aria-label": t.close, text: "×" });
  var title = el("h2", { id: ids.title, text: BOOT.config.title || t.title });
  var log = el("ol", {
    className: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-labelledby": ids.title, tabindex: "0"
  });
  var status = el("p", { className: "status", role: "status" });
  var emailInput = el("input", {
    id: ids.email, type: "email", autocomplete: "email", maxlength: "320", required: "required"
  });
  var emailNote = el("p", { text: t.email_prompt });
  var emailForm = el("form", { className: "email", novalidate: "novalidate" }, [
    emailNote,
    el("div", { className: "row" }, [
      el("label", { className: "sr", "for": ids.email, text: t.email_label }),
      emailInput,
      el("button", { className: "save", type: "submit", text: t.email_save })
    ])
  ]);
  emailForm.hidden = true;
  var input = el("textarea", {
    id: ids.input, rows: "1", maxlength: String(MAX_TEXT), placeholder: t.placeholder
  });
  var compose = el("form", { className: "compose" }, [
    el("label", { className: "sr", "for": ids.input, text: t.input_label }),
    input,
    el("button", { className: "send", type: "submit", text: t.send })
  ]);
  var panel = el("section", {
    id: ids.panel, className: "panel", role: "dialog", "aria-labelledby": ids.title
  }, [
    el("header", {}, [title, closeButton]),
    el("p", { className: "intro", text: t.intro }),
    log, status, emailForm, compose
  ]);
  panel.hidden = true;
  root.appendChild(panel);
  root.appendChild(bubble);

  // -- state ---------------------------------------------------------------------------------
  var session = null;          // {token, visitor_id, email, identified}
  var starting = null;         // the session request in flight
  var shown = {};              // message id -> list item
  var pending = {};            // client message id -> {item, text, timer}
  var unread = {};             // agent message ids not read yet
  var delivered = {};          // of those, the ones already reported delivered
  var socket = null, socketReady = false, socketFailures = 0, reconnectTimer = null;
  var polling = false, pollState = null, stopped = false, backoff = 1000;

  function setStatus(text) { status.textContent = text || ""; }

  function api(method, path, body) {
    var headers = { "Content-Type": "application/json", "Accept-Language": locale };
    if (session) headers["X-Hilo-Visitor"] = session.token;
    return fetch(BASE + path, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      credentials: "omit", mode: "cors"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error((data.error && data.error.message) || t.error);
          error.status = response.status;
          error.code = data.error && data.error.code;
          throw error;
        }
        return data;
      });
    });
  }

  function startSession() {
    if (starting) return starting;
    var stored = load();
    var body = { token: stored.token || null, locale: locale };
    Object.keys(identity).forEach(function (key) { if (identity[key]) body[key] = identity[key]; });
    session = null;
    starting = api("POST", "/session", body).then(function (data) {
      session = data;
      save({ token: data.token });
      starting = null;
      if (data.email) emailForm.hidden = true;
      connect();
      return data;
    }, function (error) {
      starting = null;
      setStatus(error.message);
      throw error;
    });
    return starting;
  }

  // -- rendering -----------------------------------------------------------------------------
  function label(sender) { return sender === "visitor" ? t.you : t.team; }

  function fill(item, message) {
    item.className = "msg " + message.sender;
    item.textContent = "";
    item.appendChild(el("span", { className: "who", text: label(message.sender) }));
    item.appendChild(el("span", { className: "text", text: message.text }));
    if (message.created_at) {
      var when = new Date(message.created_at);
      item.appendChild(el("time", {
        datetime: message.created_at,
        text: when.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" })
      }));
    }
  }

  function render(message) {
    var item = shown[message.id];
    var waiting = message.client_message_id && pending[message.client_message_id];
    if (!item && waiting) {
      item = waiting.item;
      clearTimeout(waiting.timer);
      delete pending[message.client_message_id];
    }
    var isNew = !item;
    if (isNew) {
      item = el("li");
      log.appendChild(item);
    }
    shown[message.id] = item;
    fill(item, message);
    if (message.sender !== "visitor" && message.status !== "read") unread[message.id] = true;
    if (isNew) log.scrollTop = log.scrollHeight;
  }

  function renderAll(messages) {
    (messages || []).forEach(render);
    acknowledge();
  }

  function showPending(clientId, text) {
    var item = el("li", { className: "msg visitor pending" }, [
      el("span", { className: "who", text: t.you }),
      el("span", { className: "text", text: text }),
      el("time", { text: t.sending })
    ]);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function markFailed(clientId, reason) {
    var waiting = pending[clientId];
    if (!waiting) return;
    clearTimeout(waiting.timer);
    var item = waiting.item;
    item.className = "msg visitor failed";
    var time = item.querySelector("time");
    if (time) time.textContent = reason || t.not_sent;
    if (!item.querySelector("button")) {
      var retry = el("button", { type: "button", text: t.retry });
      retry.addEventListener("click", function () {
        item.removeChild(retry);
        item.className = "msg visitor pending";
        deliver(clientId);
      });
      item.appendChild(retry);
    }
  }

  function updateBadge() {
    var count = Object.keys(unread).length;
    badge.hidden = count === 0 || !panel.hidden;
    badge.textContent = count > 9 ? "9+" : String(count);
    bubble.setAttribute("aria-label", count && panel.hidden
      ? t.open + ". " + t.unread.replace("{count}", String(count)) : t.open);
  }

  // Replies the widget shows are "delivered"; with the chat open on a visible page, "read".
  function acknowledge() {
    var read = !panel.hidden && document.visibilityState !== "hidden";
    var idsToSend = Object.keys(unread).filter(function (id) {
      return read || !delivered[id];
    });
    if (!idsToSend.length || !session) { updateBadge(); return; }
    var body = { message_ids: idsToSend.slice(0, 100), status: read ? "read" : "delivered" };
    idsToSend.forEach(function (id) {
      if (read) delete unread[id];
      else delivered[id] = true;
    });
    if (socketReady) socket.send(JSON.stringify(Object.assign({ type: "seen" }, body)));
    else api("POST", "/seen", body).catch(function () { /* asked again on the next change */ });
    updateBadge();
  }

  // -- sending -------------------------------------------------------------------------------
  function deliver(clientId) {
    var waiting = pending[clientId];
    if (!waiting) return;
    clearTimeout(waiting.timer);
    var time = waiting.item.querySelector("time");
    if (time) time.textContent = t.sending;
    var frame = { client_message_id: clientId, text: waiting.text, page_url: location.href.slice(0, 2000) };
    if (socketReady) {
      socket.send(JSON.stringify(Object.assign({ type: "message" }, frame)));
      waiting.timer = setTimeout(function () { markFailed(clientId); }, ACK_TIMEOUT_MS);
      return;
    }
    if (!session) { markFailed(clientId); return; }
    api("POST", "/messages", frame).then(function (ack) { acked(ack); }, function (error) {
      markFailed(clientId, error.message);
    });
  }

  function acked(ack) {
    var waiting = pending[ack.client_message_id];
    if (waiting) {
      clearTimeout(waiting.timer);
      waiting.item.classList.remove("pending");
      var time = waiting.item.querySelector("time");
      if (time) time.textContent = "";
    }
    if (session && !session.email && emailForm.hidden) emailForm.hidden = false;
  }

  compose.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    var clientId = newId();
    pending[clientId] = { item: showPending(clientId, text), text: text.slice(0, MAX_TEXT), timer: null };
    (session ? Promise.resolve(session) : startSession()).then(function () {
      deliver(clientId);
    }, function () { markFailed(clientId); });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      compose.requestSubmit ? compose.requestSubmit() : compose.dispatchEvent(new Event("submit"));
    }
  });

  emailForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var value = emailInput.value.trim();
    if (!value || !emailInput.checkValidity()) { emailNote.textContent = t.email_invalid; return; }
    api("POST", "/email", { email: value }).then(function (data) {
      session.email = data.email;
      emailForm.hidden = true;
      setStatus(t.email_saved.replace("{email}", data.email));
    }, function (error) {
      emailNote.textContent = error.status === 422 ? t.email_invalid : error.message;
    });
  });

  // -- transports: WebSocket, else long-polling ---------------------------------------------
  function connect() {
    if (stopped || !session) return;
    if (window.WebSocket && socketFailures < 2) openSocket();
    else startPolling();
  }

  function openSocket() {
    if (socket) return;
    var opened = false;
    setStatus(t.connecting);
    try {
      socket = new WebSocket(BASE.replace(/^http/, "ws") + "/ws");
    } catch (e) {
      socket = null;
      socketFailures = 2;
      startPolling();
      return;
    }
    socket.onopen = function () {
      opened = true;
      socket.send(JSON.stringify({ type: "hello", token: session.token, locale: locale }));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "ready") {
        socketReady = true;
        socketFailures = 0;
        backoff = 1000;
        setStatus("");
        renderAll(frame.messages);
        Object.keys(pending).forEach(deliver);  // the same ids: never sent twice
      } else if (frame.type === "message") {
        renderAll([frame.message]);
      } else if (frame.type === "ack") {
        acked(frame);
      } else if (frame.type === "error" && frame.client_message_id) {
        markFailed(frame.client_message_id, frame.message);
      }
    };
    socket.onclose = function (event) {
      socket = null;
      socketReady = false;
      if (stopped) return;
      if (event.code === 4401) { save({}); startSession(); return; }
      if (event.code === 4403 || event.code === 4404) { setStatus(t.error); return; }
      if (!opened) socketFailures += 1;  // blocked by a proxy or a firewall
      setStatus(t.reconnecting);
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  function startPolling() {
    if (polling || stopped) return;
    polling = true;
    setStatus("");
    Object.keys(pending).forEach(deliver);
    (function next() {
      if (stopped || !session) { polling = false; return; }
      var started = Date.now();
      var query = pollState ? "?state=" + encodeURIComponent(pollState) : "";
      api("GET", "/poll" + query).then(function (data) {
        backoff = 1000;
        pollState = data.state;
        if (data.changed) renderAll(data.messages);
        // An answer in under a second with no news: the server is restarting; wait a bit.
        setTimeout(next, !data.changed && Date.now() - started < 1000 ? 2000 : 0);
      }, function (error) {
        if (error.status === 401) { polling = false; save({}); startSession(); return; }
        setStatus(t.reconnecting);
        setTimeout(next, backoff);
        backoff = Math.min(backoff * 2, 30000);
      });
    })();
  }

  // -- opening and closing -------------------------------------------------------------------
  function open() {
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    input.focus();
    if (!session) startSession().catch(function () { /* shown in the status line */ });
    acknowledge();
  }
  function close() {
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
    updateBadge();
  }
  bubble.addEventListener("click", function () { panel.hidden ? open() : close(); });
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") close();
  });
  document.addEventListener("visibilitychange", function () {
    if (!panel.hidden) acknowledge();
  });

  function stop() {
    stopped = true;
    clearTimeout(reconnectTimer);
    if (socket) socket.close(1000);
    socket = null;
    socketReady = false;
  }

  window.Hilo = {
    open: open,
    close: close,
    toggle: function () { panel.hidden ? open() : close(); },
    identify: function (who) {
      identity = {
        user_id: who.userId, user_hash: who.userHash, email: who.email,
        email_hash: who.emailHash, phone: who.phone, phone_hash: who.phoneHash, name: who.name
      };
      stop();
      stopped = false;
      startSession().catch(function () { /* shown in the status line */ });
    },
    reset: function () {
      stop();
      save({});
      session = null;
      shown = {}; pending = {}; unread = {}; delivered = {};
      log.textContent = "";
      identity = {};
      stopped = false;
      updateBadge();
    }
  };

  function mount() {
    document.body.appendChild(host);
    // A returning visitor (or a signed-in customer) gets their replies and unread count.
    if (load().token || identity.user_id) {
      startSession().catch(function () { /* shown in the status line */ });
    }
    if (attr("open") === "true") open();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
