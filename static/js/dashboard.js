// The dashboard's one script (no inline scripts anywhere: the site runs under a strict CSP).
// Charts read their data from <script type="application/json"> blocks that Django's json_script writes.
(function () {
  "use strict";

  var COLOURS = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#94a3b8"];

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function formatUsd(value) {
    if (value === 0) return "0";
    if (Math.abs(value) >= 1) return value.toFixed(2);
    return Number(value.toPrecision(2)).toString();
  }

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var data = readJson(canvas.dataset.chart);
      if (!data) return;
      canvas.dataset.drawn = "1";
      var metric = canvas.dataset.metric;
      var datasets = data.series.map(function (s, i) {
        return { label: s.name, data: s.values[metric], backgroundColor: COLOURS[i % COLOURS.length], stack: "s" };
      });
      new window.Chart(canvas, {
        type: "bar",
        data: { labels: data.labels, datasets: datasets },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          plugins: { legend: { display: canvas.dataset.legend === "1", position: "bottom", labels: { boxWidth: 10 } } },
          scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
                    y: { stacked: true, beginAtZero: true, ticks: { maxTicksLimit: 5, callback: function (value) {
                      return metric === "spend" ? "$" + formatUsd(value) : Number(value).toLocaleString();
                    } } } }
        }
      });
    });
  }

  function copyText(text, button) {
    function done() { if (button) { button.textContent = "Copied"; } }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, done);
    } else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); } catch (e) { /* nothing to do */ }
      area.remove(); done();
    }
  }

  // Alpine (CSP build: components are registered here, templates only name them).
  document.addEventListener("alpine:init", function () {
    window.Alpine.data("copyable", function () {
      return {
        copied: false,
        get label() { return this.copied ? "Copied" : "Copy"; },
        copy: function () { copyText(this.$refs.text.textContent.trim(), null); this.copied = true; }
      };
    });
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (button) {
      var target = document.getElementById(button.dataset.copyTarget);
      if (target) copyText(target.textContent.trim(), button);
    }
  });

  // Filter forms whose selects apply at once.
  document.addEventListener("change", function (event) {
    var form = event.target.closest("form[data-autosubmit]");
    if (form && event.target.matches("select, input[type=checkbox]")) form.requestSubmit();
  });

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
})();
