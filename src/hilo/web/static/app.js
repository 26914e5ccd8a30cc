// Hilo's agent workspace: live updates, keyboard navigation and the reply box.
// Pages are rendered by the server; this only reloads parts of them (with htmx) and wires keys.
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const app = () => document.getElementById("app");
  const currentConversation = () => {
    const area = document.getElementById("conv-area");
    return (area && area.dataset.conversation) || "";
  };

  // -- reloading parts of the page ---------------------------------------------------------

  const pending = new Set();
  let timer = null;

  function schedule(id) {
    pending.add(id);
    if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        const ids = Array.from(pending);
        pending.clear();
        ids.forEach(refresh);
      }, 120);
    }
  }

  function refresh(id) {
    const el = document.getElementById(id);
    if (!el || !el.dataset.refresh || !window.htmx) return;
    if (id === "panel" && el.hasAttribute("data-editing")) return;
    if (id === "reply") {
      const text = $("#reply-text");
      if (text && (text.value.trim() || document.activeElement === text)) return;
    }
    let url = el.dataset.refresh;
    if (id === "inbox-list") {
      const parsed = new URL(url, location.href);
      parsed.searchParams.set("selected", currentConversation());
      url = parsed.pathname + parsed.search;
    }
    const focused = document.activeElement;
    const focusedRow = focused && focused.dataset ? focused.dataset.conversation : null;
    const timeline = id === "timeline" ? el : null;
    const atBottom = timeline ? timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 80 : false;
    const scrollTop = timeline ? timeline.scrollTop : 0;
    // The element is its own source: htmx queues requests per source element, and with the
    // page body as the source for all of them, only the last of a burst would be sent.
    htmx.ajax("GET", url, { source: el, target: el, swap: "outerHTML" }).then(() => {
      if (id === "timeline") {
        const fresh = document.getElementById("timeline");
        if (fresh) fresh.scrollTop = atBottom ? fresh.scrollHeight : scrollTop;
      }
      if (focusedRow && id === "inbox-list") {
        const row = $(`#inbox-list .row-link[data-conversation="${focusedRow}"]`);
        if (row) row.focus();
      }
    });
  }

  ["timeline", "inbox", "header", "panel", "reply"].forEach((part) => {
    const id = { inbox: "inbox-list", header: "conv-header" }[part] || part;
    document.addEventListener("refresh-" + part, () => schedule(id));
  });

  // -- the live stream ---------------------------------------------------------------------

  let lastEventId = 0;
  let failures = 0;
  let backoff = 1000;

  function announce(text) {
    const region = document.getElementById("live-announcer");
    if (region && text) {
      region.textContent = "";
      setTimeout(() => { region.textContent = text; }, 50);
    }
  }

  function toast(text, level) {
    const box = document.getElementById("toast");
    if (!box || !text) return;
    const item = document.createElement("div");
    item.className = "toast-message toast-" + (level || "info");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(() => item.remove(), 6000);
  }

  function onEvent(event) {
    if (!event || typeof event.type !== "string") return;
    if (event.id && event.id > lastEventId) lastEventId = event.id;
    const type = event.type;
    const root = app();
    const me = root ? root.dataset.user : "";
    const conversation = currentConversation();
    if (type === "auth.sessions_revoked" && event.data && event.data.user_id === me) {
      location.href = "/login";
      return;
    }
    if (/^(message|note|conversation)\./.test(type)) schedule("inbox-list");
    if (conversation && event.conversation_id === conversation) {
      schedule("timeline");
      if (type.startsWith("conversation.")) schedule("conv-header");
      if (type.startsWith("contact.")) schedule("reply");
      if (type === "message.received" && root) announce(root.dataset.i18nNewMessage);
    }
    const panel = document.getElementById("panel");
    if (panel && event.contact_id && panel.dataset.contact === event.contact_id) {
      if (/^(contact|deal|message\.received|conversation\.(created|resolved|reopened))/.test(type)) schedule("panel");
    }
    if (type === "note.mentioned" && event.data && (event.data.user_ids || []).includes(me)
        && !(event.actor && event.actor.id === me) && root) {
      toast(root.dataset.i18nMentioned, "info");
    }
  }

  async function ticket() {
    const response = await fetch("/app/stream/ticket", {
      method: "POST",
      headers: { "X-CSRF-Token": csrf() },
      credentials: "same-origin",
    });
    if (response.status === 401 || response.status === 403) {
      location.href = "/login";
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error("no ticket");
    return (await response.json()).ticket;
  }

  function retry() {
    document.documentElement.dataset.live = "off";
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  }

  function query(t) {
    return "ticket=" + encodeURIComponent(t) + "&last_event_id=" + lastEventId;
  }

  async function connect() {
    if (!app()) return;
    let t;
    try { t = await ticket(); } catch (error) { retry(); return; }
    if (!("WebSocket" in window) || failures >= 2) { sse(t); return; }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/api/v1/stream?" + query(t));
    let opened = false;
    socket.onopen = () => {
      opened = true;
      failures = 0;
      backoff = 1000;
      document.documentElement.dataset.live = "ws";
    };
    socket.onmessage = (message) => {
      try { onEvent(JSON.parse(message.data)); } catch (error) { /* a frame we do not know */ }
    };
    socket.onclose = () => {
      if (!opened) failures += 1;
      retry();
    };
  }

  // Server-Sent Events through fetch: named events need no listener per type this way.
  async function sse(t) {
    try {
      const response = await fetch("/api/v1/stream/sse?" + query(t), { credentials: "same-origin" });
      if (!response.ok || !response.body) throw new Error("no stream");
      document.documentElement.dataset.live = "sse";
      backoff = 1000;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) {
            try { onEvent(JSON.parse(data)); } catch (error) { /* ignore */ }
          }
        }
      }
    } catch (error) { /* reconnect below */ }
    retry();
  }

  // -- keyboard ----------------------------------------------------------------------------

  function rows() { return $$("#inbox-list .row-link"); }

  function moveRow(step) {
    const all = rows();
    if (!all.length) return;
    let index = all.indexOf(document.activeElement);
    if (index < 0) index = all.findIndex((r) => r.getAttribute("aria-current") === "true");
    const next = all[Math.max(0, Math.min(all.length - 1, index < 0 ? 0 : index + step))];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target.id === "reply-text") return replyKeys(event);
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j" || event.key === "ArrowDown" && target.classList.contains("row-link")) {
      event.preventDefault();
      moveRow(1);
    } else if (event.key === "k" || event.key === "ArrowUp" && target.classList.contains("row-link")) {
      event.preventDefault();
      moveRow(-1);
    } else if (event.key === "/") {
      const search = $("#q");
      if (search) { event.preventDefault(); search.focus(); }
    } else if (event.key === "r") {
      const text = $("#reply-text");
      if (text) { event.preventDefault(); text.focus(); }
    }
  });

  // -- the reply box -----------------------------------------------------------------------

  function replyKeys(event) {
    if (event.key === "Escape") {
      const list = $("#canned-list");
      if (list && list.innerHTML) list.innerHTML = "";
      else event.target.blur();
      return;
    }
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    const enterSends = $("#enter-sends");
    if (event.ctrlKey || event.metaKey || (enterSends && enterSends.checked)) {
      event.preventDefault();
      const form = event.target.form;
      if (form) form.requestSubmit();
    }
  }

  function insertText(textarea, text, replaceSlash) {
    if (replaceSlash && textarea.value.startsWith("/")) {
      textarea.value = text;
    } else {
      const start = textarea.selectionStart || 0;
      const end = textarea.selectionEnd || 0;
      textarea.value = textarea.value.slice(0, start) + text + textarea.value.slice(end);
      textarea.selectionStart = textarea.selectionEnd = start + text.length;
    }
    textarea.focus();
  }

  let cannedTimer = null;
  document.addEventListener("input", (event) => {
    const target = event.target;
    if (target.id === "q" && target.value.trim()) {
      // A search looks through every status (the server does the same): say so.
      const status = $("#f-status");
      if (status && status.value === "open") status.value = "any";
    }
    if (target.id !== "reply-text" || !window.htmx) return;
    const form = target.form;
    const value = target.value;
    clearTimeout(cannedTimer);
    if (/^\/\S*$/.test(value) && form && form.dataset.cannedUrl) {
      cannedTimer = setTimeout(() => {
        htmx.ajax("GET", form.dataset.cannedUrl + "?q=" + encodeURIComponent(value.slice(1)),
          { target: "#canned-list", swap: "innerHTML" });
      }, 150);
    } else if (!value.startsWith("/")) {
      const list = $("#canned-list");
      if (list && list.innerHTML) list.innerHTML = "";
    }
  });

  document.addEventListener("click", (event) => {
    const target = event.target.closest ? event.target : null;
    if (!target) return;
    const canned = target.closest(".canned-item");
    const textarea = $("#reply-text");
    if (canned && textarea) {
      insertText(textarea, canned.dataset.insert || "", true);
      $("#canned-list").innerHTML = "";
      return;
    }
    const mention = target.closest("[data-mention]");
    if (mention && textarea) {
      const before = textarea.value.slice(0, textarea.selectionStart || 0);
      const typed = before.match(/@[\w.+-]*$/);
      if (typed) textarea.selectionStart = (textarea.selectionStart || 0) - typed[0].length;
      insertText(textarea, "@" + mention.dataset.mention + " ", false);
      return;
    }
    const dismiss = target.closest("[data-dismiss]");
    if (dismiss) { dismiss.parentElement.remove(); return; }
    const clear = target.closest("[data-clear]");
    if (clear) { const box = $(clear.dataset.clear); if (box) box.innerHTML = ""; return; }
    const toggle = target.closest("[data-toggle-panel]");
    if (toggle) {
      const panel = document.getElementById("panel");
      if (panel) {
        const open = panel.classList.toggle("open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        if (open) {
          panel.setAttribute("tabindex", "-1");
          panel.focus();
        }
      }
      return;
    }
    const row = target.closest(".row-link");
    if (row) {
      rows().forEach((r) => r.removeAttribute("aria-current"));
      row.setAttribute("aria-current", "true");
    }
  });

  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.id === "reply-channel") syncWindows(target.form);
    if (target.matches && target.matches("[data-template-select]")) syncTemplates(target);
    if (target.id === "enter-sends") localStorage.setItem("hilo.enterSends", target.checked ? "1" : "0");
  });

  function syncWindows(form) {
    if (!form) return;
    const select = $("#reply-channel", form);
    $$("[data-window-for]", form).forEach((box) => {
      const hidden = !select || box.dataset.windowFor !== select.value;
      box.hidden = hidden;
      $$("select, input", box).forEach((field) => { field.disabled = hidden; });
      const choice = $("[data-template-select]", box);
      if (choice && !hidden) syncTemplates(choice);
    });
  }

  function syncTemplates(select) {
    const box = select.closest(".window");
    $$("[data-template-fields]", box).forEach((fields) => {
      const chosen = fields.dataset.templateFields === select.value && !select.disabled;
      fields.hidden = !chosen;
      $$("input", fields).forEach((input) => { input.disabled = !chosen; });
    });
  }

  // -- after every page load and swap ------------------------------------------------------

  function setup(root) {
    const scope = root || document;
    const timeline = scope.id === "timeline" ? scope : $("#timeline", scope);
    if (timeline && !timeline.dataset.scrolled) {
      timeline.dataset.scrolled = "1";
      if (scope !== timeline) timeline.scrollTop = timeline.scrollHeight;
    }
    const form = scope.id === "reply-form" ? scope : $("#reply-form", scope);
    if (form) syncWindows(form);
    const enterSends = $("#enter-sends", scope);
    if (enterSends) enterSends.checked = localStorage.getItem("hilo.enterSends") !== "0";
    const snooze = $("#snooze-until", scope);
    if (snooze && !snooze.value) {
      const tomorrow = new Date(Date.now() + 24 * 3600 * 1000);
      tomorrow.setHours(9, 0, 0, 0);
      const pad = (n) => String(n).padStart(2, "0");
      snooze.value = `${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}T09:00`;
    }
    $$(".toast-message", scope.id === "toast" ? scope : document.getElementById("toast") || document)
      .forEach((item) => setTimeout(() => item.remove(), 8000));
  }

  document.addEventListener("htmx:load", (event) => setup(event.detail.elt));
  document.addEventListener("htmx:afterSwap", (event) => {
    const area = document.getElementById("conv-area");
    const root = app();
    if (event.detail.target && event.detail.target.id === "conv-area" && area && root) {
      root.classList.toggle("has-conversation", Boolean(area.dataset.conversation));
      rows().forEach((r) => {
        if (r.dataset.conversation === area.dataset.conversation) r.setAttribute("aria-current", "true");
        else r.removeAttribute("aria-current");
      });
      const timeline = document.getElementById("timeline");
      if (timeline) timeline.scrollTop = timeline.scrollHeight;
      const text = $("#reply-text");
      if (text) text.focus({ preventScroll: true });
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const root = app();
    setup(document);
    if (root) {
      lastEventId = parseInt(root.dataset.lastEventId || "0", 10) || 0;
      connect();
    }
  });
})();
