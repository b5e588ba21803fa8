//! SMS pumping, tried as an attacker would: codes to premium and high-cost
//! ranges, many numbers of one range or one country, and login requests
//! for numbers with no account (which send nothing) to drain a cap. The
//! rules (the block list's table, the caps' arithmetic) are proved natively
//! (src/domain/sms_policy.rs, src/flows/tests/pumping.rs); here, end to end.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    assert_error, random_digits, random_ip, random_phone, spawn_app, spawn_app_with, sql_str, Profile, TestApp,
};
use crate::limits::{all_at_once, answer, assert_ok, assert_refused, post_from, request_from, Answer};

const APP_HASH: &str = "FA+9qCX9VSu";

/// Three SMS an hour per 8-digit prefix (`+1555dddd`), two a day to the UK,
/// SMS to the US/Canada, the UK and Jamaica (which the default list blocks),
/// less one UK range the operator blocks, and Android's SMS Retriever.
const PUMPING: Profile = Profile {
    name: "pumping",
    vars: &[
        ("SMS_PREFIX_DIGITS", "8"),
        ("SMS_PER_PREFIX_PER_HOUR", "3"),
        ("SMS_COUNTRY_DAILY_CAPS", "44:2"),
        ("SMS_ALLOWED_COUNTRY_CODES", "1,44,1876"),
        ("SMS_BLOCKED_PREFIXES", "447999"),
        ("SMS_RETRIEVER_APP_HASH", APP_HASH),
    ],
};

/// A fresh 8-digit range of the fake's US numbers: `+1555dddd`.
fn random_prefix() -> String {
    format!("+1555{}", random_digits(4))
}

/// `count` different numbers in `prefix`.
fn numbers_in(prefix: &str, count: usize) -> Vec<String> {
    let mut numbers: Vec<String> = Vec::new();
    while numbers.len() < count {
        let n = format!("{prefix}{}", random_digits(11 - (prefix.len() - 1)));
        if !numbers.contains(&n) {
            numbers.push(n);
        }
    }
    numbers
}

async fn login_from(app: &TestApp, ip: &str, phone: &str) -> Answer {
    answer(post_from(app, ip, "/api/auth/otp/request/", json!({ "destination": phone, "purpose": "login" })).await)
        .await
}

async fn sms_sent_to(app: &TestApp, numbers: &[String]) -> usize {
    let mut sent = 0;
    for n in numbers {
        sent += app.messages_to(n).await;
    }
    sent
}

/// The audit events of these requests (stored after the answer: polled).
async fn audit_outcomes(app: &TestApp, request_ids: &[String]) -> Vec<(String, String)> {
    let ids: Vec<String> = request_ids.iter().map(|id| sql_str(id)).collect();
    let sql = format!("SELECT event, outcome FROM audit_events WHERE request_id IN ({}) ORDER BY id", ids.join(","));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = app.d1(&sql).await;
        let outcomes: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r["event"].as_str().unwrap().to_string(), r["outcome"].as_str().unwrap().to_string()))
            .filter(|(event, _)| event == "rate_limited")
            .collect();
        if outcomes.len() >= request_ids.len() || Instant::now() > deadline {
            return outcomes;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// ---------------------------------------------------------------------------
// High-risk numbers
// ---------------------------------------------------------------------------

/// The numbers the issue found answered 200 with the default settings.
const HIGH_RISK: [&str; 7] = [
    "+19005550123",  // US premium rate (900)
    "+18765550123",  // Jamaica: NANP, not the US or Canada
    "+12845550123",  // British Virgin Islands
    "+16495550123",  // Turks and Caicos
    "+881612345678", // GMSS satellite
    "+882161234567", // international networks
    "+5351234567",   // Cuba: Twilio does not deliver there
];

#[tokio::test]
async fn high_risk_numbers_are_refused_by_default_before_anything_is_counted() {
    let app = spawn_app().await;
    for number in HIGH_RISK {
        // Seven times each: past the destination's five an hour, were any counted.
        for purpose in ["verify", "login", "register", "verify", "login", "register", "verify"] {
            let body = json!({ "destination": number, "purpose": purpose });
            let resp = post_from(&app, &random_ip(), "/api/auth/otp/request/", body).await;
            let message = assert_error(resp, 400, "VALIDATION_ERROR").await;
            assert!(!message.contains(&number[4..]), "the refusal repeats the number: {message}");
        }
        assert_eq!(app.codes_stored_for(number).await, 0, "{number} has a row");
    }
    app.assert_nothing_sent_to_any(&HIGH_RISK).await;
    // The US and Canada are not caught by the NANP entries.
    for allowed in ["+12125550123", "+14165550123"] {
        assert_ok(request_from(&app, &random_ip(), allowed).await).await;
    }
}

/// The operator's lists over the default: a longer allowed prefix wins
/// (1876 lets Jamaica in; 1 does not let in premium 1900), an allow list
/// keeps everything else out, and a blocked prefix is refused whatever the
/// allow list says.
#[tokio::test]
async fn the_operators_lists_override_the_default_by_the_longer_prefix() {
    let app = spawn_app_with(PUMPING).await;
    let jamaica = format!("+1876{}", random_digits(7));
    assert_ok(request_from(&app, &random_ip(), &jamaica).await).await;
    assert_eq!(app.messages_to(&jamaica).await, 1);
    let refused =
        ["+19005550123", "+12845550123", "+4915112345678", &format!("+447999{}", random_digits(6)), "+449012345678"];
    for number in refused {
        assert_error(request_from(&app, &random_ip(), number).await, 400, "VALIDATION_ERROR").await;
        assert_eq!(app.codes_stored_for(number).await, 0, "{number} has a row");
    }
}

// ---------------------------------------------------------------------------
// Pumping caps
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_simultaneous_requests_in_one_prefix_send_exactly_three_sms() {
    let app = spawn_app_with(PUMPING).await;
    let numbers = numbers_in(&random_prefix(), 12);
    let requests = numbers.iter().map(|n| {
        let (app, n) = (app.clone(), n.clone());
        async move { request_from(&app, &random_ip(), &n).await }
    });
    let answers = all_at_once(requests.collect()).await;

    let sent: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(sent.len(), 3, "{answers:#?}");
    let mut refused_ids = Vec::new();
    for refusal in answers.iter().filter(|a| a.status != 200) {
        assert_refused(refusal, "SMS_CAP_REACHED", 3600);
        refused_ids.push(refusal.request_id.clone().expect("no x-request-id"));
    }
    assert_eq!(sms_sent_to(&app, &numbers).await, 3, "the prefix's cap is three");

    // Each refusal left an event an operator can alert on.
    let outcomes = audit_outcomes(&app, &refused_ids).await;
    assert_eq!(outcomes.len(), 9, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, outcome)| outcome == "sms_prefix"), "{outcomes:?}");

    // Other ranges are untouched.
    assert_ok(request_from(&app, &random_ip(), &random_phone()).await).await;
}

/// A login request for a number with no account sends nothing, so it takes
/// nothing from the caps; once real messages fill a cap, the answer is the
/// same 429 whether the number has an account or not, so the cap's state
/// does not tell them apart.
#[tokio::test]
async fn login_requests_for_unknown_numbers_spend_no_cap_and_a_full_cap_answers_all_alike() {
    let app = spawn_app_with(PUMPING).await;
    let prefix = random_prefix();
    let numbers = numbers_in(&prefix, 14);
    let (decoys, rest) = numbers.split_at(8);
    let (real, rest) = rest.split_at(3);
    let (registered, unknown, other) = (&rest[0], &rest[1], &rest[2]);

    for decoy in decoys {
        let a = login_from(&app, &random_ip(), decoy).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    for n in real {
        assert_ok(request_from(&app, &random_ip(), n).await).await;
    }
    assert_eq!(sms_sent_to(&app, real).await, 3, "the decoys took part of the cap");
    assert_eq!(sms_sent_to(&app, decoys).await, 0, "a decoy sent an SMS");

    app.seed_user(registered, "active").await;
    let for_account = login_from(&app, &random_ip(), registered).await;
    let for_nobody = login_from(&app, &random_ip(), unknown).await;
    let retry_account = assert_refused(&for_account, "SMS_CAP_REACHED", 3600);
    let retry_nobody = assert_refused(&for_nobody, "SMS_CAP_REACHED", 3600);
    assert_eq!(for_account.body["message"], for_nobody.body["message"]);
    assert!(retry_account.abs_diff(retry_nobody) <= 2, "{retry_account} vs {retry_nobody}");
    assert_refused(&answer(request_from(&app, &random_ip(), other).await).await, "SMS_CAP_REACHED", 3600);
    app.assert_nothing_sent_to(registered).await;
}

#[tokio::test]
async fn a_countrys_daily_cap_counts_only_the_sms_sent_there() {
    let app = spawn_app_with(PUMPING).await;
    // Three different UK ranges, so only the country's cap can refuse.
    let uk: Vec<String> = ["7700", "7400", "7500"].iter().map(|r| format!("+44{r}{}", random_digits(6))).collect();
    for n in &uk[..2] {
        assert_ok(request_from(&app, &random_ip(), n).await).await;
    }
    let third = answer(request_from(&app, &random_ip(), &uk[2]).await).await;
    assert_refused(&third, "SMS_CAP_REACHED", 86_400);
    app.assert_nothing_sent_to(&uk[2]).await;
    assert_ok(request_from(&app, &random_ip(), &random_phone()).await).await;
}

// ---------------------------------------------------------------------------
// Android SMS Retriever
// ---------------------------------------------------------------------------

/// Google's rules for the message (developers.google.com/identity/sms-retriever/verify):
/// at most 140 bytes (160 GSM-7 characters, one segment), the code, and the
/// app's 11-character hash at the end.
#[tokio::test]
async fn with_an_app_hash_the_sms_ends_with_it_in_one_segment() {
    let app = spawn_app_with(PUMPING).await;
    let phone = random_phone();
    assert_ok(request_from(&app, &random_ip(), &phone).await).await;
    let code = app.code_sent_to(&phone).await;
    let texts = app.worker.providers.texts_sent_to(&phone);
    let [text] = texts.as_slice() else { panic!("{texts:?}") };
    assert!(text.ends_with(&format!("\n\n{APP_HASH}")), "{text:?}");
    assert!(text.contains(&code));
    assert!(text.chars().count() <= 160, "{} characters: {text:?}", text.chars().count());
    const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    assert!(text.chars().all(|c| GSM7_BASIC.contains(c)), "not GSM-7: {text:?}");
}
