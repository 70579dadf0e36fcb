"use strict";
(function () {
  var doc = document;
  var $ = function (id) { return doc.getElementById(id); };
  var data = JSON.parse($("maintenance-data").textContent);
  var ui = JSON.parse($("maintenance-ui").textContent);
  var lang = doc.documentElement.lang;
  // Western digits, as Babel writes them on the server (CLDR's default for Arabic would be ٠١٢).
  var digits = lang + "-u-nu-latn";
  var number = new Intl.NumberFormat(digits);
  var percent = new Intl.NumberFormat(digits, { style: "percent", maximumFractionDigits: 0 });
  var two = new Intl.NumberFormat(digits, { minimumIntegerDigits: 2, useGrouping: false });
  var plural = new Intl.PluralRules(lang);
  var clock = new Intl.DateTimeFormat(digits, { hour: "numeric", minute: "2-digit" });
  // Poll at the Retry-After, but never slower than 15 s so a returning service is noticed quickly.
  var MIN_MS = 2000, MAX_MS = 15000;
  var deadline = null, failures = 0, timer = 0, busy = false;

  function setText(el, text) { if (el.textContent !== text) { el.textContent = text; } }

  // A sentence as parts: literal text, {v: value} (a name or number, shown in its own <bdi> so that it
  // keeps its direction inside Arabic text, as the server renders it), or a nested sentence (an array).
  function parts(template, values) {
    var out = [], last = 0;
    template.replace(/%\((\w+)\)s/g, function (all, key, at) {
      var value = key in values ? values[key] : all;
      out.push(template.slice(last, at), typeof value === "string" ? { v: value } : value);
      last = at + all.length;
      return all;
    });
    out.push(template.slice(last));
    return out;
  }
  function plain(p) {
    if (typeof p === "string") { return p; }
    return Array.isArray(p) ? p.map(plain).join("") : p.v;
  }
  function add(el, p) {
    if (typeof p === "string") {
      if (p) { el.appendChild(doc.createTextNode(p)); }
    } else if (Array.isArray(p)) {
      p.forEach(function (q) { add(el, q); });
    } else {
      var bdi = doc.createElement("bdi");
      bdi.textContent = p.v;
      el.appendChild(bdi);
    }
  }
  // Rebuilt only when the words change: the server's markup (and a screen reader's place) stays.
  function show(el, p) { if (el.textContent !== plain(p)) { el.textContent = ""; add(el, p); } }
  // The message comes whole from the server: the service names in it (as whole words) are isolated here.
  function named(text, names) {
    names = names.filter(Boolean).sort(function (a, b) { return b.length - a.length; });
    if (!names.length) { return [text]; }
    var words = names.map(function (name) { return name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); });
    var out = [], last = 0;
    text.replace(new RegExp("(^|\\W)(" + words.join("|") + ")(?!\\w)", "g"), function (all, before, name, at) {
      out.push(text.slice(last, at + before.length), { v: name });
      last = at + all.length;
      return all;
    });
    out.push(text.slice(last));
    return out;
  }

  // "Step 1,200 of 3,000 (40%)", with the epoch and the phase when known.
  function progressParts(p) {
    var text = parts(ui.step, { step: number.format(p.step) });
    if (p.total) {
      text = parts(ui.step_of, { step: number.format(p.step), total: number.format(p.total), percent: percent.format(p.fraction || 0) });
    }
    if (p.scope === "epoch" && p.epoch !== null) { text = parts(ui.epoch, { epoch: number.format(p.epoch), progress: text }); }
    if (ui.phases[p.phase]) { text = parts(ui.with_phase, { progress: text, phase: [ui.phases[p.phase]] }); }
    return text;
  }
  // The ETA sentence (relative time from the server, wall-clock time in the viewer's zone), else why not.
  function etaParts(state, seconds, relative, scope, fallback) {
    if (seconds !== null && seconds !== undefined) {
      var at = clock.format(new Date(Date.now() + seconds * 1000));
      return parts(state === "overdue" ? ui.eta_new : ui.eta_expected, { relative: relative, clock: at });
    }
    return [scope === "epoch" ? ui.eta_epoch : state === "estimating" ? ui.eta_estimating : fallback];
  }
  function setBar(bar, fill, p, text) {
    if (p && p.total) {
      bar.setAttribute("aria-valuemax", String(p.total));
      bar.setAttribute("aria-valuenow", String(p.step));
      bar.setAttribute("aria-valuetext", plain(text));
    } else {
      bar.removeAttribute("aria-valuenow");
      bar.removeAttribute("aria-valuetext");
    }
    fill.setAttribute("width", (p && p.total ? Math.round((p.fraction || 0) * 1000) / 10 : 0) + "%");
  }

  // One row per training node; the server's rows are kept and updated, new ones built the same way.
  // Node names are data: set as text and attributes only, each in its own <bdi>.
  var SVG = "http://www.w3.org/2000/svg";
  function el(tag, cls) { var e = doc.createElement(tag); if (cls) { e.className = cls; } return e; }
  function nodeRow(name) {
    var li = el("li", "node"), head = el("p", "node-head"), label = el("bdi", "node-name");
    var bar = el("div", "bar"), svg = doc.createElementNS(SVG, "svg"), rect = doc.createElementNS(SVG, "rect");
    var steps = el("p", "steps");
    li.setAttribute("data-node", name);
    label.textContent = name;
    head.appendChild(label);
    head.appendChild(doc.createTextNode(" "));
    head.appendChild(el("span", "node-state"));
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", name);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    rect.setAttribute("height", "100%");
    rect.setAttribute("width", "0%");
    svg.appendChild(rect);
    bar.appendChild(svg);
    steps.appendChild(el("span", "node-progress"));
    steps.appendChild(doc.createTextNode(" "));
    steps.appendChild(el("span", "node-eta"));
    li.appendChild(head);
    li.appendChild(bar);
    li.appendChild(steps);
    return li;
  }
  function renderNodes(nodes) {
    var section = $("nodes"), list = $("node-list");
    if (!section || !list) { return; }  // an operator's template without the list
    nodes = nodes || [];
    section.hidden = !nodes.length;
    var rows = {};
    Array.prototype.forEach.call(list.children, function (li) { rows[li.getAttribute("data-node")] = li; });
    var wanted = {};
    nodes.forEach(function (n, index) {
      wanted[n.node] = true;
      var li = Object.prototype.hasOwnProperty.call(rows, n.node) ? rows[n.node] : nodeRow(n.node);
      if (list.children[index] !== li) { list.insertBefore(li, list.children[index] || null); }
      li.setAttribute("data-state", n.state);
      setText(li.querySelector(".node-state"), ui.labels[n.state] || ui.labels.unknown);
      var p = n.progress, text = p ? progressParts(p) : [""];
      setBar(li.querySelector(".bar"), li.querySelector("rect"), p, text);
      show(li.querySelector(".node-progress"), text);
      show(li.querySelector(".node-eta"), etaParts(n.state, n.eta_seconds, n.eta_text, p && p.scope, ""));
    });
    Object.keys(rows).forEach(function (name) { if (!wanted[name]) { list.removeChild(rows[name]); } });
  }

  function render(m) {
    data = m;
    doc.body.setAttribute("data-state", m.state);
    setText($("state-label"), ui.labels[m.state] || ui.labels.unknown);
    var after = m.after_training;
    // The services by the names people see (MAINT_SERVICE_<tag>_DISPLAY_NAME), as the message has them.
    var tags = [m.service].concat(after ? after.services : []);
    show($("message"), named(m.message, tags.map(function (tag) { return ui.names[tag] || tag; })));
    var eta = m.eta || {};
    var seconds = eta.known ? eta.seconds : null;
    if (seconds !== null && seconds !== undefined) {
      // Relative to this page's clock, not eta.at: the viewer's clock may be off. Small moves are
      // ignored so the countdown does not jitter by a second at each poll.
      var next = performance.now() + seconds * 1000;
      if (deadline === null || Math.abs(next - deadline) > 2000) { deadline = next; }
    } else {
      deadline = null;
    }
    show($("eta"), etaParts(m.state, seconds, eta.text, m.progress && m.progress.scope, ui.eta_unknown));
    var p = m.progress;
    $("progress").hidden = !p;
    if (p) {
      var text = progressParts(p), left = "";
      if (p.total) {
        var n = Math.max(0, p.total - p.step);
        left = n ? parts(ui.steps_left[plural.select(n)] || ui.steps_left.other, { num: number.format(n) }) : "";
      }
      setBar($("bar"), $("fill"), p, text);
      show($("progress-text"), text);
      show($("steps-left"), left);
    }
    renderNodes(m.nodes);
    tick();
  }

  function tick() {
    // A countdown only while the estimate is a real one; overdue and stalled estimates are "if it resumed now".
    var show = deadline !== null && (data.state === "training" || data.state === "finishing");
    $("countdown-row").hidden = !show;
    if (!show) { return; }
    var s = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
    var h = Math.floor(s / 3600), mm = two.format(Math.floor(s / 60) % 60), ss = two.format(s % 60);
    setText($("countdown"), (h ? number.format(h) + ":" + mm : String(Math.floor(s / 60))) + ":" + ss);
  }

  function schedule(ms) { clearTimeout(timer); timer = setTimeout(check, ms); }
  function pollDelay() { return Math.max(MIN_MS, Math.min(MAX_MS, (data.retry_after || 15) * 1000)); }
  function retryDelay() { failures += 1; return Math.min(MAX_MS, MIN_MS * Math.pow(2, failures - 1)); }
  function here() { return location.href.split("#")[0]; }

  function back() {
    // GET the original URL again (a reload would re-send a POST); a fragment-only change would not reload.
    if (location.hash) { location.reload(); } else { location.replace(here()); }
  }

  function check() {
    if (busy) { return; }
    busy = true;
    fetch(here(), { method: "HEAD", cache: "no-store", credentials: "same-origin", redirect: "manual" })
      .then(function (probe) {
        // 502/504: a proxy with nothing behind it yet, so not back; anything else but 503 is the service.
        if (probe.status === 502 || probe.status === 504) { throw new Error("gateway " + probe.status); }
        if (probe.status !== 503) { back(); return; }
        return fetch(ui.status, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
          .then(function (r) {
            if (!r.ok) { throw new Error("status " + r.status); }
            return r.json();
          })
          .then(function (m) { failures = 0; render(m); schedule(pollDelay()); });
      })
      .catch(function () { schedule(retryDelay()); })
      .then(function () { busy = false; });
  }

  Array.prototype.forEach.call(doc.querySelectorAll("a[data-locale]"), function (link) {
    link.addEventListener("click", function (event) {
      if (event.button || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) { return; }
      var locale = link.getAttribute("data-locale");
      var url = new URL(here());
      var pair = ui.cookie + "=" + locale;
      doc.cookie = pair + "; path=/; max-age=31536000; samesite=lax";
      var stored = ("; " + doc.cookie + ";").indexOf("; " + pair + ";") >= 0;
      // Keep path and query; ?lang= only when the URL has one already or the cookie is not ours to write.
      if (url.searchParams.has("lang") || !stored) { url.searchParams.set("lang", locale); }
      event.preventDefault();
      location.replace(url.href);
    });
  });

  // Escape closes the open language list and leaves the focus on its toggle.
  var menu = $("languages");
  menu.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && menu.open) { menu.open = false; menu.querySelector("summary").focus(); }
  });

  doc.addEventListener("visibilitychange", function () { if (!doc.hidden) { schedule(0); } });
  addEventListener("pageshow", function (event) { if (event.persisted) { schedule(0); } });
  render(data);
  setInterval(tick, 250);
  schedule(pollDelay());
})();
