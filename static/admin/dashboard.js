// Draws the dashboard's charts from the figures the page carries (no further requests).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const draw = (id, option) => {
    const el = document.getElementById(id);
    const chart = echarts.init(el);
    chart.setOption(option);
    el.dataset.drawn = "true"; // for the browser tests: the chart has been rendered
    window.addEventListener("resize", () => chart.resize());
  };
  // Planned stock dwarfs what is claimed and redeemed (7,000 beside 30): planned is a line on an
  // axis of its own, so the bars keep their height; every category's name is shown.
  draw("chart-categories", {
    title: { text: "各品类投放、领取、核销（张）", textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis" },
    legend: { bottom: 0, data: ["领取量", "核销量", "投放量（右轴）"] },
    grid: { top: 60, left: 48, right: 56, bottom: 72 },
    xAxis: { type: "category", data: data.categories, axisLabel: { interval: 0, rotate: data.categories.length > 4 ? 30 : 0 } },
    yAxis: [
      { type: "value", name: "领取、核销", nameTextStyle: { align: "left" } },
      { type: "value", name: "投放", nameTextStyle: { align: "right" }, splitLine: { show: false } },
    ],
    series: [
      { name: "领取量", type: "bar", data: data.claimed },
      { name: "核销量", type: "bar", data: data.redeemed },
      { name: "投放量（右轴）", type: "line", yAxisIndex: 1, data: data.issued, symbolSize: 8 },
    ],
  });
  draw("chart-days", {
    title: { text: "每日领取与核销", textStyle: { fontSize: 14 } },
    tooltip: { trigger: "axis" },
    legend: { bottom: 0, data: ["领取量（张）", "核销金额（元）", "订单金额（元）"] },
    grid: { top: 60, left: 56, right: 64, bottom: 56 },
    xAxis: { type: "category", data: data.days },
    yAxis: [{ type: "value", name: "张" }, { type: "value", name: "元" }],
    series: [
      { name: "领取量（张）", type: "bar", data: data.day_claimed },
      { name: "核销金额（元）", type: "line", yAxisIndex: 1, data: data.day_redeemed_yuan },
      { name: "订单金额（元）", type: "line", yAxisIndex: 1, data: data.day_order_yuan },
    ],
  });
  draw("chart-pool", {
    title: { text: "资金池：预算去向（元）", textStyle: { fontSize: 14 } },
    tooltip: { trigger: "item" },
    legend: { bottom: 0 },
    series: [{ type: "pie", radius: ["35%", "60%"], center: ["50%", "50%"], data: data.pool.filter((d) => d.value > 0) }],
  });
})();
