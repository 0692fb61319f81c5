// The shop assistant's page: bind with the merchant's code, scan the resident's pay code (camera,
// or the short code typed by hand), check the coupon, enter amount and category, redeem once even
// when the network fails mid-way (one Idempotency-Key per coupon shown), see today's redemptions.
import { $, $$, client, el, hours, local, sentence, show, smsButton, toast, usable, yuan, until } from "./common.js";

const api = client("huigou.staff");
const MERCHANT = "huigou.staff.merchant";
const state = { code: null, coupon: null, wallet: null, key: null, stream: null };

function go(view) {
  stopCamera();
  show(view);
  $("#tabs").hidden = view === "bind";
  if (view === "today") loadToday();
  if (view === "scan") $("#manual-form [name=paycode]").value = "";
}

function start() {
  $$("[data-go]").forEach((b) => b.addEventListener("click", () => go(b.dataset.go)));
  $$("nav [data-view]").forEach((b) => b.addEventListener("click", () => go(b.dataset.view)));
  smsButton(api, $("#sms-button"), $("#bind-form [name=phone]"), "staff");
  $("#bind-form").addEventListener("submit", bind);
  $("#camera-button").addEventListener("click", startCamera);
  $("#manual-form").addEventListener("submit", (event) => {
    event.preventDefault();
    preview($("#manual-form [name=paycode]").value);
  });
  $("#redeem-form [name=amount]").addEventListener("input", checkThreshold);
  $("#redeem-form").addEventListener("submit", submit);
  $("#fix-revoke").addEventListener("click", () => fix("revoke"));
  $("#fix-refund-button").addEventListener("click", () => fix("refund"));
  $("#unbind-button").addEventListener("click", unbind);
  showMerchant();
  go(api.token() ? "scan" : "bind");
}

function showMerchant() {
  const merchant = JSON.parse(localStorage.getItem(MERCHANT) || "null");
  $("#merchant-name").textContent = merchant ? merchant.name : "";
  $("#spend-categories").replaceChildren(...(merchant?.categories || []).map((c) => el("option", { value: c.name })));
}

function failed(error) {
  if (error.code === "UNAUTHORIZED") go("bind");
  toast(sentence(error));
}

async function bind(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = Object.fromEntries(["binding_code", "name", "phone", "sms_code"].map((k) => [k, form.get(k).trim()]));
  try {
    const answer = await api.post("/merchant/bind", body);
    api.setToken(answer.token);
    localStorage.setItem(MERCHANT, JSON.stringify(answer.merchant));
    showMerchant();
    toast(`已绑定到 ${answer.merchant.name}`, "info");
    go("scan");
  } catch (error) {
    toast(sentence(error));
  }
}

// ---------------------------------------------------------------- scanning

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) return toast("此浏览器无法使用摄像头，请手动输入券码。");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch {
    return toast("没有获得摄像头权限。请在浏览器设置中允许使用摄像头，或手动输入券码。");
  }
  const video = $("#camera");
  video.srcObject = state.stream;
  video.hidden = false;
  $("#camera-button").hidden = true;
  await video.play();
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const look = () => {
    if (!state.stream) return;
    if (video.readyState === video.HAVE_ENOUGH_DATA) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      context.drawImage(video, 0, 0);
      const found = window.jsQR(context.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
      if (found?.data) {
        stopCamera();
        return preview(found.data);
      }
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
}

function stopCamera() {
  state.stream?.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("#camera").hidden = true;
  $("#camera-button").hidden = false;
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- checking and redeeming

async function preview(code) {
  code = code.trim();
  if (!code) return toast("请先扫码或输入券码。");
  try {
    const answer = await api.post("/merchant/scan", { paycode: code });
    if (!answer.accepted) return outcome(false, sentence(answer.refusal), answer.coupon);
    state.code = code;
    state.coupon = answer.coupon;
    state.wallet = answer.wallet || null; // a wallet pay code: the server applies the best coupon
    state.key = newKey(); // one submission per coupon shown: a retry sends the same key
    const c = answer.coupon;
    if (state.wallet) {
      $("#preview-coupon").replaceChildren(
        el("b", {}, `钱包付款码：本店可用 ${state.wallet.length} 张券`),
        el("p", {}, "按消费金额自动使用面额最大的一张可用券"),
        el("ul", { class: "wallet" }, ...state.wallet.map((w) => el("li", {}, `${w.category.name} ${couponTerms(w)}`))),
      );
    } else {
      $("#preview-coupon").replaceChildren(
        el("b", {}, `${c.category.name} ${yuan(c.face_fen)} 元消费券`),
        el("p", {}, `${usable(c)} · 有效期至 ${until(c.valid_until)}${hours(c)}`),
      );
    }
    $("#redeem-form").reset();
    offerSpendCategories((state.wallet ? state.wallet[0] : c).spend_categories);
    checkThreshold();
    show("preview");
  } catch (error) {
    failed(error);
  }
}

// Where the campaign lists what a spend may be recorded as, the assistant picks from the list;
// what a coupon may not pay for (押金、充值…) is shown, not chosen.
function offerSpendCategories(choices) {
  const typed = $("#redeem-form [name=spend_category]");
  const picked = $("#redeem-form [name=spend_choice]");
  typed.hidden = Boolean(choices);
  typed.required = !choices;
  picked.hidden = !choices;
  picked.required = Boolean(choices);
  if (!choices) return;
  picked.replaceChildren(
    el("option", { value: "" }, "请选择消费品类"),
    ...choices.map((c) =>
      c.excluded ? el("option", { value: c.name, disabled: "" }, `${c.name}（不能用券）`) : el("option", { value: c.name }, c.name),
    ),
  );
}

function amountFen() {
  const text = $("#redeem-form [name=amount]").value.trim();
  return /^\d+(\.\d{1,2})?$/.test(text) ? Math.round(Number(text) * 100) : null;
}

function couponTerms(c) {
  return c.threshold_fen ? `满${yuan(c.threshold_fen)}减${yuan(c.face_fen)}` : `${yuan(c.face_fen)}元`;
}

// The least spend a coupon takes: its threshold, and its face where a campaign does not give change
// (不找零: the shop cannot be paid more than the sale).
function need(c) {
  return c.short_sale === "settle" ? c.threshold_fen : Math.max(c.threshold_fen, c.face_fen);
}

// The coupon this spend would use: the shown one, or for a wallet the first (largest) it reaches.
function couponFor(fen) {
  if (fen === null) return null;
  if (!state.wallet) return fen >= need(state.coupon) ? state.coupon : null;
  return state.wallet.find((w) => fen >= need(w)) || null;
}

function checkThreshold() {
  const fen = amountFen();
  const used = couponFor(fen);
  const least = state.wallet ? Math.min(...state.wallet.map(need)) : need(state.coupon);
  const short = !state.wallet && fen !== null && fen >= state.coupon.threshold_fen && fen < least;
  const hint = $("#threshold-hint");
  if (fen === null) hint.textContent = `请输入消费金额，满 ${yuan(least)} 元可用${state.wallet ? "券" : "此券"}。`;
  else if (short) hint.textContent = `消费金额不足券面额，本券不找零：满 ${yuan(least)} 元可用，还差 ${yuan(least - fen)} 元。`;
  else if (!used) hint.textContent = `未达到使用门槛：满 ${yuan(least)} 元可用，还差 ${yuan(least - fen)} 元。`;
  else {
    const paid = Math.min(used.face_fen, fen);
    const rest = used.face_fen - paid;
    hint.textContent =
      `${state.wallet ? `将使用${couponTerms(used)}券，` : ""}顾客实付 ${yuan(fen - paid)} 元（消费 ${yuan(fen)} 元，券抵 ${yuan(paid)} 元）` +
      (rest ? `；券面余下 ${yuan(rest)} 元不找零，退回资金池。` : "。");
  }
  hint.classList.toggle("warn", fen !== null && !used);
  $("#redeem-button").disabled = !used;
}

async function submit(event) {
  event.preventDefault();
  const fen = amountFen();
  if (!couponFor(fen)) return checkThreshold();
  const body = {
    paycode: state.code,
    spend_fen: fen,
    spend_category: $("#redeem-form [name=spend_choice]").hidden
      ? $("#redeem-form [name=spend_category]").value.trim()
      : $("#redeem-form [name=spend_choice]").value,
  };
  const button = $("#redeem-button");
  button.disabled = true;
  for (let attempt = 1; ; attempt++) {
    try {
      const { redemption } = await api.post("/merchant/redeem", body, { "Idempotency-Key": state.key });
      button.textContent = "确认核销";
      return outcome(true, `面额 ${yuan(redemption.face_fen)} 元，消费 ${yuan(redemption.spend_fen)} 元，核销编号 ${redemption.id}。`);
    } catch (error) {
      if (error.code === "NETWORK" && attempt < 4) {
        button.textContent = `网络异常，正在重试（${attempt}）…`;
        await new Promise((done) => setTimeout(done, 1000 * attempt));
        continue;
      }
      button.textContent = "确认核销";
      button.disabled = false;
      if (error.code === "NETWORK") return toast(sentence(error) + "再次点击“确认核销”不会重复核销。");
      if (error.code === "UNAUTHORIZED") return failed(error);
      return outcome(false, sentence(error), state.coupon);
    }
  }
}

function outcome(ok, text, coupon) {
  const box = $("#result-box");
  box.className = `result ${ok ? "ok" : "refused"}`;
  const parts = [el("b", {}, ok ? "核销成功" : "不能核销")];
  if (coupon && !ok) parts.push(el("p", {}, `${coupon.category.name} ${yuan(coupon.face_fen)} 元券`));
  box.replaceChildren(...parts, el("p", {}, text));
  show("result");
}

// ---------------------------------------------------------------- today

// What the bureau's settlement batches made of it: payable, paid, withheld, each batch.
function showSettled(settlement) {
  $("#payable").textContent = yuan(settlement.payable_fen);
  $("#paid").textContent = yuan(settlement.paid_fen);
  $("#withheld").textContent = yuan(settlement.withheld_fen);
  const claw = $("#clawback");
  claw.hidden = !settlement.clawback_fen;
  claw.textContent = `退货或审计扣减超出结算额，应退回 ${yuan(settlement.clawback_fen)} 元，请联系商务局。`;
  const rows = settlement.batches.map((b) =>
    el(
      "tr",
      {},
      el("td", {}, `第${b.number}批 ${b.period}`),
      el("td", {}, b.withheld_fen ? "暂扣" : b.state_name),
      el("td", {}, `${yuan(b.amount_fen)}元`),
      el("td", {}, b.paid_fen ? `${yuan(b.paid_fen)}元 ${b.paid_on}` : "—"),
    ),
  );
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4 }, "商务局尚未生成结算批次")));
  $("#batch-rows").replaceChildren(...rows);
}

// A redemption of today's list picked to undo (撤回, within the window) or to refund (退货).
function pick(redemption) {
  state.fixing = redemption;
  const box = $("#fix");
  box.hidden = false;
  $("#fix-title").textContent =
    `${local(redemption.created_at).slice(11)} ${yuan(redemption.face_fen)}元券 · 消费 ${yuan(redemption.spend_fen)}元`;
  $("#fix-reason").value = "";
  $("#fix-refund").value = "";
  box.scrollIntoView({ block: "center" });
}

async function fix(action) {
  const redemption = state.fixing;
  const reason = $("#fix-reason").value.trim();
  if (!reason) return toast("请填写原因。");
  const body = { reason };
  const part = $("#fix-refund").value.trim();
  if (action === "refund" && part) {
    if (!/^\d+(\.\d{1,2})?$/.test(part)) return toast("退货金额请填写数字，最多两位小数。");
    body.spend_fen = Math.round(Number(part) * 100);
  }
  try {
    await api.post(`/merchant/redemptions/${redemption.id}/${action}`, body);
    toast(action === "revoke" ? "已撤回，券已退还顾客。" : "已办理退货。", "info");
    loadToday();
  } catch (error) {
    failed(error);
  }
}

// This phone leaves the shop: the bureau issues a new binding code to bind again.
async function unbind() {
  if (!window.confirm("解绑后本机不能再核销，确定解绑吗？")) return;
  try {
    await api.post("/merchant/staff/unbind", {});
    api.clearToken();
    localStorage.removeItem(MERCHANT);
    showMerchant();
    toast("本机已解绑。", "info");
    go("bind");
  } catch (error) {
    failed(error);
  }
}

async function loadToday() {
  $("#fix").hidden = true; // at once: a row tapped while the list refreshes keeps its panel
  try {
    const settlement = await api.get("/merchant/settlement");
    $("#today-count").textContent = settlement.today.count;
    $("#today-owed").textContent = yuan(settlement.today.owed_fen);
    $("#total-count").textContent = settlement.count;
    $("#total-owed").textContent = yuan(settlement.owed_fen);
    showSettled(settlement);
    const day = settlement.today.date;
    const { items } = await api.get(`/merchant/redemptions?start=${day}&end=${day}&per_page=100`);
    const rows = items.map((r) =>
      el(
        "tr",
        {
          class: r.revoked_at || r.refunded_at ? "void" : "pick",
          "data-redemption": r.id,
          onclick: () => (r.revoked_at || r.refunded_at ? null : pick(r)),
        },
        el("td", {}, local(r.created_at).slice(11)),
        el("td", {}, `${yuan(r.face_fen)}元`),
        el("td", {}, `${yuan(r.spend_fen)}元`),
        el("td", {}, r.revoked_at ? "已撤回" : r.refunded_at ? "已退货" : r.spend_category),
      ),
    );
    $("#today-rows").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 4 }, "今日暂无核销"))]));
  } catch (error) {
    failed(error);
  }
}

start();
