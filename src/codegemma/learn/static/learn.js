// codegemma learn: the exercise list and the exercise page, over the JSON API of learn/app.py.
"use strict";
const Learn = (() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, { dataset, ...props } = {}, ...kids) => {
    const node = Object.assign(document.createElement(tag), props);
    Object.assign(node.dataset, dataset || {});
    for (const kid of kids) node.append(kid);
    return node;
  };

  async function api(path, body) {
    const options = body === undefined ? {} :
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || (data.detail && JSON.stringify(data.detail)) || response.statusText);
    return data;
  }

  async function showModel() {
    const info = await api("/api/info");
    $("model").textContent = `model: ${info.model}`;
  }

  // ---- the exercise list ----
  async function listPage() {
    showModel();
    const { exercises } = await api("/api/exercises");
    const topics = [...new Set(exercises.map((e) => e.topic))];
    const levels = [...new Set(exercises.map((e) => e.level_name))].sort();
    topics.forEach((t) => $("topic").append(el("option", { value: t, textContent: t })));
    const info = await api("/api/info");
    info.exercise_languages.forEach((l) => $("language").append(el("option", { value: l.id,
      textContent: `in ${l.name}` + (l.available ? "" : " (not installed)") })));
    levels.forEach((l) => $("level").append(el("option", { value: l, textContent: `level ${l}` })));
    const render = () => renderList(exercises);
    for (const id of ["search", "topic", "level", "source", "language", "unsolved"]) {
      $(id).addEventListener("input", render);
    }
    render();
    $("add-form").addEventListener("submit", addExercise);
  }

  function renderList(exercises) {
    const query = $("search").value.trim().toLowerCase();
    const shown = exercises.filter((e) =>
      (!query || e.title.toLowerCase().includes(query) || e.id.includes(query)) &&
      (!$("topic").value || e.topic === $("topic").value) &&
      (!$("level").value || e.level_name === $("level").value) &&
      (!$("source").value || e.source === $("source").value) &&
      (!$("language").value || e.languages.includes($("language").value)) &&
      (!$("unsolved").checked || !(e.progress && e.progress.solved)));
    const solved = exercises.filter((e) => e.progress && e.progress.solved).length;
    const tried = exercises.filter((e) => e.progress && e.progress.attempts).length;
    $("summary").textContent = `${exercises.length} exercises, ${solved} solved, ${tried} attempted` +
      (shown.length !== exercises.length ? ` (${shown.length} shown)` : "");
    const groups = new Map();
    for (const e of shown) (groups.get(e.topic) || groups.set(e.topic, []).get(e.topic)).push(e);
    const list = $("list");
    list.replaceChildren();
    for (const [topic, items] of groups) {
      const ol = el("ol");
      for (const e of items) {
        const p = e.progress || {};
        const mark = p.solved ? el("span", { className: "status solved", textContent: "✓", title: "solved" }) :
          p.attempts ? el("span", { className: "status tried", textContent: "•", title: `${p.attempts} attempts` }) :
          el("span", { className: "status" });
        ol.append(el("li", { className: "item", dataset: { id: e.id } }, mark,
          el("a", { href: `/exercise/${e.id}` + ($("language").value && $("language").value !== "python" ?
            `?language=${$("language").value}` : ""), textContent: e.title }),
          el("span", { className: "level", textContent: `level ${e.level_name}` }),
          p.solved_in && p.solved_in.length ? el("span", { className: "langs", textContent: p.solved_in.join(" ") }) : ""));
      }
      list.append(el("section", { className: "topic" }, el("h2", { textContent: `${topic} (${items.length})` }), ol));
    }
  }

  async function addExercise(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      const made = await api("/api/exercises", Object.fromEntries(form.entries()));
      location.href = `/exercise/${made.id}`;
    } catch (err) {
      $("add-error").textContent = err.message;
    }
  }

  // ---- the editor: a textarea over server-side highlighting, Tab indents ----
  function editor(textarea, pre, language) {
    let pending = 0;
    const self = { language };
    const paint = async () => {
      const code = textarea.value;
      pre.textContent = code + "\n";
      const ticket = ++pending;
      try {
        const { html } = await api("/api/highlight", { code, language: self.language });
        if (ticket === pending) pre.innerHTML = html + "\n";
      } catch (err) { /* the plain text stays */ }
    };
    let timer = null;
    textarea.addEventListener("input", () => { pre.textContent = textarea.value + "\n"; clearTimeout(timer);
                                               timer = setTimeout(paint, 60); });
    textarea.addEventListener("scroll", () => { pre.scrollTop = textarea.scrollTop;
                                                pre.scrollLeft = textarea.scrollLeft; });
    let escaped = false;
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { escaped = true; return; }
      if (event.key === "Tab" && !escaped) { event.preventDefault(); indent(textarea, event.shiftKey); paint(); }
      else if (event.key === "Enter" && !event.ctrlKey && !event.metaKey) { event.preventDefault(); newline(textarea); paint(); }
      escaped = false;
    });
    return Object.assign(self, { set(code) { textarea.value = code; paint(); }, get: () => textarea.value, paint });
  }

  function replaceRange(textarea, start, end, text, caretStart, caretEnd) {
    textarea.setRangeText(text, start, end, "end");
    textarea.setSelectionRange(caretStart, caretEnd ?? caretStart);
  }

  function indent(textarea, outdent) {
    const { value, selectionStart: s, selectionEnd: e } = textarea;
    const lineStart = value.lastIndexOf("\n", s - 1) + 1;
    if (s === e && !outdent) { replaceRange(textarea, s, e, "    ", s + 4); return; }
    const block = value.slice(lineStart, e);
    const lines = block.split("\n");
    const changed = lines.map((l) => outdent ? l.replace(/^ {1,4}|^\t/, "") : "    " + l).join("\n");
    const first = outdent ? lines[0].length - lines[0].replace(/^ {1,4}|^\t/, "").length : -4;
    replaceRange(textarea, lineStart, e, changed, Math.max(lineStart, s - first),
                 s === e ? Math.max(lineStart, s - first) : lineStart + changed.length);
  }

  function newline(textarea) {
    const { value, selectionStart: s, selectionEnd: e } = textarea;
    const line = value.slice(value.lastIndexOf("\n", s - 1) + 1, s);
    let pad = line.match(/^[ \t]*/)[0];
    if (/[:{[(]\s*$/.test(line)) pad += "    ";
    replaceRange(textarea, s, e, "\n" + pad, s + 1 + pad.length);
  }

  // ---- the exercise page: one exercise in one language at a time (?language=java) ----
  async function exercisePage() {
    showModel();
    const id = decodeURIComponent(location.pathname.split("/").pop());
    const state = { lang: new URLSearchParams(location.search).get("language") || "python", ex: null };
    const ed = editor($("code"), $("highlight"), "python");
    const load = async (lang) => {
      const ex = await api(`/api/exercises/${encodeURIComponent(id)}?language=${encodeURIComponent(lang)}`);
      Object.assign(state, { lang, ex });
      showExercise(ex);
      ed.language = ex.language.highlight;
      ed.set(ex.last_code ?? ex.language.starter);
      showProgress(ex.progress);
      $("results").hidden = true;
      $("load-output").hidden = true;
      $("assist").hidden = true;
      $("verdict").textContent = "";
      $("run").dataset.unavailable = ex.language.available ? "" : "1";
      $("run").disabled = !ex.language.available;
    };
    await load(state.lang);
    $("language").addEventListener("change", async () => {
      const lang = $("language").value;
      history.replaceState(null, "", lang === "python" ? location.pathname : `?language=${lang}`);
      await load(lang);
    });
    let since = Date.now();
    const took = () => { const s = (Date.now() - since) / 1000; since = Date.now(); return s; };
    const busy = (what, fn) => async () => {
      const buttons = document.querySelectorAll(".buttons button");
      buttons.forEach((b) => { b.disabled = true; });
      $("busy").textContent = what;
      try { await fn(); } catch (err) { showAssist("Error", err.message); }
      finally {
        buttons.forEach((b) => { b.disabled = !!b.dataset.unavailable; });
        $("busy").textContent = "";
      }
    };
    const body = () => ({ code: ed.get(), seconds: took(), language: state.lang });
    $("run").addEventListener("click", busy("running the tests...", async () => {
      const report = await api(`/api/exercises/${encodeURIComponent(id)}/run`, body());
      showReport(report);
      showProgress(report.progress);
    }));
    $("hint").addEventListener("click", busy(`asking ${$("model").textContent.replace("model: ", "")} for a hint...`,
      async () => {
        const h = await api(`/api/exercises/${encodeURIComponent(id)}/hint`, { ...body(), seconds: 0 });
        const note = h.withheld ? `\n\n(The model's hints contained a working solution ${h.spoilers} times; this ` +
          "nudge comes from your failing test instead.)" : h.source === "nudge" ?
          `\n\n(${h.model} only repeated the question; this nudge comes from your failing test.)` : "";
        showAssist(h.source === "model" ? `Hint from ${h.model}` : "Hint", h.hint + note);
        showProgress(h.progress);
      }));
    $("explain").addEventListener("click", busy("explaining...", () => explain(ed, state.lang)));
    $("fix").addEventListener("click", busy("looking for syntax errors...", () => fixCode(ed, state.ex.language)));
    $("reset").addEventListener("click", () => {
      if (confirm("Start again from the starter code?")) ed.set(state.ex.language.starter);
    });
    $("code").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); $("run").click(); }
    });
  }

  function showExercise(ex) {
    const lang = ex.language;
    document.title = `${ex.title} (${lang.name}) · codegemma learn`;
    $("title").textContent = ex.title;
    $("crumb").textContent = `/ ${ex.topic} / ${ex.id}`;
    $("meta").textContent = `${ex.topic} · level ${ex.level_name} · ${ex.tests} tests` +
      (ex.note ? ` · Note: even the reference solution fails here: ${ex.note}.` : "");
    $("statement").textContent = lang.id === "python" ? ex.statement :
      `${ex.statement.split("\n\n")[0]}\n\nIn ${lang.name}, the tests call (expected value after =>):\n\n` +
      lang.tests.map(([call, expected]) => `${call} => ${expected}`).join("\n");
    const select = $("language");
    select.replaceChildren(...ex.languages.map((l) => el("option", {
      value: l.id, textContent: l.name + (l.available ? "" : " (not installed)"), selected: l.id === lang.id })));
    $("language-note").textContent = lang.available ? (ex.languages.length === 1 ?
      "Python only: BabelCode does not convert this exercise's tests." : "") :
      `${lang.name} cannot run here: ${lang.install}`;
  }

  function showProgress(p) {
    if (!p) { $("mine").textContent = "Not attempted yet."; return; }
    const minutes = Math.round(p.seconds / 6) / 10;
    const n = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
    $("mine").textContent = `${p.solved ? "Solved ✓" : "Not solved yet"} · ${n(p.attempts, "run")} · ` +
      `${n(p.hints, "hint")} · ${minutes} min`;
  }

  function showReport(report) {
    const verdict = $("verdict");
    verdict.className = "verdict " + (report.passed ? "ok" : "bad");
    verdict.textContent = report.passed ? `All ${report.n_tests} tests pass.` :
      `${report.n_passed} of ${report.n_tests} tests pass.`;
    const output = $("load-output");
    output.hidden = true;
    if (report.load_error) {
      const le = report.load_error;
      const what = le.status === "compile error" ? "does not compile" : "did not load";
      verdict.textContent += ` Your code ${what}: ${le.error}` + (le.line ? ` (line ${le.line}: ${le.line_text})` : "");
      if (le.output) { output.textContent = le.output; output.hidden = false; }
    }
    const body = $("results").querySelector("tbody");
    body.replaceChildren();
    for (const t of report.tests) {
      const mark = { passed: "✓ pass", failed: "✗ fail", error: "✗ error", timeout: "⏱ timeout" }[t.status] ||
        t.status;
      let got = t.error ? t.error + (t.line ? `\nline ${t.line}: ${t.line_text}` : "") : (t.actual ?? "");
      if (t.message) got += `\n${t.message}`;
      if (t.output) got += `\nprinted: ${t.output}`;
      body.append(el("tr", { className: t.status.replace(" ", "") },
        el("td", { textContent: mark }), el("td", {}, el("code", { textContent: t.code })),
        el("td", {}, el("code", { textContent: t.expected ?? "" })), el("td", {}, el("pre", { textContent: got }))));
    }
    $("results").hidden = false;
  }

  function showAssist(title, text) {
    $("assist").hidden = false;
    $("apply").hidden = true;
    $("assist-title").textContent = title;
    $("assist-body").textContent = text;
  }

  async function explain(ed, language) {
    const area = $("code");
    const selected = area.value.slice(area.selectionStart, area.selectionEnd);
    const code = selected.trim() ? selected : ed.get();
    showAssist(`Explanation (${$("model").textContent.replace("model: ", "")})`, "");
    const response = await fetch("/api/explain", { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify({ code, language }) });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      $("assist-body").textContent += decoder.decode(value, { stream: true });
    }
  }

  async function fixCode(ed, language) {
    const result = await api("/api/fix", { code: ed.get(), language: language.parser });
    if (!result.problems.length) {
      showAssist("Fix", `No syntax errors: ${language.id === "python" ? "Python" : `tree-sitter's ${language.name} ` +
                 "grammar"} parses this code.`);
      return;
    }
    const where = result.problems.map((p) => `line ${p.line}, column ${p.column}: ${p.message}`).join("\n");
    if (!result.fixed) {
      showAssist("Fix", `${where}\n\nNo small correction found.` +
        (result.rejected.length ? `\n${result.rejected.join("\n")}` : ""));
      return;
    }
    showAssist(`Fix (by ${result.source === "model" ? "the model" : "the parser"})`, "");
    const body = $("assist-body");
    body.append(el("p", { textContent: where }));
    const pre = el("pre", { className: "diff" });
    for (const line of result.diff.split("\n")) {
      const cls = /^(@@|---|\+\+\+)/.test(line) ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "";
      pre.append(el("span", { className: cls, textContent: line + "\n" }));
    }
    body.append(pre);
    $("apply").hidden = false;
    $("apply").onclick = () => { ed.set(result.fixed); $("apply").hidden = true; };
  }

  return { listPage, exercisePage };
})();
