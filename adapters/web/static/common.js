// Shared by every page: the session, JSON calls with the CSRF header, the live stream, and building
// elements. All text from people and models goes through textContent, never parsed as markup.
"use strict";

const Botfleet = (() => {
  let session = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function call(method, url, data) {
    const init = { method, headers: {}, credentials: "same-origin" };
    if (method === "POST") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-Botfleet-CSRF"] = session ? session.csrf : "";
      init.body = JSON.stringify(data || {});
    }
    const response = await fetch(url, init);
    if (!response.ok) {
      const why = (await response.text()) || response.statusText;
      throw new Error(why);
    }
    return response.json();
  }

  // A message with photos: a multipart form (the browser writes its boundary), the CSRF header as always.
  async function send(url, fields, files) {
    if (!files || !files.length) return call("POST", url, fields);
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) form.append(k, v);
    for (const f of files) form.append("photo", f, f.name);
    const response = await fetch(url, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "X-Botfleet-CSRF": session ? session.csrf : "" },
    });
    if (!response.ok) throw new Error((await response.text()) || response.statusText);
    return response.json();
  }

  // The photo picker of a post box: checks count, size and type before anything is sent.
  function picker(input, list) {
    const limits = session.photos;
    let chosen = [];
    function show() {
      list.replaceChildren(...chosen.map((f) => el("span", "chip", f.name)));
      list.hidden = chosen.length === 0;
    }
    input.accept = limits.types.join(",");
    input.addEventListener("change", () => {
      const files = [...input.files];
      input.value = "";
      const wrong = files.find((f) => !limits.types.includes(f.type));
      const big = files.find((f) => f.size > limits.max_bytes);
      if (wrong) toast(wrong.name + ": only photos can be posted (JPEG, PNG, GIF or WebP)");
      else if (big) toast(big.name + " is over the " + limits.max_bytes / 1e6 + " MB limit for a photo");
      else if (files.length > limits.per_message) toast("at most " + limits.per_message + " photo(s) per message");
      else chosen = files;
      show();
    });
    return {
      get files() { return chosen; },
      clear() { chosen = []; show(); },
    };
  }

  async function start() {
    session = await call("GET", "/api/session");
    markNav();
    return session;
  }

  function markNav() {
    for (const a of document.querySelectorAll("nav a")) {
      if (a.getAttribute("href") === location.pathname) a.classList.add("current");
    }
    const op = document.querySelector("nav a[href='/operator']");
    if (op && !session.operator.enabled) op.hidden = true;
  }

  function initials(name) {
    const words = String(name).replace(/^the\s+/i, "").split(/\s+/).filter(Boolean);
    return (words.slice(0, 2).map((w) => w[0]).join("") || "?").toUpperCase();
  }

  function hue(text) {
    let h = 0;
    for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  const HUES = 12;
  function avatar(author) {
    const a = el("span", "avatar", initials(author.name));
    // A class per hue bucket: the CSP forbids inline styles.
    a.classList.add("hue" + (hue(author.persona || author.name) % HUES));
    if (author.system) a.classList.add("system");
    return a;
  }

  function ago(at) {
    const s = Math.max(0, Date.now() / 1000 - at);
    if (s < 10) return "just now";
    if (s < 60) return Math.floor(s) + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return new Date(at * 1000).toLocaleDateString();
  }

  function timeEl(at) {
    const t = el("time", "when", ago(at));
    t.dataset.at = String(at);
    t.title = new Date(at * 1000).toLocaleString();
    return t;
  }

  setInterval(() => {
    for (const t of document.querySelectorAll("time[data-at]")) t.textContent = ago(Number(t.dataset.at));
  }, 15000);

  // One message: avatar, name, AI badge, time, text, reactions. Returns {node, body, reactions}.
  function message(m, opts) {
    const node = el("article", "msg");
    node.dataset.id = m.id;
    if (m.author.ai) node.classList.add("ai");
    if (m.author.system) node.classList.add("system");
    node.append(avatar(m.author));
    const main = el("div", "main");
    const head = el("div", "head");
    head.append(el("span", "name", m.author.name));
    if (m.author.ai) head.append(el("span", "badge", "AI"));
    head.append(timeEl(m.at));
    main.append(head);
    if (m.reply_to && opts && opts.quote) {
      const q = opts.quote(m.reply_to);
      if (q) main.append(el("div", "quote", q));
    }
    const body = el("div", "text", m.text);
    if (m.streaming) body.classList.add("streaming");
    if (m.cut) body.classList.add("cut");
    main.append(body);
    if (m.photos && m.photos.length) main.append(photos(m));
    for (const f of m.files || []) main.append(el("div", "file", "[" + f + "]"));
    const reactions = el("div", "reactions");
    for (const r of m.reactions || []) addReaction(reactions, r.emoji, r.by);
    main.append(reactions);
    if (opts && opts.actions) main.append(opts.actions(m));
    node.append(main);
    return { node, body, reactions };
  }

  // Photos are served by the room itself (/photo/<id>): nothing else is ever put in a src.
  function photos(m) {
    const box = el("div", "photos");
    for (const src of m.photos) {
      if (typeof src !== "string" || !/^\/photo\/[\w-]+$/.test(src)) continue;
      const img = el("img", "photo");
      img.src = src;
      img.alt = m.text ? "Photo: " + m.text.slice(0, 120) : "Photo from " + m.author.name;
      img.loading = "lazy";
      box.append(img);
    }
    return box;
  }

  function addReaction(box, emoji, by) {
    for (const chip of box.children) {
      if (chip.dataset.emoji === emoji) {
        chip.dataset.count = String(Number(chip.dataset.count) + 1);
        chip.querySelector(".count").textContent = chip.dataset.count;
        chip.title += ", " + by;
        return;
      }
    }
    const chip = el("span", "chip");
    chip.dataset.emoji = emoji;
    chip.dataset.count = "1";
    chip.title = by;
    chip.append(el("span", "emoji", emoji), el("span", "count", "1"));
    box.append(chip);
  }

  function update(view, ev) {
    if (ev.text !== undefined) view.body.textContent = ev.text;
    if (ev.streaming === false) view.body.classList.remove("streaming");
    if (ev.cut) view.body.classList.add("cut");
  }

  // The live stream; reconnects after a drop, calling onOpen so the page can reload its backlog.
  function live(onEvent, onOpen) {
    let source = null;
    function connect() {
      source = new EventSource("/api/stream");
      source.onopen = () => onOpen && onOpen();
      source.onmessage = (e) => onEvent(JSON.parse(e.data));
      source.onerror = () => {
        source.close();
        setTimeout(connect, 2000);
      };
    }
    connect();
  }

  // Private command answers (/about, /followers...) for this person only.
  function toast(text) {
    const box = document.getElementById("notices");
    const n = el("div", "notice", text);
    const close = el("button", "close", "×");
    close.type = "button";
    close.addEventListener("click", () => n.remove());
    n.prepend(close);
    box.prepend(n);
  }

  // A display name before anything else: the name form shows until one is chosen.
  function askName(then) {
    const form = document.getElementById("name-form");
    const input = form.querySelector("input");
    const error = form.querySelector(".error");
    if (session.name) {
      form.hidden = true;
      document.getElementById("me").textContent = session.name;
      then();
      return;
    }
    form.hidden = false;
    input.focus();
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const r = await call("POST", "/api/name", { name: input.value });
        session.name = r.name;
        form.hidden = true;
        document.getElementById("me").textContent = r.name;
        then();
      } catch (err) {
        error.textContent = err.message;
      }
    });
  }

  function typingLine(box) {
    // Who is writing right now, per persona: "The Skeptic is writing…".
    const who = new Map();
    return (ev) => {
      if (ev.on) who.set(ev.persona, ev.name);
      else who.delete(ev.persona);
      const names = [...who.values()];
      box.textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " writing…" : "";
      box.hidden = names.length === 0;
    };
  }

  return { el, call, send, picker, start, avatar, message, addReaction, update, live, toast, askName, typingLine, ago,
           get session() { return session; } };
})();
