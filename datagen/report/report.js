/* The record browser of the datagen quality report: filters, search and paging over the compact
   JSON arrays embedded in the page. Data is only ever inserted with textContent (never innerHTML),
   so no record text can become markup or script. The full texts (#details) are parsed on first
   use: the page script runs before the #details element is even parsed, and renders the first page
   from the small #rows array alone. */
(function () {
  "use strict";
  var PAGE = 50;
  var facets = JSON.parse(document.getElementById("facets").textContent);
  var rows = JSON.parse(document.getElementById("rows").textContent);
  var details = null; // parsed lazily
  var haystack = null; // lower-cased id + text per row, built on first text search
  var state = { q: "", status: "", stage: "", reason: "", source: "", page: 0, open: {} };
  var matches = [];
  // row layout (see datagen/report/data.py: Browser)
  var ID = 0, CURATED = 1, STATUS = 2, STAGE = 3, REASON = 4, SOURCE = 5, LANG = 6, PREVIEW = 7;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function getDetails() {
    if (details === null) details = JSON.parse($("details").textContent);
    return details;
  }

  // run fn once the whole document (and so #details) has been parsed
  function whenLoaded(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn, { once: true });
    else fn();
  }

  function getHaystack() {
    if (haystack === null) {
      var d = getDetails();
      haystack = new Array(rows.length);
      for (var i = 0; i < rows.length; i++) {
        var parts = [rows[i][ID]];
        var m = d[i].m;
        for (var j = 0; j < m.length; j++) parts.push(m[j][1]);
        haystack[i] = parts.join("\n").toLowerCase();
      }
    }
    return haystack;
  }

  function fillSelect(id, values) {
    var sel = $(id);
    values.forEach(function (v, i) {
      var o = el("option", null, v);
      o.value = String(i);
      sel.appendChild(o);
    });
  }

  function compute() {
    var q = state.q.trim().toLowerCase();
    var st = state.status, sg = state.stage === "" ? -1 : +state.stage;
    var rs = state.reason === "" ? -1 : +state.reason, so = state.source === "" ? -1 : +state.source;
    var hay = null, idOnly = false;
    if (q) {
      // an exact record id is answered from the rows alone
      for (var k = 0; k < rows.length; k++) if (rows[k][ID] === q) { idOnly = true; break; }
      if (!idOnly) hay = getHaystack();
    }
    var out = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (st === "curated" && !r[CURATED]) continue;
      if ((st === "kept" || st === "rejected") && facets.status[r[STATUS]] !== st) continue;
      if (sg >= 0 && r[STAGE] !== sg) continue;
      if (rs >= 0 && r[REASON] !== rs) continue;
      if (so >= 0 && r[SOURCE] !== so) continue;
      if (q && (idOnly ? r[ID] !== q : hay[i].indexOf(q) < 0)) continue;
      out.push(i);
    }
    matches = out;
  }

  function tag(text, cls) { return el("span", "tag " + (cls || ""), text); }

  function ridLink(id) {
    var a = el("a", "rid", id);
    a.href = "#browser";
    a.setAttribute("data-id", id);
    return a;
  }

  function kvTable(obj) {
    var t = el("table", "kv");
    Object.keys(obj).sort().forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("td", null, k));
      var v = obj[k];
      tr.appendChild(el("td", "n", typeof v === "number" ? +v.toFixed(4) : (typeof v === "string" ? v : JSON.stringify(v))));
      t.appendChild(tr);
    });
    return t;
  }

  function detail(i) {
    var d = getDetails()[i], box = el("div", "detail"), left = el("div"), right = el("div");
    left.appendChild(el("h4", null, "conversation"));
    d.m.forEach(function (m) {
      var msg = el("div", "msg");
      msg.appendChild(el("div", "role", m[0]));
      msg.appendChild(document.createTextNode(m[1]));
      left.appendChild(msg);
    });
    if (d.x) left.appendChild(el("p", "note", d.x + " more characters are in the run directory's files."));
    right.appendChild(el("h4", null, "fate and evidence"));
    d.e.forEach(function (ev) {
      var line = el("div");
      line.appendChild(tag(ev[0] + (ev[2] ? " \u203a " + ev[2] : ""), ev[1]));
      line.appendChild(document.createTextNode(" " + ev[1] + (ev[3] ? ": " + ev[3] : "")));
      right.appendChild(line);
      if (ev[4] && (typeof ev[4] === "string" || Object.keys(ev[4]).length))
        right.appendChild(el("pre", "ev", typeof ev[4] === "string" ? ev[4] : JSON.stringify(ev[4], null, 1)));
    });
    right.appendChild(el("h4", null, "lineage"));
    if (!d.l.length) right.appendChild(el("div", "note", d.p ? "parent " + d.p : "no parent"));
    d.l.forEach(function (p, depth) {
      var line = el("div");
      line.appendChild(document.createTextNode((depth ? "\u2191".repeat(depth) + " " : "\u2191 ")));
      line.appendChild(ridLink(p[0]));
      line.appendChild(document.createTextNode(" " + (p[1] || "(not in the given runs)")));
      right.appendChild(line);
    });
    if (Object.keys(d.meta).length) { right.appendChild(el("h4", null, "meta")); right.appendChild(kvTable(d.meta)); }
    if (Object.keys(d.s).length) { right.appendChild(el("h4", null, "scores")); right.appendChild(kvTable(d.s)); }
    if (d.f && (typeof d.f === "string" || Object.keys(d.f).length)) {
      right.appendChild(el("h4", null, "flags"));
      right.appendChild(el("pre", "ev", typeof d.f === "string" ? d.f : JSON.stringify(d.f, null, 1)));
    }
    box.appendChild(left);
    box.appendChild(right);
    return box;
  }

  function renderRow(i) {
    var r = rows[i], div = el("div", "row"), sum = el("div", "sum");
    div.setAttribute("data-id", r[ID]);
    var status = facets.status[r[STATUS]];
    sum.appendChild(r[CURATED] ? tag("curated", "curated") : tag(status, status));
    sum.appendChild(el("span", "rid", r[ID]));
    sum.appendChild(tag(facets.stage[r[STAGE]]));
    if (status === "rejected") sum.appendChild(tag(facets.reason[r[REASON]], "rejected"));
    sum.appendChild(tag(facets.source[r[SOURCE]]));
    if (r[LANG]) sum.appendChild(tag(r[LANG]));
    sum.appendChild(el("span", "prev", r[PREVIEW]));
    div.appendChild(sum);
    sum.addEventListener("click", function () {
      if (state.open[i]) { delete state.open[i]; div.removeChild(div.lastChild); }
      else whenLoaded(function () { state.open[i] = true; div.appendChild(detail(i)); });
    });
    if (state.open[i]) div.appendChild(detail(i));
    return div;
  }

  function render() {
    var list = $("list"), pages = Math.max(1, Math.ceil(matches.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    list.textContent = "";
    var start = state.page * PAGE, end = Math.min(start + PAGE, matches.length);
    for (var k = start; k < end; k++) list.appendChild(renderRow(matches[k]));
    if (!matches.length) list.appendChild(el("p", "note", "No record matches."));
    $("count").textContent = matches.length + " of " + rows.length + " records";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function update() {
    if (state.q.trim() && document.readyState === "loading") {  // text search needs #details
      $("count").textContent = "loading the record texts\u2026";
      whenLoaded(update);
      return;
    }
    compute(); state.page = 0; state.open = {}; render();
  }

  function show(id) {
    state.q = id; state.status = state.stage = state.reason = state.source = "";
    ["f-status", "f-stage", "f-reason", "f-source"].forEach(function (s) { $(s).value = ""; });
    $("q").value = id;
    whenLoaded(function () {
      compute(); state.page = 0; state.open = {};
      if (matches.length === 1) state.open[matches[0]] = true;
      render();
    });
    $("browser").scrollIntoView();
  }

  fillSelect("f-stage", facets.stage);
  fillSelect("f-reason", facets.reason);
  fillSelect("f-source", facets.source);
  var timer = null;
  $("q").addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = $("q").value; update(); }, 150);
  });
  [["f-status", "status"], ["f-stage", "stage"], ["f-reason", "reason"], ["f-source", "source"]].forEach(function (p) {
    $(p[0]).addEventListener("change", function () { state[p[1]] = $(p[0]).value; update(); });
  });
  $("prev").addEventListener("click", function () { state.page--; state.open = {}; render(); });
  $("next").addEventListener("click", function () { state.page++; state.open = {}; render(); });
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    var id = t && t.getAttribute ? t.getAttribute("data-id") : null;
    if (id && (t.tagName === "A" || t.tagName.toLowerCase() === "circle")) { ev.preventDefault(); show(id); }
  });
  update();
  window.__reportReady = performance.now();
})();
