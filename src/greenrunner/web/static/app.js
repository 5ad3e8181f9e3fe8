// GreenRunner's pages work without JavaScript; this file adds what needs it: live labels on
// the staging sliders, progress polling on the results page, the charts (vendored Chart.js)
// and a tidy compare link. One function per page, chosen by <body data-page="...">.
// Nothing here posts: the forms do, with their hidden csrf_token. A request added here that
// changes something must send <meta name="csrf-token">'s content as the X-CSRF-Token header.
"use strict";

(function () {
  const COLORS = {
    accent: "#1e7a4c",
    accentFill: "rgba(30, 122, 76, 0.55)",
    other: "rgba(91, 107, 99, 0.45)",
    otherLine: "#5b6b63",
    benchmark: "#c76b00",
    benchmarkFill: "rgba(199, 107, 0, 0.55)",
  };

  function fmt(x, digits) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
  }

  // The same #error box the server renders, for a message found in the browser.
  function showError(message) {
    let box = document.getElementById("error");
    if (!box) {
      box = document.createElement("div");
      box.id = "error";
      box.className = "alert error";
      box.setAttribute("role", "alert");
      document.querySelector("main h1").insertAdjacentElement("afterend", box);
    }
    box.textContent = message;
    box.scrollIntoView({ block: "center" });
  }

  function sig(x) {
    return x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { maximumSignificantDigits: 3 });
  }

  // --- set-up -----------------------------------------------------------------------------
  function initSetup() {
    // Keep the hint under a select about the option chosen (the server renders the first).
    function follow(selectId, hintId, text) {
      const select = document.getElementById(selectId);
      const hint = document.getElementById(hintId);
      if (!select || !hint) return;
      select.addEventListener("change", () => {
        hint.textContent = text(select.selectedOptions[0]);
      });
    }
    follow("strategy", "strategy-hint", (option) => option.title);
    follow("repository", "repository-hint", (option) => option.dataset.description || "");
    const form = document.getElementById("setup-form");
    const button = document.getElementById("create");
    if (form && button) {
      form.addEventListener("submit", (event) => {
        // The server refuses an upload over its limit before reading it, with no page to
        // show the message on; say it here instead of sending hundreds of MB for nothing.
        const limit = Number(form.dataset.maxUpload);
        const sizes = Array.from(form.querySelectorAll('input[type="file"]'))
          .flatMap((input) => Array.from(input.files));
        const total = sizes.reduce((sum, f) => sum + f.size, 0);
        if (limit && total > limit) {
          event.preventDefault();
          showError(
            "The upload is " + (total / 1048576).toFixed(1) + " MB, over this server's limit of " +
            (limit / 1048576).toFixed(0) + " MB; upload fewer or smaller files, or start the " +
            "server with a higher --max-upload-mb."
          );
          return;
        }
        // Uploads are checked on the server (every model loaded once): say it is working.
        button.disabled = true;
        button.textContent = "Checking…";
      });
    }
  }

  // --- staging ----------------------------------------------------------------------------
  function initStaging() {
    const form = document.getElementById("weights-form");
    if (!form) return;
    const sliders = Array.from(form.querySelectorAll('input[type="range"]'));
    function update() {
      const total = sliders.reduce((sum, s) => sum + Number(s.value), 0);
      for (const s of sliders) {
        document.getElementById(s.id + "-value").textContent = fmt(s.value, 2);
        const share = document.getElementById(s.id + "-share");
        if (share) {
          share.textContent = total > 0
            ? "(" + Math.round((100 * Number(s.value)) / total) + "% after scaling)"
            : "(all zero: raise one)";
        }
      }
      document.getElementById("start-run").disabled = !(total > 0);
    }
    for (const s of sliders) s.addEventListener("input", update);
    // A form reset restores the values after the event; update once it has happened.
    form.addEventListener("reset", () => setTimeout(update, 0));
    form.addEventListener("submit", () => {
      const button = document.getElementById("start-run");
      button.disabled = true;
      button.textContent = "Starting…";
    });
    update();
  }

  // --- results ----------------------------------------------------------------------------
  function initResults() {
    const root = document.getElementById("experiment");
    if (!root) return;
    if (root.dataset.live === "true") poll(root);
    const data = document.getElementById("chart-data");
    if (data && window.Chart) drawCharts(JSON.parse(data.textContent));
  }

  function poll(root) {
    const status = document.getElementById("status");
    const bar = document.getElementById("progress");
    const text = document.getElementById("progress-text");
    async function tick() {
      let view;
      try {
        const response = await fetch(root.dataset.api, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error("HTTP " + response.status);
        view = await response.json();
      } catch (err) {
        // A restart or a network blip: keep trying, say so.
        if (text) text.textContent = "Waiting for the server… (" + err.message + ")";
        setTimeout(tick, 2000);
        return;
      }
      if (view.status !== root.dataset.status) {
        // The run ended (or was interrupted): the server renders the final page once.
        window.location.reload();
        return;
      }
      const p = view.progress || {};
      if (status) status.textContent = view.status;
      if (bar && typeof p.fraction === "number") bar.value = p.fraction;
      if (text) {
        let line = (p.phase || view.status) + (p.detail ? ": " + p.detail : "");
        if (p.done_calls) {
          line += " · " + p.done_calls.toLocaleString();
          line += (p.budget_calls ? " of " + p.budget_calls.toLocaleString() : "") + " calls";
        }
        if (p.leader) line += " · leading: " + p.leader;
        text.textContent = line;
      }
      setTimeout(tick, 1000);
    }
    setTimeout(tick, 1000);
  }

  function baseOptions(extra) {
    // No animation: charts are complete as soon as they are drawn (and in screenshots).
    return Object.assign(
      { animation: false, responsive: true, maintainAspectRatio: false },
      extra
    );
  }

  function drawCharts(data) {
    const models = data.models || [];
    const colour = (m) => (m.recommended ? COLORS.accent : m.benchmark ? COLORS.benchmark : COLORS.other);
    drawPulls(models, colour);
    drawReward(models, colour, data.confidence);
    drawPareto(models);
  }

  function drawPulls(models, colour) {
    const canvas = document.getElementById("pulls-chart");
    if (!canvas) return;
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: models.map((m) => m.name),
        datasets: [{ label: "evaluations", data: models.map((m) => m.pulls), backgroundColor: models.map(colour) }],
      },
      options: baseOptions({
        plugins: { legend: { display: false } },
        scales: {
          x: { ticks: { autoSkip: false, maxRotation: 90, minRotation: 60, font: { size: 10 } } },
          y: { beginAtZero: true, title: { display: true, text: "samples evaluated" } },
        },
      }),
    });
  }

  function drawReward(models, colour, confidence) {
    const canvas = document.getElementById("reward-chart");
    if (!canvas) return;
    const shown = models.filter((m) => m.reward !== null && m.reward_ci_low !== null);
    const level = Math.round((confidence || 0.95) * 100);
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: shown.map((m) => m.name),
        datasets: [
          {
            // Floating bars from the interval's low to its high end.
            type: "bar",
            label: level + "% interval",
            data: shown.map((m) => [m.reward_ci_low, m.reward_ci_high]),
            backgroundColor: shown.map(colour),
            barPercentage: 0.5,
            order: 2,
          },
          {
            type: "line",
            label: "estimate",
            data: shown.map((m) => m.reward),
            showLine: false,
            pointStyle: "rectRot",
            borderColor: "#1d2a24",
            pointRadius: 5,
            pointBackgroundColor: "#1d2a24",
            order: 1,
          },
        ],
      },
      options: baseOptions({
        plugins: {
          legend: { labels: { usePointStyle: true } },
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const m = shown[ctx.dataIndex];
                return m.name + ": " + fmt(m.reward, 3) + " [" + fmt(m.reward_ci_low, 3) + ", " + fmt(m.reward_ci_high, 3) + "]";
              },
            },
          },
        },
        scales: {
          x: { ticks: { autoSkip: false, maxRotation: 90, minRotation: 60, font: { size: 10 } } },
          y: { title: { display: true, text: "reward (Equation 1)" } },
        },
      }),
    });
  }

  function drawPareto(models) {
    const canvas = document.getElementById("pareto-chart");
    if (!canvas) return;
    const shown = models.filter((m) => m.accuracy !== null && m.mmacs !== null && m.mmacs > 0);
    // Marker radius from the log of the size, 4..16 px: sizes span orders of magnitude.
    const sizes = shown.map((m) => Math.log(Math.max(m.size_mb || 0, 1e-3)));
    const lo = Math.min(...sizes), hi = Math.max(...sizes);
    const radius = (m) => {
      const s = Math.log(Math.max(m.size_mb || 0, 1e-3));
      return hi > lo ? 4 + (12 * (s - lo)) / (hi - lo) : 8;
    };
    const point = (m) => ({ x: m.mmacs, y: m.accuracy, r: radius(m), name: m.name, size: m.size_mb });
    const groups = [
      { label: "recommended", pick: (m) => m.recommended, bg: COLORS.accentFill, border: COLORS.accent, width: 3 },
      { label: "model-card pick", pick: (m) => m.benchmark && !m.recommended, bg: COLORS.benchmarkFill, border: COLORS.benchmark, width: 2 },
      { label: "other models", pick: (m) => !m.recommended && !m.benchmark, bg: COLORS.other, border: COLORS.otherLine, width: 1 },
    ];
    new window.Chart(canvas, {
      type: "bubble",
      data: {
        datasets: groups
          .map((g) => ({
            label: g.label,
            data: shown.filter(g.pick).map(point),
            backgroundColor: g.bg,
            borderColor: g.border,
            borderWidth: g.width,
          }))
          .filter((d) => d.data.length > 0),
      },
      options: baseOptions({
        plugins: {
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const p = ctx.raw;
                return p.name + ": accuracy " + fmt(p.y, 3) + ", " + sig(p.x) + " MMACs, " + sig(p.size) + " MB";
              },
            },
          },
        },
        scales: {
          x: {
            type: "logarithmic",
            // Room for the largest markers at both ends of the axis.
            min: Math.min(...shown.map((m) => m.mmacs)) / 1.6,
            max: Math.max(...shown.map((m) => m.mmacs)) * 1.6,
            title: { display: true, text: "MMACs per sample (log)" },
            ticks: { callback: logTick },
          },
          y: {
            min: 0,
            max: Math.min(1, Math.ceil((Math.max(...shown.map((m) => m.accuracy)) + 0.08) * 10) / 10),
            title: { display: true, text: "accuracy on your data" },
          },
        },
      }),
    });
  }

  // Label only 1, 2 and 5 times a power of ten: a log axis labelled at every tick is a blur.
  function logTick(value) {
    const lead = value / Math.pow(10, Math.floor(Math.log10(value) + 1e-9));
    if (![1, 2, 5].some((d) => Math.abs(lead - d) < 1e-6)) return "";
    return Number(value).toLocaleString(undefined, { maximumSignificantDigits: 3 });
  }

  // --- history ----------------------------------------------------------------------------
  function initHistory() {
    const form = document.getElementById("compare-form");
    if (!form) return;
    form.addEventListener("submit", (event) => {
      // /compare?ids=1,2 reads better than ?ids=1&ids=2 (the server accepts both).
      const ids = Array.from(form.querySelectorAll('input[name="ids"]:checked')).map((c) => c.value);
      event.preventDefault();
      if (ids.length === 0) {
        document.getElementById("compare-hint").textContent = "Tick at least one experiment first.";
        return;
      }
      window.location.href = form.action + "?ids=" + ids.join(",");
    });
  }

  const pages = { setup: initSetup, staging: initStaging, results: initResults, history: initHistory };
  const init = pages[document.body.dataset.page];
  if (init) init();
})();
