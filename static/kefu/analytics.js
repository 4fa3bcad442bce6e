// The analytics pages' charts: Apache ECharts (static/vendor/echarts), drawn from the data the
// page passes with json_script (#kefu-analytics-data); every label comes translated from it.
(function () {
  "use strict";
  var source = document.getElementById("kefu-analytics-data");
  if (!source || typeof echarts === "undefined") return;
  var data = JSON.parse(source.textContent);
  var strings = data.strings;
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var theme = document.documentElement.dataset.theme;
  if (theme === "dark") dark = true;
  if (theme === "light") dark = false;

  function duration(ms) {
    if (ms === null || ms === undefined) return "—";
    var u = strings.units;
    if (ms < 1000) return Math.round(ms) + " " + u.ms;
    if (ms < 60000) return (ms / 1000).toFixed(1) + " " + u.s;
    if (ms < 3600000) return (ms / 60000).toFixed(1) + " " + u.min;
    return (ms / 3600000).toFixed(1) + " " + u.h;
  }

  function formatter(kind) {
    return function (value) {
      if (value === null || value === undefined || value === "-") return "—";
      if (kind === "percent") return (value * 100).toFixed(1) + "%";
      if (kind === "ms") return duration(value);
      if (kind === "money") return Number(value).toFixed(4);
      return Number(value).toLocaleString();
    };
  }

  function cartesian(chart) {
    var format = formatter(chart.format);
    return {
      tooltip: { trigger: "axis", valueFormatter: format },
      legend: { top: 0, type: "scroll" },
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: chart.x, axisTick: { alignWithLabel: true } },
      yAxis: { type: "value", axisLabel: { formatter: format }, minInterval: chart.format === "count" ? 1 : 0 },
      series: chart.series.map(function (s) {
        var line = {
          name: s.name,
          type: chart.type === "bar" ? "bar" : "line",
          data: s.data,
          smooth: chart.type !== "bar",
          connectNulls: false,
          showSymbol: chart.x.length <= 31,
          emphasis: { focus: "series" },
        };
        if (s.previous) {
          line.lineStyle = { type: "dashed", opacity: 0.6 };
          line.itemStyle = { opacity: 0.45 };
        }
        return line;
      }),
    };
  }

  function pie(chart) {
    var format = formatter(chart.format);
    return {
      tooltip: { trigger: "item", valueFormatter: format },
      legend: { orient: "vertical", left: 0, top: "middle", type: "scroll" },
      series: [{
        type: "pie",
        radius: ["38%", "72%"],
        center: ["62%", "52%"],
        label: { position: "inside", formatter: "{d}%", color: "#fff", fontWeight: "bold" },
        data: chart.x.map(function (name, i) { return { name: name, value: chart.series[0].data[i] }; }),
      }],
    };
  }

  function heatmap(chart) {
    var max = Math.max.apply(null, chart.cells.map(function (c) { return c[2]; }).concat([1]));
    return {
      tooltip: {
        position: "top",
        formatter: function (p) {
          return chart.y[p.value[1]] + " " + chart.x[p.value[0]] + ":00 — " + p.value[2].toLocaleString();
        },
      },
      grid: { left: 8, right: 16, top: 10, bottom: 64, containLabel: true },
      xAxis: { type: "category", data: chart.x, splitArea: { show: true } },
      yAxis: { type: "category", data: chart.y, inverse: true, splitArea: { show: true } },
      visualMap: {
        min: 0, max: max, calculable: true, orient: "horizontal", left: "center", bottom: 0,
        itemHeight: 200, itemWidth: 12, inRange: { color: ["#f0f6fa", "#79aec8", "#264b5d"] },
      },
      series: [{ type: "heatmap", data: chart.cells, emphasis: { itemStyle: { borderColor: "#333", borderWidth: 1 } } }],
    };
  }

  function empty(chart) {
    if (chart.type === "heatmap") return !chart.cells.some(function (c) { return c[2]; });
    return !chart.series.some(function (s) { return s.data.some(function (v) { return v; }); });
  }

  var drawn = [];
  data.charts.forEach(function (chart) {
    var element = document.querySelector('[data-chart="' + chart.id + '"]');
    if (!element) return;
    var instance = echarts.init(element, dark ? "dark" : null, { renderer: "canvas" });
    var option = chart.type === "heatmap" ? heatmap(chart) : chart.type === "pie" ? pie(chart) : cartesian(chart);
    if (dark) option.backgroundColor = "transparent";
    if (empty(chart)) {
      option.graphic = {
        type: "text", left: "center", top: "middle", silent: true,
        style: { text: strings.noData, fill: "#999", fontSize: 14 },
      };
    }
    instance.setOption(option);
    drawn.push(instance);
  });
  window.addEventListener("resize", function () {
    drawn.forEach(function (instance) { instance.resize(); });
  });

  // The compare toggle applies at once: the same period, with or without the previous one.
  var compare = document.getElementById("id_compare");
  if (compare) {
    compare.addEventListener("change", function () {
      var url = new URL(window.location.href);
      if (compare.checked) url.searchParams.set("compare", "1");
      else url.searchParams.delete("compare");
      if (!url.searchParams.has("preset") && !url.searchParams.has("since")) url.searchParams.set("preset", "30d");
      window.location.assign(url.toString());
    });
  }
})();
