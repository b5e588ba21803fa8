// Drives the demo login page in headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core); started by tests/api/browser.rs.
//
//   node demo_login.mjs '<config JSON>'
//
// Talks to the Rust test in JSON lines: prints {"need_code": destination} and
// reads back {"code": "123456"}, or {"need_session": destination} (a login
// elsewhere, through the API) and reads back {"session_id": ...}; prints {"step": ...} as it goes and
// {"ok": true, ...} at the end, or {"ok": false, "error": ...}. Logs go to
// stderr. Exits when stdin closes (the test is gone), closing the browser.
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const log = (...args) => console.error("[demo_login]", ...args);

let context = null;
let finished = false;
async function finish(result, exitCode) {
  if (finished) return;
  finished = true;
  send(result);
  try {
    if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 10_000))]);
  } finally {
    process.exit(exitCode);
  }
}

const timedOut = () => finish({ ok: false, error: `timed out after ${cfg.timeout_ms} ms` }, 3);
const deadline = setTimeout(timedOut, cfg.timeout_ms);

// Lines from the test: answers to need_code, in order.
const lines = createInterface({ input: process.stdin });
const waiting = [];
const queued = [];
lines.on("line", (line) => (waiting.length ? waiting.shift()(line) : queued.push(line)));
lines.on("close", () => finish({ ok: false, error: "stdin closed: the test went away" }, 2));

async function ask(question) {
  send(question);
  const line = queued.length ? queued.shift() : await new Promise((resolve) => waiting.push(resolve));
  return JSON.parse(line);
}

const askCode = async (destination) => (await ask({ need_code: destination })).code;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const pageErrors = [];
let page = null;

async function main() {
  mkdirSync(cfg.artifacts_dir, { recursive: true });
  context = await chromium.launchPersistentContext(cfg.user_data_dir, {
    executablePath: cfg.chromium,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
    ],
    // A phone-sized window: the page must be readable there.
    viewport: { width: 390, height: 844 },
    // Cloudflare sets this in production; the test's own client address
    // keeps its per-IP limits apart from other tests on the same Worker.
    extraHTTPHeaders: { "cf-connecting-ip": cfg.client_ip },
    timeout: 60_000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    log(`console.${m.type()}: ${m.text()}`);
    if (/Content Security Policy|Refused to/i.test(m.text())) pageErrors.push(`CSP: ${m.text()}`);
  });

  const text = (selector) => page.locator(selector).innerText();
  const waitText = async (selector, expected) => {
    const matches = (t) => (expected instanceof RegExp ? expected.test(t) : t === expected);
    await page
      .waitForFunction(
        ([sel, source, flags, exact]) => {
          const t = (document.querySelector(sel)?.textContent ?? "").trim();
          return source === null ? t === exact : new RegExp(source, flags).test(t);
        },
        [selector, expected instanceof RegExp ? expected.source : null, expected.flags ?? "", String(expected)],
      )
      .catch(async () => {
        const now = (sel) => page.locator(sel).textContent({ timeout: 1_000 }).catch(() => "(missing)");
        const [actual, error] = [(await now(selector)) ?? "", (await now("#error")) ?? ""];
        throw new Error(`${selector} is ${JSON.stringify(actual.trim())}, expected ${expected}; #error: ${error}`);
      });
    check(matches((await page.locator(selector).textContent()).trim()), `${selector} changed under us`);
  };
  const visible = (selector) => page.waitForSelector(selector, { state: "visible" });
  const noError = async (when) => {
    const error = (await page.locator("#error").textContent()).trim();
    check(error === "", `${when}: the page shows an error: ${error}`);
  };
  /** Clicks a button and waits until the action it started has finished. */
  const act = async (selector) => {
    const button = await page.waitForSelector(selector);
    await button.click();
    await page.waitForFunction((el) => !el.isConnected || !el.hasAttribute("aria-busy"), button);
  };

  // --- 1. Log in by email: an existing user with another session open.
  const login = cfg.login;
  const response = await page.goto(cfg.base_url + "/");
  check(response.ok(), `GET / answered ${response.status()}`);
  const csp = response.headers()["content-security-policy"] ?? "";
  check(csp.includes("script-src 'self'"), `the page's CSP is ${JSON.stringify(csp)}`);
  await visible("#step-request");
  await page.fill("#destination", login.destination);
  await page.click("#request-code");
  await visible("#step-verify");
  await waitText("#sent-purpose", "login");
  const masked = await text("#sent-to");
  check(masked.includes("*") && masked !== login.destination, `the destination is not masked: ${masked}`);
  await waitText("#expires-in", "10 minutes");
  check((await page.locator("#expires-at").getAttribute("datetime")) !== null, "no expiry time");
  check(await page.locator("#code").evaluate((el) => el === document.activeElement), "the code field is not focused");
  await page.fill("#code", await askCode(login.destination));
  await page.click("#verify");
  await visible("#account");
  await waitText("#user-id", login.user_id);
  await waitText("#user-email", `${login.destination} (verified)`);
  await page.waitForFunction(() => document.querySelectorAll("#sessions li").length === 2);
  const current = page.locator('#sessions li[data-current="true"]');
  check((await current.count()) === 1, "not exactly one current session");
  const currentSession = await current.getAttribute("data-session-id");
  check(currentSession !== login.other_session_id, "the API's session is marked current");
  const other = page.locator(`#sessions li[data-session-id="${login.other_session_id}"]`);
  check((await other.count()) === 1, "the other session is not listed");
  check(/this browser/.test(await current.innerText()), "the current session is not marked");
  await waitText("#token-info", /^Access token valid for .+, until .+\.$/);
  await noError("signed in");
  await page.screenshot({ path: `${cfg.artifacts_dir}/demo-login.png`, fullPage: true });
  send({ step: "signed in", session_id: currentSession });

  // Revoke the other session.
  await act(`#sessions li[data-session-id="${login.other_session_id}"] button.revoke`);
  await waitText("#status", "Session revoked.");
  await page.waitForFunction(() => document.querySelectorAll("#sessions li").length === 1);
  check((await current.getAttribute("data-session-id")) === currentSession, "the current session changed");

  // Refresh: a new access token, same session.
  await act("#refresh");
  await waitText("#status", "Token refreshed.");
  await noError("refreshed");
  await waitText("#token-info", /^Access token valid for .+, until .+\.$/);
  check((await page.locator("#sessions li").count()) === 1, "sessions changed after refresh");
  check((await current.getAttribute("data-session-id")) === currentSession, "refresh changed the session");

  // Add a phone to this email account: a verify code to it, then attach it.
  await page.fill("#new-destination", login.phone);
  await act("#add-send");
  await visible("#add-verify-form");
  check(!(await text("#add-sent-to")).includes(login.phone.slice(-4)), "the new phone is not masked");
  await page.fill("#add-code", await askCode(login.phone));
  await act("#add-verify");
  await waitText("#status", "Added to your account.");
  await waitText("#user-phone", `${login.phone} (verified)`);
  await waitText("#user-email", `${login.destination} (verified)`);
  check(await page.locator("#add-verify-form").isHidden(), "the code form stays open");
  await noError("phone added");
  send({ step: "phone added" });

  // A session signed in elsewhere since: sign out everywhere else.
  const late = (await ask({ need_session: login.destination })).session_id;
  check(typeof late === "string" && late.length > 0, "no session was opened elsewhere");
  await act("#signout-others");
  await waitText("#status", "Signed out 1 other session.");
  await page.waitForFunction(() => document.querySelectorAll("#sessions li").length === 1);
  check((await current.getAttribute("data-session-id")) === currentSession, "signed out of this browser too");
  await noError("signed out everywhere else");

  // Log out.
  await act("#logout");
  await visible("#step-request");
  await waitText("#status", "You are logged out.");
  check(await page.locator("#account").isHidden(), "still signed in after log out");
  check((await page.locator("#sessions li").count()) === 0, "sessions still shown after log out");
  await noError("logged out");
  send({ step: "logged out" });

  // --- 2. Create an account by phone, then revoke the current session.
  const reg = cfg.register;
  await page.fill("#destination", reg.destination);
  await page.click("#request-register");
  await visible("#step-verify");
  await waitText("#sent-purpose", "sign-up");
  await waitText("#expires-in", "5 minutes");
  await page.fill("#code", await askCode(reg.destination));
  await page.click("#verify");
  await visible("#step-register");
  await waitText("#verified-destination", reg.destination);
  await page.fill("#username", reg.username);
  await page.click("#register");
  await visible("#account");
  await waitText("#user-username", reg.username);
  await waitText("#user-phone", `${reg.destination} (verified)`);
  await waitText("#user-email", "—");
  await page.waitForFunction(() => document.querySelectorAll('#sessions li[data-current="true"]').length === 1);
  const registeredUser = await text("#user-id");
  await act('#sessions li[data-current="true"] button.revoke');
  await visible("#step-request");
  await waitText("#status", /revoked: you are signed out/);
  check(await page.locator("#account").isHidden(), "still signed in after revoking the current session");
  send({ step: "registered", user_id: registeredUser });

  // --- 3. Too many codes for one address: a 429 with a live countdown.
  const limited = cfg.rate_limit.destination;
  await page.fill("#destination", limited);
  await act("#request-code");
  await visible("#step-verify");
  let requests = 1;
  while ((await page.locator("#error-code").count()) === 0) {
    check(requests < cfg.rate_limit.max_requests, `no 429 after ${requests} requests`);
    await act("#resend");
    requests += 1;
  }
  await waitText("#error-code", "RATE_LIMIT");
  check((await text("#error-message")).length > 0, "the 429 has no message");
  await visible("#retry");
  const seconds = async () => {
    const parts = (await text("#countdown")).split(":").map(Number);
    check(parts.length >= 2 && parts.every(Number.isInteger), `the countdown reads ${await text("#countdown")}`);
    return parts.reduce((acc, p) => acc * 60 + p, 0);
  };
  const first = await seconds();
  check(first > 0 && first <= 3600, `the countdown starts at ${first} s`);
  check(await page.locator("#resend").isDisabled(), "Send a new code is enabled during the countdown");
  await page.waitForFunction(
    (start) => document.getElementById("countdown").textContent.split(":").reduce((acc, p) => acc * 60 + Number(p), 0) < start,
    first,
    { timeout: 5_000 },
  );
  check((await seconds()) < first, "the countdown does not count down");
  await page.screenshot({ path: `${cfg.artifacts_dir}/demo-rate-limit.png`, fullPage: true });
  // Back to the first step: sending stays off for this address...
  await page.click("#start-over");
  await visible("#step-request");
  check(await page.locator("#request-code").isDisabled(), "Send login code is enabled during the countdown");
  // ...and another address has limits of its own.
  await page.fill("#destination", "someone-else@example.com");
  check(await page.locator("#request-code").isEnabled(), "Send login code stays off for another address");
  send({ step: "rate limited", requests, countdown: first });

  check(pageErrors.length === 0, pageErrors.join("\n"));
  return {
    login_session_id: currentSession,
    late_session_id: late,
    registered_user_id: registeredUser,
    requests_until_429: requests,
  };
}

main().then(
  (result) => {
    clearTimeout(deadline);
    return finish({ ok: true, ...result }, 0);
  },
  async (e) => {
    log(e.stack || String(e));
    // What the page showed when it went wrong.
    const path = `${cfg.artifacts_dir}/demo-failure.png`;
    await page?.screenshot({ path, fullPage: true, timeout: 5_000 }).then(() => log(`screenshot: ${path}`), () => {});
    return finish({ ok: false, error: String(e.message || e), page_errors: pageErrors }, 1);
  },
);
