//! Rate limits and abuse controls: exact under concurrency, and every refusal
//! (429 `RATE_LIMIT` or `SMS_CAP_REACHED`) says how long to wait, in the body
//! and in `Retry-After`, and waiting that long is enough. A refused request
//! leaves no row and sends nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_invalid_otp, json_of, random_digits, random_email, random_hex, random_ip, random_phone,
    random_uuid, spawn_app, spawn_app_with, wrong_code, Profile, TestApp,
};

/// Each code takes five tries, so fifteen guesses over three codes all reach
/// the destination's failure limit (the default ten).
const FIVE_ATTEMPTS: Profile = Profile { name: "limits-five-attempts", vars: &[("OTP_MAX_ATTEMPTS", "5")] };

/// Windows of seconds, so a test can outwait them, yet with seconds of slack
/// for a loaded machine. Codes keep their default lifetime (10 minutes for
/// email) and take five tries, so a code is still good after a lockout has
/// been waited out. Its tests do not read D1: `TestApp::d1` holds every
/// request to the profile's Worker for seconds, which would break their timing.
const SHORT_WINDOWS: Profile = Profile {
    name: "limits-short-windows",
    vars: &[
        ("RATE_LIMIT_PER_HOUR", "2"),
        ("RATE_LIMIT_WINDOW_SECONDS", "12"),
        ("RESEND_COOLDOWN_SECONDS", "3"),
        ("VERIFY_FAILURES_PER_DAY", "2"),
        ("VERIFY_FAILURES_WINDOW_SECONDS", "8"),
        ("OTP_MAX_ATTEMPTS", "5"),
    ],
};
const COOLDOWN_SECONDS: u64 = 3;
const FAILURE_WINDOW_SECONDS: u64 = 8;

/// Three requests and three verifies per client an hour (five per IPV6 /48),
/// and SMS only to the US/Canada and the UK.
const SMALL_IP_LIMITS: Profile = Profile {
    name: "limits-small-ip",
    vars: &[
        ("IP_REQUESTS_PER_HOUR", "3"),
        ("IP_VERIFIES_PER_HOUR", "3"),
        ("IPV6_48_REQUESTS_PER_HOUR", "5"),
        ("IPV6_48_VERIFIES_PER_HOUR", "5"),
        ("SMS_ALLOWED_COUNTRY_CODES", "1,44"),
    ],
};
const IP_WINDOW_SECONDS: u64 = 3600;

/// Three SMS for the whole service. The cap is global: one test only.
const SMS_CAP_OF_THREE: Profile = Profile { name: "limits-sms-cap-of-three", vars: &[("SMS_DAILY_CAP", "3")] };

const HOUR: u64 = 3600;
const DAY: u64 = 86400;

/// An answer with the parts these tests look at.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after_header: Option<String>,
    pub request_id: Option<String>,
    pub body: Value,
}

pub(crate) async fn answer(resp: reqwest::Response) -> Answer {
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (retry_after_header, request_id) = (header("retry-after"), header("x-request-id"));
    let (status, body) = json_of(resp).await;
    Answer { status, retry_after_header, request_id, body }
}

/// A 429 with this code and a message, whose `retry_after` is whole seconds,
/// equals the `Retry-After` header and is between 1 and `at_most`; returns it.
pub(crate) fn assert_refused(answer: &Answer, code: &str, at_most: u64) -> u64 {
    let body = &answer.body;
    assert_eq!((answer.status, body["code"].as_str()), (429, Some(code)), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a refusal without a message: {body}");
    let retry_after =
        body["retry_after"].as_u64().unwrap_or_else(|| panic!("retry_after is not whole seconds: {body}"));
    assert_eq!(answer.retry_after_header, Some(retry_after.to_string()), "Retry-After header differs from {body}");
    assert!((1..=at_most).contains(&retry_after), "retry_after {retry_after} is not within 1..={at_most}");
    retry_after
}

pub(crate) async fn assert_rate_limited(resp: reqwest::Response, at_most: u64) -> u64 {
    assert_refused(&answer(resp).await, "RATE_LIMIT", at_most)
}

pub(crate) async fn assert_ok(resp: reqwest::Response) -> Value {
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_seconds(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

/// Starts every request at the same moment; their answers.
pub(crate) async fn all_at_once<F>(requests: Vec<F>) -> Vec<Answer>
where
    F: Future<Output = reqwest::Response> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for request in requests {
        let start = start.clone();
        tasks.spawn(async move {
            start.wait().await;
            answer(request.await).await
        });
    }
    tasks.join_all().await
}

/// POSTs `body` as the client at `ip` (`CF-Connecting-IP`), while claiming in
/// `X-Forwarded-For` to be someone new every time, which must change nothing.
pub(crate) async fn post_from(app: &TestApp, ip: &str, path: &str, body: Value) -> reqwest::Response {
    let request = app
        .client
        .post(app.url(path))
        .header("cf-connecting-ip", ip)
        .header("x-forwarded-for", random_ip())
        .json(&body);
    app.send(request).await
}

pub(crate) async fn request_from(app: &TestApp, ip: &str, destination: &str) -> reqwest::Response {
    post_from(app, ip, "/api/auth/otp/request/", json!({ "destination": destination, "purpose": "verify" })).await
}

async fn verify_from(app: &TestApp, ip: &str, otp_id: &str, code: &str) -> reqwest::Response {
    post_from(app, ip, "/api/auth/otp/verify/", json!({ "otp_id": otp_id, "otp_code": code })).await
}

/// A verify of a well-formed id that names no code: it still counts.
async fn verify_unknown_from(app: &TestApp, ip: &str) -> reqwest::Response {
    verify_from(app, ip, &random_uuid(), "123456").await
}

/// A random IPv6 /64 in the documentation range and its neighbour, as
/// `2001:db8:xxxx:yyyy` prefixes.
fn random_ipv6_64_and_neighbour() -> (String, String) {
    let (site, subnet) = (random_hex(4), random_hex(3));
    (format!("2001:db8:{site}:{subnet}0"), format!("2001:db8:{site}:{subnet}1"))
}

// ---------------------------------------------------------------------------
// Per destination, exact under concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_simultaneous_requests_for_one_address_send_exactly_five_codes() {
    let app = spawn_app().await;
    let email = random_email();

    let requests = (0..20)
        .map(|_| {
            let (app, email) = (app.clone(), email.clone());
            async move { app.request_otp(&email, "verify").await }
        })
        .collect();
    let answers = all_at_once(requests).await;

    let (sent, refused): (Vec<&Answer>, Vec<&Answer>) = answers.iter().partition(|a| a.status == 200);
    assert_eq!((sent.len(), refused.len()), (5, 15), "{answers:#?}");
    for refusal in refused {
        assert_refused(refusal, "RATE_LIMIT", HOUR);
    }
    assert_eq!(app.codes_stored_for(&email).await, 5);
    assert_eq!(app.messages_to(&email).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifteen_simultaneous_wrong_guesses_across_three_codes_count_exactly_ten_failures() {
    let app = spawn_app_with(FIVE_ATTEMPTS).await;
    let phone = random_phone();
    let mut codes = Vec::new();
    for purpose in ["register", "verify", "reset"] {
        codes.push(app.otp_for(&phone, purpose).await);
    }

    let guesses = codes
        .iter()
        .flat_map(|otp| std::iter::repeat_n(otp, 5))
        .map(|otp| {
            let (app, otp_id, guess) = (app.clone(), otp.id.clone(), wrong_code(&otp.code));
            async move { app.verify_otp(&otp_id, &guess).await }
        })
        .collect();
    let answers = all_at_once(guesses).await;

    let is_wrong_code =
        |a: &&Answer| a.status == 400 && a.body["code"] == "INVALID_OTP" && a.body["message"] == "Invalid OTP";
    let (wrong, refused): (Vec<&Answer>, Vec<&Answer>) = answers.iter().partition(is_wrong_code);
    assert_eq!((wrong.len(), refused.len()), (10, 5), "{answers:#?}");
    for refusal in refused {
        assert_refused(refusal, "RATE_LIMIT", DAY);
    }

    // Locked out: a fresh code, typed right, is refused too.
    let fresh = app.otp_for(&phone, "verify").await;
    assert_rate_limited(app.verify_otp(&fresh.id, &fresh.code).await, DAY).await;

    // Only that destination: the same client verifies another one.
    let other = app.otp_for(&random_phone(), "verify").await;
    assert_ok(app.verify_otp(&other.id, &other.code).await).await;
}

// ---------------------------------------------------------------------------
// Retry-After is honest: waiting that long is enough
// ---------------------------------------------------------------------------

#[tokio::test]
async fn asking_again_during_the_cooldown_works_after_retry_after() {
    let app = spawn_app_with(SHORT_WINDOWS).await;
    let email = random_email();
    assert_ok(app.request_otp(&email, "verify").await).await;

    let wait = assert_rate_limited(app.request_otp(&email, "verify").await, COOLDOWN_SECONDS).await;
    assert_eq!(app.messages_to(&email).await, 1, "the refused request sent a code");
    wait_seconds(wait).await;

    assert_ok(app.request_otp(&email, "verify").await).await;
    assert_eq!(app.messages_to(&email).await, 2);
}

#[tokio::test]
async fn after_too_many_wrong_guesses_the_right_code_works_once_retry_after_has_passed() {
    let app = spawn_app_with(SHORT_WINDOWS).await;
    let otp = app.otp_for(&random_email(), "verify").await;
    for _ in 0..2 {
        assert_invalid_otp(app.verify_otp(&otp.id, &wrong_code(&otp.code)).await, "Invalid OTP").await;
    }

    let wait = assert_rate_limited(app.verify_otp(&otp.id, &otp.code).await, FAILURE_WINDOW_SECONDS).await;
    wait_seconds(wait).await;

    assert_ok(app.verify_otp(&otp.id, &otp.code).await).await;
}

// ---------------------------------------------------------------------------
// Per client IP
// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_network_gets_three_codes_an_hour_whatever_x_forwarded_for_says() {
    let app = spawn_app_with(SMALL_IP_LIMITS).await;
    let ip = random_ip();
    for _ in 0..3 {
        assert_ok(request_from(&app, &ip, &random_email()).await).await;
    }

    let fourth = random_email();
    assert_rate_limited(request_from(&app, &ip, &fourth).await, IP_WINDOW_SECONDS).await;
    assert_eq!(app.codes_stored_for(&fourth).await, 0, "the refused request left a row");
    app.assert_nothing_sent_to(&fourth).await;

    // Another network asking for the same address is served.
    assert_ok(request_from(&app, &random_ip(), &fourth).await).await;
}

#[tokio::test]
async fn one_network_gets_three_verifies_an_hour_even_with_the_right_code() {
    let app = spawn_app_with(SMALL_IP_LIMITS).await;
    let otp = app.otp_for(&random_email(), "verify").await;
    let ip = random_ip();
    for _ in 0..3 {
        assert_invalid_otp(verify_unknown_from(&app, &ip).await, "Invalid OTP request").await;
    }

    assert_rate_limited(verify_from(&app, &ip, &otp.id, &otp.code).await, IP_WINDOW_SECONDS).await;

    // The refusal did not touch the code: another network verifies it.
    assert_ok(verify_from(&app, &random_ip(), &otp.id, &otp.code).await).await;
}

#[tokio::test]
async fn all_addresses_in_one_ipv6_64_share_its_limits() {
    let app = spawn_app_with(SMALL_IP_LIMITS).await;
    let (subnet, neighbour) = random_ipv6_64_and_neighbour();
    let hosts = ["0:0:0:1", "abcd:ef01:2345:6789", "ffff:ffff:ffff:fffe", "1234::42"];
    let in_subnet = |host: &str| format!("{subnet}:{host}");

    for host in &hosts[..3] {
        assert_ok(request_from(&app, &in_subnet(host), &random_email()).await).await;
    }
    assert_rate_limited(request_from(&app, &in_subnet(hosts[3]), &random_email()).await, IP_WINDOW_SECONDS).await;
    assert_ok(request_from(&app, &format!("{neighbour}::1"), &random_email()).await).await;

    // Verifies have their own count, shared the same way.
    for host in &hosts[..3] {
        assert_invalid_otp(verify_unknown_from(&app, &in_subnet(host)).await, "Invalid OTP request").await;
    }
    assert_rate_limited(verify_unknown_from(&app, &in_subnet(hosts[3])).await, IP_WINDOW_SECONDS).await;
    assert_invalid_otp(verify_unknown_from(&app, &format!("{neighbour}::1")).await, "Invalid OTP request").await;
}

/// Tunnel brokers hand out a /48: 65,536 /64s, each with a budget of its
/// own, unless the /48 has one too.
#[tokio::test]
async fn the_64s_of_one_ipv6_48_share_a_larger_budget() {
    let app = spawn_app_with(SMALL_IP_LIMITS).await;
    let site = format!("2001:db8:{}", random_hex(4));
    let in_64 = |subnet: usize| format!("{site}:{subnet:x}::1");

    // Five /64s, one request each: within every /64's three, and the /48's five.
    for subnet in 0..5 {
        assert_ok(request_from(&app, &in_64(subnet), &random_email()).await).await;
    }
    // A sixth /64 of the same /48 is refused; one of another /48 is not.
    assert_rate_limited(request_from(&app, &in_64(5), &random_email()).await, IP_WINDOW_SECONDS).await;
    let other_site = format!("2001:db8:{}:5::1", random_hex(4));
    assert_ok(request_from(&app, &other_site, &random_email()).await).await;

    // Verifies: the same, counted apart.
    for subnet in 0..5 {
        assert_invalid_otp(verify_unknown_from(&app, &in_64(subnet)).await, "Invalid OTP request").await;
    }
    assert_rate_limited(verify_unknown_from(&app, &in_64(5)).await, IP_WINDOW_SECONDS).await;
}

// ---------------------------------------------------------------------------
// One budget per mailbox
// ---------------------------------------------------------------------------

/// Gmail ignores dots and everything after `+`, and googlemail.com is
/// gmail.com: all these reach one inbox, so they share its five codes an
/// hour. Each message goes to the address as it was given (lower-cased, as
/// every address is), dots and tag kept.
#[tokio::test]
async fn variants_of_one_gmail_address_share_its_budget_and_are_written_as_given() {
    let app = spawn_app().await;
    let user = format!("mail{}", random_digits(8));
    let (head, tail) = user.split_at(4);
    let variants = [
        format!("{head}.{tail}@gmail.com"),
        format!("{user}+news@gmail.com"),
        format!("{}@GMAIL.com", user.to_uppercase()),
        format!("{head}.{tail}+x@googlemail.com"),
        format!("{}.{}@gmail.com", &user[..2], &user[2..]),
    ];
    // One client network (a destination's budget is per network; across
    // networks the mailbox's breaker, DESTINATION_REQUESTS_BREAKER, binds).
    let ip = random_ip();
    for variant in &variants {
        assert_ok(request_from(&app, &ip, variant).await).await;
        let written_to = variant.to_lowercase();
        assert_eq!(app.messages_to(&written_to).await, 1, "{written_to} was not written to as given");
    }
    let sixth = format!("{user}+again@googlemail.com");
    assert_rate_limited(request_from(&app, &ip, &sixth).await, 3600).await;
    app.assert_nothing_sent_to(&sixth).await;

    // Another mailbox at the same provider has its own budget, and a
    // provider that does not ignore dots keeps them apart.
    assert_ok(request_from(&app, &random_ip(), &format!("{user}x@gmail.com")).await).await;
    assert_ok(request_from(&app, &random_ip(), &format!("{head}.{tail}@acme.test")).await).await;
    assert_ok(request_from(&app, &random_ip(), &format!("{user}@acme.test")).await).await;
}

// ---------------------------------------------------------------------------
// SMS pumping
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sms_to_a_country_off_the_list_is_refused_and_never_counted() {
    let app = spawn_app_with(SMALL_IP_LIMITS).await;
    let german = format!("+49151{}", random_digits(8));

    // Seven times from one client: past both its IP limit (3) and the
    // destination's (5), were any of them counted.
    for _ in 0..7 {
        assert_error(app.request_otp(&german, "verify").await, 400, "VALIDATION_ERROR").await;
    }
    assert_eq!(app.codes_stored_for(&german).await, 0);
    app.assert_nothing_sent_to(&german).await;

    // The same client still has its three requests for allowed countries.
    let british = format!("+447700{}", random_digits(6));
    for allowed in [british, random_phone()] {
        app.otp_for(&allowed, "verify").await;
    }
}

#[tokio::test]
async fn the_fourth_sms_is_refused_service_wide_while_email_still_works() {
    let app = spawn_app_with(SMS_CAP_OF_THREE).await;
    for _ in 0..3 {
        app.otp_for(&random_phone(), "verify").await;
    }

    // A new number from a new client: the cap is the whole service's.
    let fourth = random_phone();
    let refusal = answer(request_from(&app, &random_ip(), &fourth).await).await;
    assert_refused(&refusal, "SMS_CAP_REACHED", DAY);
    assert_eq!(app.codes_stored_for(&fourth).await, 0, "the refused request left a row");
    app.assert_nothing_sent_to(&fourth).await;

    app.otp_for(&random_email(), "verify").await;
}
