// The resident's page: bind, take part in the campaign (spin a wheel, grab a tier or apply for a
// purchase subsidy: kinds.js), see my coupons, show a pay code, find merchants, answer the survey.
// The server decides every outcome; the wheel only shows it. `?campaign=CODE` names the campaign
// for everything on the page; an on-site event's QR adds `&screen=CODE`.
import { $, $$, client, el, hours, local, sentence, show, smsButton, toast, usable, yuan, until } from "./common.js";
import { exchangeScreen, kinds } from "./kinds.js";

const api = client("huigou.resident");
const state = {
  code: new URLSearchParams(window.location.search).get("campaign"),
  campaign: null,
  category: null,
  rotation: 0,
  paycodeTimer: null,
  coupon: null,
  kinds: null,
};
const COLORS = ["#c81e1e", "#f59e0b", "#e0483a", "#fbbf24"];

function go(view) {
  clearInterval(state.paycodeTimer);
  if (view === "home") $("#grab-result").hidden = true;
  show(view);
  $("#tabs").hidden = view === "bind" || view === "identity";
  ({ home: loadHome, coupons: () => loadCoupons("unused"), survey: loadSurvey })[view]?.();
}

async function start() {
  $$("[data-go]").forEach((b) => b.addEventListener("click", () => go(b.dataset.go)));
  $$("nav [data-view]").forEach((b) => b.addEventListener("click", () => go(b.dataset.view)));
  smsButton(api, $("#sms-button"), $("#bind-form [name=phone]"), "bind");
  $("#bind-form").addEventListener("submit", bind);
  $("#identity-form").addEventListener("submit", identify);
  $("#spin-button").addEventListener("click", spin);
  $$("#coupon-tabs button").forEach((b) => b.addEventListener("click", () => loadCoupons(b.dataset.status)));
  $("#paycode-merchants").addEventListener("click", () => loadMerchants(state.coupon));
  $("#survey-form").addEventListener("submit", submitSurvey);
  $("#survey-form").addEventListener("change", showAskedQuestions);
  $("#wallet-button").addEventListener("click", openWallet);
  $("#sign-out").addEventListener("click", signOut);
  $("#privacy-link").addEventListener("click", () => ($("#privacy").open = true));
  state.kinds = kinds({
    api,
    code: state.code,
    screen: await scannedAtTheEvent(),
    failed,
    openPaycode,
    location,
    reload: loadHome,
  });
  if (api.token()) return go("home");
  go("bind");
  fetchCampaign().catch(() => {}); // its name over the binding form; the home page reports errors
}

// Opened from an on-site event's big screen: trade its code for a pass at once, before binding,
// since the code is good for a minute only. The code leaves the address so that a reload does
// not send it again once stale; the pass stays in this tab's sessionStorage.
async function scannedAtTheEvent() {
  const params = new URLSearchParams(window.location.search);
  const screen = params.get("screen");
  if (!screen || !state.code) return null;
  params.delete("screen");
  history.replaceState(null, "", `${window.location.pathname}?${params}`);
  const answer = await exchangeScreen(api, state.code, screen);
  toast(answer.ok ? "已确认您在活动现场，绑定后请尽快领券。" : answer.said, answer.ok ? "info" : "error");
  return answer;
}

// ---------------------------------------------------------------- binding

async function bind(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  if (!form.get("consent")) return toast("请先阅读并同意《个人信息保护说明》。");
  const body = Object.fromEntries(["name", "phone", "sms_code"].map((k) => [k, form.get(k).trim()]));
  if (!$("#bind-id-field").hidden) body.id_number = form.get("id_number").trim();
  try {
    const answer = await api.post("/auth/bind", body);
    api.setToken(answer.token);
    toast(`${answer.resident.name}，绑定成功！`, "info");
    go("home");
  } catch (error) {
    toast(sentence(error));
  }
}

// A campaign that asks for the ID card: the card, once, then back to the campaign.
async function identify(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { name: form.get("name").trim(), id_number: form.get("id_number").trim() };
  try {
    const answer = await api.post("/auth/identity", body);
    api.setToken(answer.token);
    toast(`实名认证完成（身份证 ${answer.resident.id_card_masked}），请继续参加活动。`, "info");
    go("home");
  } catch (error) {
    toast(sentence(error));
  }
}

function failed(error) {
  if (error.code === "UNAUTHORIZED" || error.code === "NOT_BOUND") go("bind");
  if (error.code === "ID_REQUIRED") go("identity");
  toast(sentence(error));
}

// This phone forgets the resident: the coupons stay in the account, found again with the phone's code.
function signOut() {
  api.clearToken();
  toast("已退出登录。", "info");
  go("bind");
}

// ---------------------------------------------------------------- the campaign, categories and the wheel

const HOME_TABS = { wheel: "抽奖", grab: "抢券", subsidy: "购车补贴" };

function roundLabel(campaign) {
  const n = campaign.current_round;
  if (campaign.kind === "subsidy") return n ? "受理中" : "不在受理时间";
  if (campaign.kind === "grab") return n ? `第${n}期` : "未到领券时间";
  return n ? `第${n}轮` : "本轮未开始";
}

async function fetchCampaign() {
  const campaign = await api.get(state.code ? `/campaign?code=${encodeURIComponent(state.code)}` : "/campaign");
  state.campaign = campaign;
  const askId = campaign.identity === "id_card";
  $("#bind-id-field").hidden = !askId;
  $("#bind-id-field input").required = askId;
  $("#campaign-name").textContent = campaign.name;
  $("#round-label").textContent = roundLabel(campaign);
  $("#home-tab").textContent = HOME_TABS[campaign.kind] || HOME_TABS.wheel;
  document.title = `${campaign.name} · 惠购`;
  $("#public-link").href = `/public/${encodeURIComponent(campaign.code)}`;
  return campaign;
}

// Every active campaign the resident can join from here, the one shown marked: a county may run a
// season's coupons and a fair at once.
async function listCampaigns(shown) {
  const { items } = await api.get("/campaigns");
  const nav = $("#campaigns");
  nav.hidden = items.length < 2;
  nav.replaceChildren(
    ...items.map((c) =>
      c.code === shown.code
        ? el("b", { "aria-current": "page" }, c.name)
        : el("a", { href: `?campaign=${encodeURIComponent(c.code)}`, "data-campaign": c.code }, c.name),
    ),
  );
}

async function loadHome() {
  try {
    const campaign = await fetchCampaign();
    listCampaigns(campaign).catch(() => {}); // the list is a convenience: the page works without it
    $("#grab-home").hidden = campaign.kind !== "grab";
    $("#subsidy-home").hidden = campaign.kind !== "subsidy";
    $("#wheel-home").hidden = campaign.kind === "grab" || campaign.kind === "subsidy";
    if (campaign.kind === "grab") return state.kinds.showGrab(campaign);
    if (campaign.kind === "subsidy") return await state.kinds.showSubsidy(campaign);
    state.drawn = await drawnThisRound();
    const cards = campaign.categories.map((category) => {
      const tiers = campaign.tiers.filter((t) => t.category.code === category.code);
      const left = tiers.reduce((n, t) => n + t.remaining, 0);
      const faces = tiers.flatMap((t, i) => [i ? "、" : "", el("i", {}, `${yuan(t.face_fen)}元`)]);
      const drawn = state.drawn[category.code];
      return el(
        "button",
        { class: drawn ? "card drawn" : "card", "data-category": category.code, onclick: () => openWheel(category) },
        el("b", {}, category.name),
        el("span", { class: "faces" }, ...faces),
        drawn
          ? el("small", { class: "done" }, drawn === "won" ? "本轮已抽中 · 见“我的券”" : "本轮已抽过")
          : el("small", {}, left > 0 ? `本轮剩余 ${left} 张` : "本轮已抢完"),
      );
    });
    $("#categories").replaceChildren(...cards);
  } catch (error) {
    failed(error);
  }
}

// The categories already drawn this round: {code: "won" | "thanks"} (none when it cannot tell).
async function drawnThisRound() {
  try {
    const { drawn } = await api.get(`/draws${state.code ? `?code=${encodeURIComponent(state.code)}` : ""}`);
    return Object.fromEntries(drawn.map((d) => [d.category, d.outcome]));
  } catch {
    return {};
  }
}

function markDrawn(code, outcome) {
  state.drawn = { ...(state.drawn || {}), [code]: outcome };
  const button = $("#spin-button");
  button.disabled = true;
  button.textContent = "本轮已抽过该品类";
}

async function openWheel(category) {
  state.category = category;
  show("wheel");
  $("#wheel-title").textContent = `${category.name} · 幸运转盘`;
  $("#draw-result").hidden = true;
  $("#spin-button").disabled = false;
  $("#spin-button").textContent = "开始抽奖";
  const drawn = state.drawn?.[category.code];
  if (drawn) markDrawn(category.code, drawn);
  try {
    const wheel = await api.get(`/draw/${category.code}/wheel${state.code ? `?code=${encodeURIComponent(state.code)}` : ""}`);
    state.segments = wheel.segments;
    $("#wheel-left").textContent = wheel.remaining > 0 ? `本轮剩余 ${wheel.remaining} 张` : "本轮已抢完";
    drawWheel(wheel.segments);
  } catch (error) {
    failed(error);
  }
}

function drawWheel(segments) {
  const canvas = $("#wheel-canvas");
  const ctx = canvas.getContext("2d");
  const r = canvas.width / 2;
  const slice = (2 * Math.PI) / segments.length;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  segments.forEach((segment, i) => {
    // Segment i spans clockwise from the top, so that turning the wheel by -(i + 1/2) slices
    // brings its middle under the pointer.
    const from = -Math.PI / 2 + i * slice;
    ctx.beginPath();
    ctx.moveTo(r, r);
    ctx.arc(r, r, r - 4, from, from + slice);
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fill();
    ctx.save();
    ctx.translate(r, r);
    ctx.rotate(from + slice / 2);
    ctx.fillStyle = "#fff";
    ctx.font = "bold 30px sans-serif";
    ctx.textAlign = "right";
    ctx.fillText(segment.label, r - 30, 10);
    ctx.restore();
  });
  canvas.style.transition = "none";
  canvas.style.transform = `rotate(${state.rotation}deg)`;
}

function location() {
  return new Promise((resolve) => {
    if (!state.campaign?.geofence_required) return resolve(null);
    if (!navigator.geolocation) return resolve(undefined);
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lng: p.coords.longitude }),
      () => resolve(undefined),
      { enableHighAccuracy: true, timeout: 10000 },
    );
  });
}

async function spin() {
  const button = $("#spin-button");
  button.disabled = true;
  const where = await location();
  if (where === undefined) {
    button.disabled = false;
    return toast(sentence({ code: "LOCATION_REQUIRED" }));
  }
  let answer;
  try {
    answer = await api.post("/draw", {
      category: state.category.code,
      ...(state.code ? { campaign: state.code } : {}),
      ...(where ? { location: where } : {}),
    });
  } catch (error) {
    button.disabled = false;
    if (error.code === "ALREADY_DRAWN") markDrawn(state.category.code, "won");
    return failed(error);
  }
  markDrawn(state.category.code, answer.coupon ? "won" : "thanks");
  const slice = 360 / state.segments.length;
  const target = 360 - (answer.segment_index + 0.5) * slice;
  const turned = state.rotation - (state.rotation % 360) + 360 * 5 + target;
  state.rotation = turned;
  const canvas = $("#wheel-canvas");
  canvas.style.transition = "transform 3.2s cubic-bezier(.17,.67,.2,1)";
  canvas.style.transform = `rotate(${turned}deg)`;
  await new Promise((done) => setTimeout(done, 3300));
  const result = $("#draw-result");
  result.hidden = false;
  if (answer.coupon) {
    const c = answer.coupon;
    result.className = "result ok";
    result.replaceChildren(
      el("b", {}, `恭喜！获得 ${c.category.name} ${yuan(c.face_fen)} 元消费券`),
      el("p", {}, `${usable(c)}，有效期至 ${until(c.valid_until)}${hours(c)}`),
      el("button", { onclick: () => openPaycode(c) }, "立即出示付款码"),
    );
  } else {
    result.className = "result";
    result.replaceChildren(el("b", {}, "谢谢参与"), el("p", {}, "很遗憾没有抽中。每个品类每轮只能抽一次，可以试试其他品类。"));
  }
}

// ---------------------------------------------------------------- my coupons and the pay code

const STATUS_NAMES = { unused: "未使用", used: "已使用", expired: "已过期", void: "已作废" };

async function loadCoupons(status) {
  show("coupons");
  $$("#coupon-tabs button").forEach((b) => b.classList.toggle("on", b.dataset.status === status));
  const asked = (state.couponsAsked = (state.couponsAsked || 0) + 1);
  try {
    const { items } = await api.get(`/coupons?status=${status}`);
    if (asked !== state.couponsAsked) return; // a tab tapped since: its answer is the one to show
    const list = items.map((c) =>
      el(
        "div",
        { class: `coupon ${c.status}`, "data-coupon": c.id },
        el("div", { class: "face" }, el("b", {}, yuan(c.face_fen)), el("small", {}, "元")),
        el(
          "div",
          { class: "terms" },
          el("b", {}, `${c.category.name}消费券`),
          el("span", {}, `${usable(c)} · 第${c.round}轮`),
          el("small", {}, `有效期至 ${until(c.valid_until)}${hours(c)}`),
          c.void_reason ? el("small", { class: "void-reason" }, c.void_reason) : null,
        ),
        c.status === "unused"
          ? el("button", { onclick: () => openPaycode(c) }, "付款码")
          : el("span", { class: "stamp" }, STATUS_NAMES[c.status]),
      ),
    );
    $("#coupon-list").replaceChildren(...(list.length ? list : [el("p", { class: "hint" }, "暂无消费券")]));
    $("#wallet-button").hidden = status !== "unused" || !list.length || !state.campaign?.wallet;
  } catch (error) {
    failed(error);
  }
}

async function openPaycode(coupon) {
  state.coupon = coupon;
  show("paycode");
  $("#tabs").hidden = false;
  $("#paycode-coupon").textContent = `${coupon.category.name} ${yuan(coupon.face_fen)} 元券 · ${usable(coupon)}`;
  await refreshPaycode();
  clearInterval(state.paycodeTimer);
  state.paycodeTimer = setInterval(refreshPaycode, 45000); // a code lives 60 s: renew well before
}

async function refreshPaycode() {
  const id = state.coupon.id;
  try {
    const [code, image] = await Promise.all([
      api.get(`/coupons/${id}/paycode`),
      api.get(`/coupons/${id}/paycode.png`),
    ]);
    const img = $("#paycode-image");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await image.blob());
    $("#paycode-short").textContent = code.short_code;
    $("#paycode-expiry").textContent = `付款码每分钟自动刷新，截图无效。本码 ${local(code.expires_at).slice(11)} 前有效。`;
  } catch (error) {
    clearInterval(state.paycodeTimer);
    if (error.code === "COUPON_USED" || error.code === "COUPON_EXPIRED" || error.code === "NOT_FOUND") {
      toast(sentence(error), "info");
      return loadCoupons(error.code === "COUPON_EXPIRED" ? "expired" : "used");
    }
    failed(error);
  }
}

// One code for all my coupons: the till applies the largest one its shop and the spend qualify for.
async function openWallet() {
  show("wallet");
  $("#tabs").hidden = false;
  await refreshWallet();
  clearInterval(state.paycodeTimer);
  state.paycodeTimer = setInterval(refreshWallet, 45000); // a code lives 60 s: renew well before
}

async function refreshWallet() {
  try {
    const [code, image] = await Promise.all([api.get("/wallet/paycode"), api.get("/wallet/paycode.png")]);
    const img = $("#wallet-image");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await image.blob());
    $("#wallet-short").textContent = code.short_code;
    $("#wallet-expiry").textContent = `付款码每分钟自动刷新，截图无效。本码 ${local(code.expires_at).slice(11)} 前有效。`;
  } catch (error) {
    clearInterval(state.paycodeTimer);
    failed(error);
  }
}

async function loadMerchants(coupon) {
  clearInterval(state.paycodeTimer);
  show("merchants");
  $("#merchants-title").textContent = `可使用${coupon.category.name}券的商户`;
  try {
    // The coupon's own link names its campaign (an event's coupons are not the default campaign's).
    const link = coupon.merchants || `/categories/${coupon.category.code}/merchants${state.code ? `?code=${encodeURIComponent(state.code)}` : ""}`;
    const { items } = await api.get(link.replace(/^\/api\/v1/, ""));
    const rows = items.map((m) => el("li", {}, el("b", {}, m.name), el("small", {}, m.address)));
    $("#merchant-list").replaceChildren(...(rows.length ? rows : [el("li", {}, "暂无商户")]));
  } catch (error) {
    failed(error);
  }
}

// ---------------------------------------------------------------- the survey

async function loadSurvey() {
  try {
    const { questions, answered, used } = await api.get("/survey");
    $("#survey-done").hidden = !answered;
    $("#survey-form").hidden = answered;
    if (answered) return;
    const blocks = questions.map((q) =>
      el(
        "fieldset",
        {
          "data-question": q.number,
          "data-optional": String(q.optional),
          ...(q.when ? { "data-when": `${q.when.question}:${q.when.choice}` } : {}),
        },
        el("legend", {}, `${q.number}. ${q.text}`),
        ...q.options.map((option, i) =>
          el(
            "label",
            { class: "choice" },
            el("input", { type: q.many ? "checkbox" : "radio", name: `q${q.number}`, value: i }),
            option,
            option === "其他" ? el("input", { name: `other${q.number}`, maxlength: 100, placeholder: "请注明" }) : null,
          ),
        ),
      ),
    );
    $("#survey-form").replaceChildren(...blocks, el("button", { type: "submit" }, "提交问卷"));
    // Question 6 ("是否成功使用") as the books know it; the resident may still change it.
    const usedChoice = $(`[name=q6][value="${used ? 0 : 1}"]`);
    if (usedChoice) usedChoice.checked = true;
    showAskedQuestions();
  } catch (error) {
    failed(error);
  }
}

// A question asked only after a given answer (7 after "used", 8 after "not used") shows with it.
function showAskedQuestions() {
  for (const set of $$("#survey-form fieldset[data-when]")) {
    const [question, choice] = set.dataset.when.split(":");
    set.hidden = !$(`[name=q${question}][value="${choice}"]`)?.checked;
  }
}

// The first question asked and not answered, pointed at before anything is sent.
function missingQuestion() {
  const asked = $$("#survey-form fieldset:not([hidden])");
  asked.forEach((set) => set.classList.remove("missing"));
  return asked.find((set) => set.dataset.optional !== "true" && !$$("input:checked", set).length);
}

async function submitSurvey(event) {
  event.preventDefault();
  const missing = missingQuestion();
  if (missing) {
    missing.classList.add("missing");
    missing.scrollIntoView({ block: "center" });
    return toast(`第${missing.dataset.question}题还没有作答，请选择后再提交。`);
  }
  const answers = $$("#survey-form fieldset:not([hidden])").map((set) => {
    const number = Number(set.dataset.question);
    const choices = $$("input:checked", set).map((input) => Number(input.value));
    const other = $(`[name=other${number}]`, set)?.value.trim();
    return { question: number, choices, ...(other ? { other } : {}) };
  });
  try {
    await api.post("/survey", { answers: answers.filter((a) => a.choices.length || a.other) });
    $("#survey-form").hidden = true;
    $("#survey-done").hidden = false;
  } catch (error) {
    failed(error);
  }
}

start();
