// The demo login page: signs in with a one-time code through the public API
// only, as an integrator's app would. Tokens live in memory only (never in
// web storage or cookies), and API data is only ever shown as textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  /** Everything the page knows; lost on reload, on purpose. */
  const state = {
    purpose: "login",
    destination: "",
    otpId: null,
    verificationToken: null,
    access: null,
    refresh: null,
    sessionId: null,
    /** A code on its way to an email or phone being added to the account. */
    addOtpId: null,
  };

  /** This page load, as a device of the user's (shown in the sessions list). */
  const device = { install_id: "web-" + randomHex(16), platform: "web", app_version: "demo" };

  function randomHex(bytes) {
    const b = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  /** One call; resolves to the JSON body, or throws ApiError with the API's code and message. */
  async function api(method, path, body, withToken) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (withToken) headers.authorization = "Bearer " + state.access;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      throw new ApiError(0, "NETWORK_ERROR", "Could not reach the service");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      // Not JSON: reported below with the HTTP status.
    }
    if (resp.ok && data) return data;
    const header = /^\d+$/.test(resp.headers.get("retry-after") || "") ? Number(resp.headers.get("retry-after")) : null;
    const retryAfter = header ?? (data && Number.isFinite(data.retry_after) ? data.retry_after : null);
    const code = (data && typeof data.code === "string" && data.code) || "HTTP_" + resp.status;
    const message = (data && typeof data.message === "string" && data.message) || resp.statusText || "Request failed";
    throw new ApiError(resp.status, code, message, retryAfter);
  }

  /** A bearer call; an expired access token is refreshed once and the call retried. */
  async function authed(method, path, body) {
    try {
      return await api(method, path, body, true);
    } catch (e) {
      if (e instanceof ApiError && e.code === "TOKEN_EXPIRED" && state.refresh) {
        await refreshTokens();
        return api(method, path, body, true);
      }
      throw e;
    }
  }

  // ------------------------------------------------------- showing things

  const steps = ["step-request", "step-verify", "step-register", "account"];

  function show(step, focus) {
    for (const id of steps) $(id).hidden = id !== step;
    if (focus) $(focus).focus();
  }

  function say(text) {
    $("status").textContent = text || "";
  }

  function clearError() {
    $("error").replaceChildren();
  }

  function showError(err) {
    const p = document.createElement("p");
    const message = document.createElement("span");
    message.id = "error-message";
    message.textContent = err.message;
    const code = document.createElement("code");
    code.id = "error-code";
    code.textContent = err.code;
    p.append(message, " (", code, ")");
    $("error").replaceChildren(p);
  }

  function duration(seconds) {
    if (seconds < 90) return seconds + " seconds";
    if (seconds < 5400) return Math.round(seconds / 60) + " minutes";
    return Math.round(seconds / 3600) + " hours";
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function countdownText(seconds) {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  // ------------------------------------------- 429: a countdown, buttons off

  let cooldown = null; // { buttons, until, timer }

  function startCooldown(buttons, seconds) {
    endCooldown();
    cooldown = { buttons, until: Date.now() + seconds * 1000, timer: 0 };
    const tick = () => {
      const left = Math.ceil((cooldown.until - Date.now()) / 1000);
      if (left <= 0) return endCooldown();
      $("countdown").textContent = countdownText(left);
    };
    for (const b of buttons) b.disabled = true;
    $("retry").hidden = false;
    tick();
    cooldown.timer = setInterval(tick, 250);
  }

  function endCooldown() {
    if (!cooldown) return;
    clearInterval(cooldown.timer);
    const { buttons } = cooldown;
    cooldown = null;
    for (const b of buttons) b.disabled = false;
    $("retry").hidden = true;
  }

  const coolingDown = (button) => cooldown !== null && cooldown.buttons.includes(button);

  /**
   * Runs one user action: its buttons are off while it runs; an error shows
   * the API's message and code; a 429 disables `cooldownButtons` until
   * Retry-After has passed.
   */
  let busy = false;
  async function run(buttons, fn, cooldownButtons = buttons) {
    if (busy) return;
    busy = true;
    clearError();
    say("");
    for (const b of buttons) {
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
    }
    try {
      await fn();
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(0, "CLIENT_ERROR", String((e && e.message) || e));
      showError(err);
      if (err.status === 429 && err.retryAfter > 0) startCooldown(cooldownButtons, err.retryAfter);
      // The session is gone (revoked, logged out elsewhere, refresh refused).
      if (err.status === 401 && state.access) signOut();
    } finally {
      busy = false;
      for (const b of buttons) {
        b.removeAttribute("aria-busy");
        if (!coolingDown(b)) b.disabled = false;
      }
    }
  }

  // ------------------------------------------------------------ the flows

  const sendButtons = [$("request-code"), $("request-register"), $("resend")];

  async function requestCode(purpose) {
    const destination = $("destination").value.trim();
    if (!destination) {
      $("destination").focus();
      throw new ApiError(0, "VALIDATION_ERROR", "Enter an email address or a phone number");
    }
    const body = { destination, purpose };
    // With Turnstile on, the widget's token goes along; each token is used once.
    const widget = document.querySelector("[name='cf-turnstile-response']");
    if (widget) body.turnstile_token = widget.value;
    let data;
    try {
      data = await api("POST", "/api/auth/otp/request/", body);
    } finally {
      if (widget && window.turnstile) window.turnstile.reset();
    }
    Object.assign(state, { purpose, destination, otpId: data.otp_id });
    $("sent-purpose").textContent = purpose === "register" ? "sign-up" : "login";
    $("sent-to").textContent = data.destination_masked;
    $("expires-in").textContent = duration(data.expires_in);
    const at = new Date(Date.now() + data.expires_in * 1000);
    $("expires-at").textContent = clock(at);
    $("expires-at").dateTime = at.toISOString();
    $("code").value = "";
    say(data.message);
    show("step-verify", "code");
  }

  async function verify() {
    const otp_code = $("code").value.replace(/\s+/g, "");
    if (!otp_code) {
      $("code").focus();
      throw new ApiError(0, "VALIDATION_ERROR", "Enter the code from the message");
    }
    const body = { otp_id: state.otpId, otp_code, ...device };
    let data;
    try {
      data = await api("POST", "/api/auth/otp/verify/", body);
    } catch (e) {
      // A destination under attack asks clients it does not know for a
      // challenge (README "No lockout by a stranger"): the same code again,
      // with the widget's fresh token; the refused try did not spend it.
      const widget = document.querySelector("[name='cf-turnstile-response']");
      if (!(e instanceof ApiError) || e.code !== "CAPTCHA_FAILED" || !widget || !widget.value) throw e;
      try {
        data = await api("POST", "/api/auth/otp/verify/", { ...body, turnstile_token: widget.value });
      } finally {
        if (window.turnstile) window.turnstile.reset();
      }
    }
    if (state.purpose === "register") {
      state.verificationToken = data.verification_token;
      $("verified-destination").textContent = data.verified_destination || state.destination;
      show("step-register", "username");
    } else {
      await signedIn(data);
    }
  }

  async function register() {
    const username = $("username").value.trim();
    const data = await api("POST", "/api/auth/register/", {
      verification_token: state.verificationToken,
      username,
      ...device,
    });
    state.verificationToken = null;
    await signedIn(data);
  }

  function keepTokens(data) {
    Object.assign(state, { access: data.access, refresh: data.refresh, sessionId: data.session_id });
    const at = new Date(Date.now() + data.expires_in * 1000);
    $("token-info").textContent = `Access token valid for ${duration(data.expires_in)}, until ${clock(at)}.`;
  }

  async function signedIn(data) {
    keepTokens(data);
    state.otpId = null;
    $("code").value = "";
    show("account", "h-account");
    await loadAccount();
  }

  async function loadAccount() {
    const user = await authed("GET", "/api/auth/me/");
    const contact = (value, verified) => (value ? `${value} (${verified ? "verified" : "not verified"})` : "—");
    $("user-username").textContent = user.username;
    $("user-email").textContent = contact(user.email, user.email_verified);
    $("user-phone").textContent = contact(user.phone, user.phone_verified);
    $("user-id").textContent = user.id;
    await loadSessions();
  }

  async function loadSessions() {
    const { sessions } = await authed("GET", "/api/auth/sessions/");
    const items = sessions.map((s) => {
      const li = document.createElement("li");
      li.dataset.sessionId = s.id;
      li.dataset.current = String(Boolean(s.current));
      const what = document.createElement("div");
      what.className = "what";
      const title = document.createElement("strong");
      title.textContent = browserName(s.user_agent) || "Unknown browser";
      what.append(title);
      if (s.current) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "this browser";
        what.append(badge);
      }
      const meta = document.createElement("span");
      meta.className = "meta";
      const when = (iso) => new Date(iso).toLocaleString();
      meta.textContent = `${s.platform} · IP ${s.ip_address} · signed in ${when(s.created_at)} · last used ${when(s.last_used_at)}`;
      what.append(meta);
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "revoke secondary";
      revoke.textContent = s.current ? "Revoke (sign out)" : "Revoke";
      revoke.setAttribute("aria-label", `Revoke the session ${title.textContent}, signed in ${when(s.created_at)}`);
      revoke.addEventListener("click", () => run([revoke], () => revokeSession(s)));
      li.append(what, revoke);
      return li;
    });
    $("sessions").replaceChildren(...items);
  }

  /** "Chrome 148 on Linux" from a User-Agent, or "". */
  function browserName(ua) {
    if (!ua) return "";
    const browser = /(Edg|OPR|Firefox|HeadlessChrome|Chrome|CriOS|Version)\/(\d+)/.exec(ua);
    const os = /(Android|iPhone|iPad|Windows|Mac OS X|CrOS|Linux)/.exec(ua);
    const names = { Edg: "Edge", OPR: "Opera", Version: "Safari", CriOS: "Chrome", HeadlessChrome: "Headless Chrome" };
    const b = browser ? `${names[browser[1]] || browser[1]} ${browser[2]}` : ua.slice(0, 40);
    return os ? `${b} on ${os[1] === "Mac OS X" ? "macOS" : os[1]}` : b;
  }

  async function revokeSession(s) {
    await authed("DELETE", `/api/auth/sessions/${encodeURIComponent(s.id)}/`);
    if (s.id === state.sessionId) {
      signOut("This session is revoked: you are signed out.");
    } else {
      await loadSessions();
      say("Session revoked.");
    }
  }

  /** Adding an email or phone: a `verify` code to it first. */
  async function sendAddCode() {
    const destination = $("new-destination").value.trim();
    if (!destination) {
      $("new-destination").focus();
      throw new ApiError(0, "VALIDATION_ERROR", "Enter the email address or phone number to add");
    }
    const data = await api("POST", "/api/auth/otp/request/", { destination, purpose: "verify" });
    state.addOtpId = data.otp_id;
    $("add-sent-to").textContent = data.destination_masked;
    $("add-code").value = "";
    $("add-verify-form").hidden = false;
    say(data.message);
    $("add-code").focus();
  }

  /** Then its code, whose verification token attaches it to the account. */
  async function verifyAndAdd() {
    const otp_code = $("add-code").value.replace(/\s+/g, "");
    if (!otp_code) {
      $("add-code").focus();
      throw new ApiError(0, "VALIDATION_ERROR", "Enter the code from the message");
    }
    const proof = await api("POST", "/api/auth/otp/verify/", { otp_id: state.addOtpId, otp_code });
    await authed("POST", "/api/auth/me/destinations/", { verification_token: proof.verification_token });
    state.addOtpId = null;
    $("add-verify-form").hidden = true;
    $("new-destination").value = "";
    await loadAccount();
    say("Added to your account.");
  }

  async function signOutOthers() {
    const { revoked } = await authed("DELETE", "/api/auth/sessions/");
    await loadSessions();
    say(`Signed out ${revoked} other ${revoked === 1 ? "session" : "sessions"}.`);
  }

  async function refreshTokens() {
    const data = await api("POST", "/api/auth/token/refresh/", { refresh: state.refresh });
    keepTokens(data);
  }

  async function logout() {
    await authed("POST", "/api/auth/logout/");
    signOut("You are logged out.");
  }

  function signOut(message) {
    Object.assign(state, { access: null, refresh: null, sessionId: null, otpId: null, addOtpId: null });
    $("add-verify-form").hidden = true;
    $("sessions").replaceChildren();
    for (const id of ["user-username", "user-email", "user-phone", "user-id", "token-info"]) $(id).textContent = "";
    show("step-request", "destination");
    if (message) say(message);
  }

  // ---------------------------------------------------------------- wiring

  $("request-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run([$("request-code")], () => requestCode("login"), sendButtons);
  });
  $("request-register").addEventListener("click", () => {
    run([$("request-register")], () => requestCode("register"), sendButtons);
  });
  $("resend").addEventListener("click", () => {
    run([$("resend")], () => requestCode(state.purpose), sendButtons);
  });
  // Another address has limits of its own.
  $("destination").addEventListener("input", () => {
    if (cooldown && cooldown.buttons === sendButtons) endCooldown();
  });
  $("start-over").addEventListener("click", () => {
    clearError();
    say("");
    show("step-request", "destination");
  });
  $("verify-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run([$("verify")], verify);
  });
  $("register-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run([$("register")], register);
  });
  $("refresh").addEventListener("click", () => {
    run([$("refresh")], async () => {
      await refreshTokens();
      await loadSessions();
      say("Token refreshed.");
    });
  });
  $("logout").addEventListener("click", () => run([$("logout")], logout));
  $("add-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run([$("add-send")], sendAddCode);
  });
  $("add-verify-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run([$("add-verify")], verifyAndAdd);
  });
  $("signout-others").addEventListener("click", () => run([$("signout-others")], signOutOthers));
})();
