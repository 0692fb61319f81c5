// The big screen: a new QR before the old one goes stale, and what is left of each coupon.
const body = document.body;
const qr = document.getElementById("qr");
const left = document.getElementById("left");
const every = Number(body.dataset.refresh || 10) * 1000;

function refreshQr() {
  qr.src = `${body.dataset.qr}?t=${Date.now()}`;
}

async function refreshFigures() {
  try {
    const answer = await fetch(body.dataset.figures, { cache: "no-store" });
    if (!answer.ok) return;
    const figures = await answer.json();
    left.replaceChildren(
      ...figures.tiers.map((tier) => {
        const item = document.createElement("li");
        const count = document.createElement("b");
        count.textContent = tier.remaining;
        item.append(`${tier.label}券 剩余 `, count, " 张");
        return item;
      }),
    );
    if (!figures.open) left.replaceChildren(Object.assign(document.createElement("li"), { textContent: "当前不在活动时间" }));
  } catch {
    // the next tick tries again; the QR keeps refreshing
  }
}

refreshFigures();
setInterval(refreshQr, every);
setInterval(refreshFigures, every);
