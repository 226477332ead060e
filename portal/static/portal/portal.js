/* HealthLedger portal behaviour. Loaded as a static file: the Content-Security-Policy allows no inline script. */
(function () {
  "use strict";

  var PALETTE = ["#0b5cad", "#b3261e", "#126b2f", "#7a4b00", "#5b3a9e"];

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function dayText(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }
  function monthText(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1);
  }
  function withAlpha(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  /* Shaded reference ranges, one band per series, in the series' colour. */
  var rangeBands = {
    id: "rangeBands",
    beforeDatasetsDraw: function (chart) {
      var y = chart.scales.y, area = chart.chartArea, ctx = chart.ctx;
      chart.data.datasets.forEach(function (set) {
        if (set.low === null && set.high === null) { return; }
        var top = set.high === null ? area.top : Math.max(area.top, y.getPixelForValue(set.high));
        var bottom = set.low === null ? area.bottom : Math.min(area.bottom, y.getPixelForValue(set.low));
        if (bottom <= top) { return; }
        ctx.save();
        ctx.fillStyle = withAlpha(set.borderColor, 0.10);
        ctx.fillRect(area.left, top, area.right - area.left, bottom - top);
        ctx.strokeStyle = withAlpha(set.borderColor, 0.45);
        ctx.setLineDash([4, 4]);
        [set.low, set.high].forEach(function (edge) {
          if (edge === null) { return; }
          var py = y.getPixelForValue(edge);
          if (py < area.top || py > area.bottom) { return; }
          ctx.beginPath(); ctx.moveTo(area.left, py); ctx.lineTo(area.right, py); ctx.stroke();
        });
        ctx.restore();
      });
    }
  };

  function rangeText(series) {
    if (series.low !== null && series.high !== null) { return series.low + "–" + series.high; }
    if (series.low !== null) { return "above " + series.low; }
    if (series.high !== null) { return "below " + series.high; }
    return "";
  }

  function pointRange(point, series) {
    var text = rangeText({ low: point.low === undefined ? series.low : point.low, high: point.high === undefined ? series.high : point.high });
    if (!text) { return ""; }
    return text + (point.own_range ? " (from the lab)" : " (usual adult)");
  }

  var FLAG_WORDS = { H: "High", L: "Low" };

  function buildTable(holder, data) {
    var wrap = document.createElement("div");
    wrap.className = "table-wrap";
    var table = document.createElement("table");
    var head = table.createTHead().insertRow();
    ["Date", "Measurement", "Value (" + data.unit + ")", "Flag", "Range", "Recorded as"].forEach(function (text) {
      var th = document.createElement("th"); th.scope = "col"; th.textContent = text; head.appendChild(th);
    });
    var body = table.createTBody();
    data.series.forEach(function (series) {
      series.points.slice().reverse().forEach(function (point) {
        var row = body.insertRow();
        row.insertCell().textContent = point.x.slice(0, 10);
        row.insertCell().textContent = series.label;
        var cell = row.insertCell();
        var link = document.createElement("a");
        link.href = "/record/" + point.ref + "/";
        link.textContent = String(point.y);
        if (point.exact !== null && point.exact !== undefined && point.exact !== point.y) {
          link.title = "Exact value: " + point.exact;
        }
        cell.appendChild(link);
        var flagCell = row.insertCell();
        if (point.flag) {
          var badge = document.createElement("span");
          badge.className = "flag flag-" + point.flag;
          badge.textContent = FLAG_WORDS[point.flag] || point.flag;
          flagCell.appendChild(badge);
        }
        row.insertCell().textContent = pointRange(point, series);
        row.insertCell().textContent = point.recorded || "";
      });
      (series.refused || []).forEach(function (refusal) {
        var row = body.insertRow();
        row.className = "refused";
        row.insertCell().textContent = refusal.x.slice(0, 10);
        row.insertCell().textContent = series.label;
        var cell = row.insertCell();
        cell.colSpan = 3;
        var link = document.createElement("a");
        link.href = "/record/" + refusal.ref + "/";
        link.textContent = "Not charted: " + refusal.reason;
        cell.appendChild(link);
        row.insertCell().textContent = refusal.recorded || "";
      });
    });
    wrap.appendChild(table);
    holder.replaceChildren(wrap);
  }

  /* The y axis always reaches the reference ranges, so the band is on screen even when every value sits inside it. */
  function axisBounds(series) {
    var lows = [], highs = [];
    series.forEach(function (s) {
      if (s.low !== null) { lows.push(s.low); highs.push(s.low); }
      if (s.high !== null) { highs.push(s.high); lows.push(s.high); }
      s.points.forEach(function (p) {
        if (p.low !== null && p.low !== undefined) { lows.push(p.low); }
        if (p.high !== null && p.high !== undefined) { highs.push(p.high); }
      });
    });
    return {
      min: lows.length ? Math.min.apply(null, lows) : undefined,
      max: highs.length ? Math.max.apply(null, highs) : undefined
    };
  }

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      });
  }

  function drawChart(canvas, data) {
    var figure = canvas.closest("figure");
    var state = figure.querySelector("[data-chart-state]");
    (function () {
        var total = data.series.reduce(function (n, s) { return n + s.points.length; }, 0);
        var refusedCount = data.series.reduce(function (n, s) { return n + (s.refused || []).length; }, 0);
        figure.dataset.points = String(total);
        buildTable(figure.querySelector("[data-chart-table]"), data);
        if (!total) { state.textContent = "No measurements of this kind in your record yet."; canvas.hidden = true; return; }
        state.textContent = refusedCount ? refusedCount + " value(s) could not be converted to " + data.unit + " and are not charted: see the table." : "";
        var bounds = axisBounds(data.series.filter(function (s) { return s.points.length; }));
        var datasets = data.series.filter(function (s) { return s.points.length; }).map(function (series, i) {
          var colour = PALETTE[i % PALETTE.length];
          return {
            label: series.label + (rangeText(series) ? " (usual " + rangeText(series) + ")" : ""),
            data: series.points.map(function (p) { return { x: Date.parse(p.x), y: p.y, ref: p.ref }; }),
            borderColor: colour, backgroundColor: colour, pointRadius: 3, tension: 0.2,
            low: series.low, high: series.high
          };
        });
        if (typeof window.Chart === "undefined") { state.textContent = "Charts could not load; the values are in the table."; return; }
        new window.Chart(canvas, {
          type: "line",
          data: { datasets: datasets },
          plugins: [rangeBands],
          options: {
            responsive: true, maintainAspectRatio: false, parsing: false, animation: false,
            interaction: { mode: "nearest", intersect: false },
            scales: {
              x: { type: "linear", ticks: { maxTicksLimit: 6, callback: function (v) { return monthText(v); } } },
              y: { title: { display: true, text: data.unit }, suggestedMin: bounds.min, suggestedMax: bounds.max }
            },
            plugins: {
              legend: { position: "bottom", labels: { boxWidth: 12 } },
              tooltip: { callbacks: { title: function (items) { return items.length ? dayText(items[0].parsed.x) : ""; } } }
            }
          }
        });
        figure.dataset.drawn = "true";
    })();
  }

  /* Every chart from one request: one search through the gate, one entry in the patient's own access log. */
  function drawCharts(root) {
    var holder = root.querySelector("[data-charts-url]");
    var canvases = Array.prototype.slice.call(root.querySelectorAll("canvas[data-chart-slug]"));
    if (!holder || !canvases.length) { return; }
    fetchJson(holder.dataset.chartsUrl).then(function (payload) {
      var bySlug = {};
      payload.charts.forEach(function (chart) { bySlug[chart.slug] = chart; });
      canvases.forEach(function (canvas) {
        var data = bySlug[canvas.dataset.chartSlug];
        if (data) { drawChart(canvas, data); }
      });
    }).catch(function () {
      canvases.forEach(function (canvas) {
        canvas.closest("figure").querySelector("[data-chart-state]").textContent = "This chart could not be loaded right now.";
      });
    });
  }

  /* After an import the charts show the new values without a reload. */
  function redrawCharts() {
    document.querySelectorAll("canvas[data-chart-slug]").forEach(function (canvas) {
      var existing = window.Chart && window.Chart.getChart ? window.Chart.getChart(canvas) : null;
      if (existing) { existing.destroy(); }
      canvas.hidden = false;
      delete canvas.closest("figure").dataset.drawn;
    });
    drawCharts(document);
  }

  /* Import: real upload progress from the browser, then the server's validate-and-encrypt step. */
  function wireImport() {
    var form = document.getElementById("import-form");
    if (!form) { return; }
    var box = document.getElementById("import-progress");
    var bar = document.getElementById("import-bar");
    var stage = document.getElementById("import-stage");
    form.addEventListener("htmx:beforeRequest", function () {
      box.hidden = false; bar.value = 0; stage.textContent = "Uploading…";
      form.querySelector("button[type=submit]").disabled = true;
    });
    form.addEventListener("htmx:xhr:progress", function (event) {
      if (!event.detail.lengthComputable) { return; }
      var percent = Math.round(100 * event.detail.loaded / event.detail.total);
      bar.value = percent;
      stage.textContent = percent < 100 ? "Uploading… " + percent + "%" : "Checking and encrypting every resource…";
      if (percent >= 100) { bar.removeAttribute("value"); }
    });
    form.addEventListener("htmx:afterRequest", function (event) {
      box.hidden = true;
      form.querySelector("button[type=submit]").disabled = false;
      var xhr = event.detail.xhr;
      if (!xhr || xhr.status === 0 || xhr.status >= 500) {
        var result = document.getElementById("import-result");
        result.textContent = "The import could not finish (the server did not answer). Nothing was stored; please try again.";
      }
    });
  }

  /* The browser's time zone, for the server to show times in until the person chooses one in Settings. */
  function rememberTimeZone() {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) { document.cookie = "hl_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax"; }
    } catch (e) { /* no Intl: times stay in UTC */ }
  }

  /* On a narrow screen the main navigation folds into a Menu button (without JavaScript it simply wraps). */
  function wireMenu() {
    var toggle = document.querySelector(".menu-toggle");
    var nav = document.getElementById("main-nav");
    if (!toggle || !nav) { return; }
    document.documentElement.classList.add("has-menu");
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      nav.classList.toggle("open", open);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    rememberTimeZone();
    wireMenu();
    if (window.htmx) {
      /* 4xx answers carry the problems to show (a rejected file, a bad form): swap them in like a success. */
      window.htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "4..", swap: true, error: false },
        { code: "...", swap: false, error: true }
      ];
    }
    drawCharts(document);
    wireImport();
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && (target.id === "import-result" || target.id === "timeline-panel")) { target.focus(); }
    if (target && target.id === "import-result" && target.querySelector("[data-imported]")) { redrawCharts(); }
  });

  document.addEventListener("click", function (event) {
    var tab = event.target.closest(".tabs a[hx-get]");
    if (!tab) { return; }
    tab.closest("ul").querySelectorAll("a").forEach(function (a) { a.classList.remove("active"); a.removeAttribute("aria-current"); });
    tab.classList.add("active");
    tab.setAttribute("aria-current", "true");
  });
})();
