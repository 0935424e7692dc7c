// The operator page: personas and budgets, the live decision log, small metric charts, check/reload.
"use strict";

(() => {
  const B = Botfleet;
  const SERIES = [
    { key: "messages", title: "Messages" },
    { key: "replies", title: "Replies" },
    { key: "limit_hits", title: "Limit hits" },
    { key: "errors", title: "Errors" },
    { key: "latency", title: "LLM latency (s)" },
  ];
  const charts = new Map();
  const seen = new Set();

  function decision(d) {
    const row = B.el("div", "decision");
    row.dataset.event = d.event;
    const head = B.el("div", "head");
    head.append(B.el("code", "event", d.event), B.el("span", "channel", "#" + d.channel),
      B.el("span", "trigger", d.trigger || "-"));
    if (d.note) head.append(B.el("span", "note", d.note));
    const t = B.el("time", "when", B.ago(d.at));
    t.dataset.at = String(d.at);
    head.append(t);
    row.append(head);
    const list = B.el("ul", "verdicts");
    if (!d.decisions.length) list.append(B.el("li", "none", "no trigger matched: nobody answers"));
    for (const v of d.decisions) {
      const li = B.el("li", "verdict " + v.action);
      li.append(B.el("strong", "", v.persona), B.el("span", "action", v.action), B.el("span", "reason", v.reason));
      list.append(li);
    }
    row.append(list);
    return row;
  }

  function addDecision(d, top) {
    const box = document.getElementById("decisions");
    const old = seen.has(d.event) ? box.querySelector("[data-event='" + CSS.escape(d.event) + "']") : null;
    const row = decision(d);
    if (old) old.replaceWith(row);
    else if (top) box.prepend(row);
    else box.append(row);
    seen.add(d.event);
    while (box.children.length > 200) box.lastChild.remove();
  }

  function personas(state) {
    const body = document.querySelector("#personas tbody");
    body.replaceChildren();
    for (const p of state.personas) {
      const tr = B.el("tr");
      const who = B.el("td", "who");
      who.append(B.avatar({ name: p.name, persona: p.id }), B.el("span", "", p.name), B.el("code", "", p.id));
      tr.append(who, B.el("td", "", p.limits.replace(/,/g, ", ")), B.el("td", "num", p.tokens_today),
        B.el("td", "num", p.remaining === null ? "no cap" : p.remaining + " / " + p.daily_tokens));
      body.append(tr);
    }
    const f = state.fleet;
    document.getElementById("fleet-usage").textContent = "Fleet tokens today: " + f.tokens_today +
      (f.budget ? " of " + f.budget + " (" + f.remaining + " left)" : " (no daily budget)");
  }

  function deltas(samples, key) {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      if (key === "latency") {
        const calls = (b.llm_calls || 0) - (a.llm_calls || 0);
        out.push(calls > 0 ? ((b.llm_seconds || 0) - (a.llm_seconds || 0)) / calls : 0);
      } else out.push((b[key] || 0) - (a[key] || 0));
    }
    return out;
  }

  function draw(canvas, values) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const max = Math.max(1e-9, ...values);
    ctx.strokeStyle = "#4f46e5";
    ctx.fillStyle = "rgba(79, 70, 229, 0.12)";
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = values.length > 1 ? (i / (values.length - 1)) * w : w;
      const y = h - 4 - (v / max) * (h - 8);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.lineTo(w, h);
    ctx.lineTo(0, h);
    ctx.closePath();
    ctx.fill();
  }

  function chartsFor(state) {
    const box = document.getElementById("charts");
    const last = state.samples[state.samples.length - 1] || {};
    for (const s of SERIES) {
      if (!charts.has(s.key)) {
        const card = B.el("figure", "chart");
        card.dataset.metric = s.key;
        const canvas = B.el("canvas");
        canvas.width = 220;
        canvas.height = 56;
        const cap = B.el("figcaption");
        cap.append(B.el("span", "title", s.title), B.el("span", "value", ""));
        card.append(cap, canvas);
        box.append(card);
        charts.set(s.key, { canvas, value: cap.querySelector(".value") });
      }
      const c = charts.get(s.key);
      const values = deltas(state.samples, s.key);
      draw(c.canvas, values);
      c.value.textContent = s.key === "latency"
        ? (last.llm_calls ? (last.llm_seconds / last.llm_calls).toFixed(2) + " s avg" : "–")
        : String(Math.round(last[s.key] || 0));
    }
  }

  async function refresh(first) {
    const state = await B.call("GET", "/api/operator/state");
    personas(state);
    chartsFor(state);
    if (first) for (const d of state.decisions.slice().reverse()) addDecision(d, false);
  }

  function problems(result, what) {
    const box = document.getElementById("problems");
    box.hidden = false;
    box.replaceChildren();
    box.classList.toggle("bad", !result.ok);
    if (result.ok) {
      box.append(B.el("p", "good", what + ": OK, " + result.personas + " personas"));
      return;
    }
    box.append(B.el("p", "", what + ": " + result.problems.length + " problem(s); the fleet keeps running as it was"));
    const list = B.el("ul");
    for (const p of result.problems) list.append(B.el("li", "problem", p));
    box.append(list);
  }

  function buttons() {
    for (const [id, what] of [["check", "Check"], ["reload", "Reload"]]) {
      document.getElementById(id).addEventListener("click", async () => {
        try {
          problems(await B.call("POST", "/api/operator/" + id, {}), what);
          refresh(false);
        } catch (err) { B.toast(err.message); }
      });
    }
  }

  function run() {
    document.getElementById("app").hidden = false;
    buttons();
    document.getElementById("signout").addEventListener("click", () =>
      B.call("POST", "/api/operator/logout", {}).then(() => location.reload()));
    refresh(true).catch((e) => B.toast(e.message));
    setInterval(() => refresh(false).catch(() => {}), 5000);
    B.live((ev) => { if (ev.type === "decision") addDecision(ev.decision, true); });
  }

  B.start().then((session) => {
    if (!session.operator.enabled) {
      document.getElementById("off").hidden = false;
      return;
    }
    if (session.operator.signed_in) return run();
    const form = document.getElementById("login");
    form.hidden = false;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await B.call("POST", "/api/operator/login", { token: form.token.value });
        form.hidden = true;
        run();
      } catch (err) {
        form.querySelector(".error").textContent = err.message;
      }
    });
  });
})();
