/* The operations page: fetch the snapshot from data-url every data-refresh-ms, draw the charts
   (uPlot, served from this app's static files) and fill the tables. */
(function () {
  "use strict";
  var root = document.getElementById("ops");
  var url = root.dataset.url;
  var refreshMs = parseInt(root.dataset.refreshMs, 10) || 5000;
  var COLORS = {
    pending: "#417690", processing: "#e6a700", shipped: "#3a9c3a",
    delivered: "#2a6f97", cancelled: "#888888", failed: "#ba2121"
  };
  var LABELS = { pending: "accepted" };
  var charts = {};
  window.opsCharts = charts;  // read by the browser test

  function width(el) { return Math.max(300, el.clientWidth || 600); }

  function throughputChart(data) {
    var el = document.getElementById("chart-throughput");
    var statuses = Object.keys(data.series);
    var rows = [data.minutes].concat(statuses.map(function (s) { return data.series[s]; }));
    if (!charts.throughput) {
      var series = [{}].concat(statuses.map(function (s) {
        return { label: LABELS[s] || s, stroke: COLORS[s] || "#333", width: 2,
                 points: { show: false } };
      }));
      charts.throughput = new uPlot({
        width: width(el), height: 240, series: series,
        axes: [{}, { label: "orders / min" }], scales: { x: { time: true } }
      }, rows, el);
    } else {
      charts.throughput.setData(rows);
    }
  }

  function inFlightChart(counts) {
    var el = document.getElementById("chart-in-flight");
    var names = Object.keys(counts);
    var rows = [names.map(function (_, i) { return i; }), names.map(function (n) { return counts[n]; })];
    if (!charts.inFlight) {
      charts.inFlight = new uPlot({
        width: width(el), height: 200,
        scales: { x: { time: false, range: [-0.5, names.length - 0.5] } },
        series: [{}, { label: "orders", fill: "#79aec8", stroke: "#417690",
                       paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
        axes: [{ splits: rows[0], values: function () { return names; } }, {}],
        legend: { show: false }
      }, rows, el);
    } else {
      charts.inFlight.setData(rows);
    }
    var dl = document.getElementById("in-flight");
    dl.replaceChildren();
    names.forEach(function (n) {
      var dt = document.createElement("dt"); dt.textContent = n;
      var dd = document.createElement("dd"); dd.textContent = counts[n];
      dl.append(dt, dd);
    });
  }

  function fillTable(name, rows) {
    var table = document.getElementById("table-" + name);
    if (!table) { return; }
    var columns = table.dataset.columns.split(",");
    var headers = (table.dataset.headers || table.dataset.columns).split(",");
    var link = table.dataset.link;
    table.replaceChildren();
    var head = table.insertRow();
    headers.forEach(function (h) {
      var th = document.createElement("th"); th.textContent = h; head.append(th);
    });
    if (!rows || !rows.length) {
      var cell = table.insertRow().insertCell();
      cell.colSpan = columns.length; cell.className = "ops-empty"; cell.textContent = "none";
      return;
    }
    rows.forEach(function (row) {
      var tr = table.insertRow();
      if (row.out_of_stock) { tr.className = "ops-bad"; }
      columns.forEach(function (c) {
        var td = tr.insertCell();
        var value = row[c] === null || row[c] === undefined ? "–" : row[c];
        if (typeof value === "number" && !Number.isInteger(value)) { value = value.toFixed(1); }
        if (c === "at" && row.at) { value = new Date(row.at).toLocaleString(); }
        if (c === link && row.admin_url) {
          var a = document.createElement("a"); a.href = row.admin_url; a.textContent = value;
          td.append(a);
        } else {
          td.textContent = value;
        }
      });
    });
  }

  function render(data) {
    throughputChart(data.throughput);
    inFlightChart(data.in_flight);
    var lag = data.stage_lag;
    document.getElementById("stage-lag").textContent =
      lag.p99_seconds === null ? "no stage job started in the last hour"
        : lag.p99_seconds.toFixed(2) + " s (last " + lag.sample + " starts)";
    var rec = data.reconciliation;
    var recEl = document.getElementById("reconciliation");
    recEl.replaceChildren();
    if (rec) {
      var a = document.createElement("a");
      a.href = rec.admin_url;
      a.textContent = new Date(rec.at).toLocaleString() + ": " +
        (rec.ok ? "ok" : rec.drift_count + " product(s) drifted");
      if (!rec.ok) { a.className = "ops-bad"; }
      recEl.append(a);
    } else {
      recEl.textContent = "never";
    }
    Object.keys(data).forEach(function (name) {
      if (Array.isArray(data[name])) { fillTable(name, data[name]); }
    });
    document.getElementById("ops-updated").textContent =
      new Date(data.generated_at).toLocaleTimeString();
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        document.getElementById("ops-error").hidden = true;
        render(data);
        root.dataset.renders = String((parseInt(root.dataset.renders, 10) || 0) + 1);
      })
      .catch(function (error) {
        var el = document.getElementById("ops-error");
        el.textContent = "refresh failed: " + error.message;
        el.hidden = false;
      })
      .finally(function () { window.setTimeout(refresh, refreshMs); });
  }

  refresh();
})();
