// The fleet report's views and plots, drawn from the page's JSON (#fleet-data) with Plotly.
// Data is only ever written as text (textContent), never parsed as HTML: it comes from boards.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("fleet-data").textContent);
  // The document is compact (see page.py): bundles by index, times by bucket; expand it once.
  const FIELDS = ["p50", "p90", "p99", "max99", "acc", "rss", "init", "first"];
  function expand(s) {
    s.d = D.bundles[s.b].d;
    s.t = s.k.map((k) => D.axis.start + (k + 0.5) * D.axis.width * s.m);
    for (const f of FIELDS) if (!s[f]) s[f] = s.k.map(() => null);
    return s;
  }
  D.series.bundles.forEach(expand);
  for (const list of Object.values(D.series.devices)) list.forEach(expand);
  for (const d of D.devices) {
    d.current = d.current === null ? null : D.bundles[d.current].d;
    for (const h of d.history) h[0] = D.bundles[h[0]].d;
  }
  for (const x of D.drift) {
    x.d = D.bundles[x.b].d;
    const ref = x.ref === null ? { conf: [], cls: [] } : D.refs[x.ref];
    x.ref_conf = ref.conf;
    x.ref_cls = ref.cls;
  }
  const CONFIG = { displaylogo: false, responsive: true };
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#0a7b83", "#d1242f",
                  "#6e7781", "#953800", "#116329"];
  const bundles = new Map(D.bundles.map((b, i) => [b.d, Object.assign({ color: COLORS[i % COLORS.length] }, b)]));
  const devices = D.devices;
  const deviceIndex = new Map(devices.map((d, i) => [d.id, i]));
  const drawn = new Set();

  // -- helpers -------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function num(v, digits) {
    if (v === null || v === undefined) return "-";
    const d = digits === undefined ? (Math.abs(v) < 10 ? 3 : Math.abs(v) < 1000 ? 2 : 0) : digits;
    return v.toFixed(d);
  }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) + " UTC" : "-"; }
  function label(digest) { const b = bundles.get(digest); return b ? b.label : digest.slice(0, 7); }
  function color(digest) { const b = bundles.get(digest); return b ? b.color : "#6e7781"; }
  function dates(ts) { return ts.map((t) => new Date(t)); }
  function layout(title, extra) {
    return Object.assign({
      title: { text: title, font: { size: 15 }, x: 0.01, xanchor: "left" }, height: 400,
      margin: { l: 70, r: 20, t: 56, b: 70 }, legend: { orientation: "h", y: -0.28, yanchor: "top" },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    }, extra || {});
  }
  function plot(id, traces, lay) {
    const div = document.getElementById(id);
    if (!div) return;
    if (!traces.length) { div.style.display = "none"; return; }
    div.style.display = "";
    Plotly.react(div, traces, lay, CONFIG);
  }
  function logAxis(title, extra) {
    return Object.assign({ type: "log", title: { text: title }, automargin: true }, extra || {});
  }
  function timeAxis() { return { type: "date", title: { text: "window start (UTC)" }, automargin: true }; }
  function badge(text, cls) { return el("span", { class: "badge " + cls }, text); }
  function row(cells) { return el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : el("td", {}, c))); }
  function numCell(v, digits) { return el("td", { class: "n" }, num(v, digits)); }
  function accuracyRange(values) {
    // A narrow axis makes a 0.06 pt difference look large: span at least 5 points.
    const vs = values.filter((v) => v !== null);
    if (!vs.length) return undefined;
    const lo = Math.min(...vs), hi = Math.max(...vs), mid = (lo + hi) / 2;
    const half = Math.max((hi - lo) / 2 + 0.5, 2.5);
    return [mid - half, mid + half];
  }

  // A p50 line with p90 and p99 bands above it (fills between consecutive traces).
  function bands(s, name, c) {
    const x = dates(s.t);
    return [
      { x, y: s.p50, name: name + " p50", mode: "lines+markers", line: { color: c, width: 2 }, legendgroup: s.d },
      { x, y: s.p90, name: name + " p90", mode: "lines", line: { color: c, width: 0.5 }, fill: "tonexty",
        fillcolor: c + "40", legendgroup: s.d },
      { x, y: s.p99, name: name + " p99", mode: "lines", line: { color: c, width: 0.5, dash: "dot" },
        fill: "tonexty", fillcolor: c + "1f", legendgroup: s.d },
    ];
  }

  // -- fleet views ---------------------------------------------------------------------------
  function drawOverview() {
    const traces = D.series.bundles.map((s) => ({
      x: dates(s.t), y: s.p50, name: label(s.d), mode: "lines+markers", line: { color: color(s.d) },
    }));
    plot("plot-overview-time", traces, layout("Fleet p50 per bundle over time (mean of the windows in each bucket)",
      { xaxis: timeAxis(), yaxis: logAxis("p50 ms (log)") }));
  }

  function drawLatency() {
    const list = D.bundles.filter((b) => b.p50 !== null);
    const names = list.map((b) => b.label);
    const bars = [["p50", "p50", "#0969da"], ["p90", "p90", "#bf8700"], ["p99", "p99", "#cf222e"]].map(
      ([name, key, c]) => ({ type: "bar", orientation: "h", name, y: names, x: list.map((b) => b[key]),
                             marker: { color: c } }));
    const height = Math.max(380, 90 + 70 * list.length);
    plot("plot-latency", bars, layout("Latency per bundle (name · digest · profile)",
      { barmode: "group", height, xaxis: logAxis("ms (log)"), yaxis: { automargin: true, autorange: "reversed" } }));
    const boxes = list.map((b) => ({
      type: "box", orientation: "h", name: b.label, x: b.dev.map((d) => d[1]), text: b.dev.map((d) => d[0]),
      boxpoints: b.dev.length <= 2000 ? "all" : "outliers", jitter: 0.4, marker: { color: b.color, size: 4 },
      hovertemplate: "%{text}: %{x:.4g} ms<extra></extra>",
    }));
    plot("plot-latency-boards", boxes, layout("Each board's mean p50, per bundle",
      { height, showlegend: false, xaxis: logAxis("ms (log)"), yaxis: { automargin: true, autorange: "reversed" } }));
    const time = [];
    for (const s of D.series.bundles) time.push(...bands(s, label(s.d), color(s.d)));
    plot("plot-latency-time", time, layout("Fleet latency over time: p50 with p90 and p99 bands",
      { height: 460, xaxis: timeAxis(), yaxis: logAxis("ms (log)") }));
  }

  const HEALTH_CLASS = { reporting: "h-reporting", offline: "h-offline", silent: "h-silent", unknown: "h-unknown" };
  function hostBadge(d) {
    if (d.host === "simulated" || d.host === "mismatched") {
      return badge(d.host + " (" + (d.machine || "?") + ")", "host-" + d.host);
    }
    return document.createTextNode(d.machine || "-");
  }
  const DEVICE_ROWS = 500;
  function drawDevices() {
    const search = document.getElementById("device-search");
    const body = document.querySelector("#devices tbody");
    const render = () => {
      const q = search.value.trim().toLowerCase();
      const rows = devices.filter((d) => !q || [d.id, d.health, d.host, d.profiles.join(" "),
        d.current ? label(d.current) : ""].join(" ").toLowerCase().includes(q));
      body.replaceChildren(...rows.slice(0, DEVICE_ROWS).map((d) => row([
        el("td", {}, el("a", { href: "#device/" + encodeURIComponent(d.id) }, d.id)),
        el("td", {}, badge(d.health, HEALTH_CLASS[d.health])), el("td", {}, hostBadge(d)),
        d.profiles.join(", ") || "-", d.current ? label(d.current) : "-", numCell(d.p50), numCell(d.acc),
        numCell(d.reports, 0), when(d.last), d.drift ? el("td", {}, badge("drifting", "flag")) : "",
      ])));
      document.getElementById("devices-more").textContent = rows.length > DEVICE_ROWS
        ? `${rows.length} boards match; the first ${DEVICE_ROWS} are listed (filter to find the others).` : "";
    };
    search.addEventListener("input", render);
    render();
  }

  function drawEstimates() {
    const groups = new Map();
    for (const b of D.bundles) {
      if (b.est === null || b.p50 === null) continue;
      if (!groups.has(b.profile)) groups.set(b.profile, []);
      groups.get(b.profile).push(b);
    }
    const traces = [];
    let lo = Infinity, hi = 0;
    for (const [profile, list] of groups) {
      const real = list.filter((b) => b.board_p50 !== null);
      const sim = list.filter((b) => b.board_p50 === null);
      for (const [part, hollow] of [[real, false], [sim, true]]) {
        if (!part.length) continue;
        const y = part.map((b) => hollow ? b.p50 : b.board_p50);
        part.forEach((b, i) => { lo = Math.min(lo, b.est, y[i]); hi = Math.max(hi, b.est, y[i]); });
        traces.push({ x: part.map((b) => b.est), y, text: part.map((b) => b.label), mode: "markers",
          name: profile + (hollow ? " (simulated hosts only)" : ""),
          marker: { size: 11, symbol: hollow ? "circle-open" : "circle" },
          hovertemplate: "%{text}<br>estimated %{x:.4g} ms, measured %{y:.4g} ms<extra></extra>" });
      }
    }
    if (traces.length) {
      traces.push({ x: [lo / 1.5, hi * 1.5], y: [lo / 1.5, hi * 1.5], mode: "lines", name: "measured = estimated",
        line: { dash: "dot", color: "#6e7781" } });
    }
    plot("plot-estimates", traces, layout("Estimated at build vs measured p50 on the boards",
      { xaxis: logAxis("estimated ms (log)"), yaxis: logAxis("measured p50 ms (log)") }));
  }

  function drawAB() {
    D.ab.forEach((c, i) => {
      if (!c.change) return;
      const ys = c.points.map(() => "boards");
      plot("plot-ab-" + i, [
        { x: c.points.map((p) => p[1]), y: ys, text: c.points.map((p) => p[0]), mode: "markers", name: "each board",
          marker: { color: "#6e7781", size: 7, opacity: 0.6 }, hovertemplate: "%{text}: %{x:+.2f} %<extra></extra>" },
        { x: [c.change[0]], y: ["mean"], mode: "markers", name: "mean with 95 % CI", marker: { color: "#0969da", size: 12 },
          error_x: { type: "data", symmetric: false, array: [c.change[2] - c.change[0]],
                     arrayminus: [c.change[0] - c.change[1]], thickness: 3, width: 10 } },
      ], layout("Paired p50 change, B against A, per board", {
        height: 260, xaxis: { title: { text: "% change of p50 (negative: B faster)" }, zeroline: true, zerolinewidth: 2 },
        yaxis: { automargin: true }, shapes: [{ type: "line", x0: 0, x1: 0, yref: "paper", y0: 0, y1: 1,
          line: { color: "#1f2328", width: 1 } }] }));
    });
  }

  function drawDrift() {
    const list = D.drift.filter((d) => d.psi !== null).sort((a, b) => b.psi - a.psi).slice(0, 60);
    plot("plot-drift", [
      { type: "bar", x: list.map((d) => d.device + " · " + d.source), y: list.map((d) => d.psi), name: "PSI",
        marker: { color: list.map((d) => d.flagged ? "#cf222e" : "#0969da") } },
      { x: list.map((d) => d.device + " · " + d.source), y: list.map((d) => d.threshold), mode: "markers",
        name: "flag threshold", marker: { symbol: "line-ew-open", size: 18, color: "#1f2328" } },
    ], layout("Drift score (PSI against the build's reference), highest first",
      { yaxis: logAxis("PSI (log)"), xaxis: { automargin: true, tickangle: -40 } }));
  }

  // -- a board -------------------------------------------------------------------------------
  function showDevice(id) {
    const d = devices[deviceIndex.get(id)];
    const title = document.getElementById("device-title");
    if (!d) { title.textContent = "No board " + id + " in this report"; return; }
    title.replaceChildren("Board " + d.id + " ", badge(d.health, HEALTH_CLASS[d.health]), " ",
      d.drift ? badge("drifting", "flag") : "");
    const i = deviceIndex.get(id);
    const prev = devices[(i - 1 + devices.length) % devices.length], next = devices[(i + 1) % devices.length];
    document.getElementById("device-prev").setAttribute("href", "#device/" + encodeURIComponent(prev.id));
    document.getElementById("device-next").setAttribute("href", "#device/" + encodeURIComponent(next.id));
    document.getElementById("device-facts").replaceChildren(
      row(["host", d.hostname || "-", "machine", el("td", {}, hostBadge(d)), "system", d.system || "-"]),
      row(["status", d.status || "unknown", "since", when(d.status_at), "last report", when(d.last)]),
      row(["reports", String(d.reports), "interval", d.interval === null ? "-" : num(d.interval, 1) + " s",
           "profiles", d.profiles.join(", ") || "-"]));
    document.getElementById("device-history").replaceChildren(
      el("tr", {}, el("th", {}, "bundle"), el("th", {}, "from"), el("th", {}, "to"), el("th", {}, "windows")),
      ...d.history.map((h) => row([el("td", {}, el("a", { href: "#bundle/" + h[0] }, label(h[0]))),
                                   when(h[1]), when(h[2]), numCell(h[3], 0)])));
    const series = D.series.devices[d.id] || [];
    const lat = [];
    for (const s of series) lat.push(...bands(s, label(s.d), color(s.d)));
    plot("plot-device-latency", lat, layout("Latency per window over time: p50, p90 and p99 bands",
      { xaxis: timeAxis(), yaxis: logAxis("ms (log)") }));
    const acc = series.filter((s) => s.acc.some((v) => v !== null));
    const accValues = acc.flatMap((s) => s.acc);
    const buildLines = acc.map((s) => bundles.get(s.d)).filter((b) => b && b.quantized !== null);
    plot("plot-device-accuracy", acc.map((s) => ({ x: dates(s.t), y: s.acc, name: label(s.d), mode: "lines+markers",
      line: { color: color(s.d) } })).concat(buildLines.map((b) => ({ x: dates([series[0].t[0], series[series.length - 1].t.slice(-1)[0]]),
      y: [b.quantized, b.quantized], mode: "lines", name: "build: " + b.label, line: { dash: "dash", color: b.color } }))),
      layout("Accuracy on the eval sample over time", { xaxis: timeAxis(),
        yaxis: { title: { text: "accuracy" }, range: accuracyRange(accValues.concat(buildLines.map((b) => b.quantized))) } }));
    plot("plot-device-rss", series.map((s) => ({ x: dates(s.t), y: s.rss, name: label(s.d), mode: "lines+markers",
      line: { color: color(s.d) } })), layout("Peak RSS over time (highest in each bucket)", { xaxis: timeAxis(), yaxis: { title: { text: "MB" }, rangemode: "tozero" } }));
    const startup = [];
    for (const s of series) {
      if (s.init.some((v) => v !== null)) startup.push({ x: dates(s.t), y: s.init, name: "init · " + label(s.d), mode: "markers",
        marker: { color: color(s.d), symbol: "square", size: 9 } });
      if (s.first.some((v) => v !== null)) startup.push({ x: dates(s.t), y: s.first, name: "first inference · " + label(s.d),
        mode: "lines+markers", line: { color: color(s.d), dash: "dot" } });
    }
    plot("plot-device-startup", startup, layout("Init (load) and first inference", { xaxis: timeAxis(), yaxis: logAxis("ms (log)") }));
    const drift = D.drift.filter((x) => x.device === d.id && x.series.length);
    plot("plot-device-drift", drift.map((x) => ({ x: x.series.map((p) => new Date(D.axis.start + (p[0] + 0.5) * D.axis.width)),
      y: x.series.map((p) => p[1]), name: x.source + " · " + label(x.d), mode: "lines+markers",
      text: x.series.map((p) => p[2] + " samples") })).concat(drift.length ? [{ x: dates([D.axis.start, D.axis.start + D.axis.count * D.axis.width]),
      y: [0.25, 0.25], mode: "lines", name: "PSI 0.25", line: { dash: "dash", color: "#cf222e" } }] : []),
      layout("Drift over time: PSI against the build's reference", { xaxis: timeAxis(), yaxis: logAxis("PSI (log)") }));
    const worst = D.drift.filter((x) => x.device === d.id && x.ref_conf.length).sort((a, b) => (b.psi || 0) - (a.psi || 0))[0];
    const share = (xs) => { const n = xs.reduce((a, b) => a + b, 0) || 1; return xs.map((x) => x / n); };
    plot("plot-device-histograms", worst ? [
      { type: "bar", x: worst.cls.map((_, i) => "class " + i), y: share(worst.cls), name: "predicted classes (" + worst.source + ")" },
      { type: "bar", x: worst.ref_cls.map((_, i) => "class " + i), y: share(worst.ref_cls), name: "reference" },
      { type: "bar", x: worst.conf.map((_, i) => (i / 10).toFixed(1) + "-" + ((i + 1) / 10).toFixed(1)), y: share(worst.conf),
        name: "top-1 confidence (" + worst.source + ")", xaxis: "x2", yaxis: "y2" },
      { type: "bar", x: worst.ref_conf.map((_, i) => (i / 10).toFixed(1) + "-" + ((i + 1) / 10).toFixed(1)), y: share(worst.ref_conf),
        name: "reference confidence", xaxis: "x2", yaxis: "y2" },
    ] : [], layout("What the model said vs the build's reference" + (worst ? " (" + worst.reason + ")" : ""), {
      barmode: "group", grid: { rows: 1, columns: 2, pattern: "independent" }, yaxis: { title: { text: "share" } } }));
  }

  // -- a bundle ------------------------------------------------------------------------------
  function showBundle(digest) {
    const b = bundles.get(digest);
    const title = document.getElementById("bundle-title");
    if (!b) { title.textContent = "No bundle " + digest.slice(0, 12) + " in this report"; return; }
    title.textContent = "Bundle " + b.label;
    document.getElementById("bundle-facts").replaceChildren(
      row(["digest", el("td", {}, el("code", {}, b.d)), "artifact", b.artifact + " (" + b.format + ")", "size", num(b.kib, 1) + " KiB"]),
      row(["estimated", num(b.est) + " ms", "measured p50 / p99", num(b.p50) + " / " + num(b.p99) + " ms",
           "on real boards", b.board_p50 === null ? "none (simulated hosts only)" : num(b.board_p50) + " ms"]),
      row([(b.metric || "accuracy") + " fp32 / quantized (" + b.on + ")", num(b.fp32) + " / " + num(b.quantized), "on device",
           num(b.acc), "boards / reports", b.boards + " / " + b.reports]),
      row(["variant", b.variant || "-", "build host p50: this / fp32", num(b.host) + " / " + num(b.host_fp32) + " ms",
           "", ""]),
      row(["init", num(b.init) + " ms", "first inference", num(b.first) + " ms", "peak RSS", num(b.rss, 1) + " MB"]));
    const s = D.series.bundles.find((x) => x.d === digest);
    plot("plot-bundle-latency", s ? bands(s, b.label, b.color) : [], layout("The fleet on this bundle over time",
      { xaxis: timeAxis(), yaxis: logAxis("ms (log)") }));
    plot("plot-bundle-boards", b.dev.length ? [{ type: "box", name: "boards", x: b.dev.map((x) => x[1]), text: b.dev.map((x) => x[0]),
      boxpoints: "all", jitter: 0.5, marker: { color: b.color }, hovertemplate: "%{text}: %{x:.4g} ms<extra></extra>" }] : [],
      layout("Each board's mean p50 on this bundle", { showlegend: false, xaxis: logAxis("ms (log)") }));
  }

  // -- navigation ----------------------------------------------------------------------------
  const FLEET = { overview: drawOverview, latency: drawLatency, devices: drawDevices, ab: drawAB,
                  drift: drawDrift, estimates: drawEstimates };
  function route() {
    const hash = decodeURIComponent(location.hash.slice(1)) ||
      (D.device ? "device/" + D.device : "overview");
    const [view, ...rest] = hash.split("/");
    const arg = rest.join("/");
    const section = document.getElementById("view-" + view) ? view : "overview";
    for (const s of document.querySelectorAll("section.view")) s.classList.toggle("shown", s.id === "view-" + section);
    const tab = section === "device" ? "devices" : section === "bundle" ? "bundles" : section;
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + tab);
    if (section === "device") showDevice(arg);
    else if (section === "bundle") showBundle(arg);
    else if (FLEET[section] && !drawn.has(section)) { drawn.add(section); FLEET[section](); }
    document.body.dataset.view = section;
    window.scrollTo(0, 0);
  }
  window.addEventListener("hashchange", route);
  route();
})();
