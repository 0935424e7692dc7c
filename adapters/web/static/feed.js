// The feed: post, and watch followers comment live; reply to a comment, ask for more, choose followers.
"use strict";

(() => {
  const B = Botfleet;
  const posts = new Map(); // post id -> {card, comments, typing, thread}
  const views = new Map(); // message id -> view from B.message
  const texts = new Map(); // message id -> {name, text}, for reply quotes
  let feed = "feed";

  function quote(id) {
    if (posts.has(id)) return ""; // a comment on the post itself: the post is right above
    const m = texts.get(id);
    return m ? "↪ " + m.name + ": " + m.text.slice(0, 80) : "";
  }

  function commentActions(m, post) {
    const bar = B.el("div", "actions");
    if (m.author.ai) {
      const reply = B.el("button", "link reply", "Reply");
      reply.type = "button";
      reply.addEventListener("click", () => openReply(post, m));
      bar.append(reply);
    }
    return bar;
  }

  function openReply(post, m) {
    const form = post.replyForm;
    form.hidden = false;
    form.dataset.replyTo = m.id;
    form.querySelector(".replying").textContent = "Replying to " + m.author.name;
    form.querySelector("textarea").focus();
  }

  function replyForm(post) {
    const form = B.el("form", "reply-form");
    form.hidden = true;
    const label = B.el("div", "replying");
    const area = B.el("textarea");
    area.rows = 2;
    area.maxLength = 4000;
    area.placeholder = "Write a reply…";
    const send = B.el("button", "primary", "Reply");
    send.type = "submit";
    const cancel = B.el("button", "link", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => { form.hidden = true; });
    form.append(label, area, B.el("div", "row"));
    form.lastChild.append(send, cancel);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!area.value.trim()) return;
      try {
        await B.call("POST", "/api/say", { channel: post.thread, text: area.value, reply_to: form.dataset.replyTo });
        area.value = "";
        form.hidden = true;
      } catch (err) { B.toast(err.message); }
    });
    return form;
  }

  function addPost(m) {
    if (posts.has(m.id)) return posts.get(m.id);
    const card = B.el("section", "post card");
    const post = { card, thread: m.channel, comments: B.el("div", "comments") };
    const view = B.message(m, {});
    views.set(m.id, view);
    texts.set(m.id, { name: m.author.name, text: m.text });
    card.append(view.node);
    const typing = B.el("div", "typing");
    typing.hidden = true;
    post.typing = B.typingLine(typing);
    const bar = B.el("div", "actions post-actions");
    const more = B.el("button", "more", "More comments");
    more.type = "button";
    more.addEventListener("click", () =>
      B.call("POST", "/api/command", { command: "more", channel: post.thread }).catch((err) => B.toast(err.message)));
    bar.append(more);
    post.replyForm = replyForm(post);
    card.append(post.comments, typing, post.replyForm, bar);
    posts.set(m.id, post);
    document.getElementById("posts").prepend(card);
    for (const c of m.thread || []) addComment(post, c);
    return post;
  }

  function addComment(post, m) {
    if (views.has(m.id)) return;
    const view = B.message(m, { quote, actions: (x) => commentActions(x, post) });
    views.set(m.id, view);
    texts.set(m.id, { name: m.author.name, text: m.text });
    post.comments.append(view.node);
  }

  function postOf(channel) {
    const prefix = feed + "-";
    return channel.startsWith(prefix) ? posts.get(channel.slice(prefix.length)) : undefined;
  }

  function onEvent(ev) {
    if (ev.type === "message") {
      const m = ev.message;
      if (m.post) addPost(m);
      else if (postOf(m.channel)) addComment(postOf(m.channel), m);
      else if (m.channel === feed && m.author.system) B.toast(m.text);
    } else if (ev.type === "update") {
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
    } else if (ev.type === "typing") {
      const post = postOf(ev.channel);
      if (post) post.typing(ev);
    } else if (ev.type === "notice") {
      B.toast(ev.text);
    }
  }

  async function reload() {
    const data = await B.call("GET", "/api/feed");
    for (const p of data.posts) {
      const post = addPost(p);
      for (const c of p.thread) addComment(post, c);
      for (const c of p.thread) { const v = views.get(c.id); if (v) B.update(v, c); }
    }
  }

  function followers(session) {
    const box = document.getElementById("follower-list");
    for (const p of session.personas) {
      const label = B.el("label", "follower");
      const box1 = B.el("input");
      box1.type = "checkbox";
      box1.value = p.id;
      label.append(box1, B.el("span", "fname", p.name), B.el("span", "bio", p.bio));
      box.append(label);
    }
    // Ticked: who follows this person now (their choice, or the feed's set).
    const tick = () => B.call("GET", "/api/followers").then((r) => {
      for (const input of box.querySelectorAll("input")) input.checked = r.followers.includes(input.value);
    }).catch(() => {});
    tick();
    const command = (args) =>
      B.call("POST", "/api/command", { command: "followers", channel: feed, args })
        .then(tick).catch((e) => B.toast(e.message));
    document.getElementById("followers-save").addEventListener("click", () => {
      const chosen = [...box.querySelectorAll("input:checked")].map((i) => i.value);
      command(chosen);
    });
    document.getElementById("followers-reset").addEventListener("click", () => command("reset"));
    document.getElementById("followers-show").addEventListener("click", () => command(""));
  }

  function composer() {
    const form = document.getElementById("composer");
    const area = form.querySelector("textarea");
    const photos = B.picker(document.getElementById("photo-input"), document.getElementById("photo-list"));
    const button = document.getElementById("post-button");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!area.value.trim() && !photos.files.length) return;
      button.disabled = true;
      try {
        await B.send("/api/post", { text: area.value }, photos.files);
        area.value = "";
        photos.clear();
      } catch (err) { B.toast(err.message); }
      button.disabled = false;
    });
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
    });
    for (const button of document.querySelectorAll("[data-command]")) {
      button.addEventListener("click", () =>
        B.call("POST", "/api/command", { command: button.dataset.command, channel: feed })
          .catch((err) => B.toast(err.message)));
    }
  }

  B.start().then((session) => {
    feed = session.feed;
    B.askName(() => {
      document.getElementById("app").hidden = false;
      followers(session);
      composer();
      B.live(onEvent, () => reload().catch((e) => B.toast(e.message)));
    });
  });
})();
