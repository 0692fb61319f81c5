// The campaign kinds beyond the wheel (README, "Every campaign the seeds run"): a grab campaign
// shows each tier as a card to take at once; an on-site event's page trades the big screen's code
// for a pass before anything else and sends it with every grab; a purchase subsidy is an
// application form beside its bracket table. The server decides every outcome, and nothing here
// compares the phone's clock with the server's: a phone's clock may be wrong.
import { $, ApiError, el, hours, local, sentence, toast, yuan, until } from "./common.js";

// ---------------------------------------------------------------- money, exactly

// "60000", "59,999.99", "128000.5 元" -> fen as an integer, or null. The decimal string is split,
// never multiplied as a float (0.29 * 100 is 28.999999999999996).
export function fenOf(text) {
  const plain = String(text ?? "").replace(/[\s,，元]/g, "");
  const found = /^(\d{1,9})(?:\.(\d{0,2}))?$/.exec(plain);
  if (!found) return null;
  return Number(found[1]) * 100 + Number((found[2] || "").padEnd(2, "0"));
}

// 200000 -> "2,000"; 5999999 -> "59,999.99"
export function money(fen) {
  const whole = String(Math.floor(fen / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const cents = fen % 100;
  return cents ? `${whole}.${String(cents).padStart(2, "0")}` : whole;
}

// 满300减80, or 20元 for a coupon without a threshold (the server's tier_label).
export const tierLabel = (tier) =>
  tier.threshold_fen ? `满${yuan(tier.threshold_fen)}减${yuan(tier.face_fen)}` : `${yuan(tier.face_fen)}元`;

// ---------------------------------------------------------------- the on-site event's pass

const passKey = (code) => `huigou.screen.${code}`;

function storedPass(code) {
  try {
    return JSON.parse(sessionStorage.getItem(passKey(code)) || "null");
  } catch {
    return null;
  }
}

// The screen's code is fresh for a minute only: trade it for a pass at once, before the resident
// spends that minute binding. The pass is kept for this campaign in this tab only.
export async function exchangeScreen(api, code, screen) {
  try {
    const answer = await api.post("/screen/pass", { campaign: code, screen });
    sessionStorage.setItem(passKey(code), JSON.stringify(answer));
    return { ok: true };
  } catch (error) {
    return { ok: false, said: sentence(error) };
  }
}

// ---------------------------------------------------------------- multipart upload

// The one request that is not JSON: the subsidy form with its invoice photo. Same headers as
// common.js's client (its device id was named by the calls before this one).
async function postForm(api, path, form) {
  const headers = {};
  const device = localStorage.getItem("huigou.device");
  if (device) headers["X-Device-Id"] = device;
  if (api.token()) headers.Authorization = `Bearer ${api.token()}`;
  let answer;
  try {
    answer = await fetch(`/api/v1${path}`, { method: "POST", headers, body: form });
  } catch {
    throw new ApiError("NETWORK", "", 0);
  }
  const json = (answer.headers.get("Content-Type") || "").includes("json");
  const data = json ? await answer.json() : null;
  if (!answer.ok) {
    const error = data?.error || {};
    const code = error.code || (answer.status === 413 ? "PAYLOAD_TOO_LARGE" : "INTERNAL_ERROR");
    throw new ApiError(code, error.message || "", answer.status);
  }
  return data;
}

// A phone's photo may exceed the server's 5 MB: re-encode a big one as a JPEG of at most 2560 px
// on its long side, which keeps an invoice legible. Anything the browser cannot decode goes as it
// is, and the server says what is wrong with it.
const SHRINK_ABOVE = 4 * 1024 * 1024;

async function shrink(file) {
  if (file.size <= SHRINK_ABOVE || !window.createImageBitmap) return file;
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 2560 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.85));
    return blob && blob.size < file.size ? new File([blob], "invoice.jpg", { type: "image/jpeg" }) : file;
  } catch {
    return file;
  }
}

// ---------------------------------------------------------------- the kinds

// ctx: { api, code (the ?campaign= code or null), screen (what exchangeScreen answered, if the
//        page was opened from a screen's QR), failed(error), openPaycode(coupon),
//        location() (as the wheel's), reload() (fetch the campaign again and show it) }
export function kinds(ctx) {
  const { api, code } = ctx;
  const withCampaign = (body) => (code ? { ...body, campaign: code } : body);
  // Why the screen's code was refused at load (or a grab's pass later), shown until a new scan.
  let screenSaid = ctx.screen && !ctx.screen.ok ? ctx.screen.said : null;

  function showScreenNotice(campaign) {
    const notice = $("#grab-notice");
    notice.hidden = !campaign.screen_qr;
    if (!campaign.screen_qr) return;
    const pass = storedPass(campaign.code);
    notice.className = pass ? "hint ok" : "hint warn";
    notice.textContent = pass
      ? `已确认您在活动现场，请在 ${local(pass.expires_at).slice(11)} 前领券。`
      : screenSaid || "本场活动的券只能在活动现场扫描大屏上的二维码领取。";
  }

  function showGrab(campaign) {
    const open = campaign.current_round !== null;
    $("#grab-title").textContent = campaign.screen_qr ? "现场扫码领券" : "选择券种立即抢";
    $("#grab-hint").textContent =
      campaign.grab_limit === "round"
        ? "每期限领一张，任选一种，先到先得，领完即止。"
        : "每种券每期限领一张，先到先得，领完即止。";
    showScreenNotice(campaign);
    const cards = campaign.tiers.map((tier) => {
      const left = !open
        ? `每期 ${tier.quantity} 张`
        : tier.remaining > 0
          ? `剩余 ${tier.remaining} / ${tier.quantity} 张`
          : "本期已抢完";
      const button = el("button", { type: "button" }, open && tier.remaining <= 0 ? "已抢完" : "立即抢");
      button.disabled = open && tier.remaining <= 0;
      button.addEventListener("click", () => grab(campaign, tier, button));
      return el(
        "div",
        { class: "tier", "data-tier": tier.id },
        el(
          "div",
          { class: "tier-terms" },
          el("b", {}, tierLabel(tier)),
          el(
            "span",
            {},
            (tier.threshold_fen ? `${tier.category.name}券 · 满${yuan(tier.threshold_fen)}元可用` : `${tier.category.name}券 · 无门槛`) +
              hours(tier),
          ),
          el("small", {}, left),
        ),
        button,
      );
    });
    $("#tiers").replaceChildren(...(cards.length ? cards : [el("p", { class: "hint" }, "暂无可领的券")]));
    const schedule = campaign.rounds.map((r) =>
      el("li", {}, `第${r.number}期：${local(r.opens_at)} 开抢，券有效期至 ${until(r.valid_until)}`),
    );
    $("#grab-schedule").replaceChildren(...schedule);
    $("#grab-closed").hidden = open;
  }

  async function grab(campaign, tier, button) {
    button.disabled = true;
    const where = await ctx.location();
    if (where === undefined) {
      button.disabled = false;
      return toast(sentence({ code: "LOCATION_REQUIRED" }));
    }
    const pass = campaign.screen_qr ? storedPass(campaign.code) : null;
    const body = withCampaign({
      tier_id: tier.id,
      ...(pass ? { screen_pass: pass.screen_pass } : {}),
      ...(where ? { location: where } : {}),
    });
    const result = $("#grab-result");
    try {
      const { coupon } = await api.post("/grab", body);
      result.className = "result ok";
      result.replaceChildren(
        el("b", {}, `抢到了！${coupon.category.name} ${tierLabel(coupon)} 券`),
        el("p", {}, `已放入“我的券”，有效期至 ${until(coupon.valid_until)}${hours(coupon)}`),
        el("button", { type: "button", onclick: () => ctx.openPaycode(coupon) }, "立即出示付款码"),
      );
    } catch (error) {
      if (["UNAUTHORIZED", "NOT_BOUND", "ID_REQUIRED"].includes(error.code)) return ctx.failed(error);
      if (error.code === "SCREEN_CODE_STALE" && campaign.screen_qr) {
        sessionStorage.removeItem(passKey(campaign.code));
        screenSaid = sentence(error);
      }
      result.className = "result refused";
      result.replaceChildren(el("b", {}, `${tierLabel(tier)} 券没有领到`), el("p", {}, sentence(error)));
    }
    result.hidden = false;
    await ctx.reload(); // what is left now
  }

  // ---- the purchase subsidy

  let brackets = [];

  function showSubsidy(campaign) {
    brackets = campaign.subsidy_brackets;
    const vehicles = [...new Map(brackets.map((b) => [b.vehicle, b.vehicle_name])).entries()];
    const rows = [];
    for (const [vehicle, name] of vehicles) {
      const own = brackets.filter((b) => b.vehicle === vehicle);
      own.forEach((b, i) => {
        rows.push(
          el(
            "tr",
            { "data-vehicle": vehicle },
            i === 0 ? el("th", { rowspan: own.length, scope: "rowgroup" }, name) : null,
            el("td", {}, b.span),
            el("td", { class: "money" }, `${money(b.subsidy_fen)} 元`),
          ),
        );
      });
    }
    $("#bracket-rows").replaceChildren(...rows);
    const select = $("#subsidy-form [name=vehicle_kind]");
    const chosen = select.value;
    select.replaceChildren(
      el("option", { value: "" }, "请选择车辆类型"),
      ...vehicles.map(([vehicle, name]) => el("option", { value: vehicle }, name)),
    );
    select.value = vehicles.some(([v]) => v === chosen) ? chosen : "";
    $("#subsidy-closed").hidden = campaign.current_round !== null;
    estimate();
    return loadApplications();
  }

  // What the bracket table gives for the amount typed: a preview, the server decides.
  function estimate() {
    const form = $("#subsidy-form");
    const vehicle = form.vehicle_kind.value;
    const typed = form.invoice_yuan.value.trim();
    const fen = fenOf(typed);
    const line = $("#subsidy-estimate");
    line.className = "hint";
    if (!typed) return (line.textContent = "请填写发票上的价税合计金额（元），可精确到分。");
    if (fen === null || fen === 0) {
      line.className = "hint warn";
      return (line.textContent = "金额格式不正确，请填写数字，如 128000 或 128000.50。");
    }
    if (!vehicle) return (line.textContent = `发票金额 ${money(fen)} 元，请选择车辆类型查看补贴标准。`);
    const bracket = brackets.find((b) => b.vehicle === vehicle && b.from_fen <= fen && (b.to_fen === null || fen < b.to_fen));
    if (!bracket) {
      line.className = "hint warn";
      return (line.textContent = `发票金额 ${money(fen)} 元不在${form.vehicle_kind.selectedOptions[0].textContent}的补贴范围内。`);
    }
    line.textContent = `发票金额 ${money(fen)} 元，属“${bracket.span}”档，可申请补贴 ${money(bracket.subsidy_fen)} 元。`;
  }

  async function submitSubsidy(event) {
    event.preventDefault();
    const form = event.target;
    const fen = fenOf(form.invoice_yuan.value);
    if (!fen) {
      form.invoice_yuan.focus();
      return toast("发票金额格式不正确，请填写数字，如 128000 或 128000.50。");
    }
    const photo = form.invoice_image.files[0];
    if (!photo) return toast("请上传发票照片。");
    const button = $("button[type=submit]", form);
    button.disabled = true;
    button.textContent = "正在提交…";
    try {
      const body = new FormData();
      if (code) body.append("campaign", code);
      for (const name of ["vehicle_kind", "invoice_no", "vin", "plate", "registered_on"]) {
        body.append(name, form[name].value.trim());
      }
      body.append("invoice_fen", String(fen));
      body.append("invoice_image", await shrink(photo));
      const { application } = await postForm(api, "/subsidies", body);
      form.reset();
      estimate();
      showPhoto();
      toast(`申请已提交，补贴 ${money(application.subsidy_fen)} 元，请等待商务局审核。`, "info");
      await loadApplications();
      $("#subsidy-list").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      if (error.code === "UNAUTHORIZED" || error.code === "NOT_BOUND") ctx.failed(error);
      else toast(sentence(error));
    } finally {
      button.disabled = false;
      button.textContent = "提交申请";
    }
  }

  async function loadApplications() {
    try {
      const { items } = await api.get("/subsidies");
      const cards = items.map((a) =>
        el(
          "div",
          { class: `application ${a.status}`, "data-application": a.id },
          el(
            "div",
            { class: "terms" },
            el("b", {}, `${a.vehicle_name} · ${a.plate}`),
            el("span", {}, `发票金额 ${money(a.invoice_fen)} 元`),
            el("span", { class: "subsidy" }, `补贴 ${money(a.subsidy_fen)} 元`),
            el("small", {}, `提交于 ${local(a.created_at)}${a.reviewed_at ? ` · 审核于 ${local(a.reviewed_at)}` : ""}`),
            a.review_note
              ? el("small", { class: "note" }, `${a.status === "rejected" ? "驳回原因" : "审核意见"}：${a.review_note}`)
              : null,
          ),
          el("span", { class: "stamp" }, a.status_name),
        ),
      );
      $("#subsidy-list").replaceChildren(...(cards.length ? cards : [el("p", { class: "hint" }, "暂无申请")]));
    } catch (error) {
      ctx.failed(error);
    }
  }

  // The chosen photo, shown small so that the resident sees it is the invoice and legible.
  function showPhoto() {
    const photo = $("#subsidy-form [name=invoice_image]").files[0];
    const preview = $("#invoice-preview");
    if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
    preview.hidden = !photo;
    if (photo) preview.src = URL.createObjectURL(photo);
    else preview.removeAttribute("src");
    $("#invoice-chosen").textContent = photo
      ? `已选：${photo.name}（${photo.size < 1048576 ? `${Math.ceil(photo.size / 1024)}KB` : `${(photo.size / 1048576).toFixed(1)}MB`}）`
      : "请拍摄完整、清晰的购车发票（JPG、PNG 或 WEBP）。";
    $("#subsidy-form .file-button").textContent = photo ? "重新选择照片" : "选择或拍摄发票照片";
  }

  $("#subsidy-form").addEventListener("submit", submitSubsidy);
  $("#subsidy-form [name=invoice_image]").addEventListener("change", showPhoto);
  $("#subsidy-form").addEventListener("input", estimate);
  $("#subsidy-form").addEventListener("change", estimate);

  return { showGrab, showSubsidy };
}
