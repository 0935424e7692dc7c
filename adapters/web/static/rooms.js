// Chat rooms: messages, @mentions with autocomplete, replies and every chat command, live.
"use strict";

(() => {
  const B = Botfleet;
  let channel = "";
  let replyTo = null;
  let typing = null;
  const views = new Map();
  const texts = new Map();

  function quote(id) {
    const m = texts.get(id);
    return m ? "↪ " + m.name + ": " + m.text.slice(0, 80) : "";
  }

  function actions(m) {
    const bar = B.el("div", "actions");
    if (!m.author.system) {
      const reply = B.el("button", "link reply", "Reply");
      reply.type = "button";
      reply.addEventListener("click", () => setReply(m));
      bar.append(reply);
    }
    return bar;
  }

  function setReply(m) {
    replyTo = m ? m.id : null;
    const box = document.getElementById("replying");
    box.hidden = !m;
    box.querySelector("span").textContent = m ? "Replying to " + m.author.name : "";
    if (m) document.querySelector("#say input[name=text]").focus();
  }

  function add(m) {
    if (m.channel !== channel || views.has(m.id)) return;
    const view = B.message(m, { quote, actions });
    views.set(m.id, view);
    texts.set(m.id, { name: m.author.name, text: m.text });
    const list = document.getElementById("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(view.node);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  async function open(name) {
    channel = name;
    location.hash = name;
    views.clear();
    setReply(null);
    document.getElementById("messages").replaceChildren();
    document.getElementById("channel-title").textContent = "# " + name;
    for (const li of document.querySelectorAll("#channels li")) li.classList.toggle("current", li.dataset.name === name);
    typing = B.typingLine(document.getElementById("typing"));
    typing({ on: false, persona: "" });
    const data = await B.call("GET", "/api/room?channel=" + encodeURIComponent(name));
    for (const m of data.messages) add(m);
  }

  function onEvent(ev) {
    if (ev.type === "message") add(ev.message);
    else if (ev.type === "update") {
      const v = views.get(ev.id);
      if (v) B.update(v, ev);
      if (ev.text !== undefined && texts.has(ev.id)) texts.get(ev.id).text = ev.text;
    } else if (ev.type === "remove") {
      const v = views.get(ev.id);
      if (v) v.node.remove();
      views.delete(ev.id);
    } else if (ev.type === "react") {
      const v = views.get(ev.id);
      if (v) B.addReaction(v.reactions, ev.emoji, ev.by);
    } else if (ev.type === "typing" && ev.channel === channel && typing) typing(ev);
    else if (ev.type === "notice" && ev.channel === channel) B.toast(ev.text);
  }

  // @name autocomplete: the personas whose id or name starts with what follows the last "@".
  function autocomplete(input, personas) {
    const list = document.getElementById("complete");
    let active = 0;
    function word() {
      const upto = input.value.slice(0, input.selectionStart);
      const m = /@([\w-]*)$/.exec(upto);
      return m ? m[1].toLowerCase() : null;
    }
    function choose(p) {
      const upto = input.value.slice(0, input.selectionStart);
      const rest = input.value.slice(input.selectionStart);
      const start = upto.lastIndexOf("@");
      input.value = upto.slice(0, start) + "@" + p.id + " " + rest;
      list.hidden = true;
      input.focus();
    }
    function show() {
      const w = word();
      const found = w === null ? [] : personas.filter((p) =>
        p.id.startsWith(w) || p.name.toLowerCase().replace(/^the /, "").startsWith(w)).slice(0, 6);
      list.replaceChildren();
      active = 0;
      found.forEach((p, i) => {
        const li = B.el("li", i === 0 ? "active" : "");
        li.append(B.el("strong", "", "@" + p.id), B.el("span", "", " " + p.name));
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(p); });
        list.append(li);
      });
      list.hidden = found.length === 0;
      list.found = found;
    }
    input.addEventListener("input", show);
    input.addEventListener("keydown", (e) => {
      if (list.hidden) return;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        list.children[active].classList.remove("active");
        active = (active + (e.key === "ArrowDown" ? 1 : list.children.length - 1)) % list.children.length;
        list.children[active].classList.add("active");
      } else if (e.key === "Tab" || e.key === "Enter") {
        e.preventDefault();
        choose(list.found[active]);
      } else if (e.key === "Escape") list.hidden = true;
    });
  }

  B.start().then((session) => {
    B.askName(() => {
      document.getElementById("app").hidden = false;
      const ul = document.getElementById("channels");
      for (const name of session.rooms) {
        const li = B.el("li", "", "# " + name);
        li.dataset.name = name;
        li.addEventListener("click", () => open(name));
        ul.append(li);
      }
      const input = document.querySelector("#say input[name=text]");
      autocomplete(input, session.personas);
      document.querySelector("#replying button").addEventListener("click", () => setReply(null));
      const photos = B.picker(document.getElementById("photo-input"), document.getElementById("photo-list"));
      document.getElementById("say").addEventListener("submit", async (e) => {
        e.preventDefault();
        if (!input.value.trim() && !photos.files.length) return;
        try {
          await B.send("/api/say", { channel, text: input.value, reply_to: replyTo }, photos.files);
          input.value = "";
          photos.clear();
          setReply(null);
        } catch (err) { B.toast(err.message); }
      });
      const first = session.rooms.includes(location.hash.slice(1)) ? location.hash.slice(1) : session.rooms[0];
      B.live(onEvent, () => open(channel || first).catch((e) => B.toast(e.message)));
    });
  });
})();
