// What both H5 pages share: the API client, every refusal of API.md as a sentence with what to
// do next, money in yuan, and the little screen helpers. Plain ES module, no build step.

// code -> [what happened, what to do next]
export const REFUSALS = {
  INVALID_INPUT: ["填写的内容有误。", "请按提示改正后再提交。"],
  UNAUTHORIZED: ["登录已失效。", "请重新验证手机号登录。"],
  FORBIDDEN: ["没有权限进行此操作。", "如有疑问请联系商务局。"],
  NOT_FOUND: ["找不到您要的内容。", "请返回上一页刷新后再试。"],
  RATE_LIMITED: ["操作太频繁了。", "请稍等一分钟再试。"],
  SMS_CODE_INVALID: ["验证码不正确。", "请核对短信中的 6 位数字，或重新获取验证码。"],
  SMS_CODE_EXPIRED: ["验证码已过期。", "请点击“获取验证码”重新获取。"],
  SMS_TOO_FREQUENT: ["验证码发送太频繁。", "请等倒计时结束后再获取。"],
  SMS_SEND_FAILED: ["短信没有发出去。", "请稍后重试。"],
  PHONE_TAKEN: ["这个手机号已被其他用户绑定。", "请换一个本人的手机号，或联系商务局核实。"],
  ALREADY_BOUND: ["您已绑定过手机号。", "可直接参加活动。"],
  NOT_BOUND: ["您还没有绑定姓名和手机号。", "请先完成绑定。"],
  ID_REQUIRED: ["本活动需要实名参与。", "一个身份证只能绑定一个账号，身份证号只加密保存。"],
  ID_TAKEN: ["这个身份证号已被其他账号绑定。", "每个身份证只能绑定一个账号；如非本人操作，请联系商务局核实。"],
  ALREADY_IDENTIFIED: ["您已完成实名认证，不能更换身份证。", "可直接参加活动。"],
  NO_CAMPAIGN: ["当前没有进行中的活动。", "请留意商务局发布的活动时间。"],
  ROUND_NOT_OPEN: ["本轮抽奖还没有开始。", "请在活动开始时间后再来。"],
  ROUND_CLOSED: ["本期活动已经结束。", "感谢参与，请留意下一期活动。"],
  ALREADY_DRAWN: ["本轮您已经参加过了。", "可以试试其他品类或券种，或等下一轮开始。"],
  SOLD_OUT: ["这个品类本轮的券已经抢完了。", "可以试试其他品类，或等下一轮开始。"],
  STOCK_NOT_RELEASED: ["本轮的券分批放出，这一批已经抢完了。", "请在下一批放出的时间再来抽。"],
  LOCATION_REQUIRED: ["本活动需要确认您的位置。", "请在弹出的提示中允许获取位置后再试。"],
  OUTSIDE_REGION: ["您当前不在活动区域内。", "请到活动区域内再参与抽奖。"],
  COUPON_USED: ["这张券已经使用过了。", "请换一张未使用的券。"],
  COUPON_EXPIRED: ["这张券已经过期。", "请换一张在有效期内的券。"],
  PAYCODE_EXPIRED: ["付款码已失效。", "请让顾客刷新付款码后重新扫描或输入。"],
  CATEGORY_MISMATCH: ["这张券不能在本店使用。", "请顾客到该券对应品类的商户使用。"],
  OUTSIDE_HOURS: ["现在不在这张券的使用时段内。", "请在券上写明的时段内使用。"],
  SPEND_EXCLUDED: ["这类消费不能使用消费券。", "押金、充值、预付款等不能用券，请按实际购买的商品或服务选择消费品类。"],
  BELOW_THRESHOLD: ["消费金额没有达到使用门槛。", "请核对金额，达到门槛后再核销。"],
  MERCHANT_SUSPENDED: ["本店目前不能核销消费券。", "请联系商务局了解原因。"],
  BINDING_CODE_INVALID: ["绑定码无效或已经用过。", "请向店长或商务局索取新的绑定码。"],
  SURVEY_DONE: ["您已经提交过问卷。", "感谢您的参与！"],
  METHOD_NOT_ALLOWED: ["不支持此操作。", "请刷新页面后重试。"],
  PAYLOAD_TOO_LARGE: ["提交的内容过大。", "请精简后再提交。"],
  MERCHANT_EXISTS: ["该商户已经报名。", "请勿重复提交，等待商务局审核。"],
  WRONG_CAMPAIGN_KIND: ["本活动不是这种领取方式。", "请返回活动首页，按页面提示参与。"],
  SCREEN_CODE_STALE: ["现场二维码已过期。", "大屏二维码每30秒更新一次，扫码后请尽快领取。"],
  NO_QUALIFYING_COUPON: ["顾客没有本店本次消费可用的券。", "请核对消费金额，或请顾客使用其他支付方式。"],
  ALREADY_APPLIED: ["这张发票或这辆车已经申请过补贴。", "每张发票、每辆车只能申请一次，可在“我的申请”中查看进度。"],
  IMAGE_INVALID: ["发票照片无法识别。", "请重新拍摄清晰的发票照片（JPG、PNG 或 WEBP，不超过5MB）后上传。"],
  NOT_ELIGIBLE: ["不符合补贴条件。", "请对照活动公布的补贴标准核对发票金额和车辆类型。"],
  SERVICE_UNAVAILABLE: ["服务暂时不可用。", "请稍后再试。"],
  INTERNAL_ERROR: ["系统繁忙。", "请稍后再试。"],
  NETWORK: ["网络连接失败。", "请检查网络后重试。"],
};

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// The refusal as people read it: the server's own sentence (it may be more precise), then what to do.
// The next step is left out when the server's sentence already says it.
export function sentence(error) {
  const [what, next] = REFUSALS[error.code] || [error.message || "出了点问题。", "请稍后再试。"];
  const said = (error.message && error.code !== "NETWORK" ? error.message : what).replace(/[。！]?$/, "。");
  return said.includes(next.slice(0, 8)) ? said : `${said}${next}`;
}

// A random name for this browser, kept in its storage: the bureau's risk flags count the
// residents bound from one device. It identifies nothing else.
function deviceId() {
  let id = localStorage.getItem("huigou.device");
  if (!id) {
    id = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
    localStorage.setItem("huigou.device", id);
  }
  return id;
}

export function client(tokenKey) {
  const token = () => localStorage.getItem(tokenKey);
  async function call(method, path, body, headers = {}) {
    const sent = { method, headers: { "X-Device-Id": deviceId(), ...headers } };
    if (token()) sent.headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) {
      sent.headers["Content-Type"] = "application/json";
      sent.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await fetch(`/api/v1${path}`, sent);
    } catch {
      throw new ApiError("NETWORK", "", 0);
    }
    if (answer.status === 401) localStorage.removeItem(tokenKey);
    const type = answer.headers.get("Content-Type") || "";
    if (!type.includes("json")) {
      if (answer.ok) return answer;
      throw new ApiError("NETWORK", "", answer.status);
    }
    const data = await answer.json();
    if (!answer.ok) {
      const error = data.error || {};
      throw new ApiError(error.code || "INTERNAL_ERROR", error.message || "", answer.status);
    }
    return data;
  }
  return {
    token,
    setToken: (value) => localStorage.setItem(tokenKey, value),
    clearToken: () => localStorage.removeItem(tokenKey),
    get: (path, headers) => call("GET", path, undefined, headers),
    post: (path, body, headers) => call("POST", path, body, headers),
  };
}

export const yuan = (fen) => (fen % 100 === 0 ? String(fen / 100) : (fen / 100).toFixed(2));
// When in the day a coupon may be spent, as its card says it ("" for any time).
// A coupon's terms in words: its threshold, or none.
export const usable = (coupon) => (coupon.threshold_fen ? `满 ${yuan(coupon.threshold_fen)} 元可用` : "无门槛");
export const hours = (coupon) => (coupon.usable_hours ? ` · 每日${coupon.usable_hours}可用` : "");
export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function show(view) {
  for (const section of $$("main > section")) section.hidden = section.id !== view;
  for (const tab of $$("nav [data-view]")) tab.classList.toggle("on", tab.dataset.view === view);
  window.scrollTo(0, 0);
}

export function toast(text, kind = "error") {
  const box = $("#toast");
  box.textContent = text;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => (box.hidden = true), 5000);
}

// A deadline as the public page, the till and the console write it: "12月4日 24:00"; a deadline
// at midnight is the last day's 24:00 (as the plans write 第五天24:00), never the next day's 00:00.
export function until(iso) {
  if (!iso) return "";
  const [y, m, d, hh, mm] = iso.slice(0, 16).split(/[-T:]/).map(Number);
  const midnight = hh === 0 && mm === 0;
  const day = new Date(Date.UTC(y, m - 1, d - (midnight ? 1 : 0)));
  return `${day.getUTCMonth() + 1}月${day.getUTCDate()}日 ${midnight ? "24:00" : iso.slice(11, 16)}`;
}

export function local(iso) {
  // "2026-06-30T00:00:00+08:00" -> "2026-06-30 00:00": the local time the server wrote
  return iso ? iso.slice(0, 16).replace("T", " ") : "";
}

// "获取验证码" with a countdown for the resend; purpose "bind" (residents) or "staff".
export function smsButton(api, button, phoneInput, purpose) {
  button.addEventListener("click", async () => {
    const phone = phoneInput.value.trim();
    if (!/^1\d{10}$/.test(phone)) return toast("请先填写 11 位手机号。");
    button.disabled = true;
    try {
      const { cooldown_s } = await api.post("/auth/sms", { phone, purpose });
      toast("验证码已发送，请查看短信。", "info");
      let left = cooldown_s;
      const tick = () => {
        button.textContent = `${left} 秒后重发`;
        if (left-- <= 0) {
          button.textContent = "重新获取";
          button.disabled = false;
        } else setTimeout(tick, 1000);
      };
      tick();
    } catch (error) {
      button.disabled = false;
      toast(sentence(error));
    }
  });
}
