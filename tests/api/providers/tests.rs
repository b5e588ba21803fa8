//! Native tests of the fakes' rules (no Worker): they refuse what the real
//! services refuse, with the real bodies, and accept the requests the Worker
//! sends under its contract with the providers (User-Agent, Resend's
//! Idempotency-Key, Twilio's StatusCallback and ValidityPeriod).
//! `cargo test --test api providers` runs them in seconds.

use std::time::{Duration, SystemTime};

use base64ct::{Base64, Encoding};
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, Request};

use super::*;
use crate::helpers::{MAIL_KEY, TWILIO_SID, TWILIO_TOKEN};

const BASE: &str = "http://127.0.0.1:9";
const OTP_ID: &str = "0b7a6f2e-6a43-4c55-9a3e-2f0d2b9c1e55";
const MESSAGING_SERVICE: &str = "MG11111111111111111111111111111111";

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_str(v).unwrap());
    }
    Request {
        url: reqwest::Url::parse(&format!("{BASE}{path}")).unwrap(),
        method: method.parse().unwrap(),
        headers: map,
        body: body.to_vec(),
    }
}

fn without<'a>(headers: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
    headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case(name)).copied().collect()
}

fn with<'a>(headers: &[(&'a str, &'a str)], name: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut out = without(headers, name);
    out.push((name, value));
    out
}

fn refusal(checked: &Checked) -> &Answer {
    checked.refusal.as_ref().unwrap_or_else(|| panic!("accepted, but should be refused: {:?}", checked.breaches))
}

fn assert_accepted(checked: &Checked) {
    assert!(checked.refusal.is_none() && checked.breaches.is_empty(), "refused or flagged:\n{}", checked.describe());
}

fn assert_twilio_refusal(checked: &Checked, status: u16, code: i64) {
    let answer = refusal(checked);
    assert_eq!(answer.status, status, "{answer:?}");
    let body = answer.json_body();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["more_info"], format!("https://www.twilio.com/docs/errors/{code}"));
    assert!(body["message"].is_string(), "{body}");
}

fn assert_resend_refusal(checked: &Checked, status: u16, name: &str) {
    let answer = refusal(checked);
    assert_eq!((answer.status, answer.json_body()["name"].as_str()), (status, Some(name)), "{answer:?}");
    assert_eq!(answer.json_body()["statusCode"], status);
    assert!(answer.json_body()["message"].is_string());
}

fn assert_postmark_refusal(checked: &Checked, status: u16, error_code: i64) {
    let answer = refusal(checked);
    assert_eq!((answer.status, &answer.json_body()["ErrorCode"]), (status, &json!(error_code)), "{answer:?}");
    assert!(answer.json_body()["Message"].is_string());
}

// ---------------------------------------------------------------------------
// Resend
// ---------------------------------------------------------------------------

fn resend_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("authorization", "Bearer re_test_mail_api_key"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("idempotency-key", OTP_ID),
        ("user-agent", USER_AGENT),
    ]
}

fn resend_body() -> Value {
    json!({
        "from": "Acme <login@acme.test>",
        "to": ["user-1@example.com"],
        "subject": "Your Acme Login Code",
        "text": "Your Acme verification code is: 123456\n",
        "html": "<p>123456</p>",
    })
}

fn resend(headers: &[(&str, &str)], body: &Value) -> Checked {
    resend::check(&request("POST", "/emails", headers, body.to_string().as_bytes()), &Credentials::default())
}

#[test]
fn resend_accepts_the_workers_request_and_reads_its_recipient_and_text() {
    assert_eq!(MAIL_KEY, "re_test_mail_api_key");
    let checked = resend(&resend_headers(), &resend_body());
    assert_accepted(&checked);
    assert_eq!(checked.destinations, ["user-1@example.com"]);
    assert_eq!(checked.text.as_deref(), Some("Your Acme verification code is: 123456\n"));
    assert_eq!(checked.idempotency, Some((OTP_ID.to_string(), resend_body())));
    // `to` may also be a single string, `from` a bare address.
    let body = json!({"from": "login@acme.test", "to": "user-1@example.com", "subject": "S", "text": "T"});
    assert_accepted(&resend(&resend_headers(), &body));
}

#[test]
fn resend_blocks_a_request_without_user_agent_at_its_edge_with_error_1010() {
    let checked = resend(&without(&resend_headers(), "user-agent"), &resend_body());
    assert_eq!(refusal(&checked), &Answer::text(403, "error code: 1010"));
    assert_eq!(checked.breaches[0].rule, "User-Agent is present");
    assert!(checked.breaches[0].source.contains("403-error-1010"), "{:?}", checked.breaches);
    // Recorded against its recipient, so the test that sent it fails.
    assert_eq!(checked.destinations, ["user-1@example.com"]);
}

#[test]
fn any_user_agent_but_the_projects_is_accepted_by_resend_and_still_flagged() {
    let checked = resend(&with(&resend_headers(), "user-agent", "curl/8.0"), &resend_body());
    assert!(checked.refusal.is_none(), "Resend accepts any User-Agent");
    assert_eq!(checked.breaches.len(), 1, "{:?}", checked.breaches);
    assert!(checked.breaches[0].detail.contains(USER_AGENT), "{:?}", checked.breaches);
}

#[test]
fn resend_refuses_a_missing_key_with_401_and_a_wrong_one_with_403() {
    let checked = resend(&without(&resend_headers(), "authorization"), &resend_body());
    assert_resend_refusal(&checked, 401, "missing_api_key");
    for wrong in ["Bearer re_other", "re_test_mail_api_key", "Basic cmVfdGVzdA=="] {
        assert_resend_refusal(
            &resend(&with(&resend_headers(), "authorization", wrong), &resend_body()),
            403,
            "invalid_api_key",
        );
    }
}

#[test]
fn resend_refuses_a_body_without_a_required_field_with_422_missing_required_field() {
    for field in ["from", "to", "subject"] {
        let mut body = resend_body();
        body.as_object_mut().unwrap().remove(field);
        let checked = resend(&resend_headers(), &body);
        assert_resend_refusal(&checked, 422, "missing_required_field");
        assert_eq!(refusal(&checked).json_body()["message"], format!("Missing `{field}` field."));
    }
}

#[test]
fn resend_refuses_malformed_recipients_and_fields_of_the_wrong_type() {
    let mut body = resend_body();
    body["to"] = json!(["not-an-address"]);
    assert_resend_refusal(&resend(&resend_headers(), &body), 422, "validation_error");
    body["to"] = json!((0..51).map(|i| format!("u{i}@example.com")).collect::<Vec<_>>());
    assert_resend_refusal(&resend(&resend_headers(), &body), 422, "validation_error");
    body["to"] = json!([]);
    assert_resend_refusal(&resend(&resend_headers(), &body), 422, "validation_error");
    let mut body = resend_body();
    body["from"] = json!("Acme");
    assert_resend_refusal(&resend(&resend_headers(), &body), 422, "invalid_from_address");
    let mut body = resend_body();
    body["subject"] = json!(42);
    assert_resend_refusal(&resend(&resend_headers(), &body), 400, "validation_error");
    let checked = resend::check(&request("POST", "/emails", &resend_headers(), b"not json"), &Credentials::default());
    assert_resend_refusal(&checked, 400, "validation_error");
}

#[test]
fn resend_accepts_but_the_fake_flags_properties_outside_send_email_request() {
    let mut body = resend_body();
    body["reply"] = json!("support@acme.test");
    let checked = resend(&resend_headers(), &body);
    assert!(checked.refusal.is_none());
    assert_eq!(checked.breaches.iter().map(|b| b.rule).collect::<Vec<_>>(), ["only SendEmailRequest properties"]);
}

#[test]
fn resend_takes_idempotency_keys_of_1_to_256_characters() {
    let longest = "k".repeat(256);
    assert_accepted(&resend(&with(&resend_headers(), "idempotency-key", &longest), &resend_body()));
    let too_long = "k".repeat(257);
    let checked = resend(&with(&resend_headers(), "idempotency-key", &too_long), &resend_body());
    assert_resend_refusal(&checked, 400, "invalid_idempotency_key");
    assert_eq!(refusal(&checked).json_body()["message"], "The key must be between 1-256 chars.");
}

#[test]
fn resend_answers_a_retry_with_the_same_key_once_and_refuses_the_key_with_another_payload() {
    let fake = Fake::new("mail", Credentials::default());
    let now = SystemTime::now();
    let first = request("POST", "/emails", &resend_headers(), resend_body().to_string().as_bytes());
    assert_eq!(fake.verdict(&first, now).1, Verdict::Pass);
    let answer = fake.accept(&first, now);
    assert_eq!(answer.status, 200);
    assert!(crate::helpers::is_uuid(answer.json_body()["id"].as_str().unwrap()), "{answer:?}");

    // The same payload, keys reordered: the original answer, nothing sent again.
    let reordered = r#"{"html":"<p>123456</p>","text":"Your Acme verification code is: 123456\n","subject":"Your Acme Login Code","to":["user-1@example.com"],"from":"Acme <login@acme.test>"}"#;
    assert_eq!(serde_json::from_str::<Value>(reordered).unwrap(), resend_body());
    let retry = request("POST", "/emails", &resend_headers(), reordered.as_bytes());
    assert_eq!(fake.verdict(&retry, now + Duration::from_secs(60)).1, Verdict::Replay(answer.clone()));

    let mut other = resend_body();
    other["subject"] = json!("Another subject");
    let conflict = request("POST", "/emails", &resend_headers(), other.to_string().as_bytes());
    let (checked, verdict) = fake.verdict(&conflict, now);
    assert_eq!(verdict, Verdict::Refuse(resend::invalid_idempotent_request()));
    assert_resend_refusal(&checked, 409, "invalid_idempotent_request");

    // Keys are kept 24 hours.
    assert_eq!(fake.verdict(&retry, now + IDEMPOTENCY_WINDOW + Duration::from_secs(1)).1, Verdict::Pass);
    assert_eq!(fake.sent().len(), 1);
}

#[test]
fn resends_success_answer_is_its_send_email_response() {
    let schema = &spec::resend()["components"]["schemas"]["SendEmailResponse"];
    let answer = resend::accepted();
    assert!(jsonschema::is_valid(schema, answer.json_body()), "{answer:?}");
    assert_eq!(answer.json_body().as_object().unwrap().keys().collect::<Vec<_>>(), ["id"]);
}

// ---------------------------------------------------------------------------
// Postmark
// ---------------------------------------------------------------------------

fn postmark_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-postmark-server-token", "re_test_mail_api_key"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("user-agent", USER_AGENT),
    ]
}

fn postmark_body() -> Value {
    json!({
        "From": "Acme <login@acme.test>",
        "To": "user-2@example.com",
        "Subject": "Acme Password Reset Code",
        "TextBody": "Your Acme verification code is: 654321\n",
        "HtmlBody": "<p>654321</p>",
        "MessageStream": "outbound",
    })
}

fn postmark(headers: &[(&str, &str)], body: &Value) -> Checked {
    postmark::check(&request("POST", "/email", headers, body.to_string().as_bytes()), &Credentials::default())
}

#[test]
fn postmark_accepts_the_workers_request() {
    let checked = postmark(&postmark_headers(), &postmark_body());
    assert_accepted(&checked);
    assert_eq!(checked.destinations, ["user-2@example.com"]);
    assert_eq!(checked.text.as_deref(), Some("Your Acme verification code is: 654321\n"));
    let answer = postmark::accepted(&checked);
    let body = answer.json_body();
    assert_eq!(
        (answer.status, &body["To"], &body["ErrorCode"], &body["Message"]),
        (200, &json!("user-2@example.com"), &json!(0), &json!("OK"))
    );
    assert!(crate::helpers::is_uuid(body["MessageID"].as_str().unwrap()) && body["SubmittedAt"].is_string(), "{body}");
}

#[test]
fn postmark_refuses_a_missing_or_wrong_server_token_with_401_error_code_10() {
    assert_postmark_refusal(
        &postmark(&without(&postmark_headers(), "x-postmark-server-token"), &postmark_body()),
        401,
        10,
    );
    assert_postmark_refusal(
        &postmark(&with(&postmark_headers(), "x-postmark-server-token", "other"), &postmark_body()),
        401,
        10,
    );
    // Resend's header is not Postmark's.
    let resend_style =
        with(&without(&postmark_headers(), "x-postmark-server-token"), "authorization", "Bearer re_test_mail_api_key");
    assert_postmark_refusal(&postmark(&resend_style, &postmark_body()), 401, 10);
}

#[test]
fn postmark_refuses_an_email_without_sender_recipient_subject_or_body_with_422_error_code_300() {
    for field in ["From", "To", "Subject"] {
        let mut body = postmark_body();
        body.as_object_mut().unwrap().remove(field);
        assert_postmark_refusal(&postmark(&postmark_headers(), &body), 422, 300);
    }
    let mut body = postmark_body();
    body.as_object_mut().unwrap().remove("TextBody");
    assert_accepted(&postmark(&postmark_headers(), &body));
    body.as_object_mut().unwrap().remove("HtmlBody");
    assert_postmark_refusal(&postmark(&postmark_headers(), &body), 422, 300);
    let mut body = postmark_body();
    body["To"] = json!("user-2@example.com, not-an-address");
    assert_postmark_refusal(&postmark(&postmark_headers(), &body), 422, 300);
}

#[test]
fn postmark_refuses_a_non_string_message_stream_and_non_json_requests() {
    let mut body = postmark_body();
    body["MessageStream"] = json!(1);
    let checked = postmark(&postmark_headers(), &body);
    assert_postmark_refusal(&checked, 422, 403);
    assert!(refusal(&checked).json_body()["Message"].as_str().unwrap().contains("MessageStream"));
    body["MessageStream"] = json!(["outbound"]);
    assert_postmark_refusal(&postmark(&postmark_headers(), &body), 422, 403);
    let checked = postmark::check(&request("POST", "/email", &postmark_headers(), b"{From:"), &Credentials::default());
    assert_postmark_refusal(&checked, 422, 402);
    let checked = postmark(&with(&postmark_headers(), "content-type", "text/plain"), &postmark_body());
    assert_eq!(refusal(&checked).status, 415);
    assert_eq!(refusal(&postmark(&without(&postmark_headers(), "accept"), &postmark_body())).status, 415);
}

#[test]
fn postmark_accepts_but_the_fake_flags_a_missing_user_agent_and_undocumented_fields() {
    let checked = postmark(&without(&postmark_headers(), "user-agent"), &postmark_body());
    assert!(checked.refusal.is_none());
    assert_eq!(checked.breaches.iter().map(|b| b.rule).collect::<Vec<_>>(), ["User-Agent is present"]);
    let mut body = postmark_body();
    body["Stream"] = json!("outbound");
    let checked = postmark(&postmark_headers(), &body);
    assert!(checked.refusal.is_none());
    assert_eq!(checked.breaches.iter().map(|b| b.rule).collect::<Vec<_>>(), ["only documented fields"]);
}

// ---------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------

fn twilio_path() -> String {
    format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", Base64::encode_string(format!("{user}:{password}").as_bytes()))
}

fn twilio_headers(authorization: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", authorization.to_string()),
        ("content-type", "application/x-www-form-urlencoded".into()),
        ("accept", "application/json".into()),
        ("user-agent", USER_AGENT.into()),
    ]
}

fn encode(fields: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    form.finish()
}

fn twilio_at(path: &str, headers: &[(&str, String)], fields: &[(&str, &str)]) -> Checked {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    twilio::check(&request("POST", path, &headers, encode(fields).as_bytes()), &Credentials::default())
}

fn twilio(fields: &[(&str, &str)]) -> Checked {
    twilio_at(&twilio_path(), &twilio_headers(&basic(TWILIO_SID, TWILIO_TOKEN)), fields)
}

const SMS: [(&str, &str); 3] =
    [("To", "+15551234567"), ("From", "+15005550006"), ("Body", "123456 is your Acme verification code.")];

fn sms_with<'a>(replaced: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields: Vec<(&str, &str)> =
        SMS.iter().filter(|(k, _)| !replaced.iter().any(|(r, _)| r == k)).copied().collect();
    fields.extend(replaced.iter().filter(|(_, v)| !v.is_empty()));
    fields
}

#[test]
fn twilio_accepts_the_workers_requests_from_a_number_and_through_a_messaging_service() {
    let checked = twilio(&SMS);
    assert_accepted(&checked);
    assert_eq!(
        (checked.destinations.as_slice(), checked.text.as_deref()),
        (&["+15551234567".to_string()][..], Some(SMS[2].1))
    );
    assert_accepted(&twilio(&[
        ("To", "+15551234567"),
        ("MessagingServiceSid", MESSAGING_SERVICE),
        ("Body", "123456 is your Acme verification code.\n\n@login.acme.test #123456"),
        ("StatusCallback", "https://otp.acme.test/api/webhooks/twilio/status?otp=0b7a6f2e"),
        ("ValidityPeriod", "300"),
    ]));
    for from in ["Acme", "Acme Login", "ACME-2FA", "894546", "whatsapp:+15005550006"] {
        assert_accepted(&twilio(&sms_with(&[("From", from)])));
    }
}

#[test]
fn twilio_answers_an_account_sid_off_its_pattern_404_20404_and_a_wrong_account_401_20003() {
    for sid in ["AC123", "ACzz000000000000000000000000000000", "MG00000000000000000000000000000000"] {
        let path = format!("/2010-04-01/Accounts/{sid}/Messages.json");
        assert_twilio_refusal(&twilio_at(&path, &twilio_headers(&basic(TWILIO_SID, TWILIO_TOKEN)), &SMS), 404, 20404);
    }
    let other = "AC11111111111111111111111111111111";
    let path = format!("/2010-04-01/Accounts/{other}/Messages.json");
    assert_twilio_refusal(&twilio_at(&path, &twilio_headers(&basic(TWILIO_SID, TWILIO_TOKEN)), &SMS), 401, 20003);
    assert_twilio_refusal(&twilio_at(&path, &twilio_headers(&basic(other, TWILIO_TOKEN)), &SMS), 401, 20003);
}

#[test]
fn twilio_refuses_bad_basic_auth_with_401_20003_authenticate() {
    for authorization in
        [basic(TWILIO_SID, "wrong"), format!("Bearer {TWILIO_TOKEN}"), String::new(), "Basic !!".into()]
    {
        let checked = twilio_at(&twilio_path(), &twilio_headers(&authorization), &SMS);
        assert_twilio_refusal(&checked, 401, 20003);
        assert_eq!(refusal(&checked).json_body()["message"], "Authenticate");
    }
}

#[test]
fn twilio_refuses_a_message_without_recipient_sender_or_content() {
    assert_twilio_refusal(&twilio(&sms_with(&[("To", "")])), 400, 21604);
    assert_twilio_refusal(&twilio(&sms_with(&[("From", "")])), 400, 21603);
    assert_twilio_refusal(&twilio(&sms_with(&[("Body", "")])), 400, 21602);
    // A JSON body is not read: no `To`.
    let headers = [
        ("authorization", basic(TWILIO_SID, TWILIO_TOKEN)),
        ("content-type", "application/json".into()),
        ("user-agent", USER_AGENT.into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = json!({"To": "+15551234567", "From": "+15005550006", "Body": "x"}).to_string();
    assert_twilio_refusal(
        &twilio::check(&request("POST", &twilio_path(), &headers, body.as_bytes()), &Credentials::default()),
        400,
        21604,
    );
}

#[test]
fn twilio_refuses_a_messaging_service_sid_off_its_pattern_with_21705() {
    for sid in ["MG123", "MX11111111111111111111111111111111", "MG1111111111111111111111111111111g"] {
        assert_twilio_refusal(&twilio(&sms_with(&[("From", ""), ("MessagingServiceSid", sid)])), 400, 21705);
    }
}

#[test]
fn twilio_refuses_a_body_over_1600_characters_with_21617() {
    let longest = "a".repeat(1600);
    assert_accepted(&twilio(&sms_with(&[("Body", &longest)])));
    let too_long = "a".repeat(1601);
    assert_twilio_refusal(&twilio(&sms_with(&[("Body", &too_long)])), 400, 21617);
    // An emoji is two UTF-16 units.
    let emoji = format!("{}😀", "a".repeat(1599));
    assert_twilio_refusal(&twilio(&sms_with(&[("Body", &emoji)])), 400, 21617);
}

#[test]
fn twilio_refuses_a_status_callback_that_is_not_an_http_url_with_21609() {
    for url in ["not a url", "/relative/path", "ftp://otp.acme.test/status", "https://bad_host.acme.test/status"] {
        assert_twilio_refusal(&twilio(&sms_with(&[("StatusCallback", url)])), 400, 21609);
    }
    assert_accepted(&twilio(&sms_with(&[("StatusCallback", "http://127.0.0.1:8787/status")])));
}

#[test]
fn twilio_takes_a_validity_period_of_1_to_36000_seconds() {
    for ok in ["1", "300", "36000"] {
        assert_accepted(&twilio(&sms_with(&[("ValidityPeriod", ok)])));
    }
    for bad in ["0", "36001", "-5", "300s", "1.5"] {
        assert_twilio_refusal(&twilio(&sms_with(&[("ValidityPeriod", bad)])), 400, 21624);
    }
}

#[test]
fn twilio_refuses_malformed_numbers_and_senders() {
    assert_twilio_refusal(&twilio(&sms_with(&[("To", "5551234567")])), 400, 21211);
    for from in ["15005550006", "12345678", "Acme Corporation", "Acme!", "+0123"] {
        assert_twilio_refusal(&twilio(&sms_with(&[("From", from)])), 400, 21606);
    }
    // Enumerated and typed parameters of the spec.
    assert_twilio_refusal(&twilio(&sms_with(&[("RiskCheck", "sometimes")])), 400, 400);
    assert_twilio_refusal(&twilio(&sms_with(&[("SmartEncoded", "yes")])), 400, 400);
}

#[test]
fn twilio_ignores_unknown_parameters_as_twilio_does_but_the_fake_flags_them() {
    let mut fields = SMS.to_vec();
    fields.push(("Validity", "300"));
    let checked = twilio(&fields);
    assert!(checked.refusal.is_none(), "Twilio accepts unknown parameters (warning 20001)");
    assert_eq!(checked.breaches.len(), 1);
    assert_eq!(checked.breaches[0].source, twilio::UNKNOWN_PARAMETER_SOURCE);
}

#[test]
fn twilio_does_not_require_a_user_agent_but_the_fake_flags_a_missing_one() {
    let headers: Vec<(&str, String)> =
        twilio_headers(&basic(TWILIO_SID, TWILIO_TOKEN)).into_iter().filter(|(k, _)| *k != "user-agent").collect();
    let checked = twilio_at(&twilio_path(), &headers, &SMS);
    assert!(checked.refusal.is_none());
    assert_eq!(checked.breaches[0].rule, "User-Agent is present");
}

#[test]
fn twilios_success_answer_is_a_queued_message_resource_of_the_spec() {
    let headers: Vec<(&str, String)> = twilio_headers(&basic(TWILIO_SID, TWILIO_TOKEN));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created =
        twilio::created(&request("POST", &twilio_path(), &headers, encode(&SMS).as_bytes()), &Credentials::default());
    assert_eq!(created.status, 201);
    let mut schema =
        spec::nullable_to_json_schema(&spec::twilio()["components"]["schemas"]["api.v2010.account.message"]);
    schema["components"] = spec::nullable_to_json_schema(&spec::twilio()["components"]);
    let validator = jsonschema::draft4::options().build(&schema).unwrap();
    let body = created.json_body();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:?}\n{body}");
    assert!(body["sid"].as_str().unwrap().starts_with("SM") && body["status"] == "queued", "{body}");
    assert_eq!(
        (&body["to"], &body["from"], &body["account_sid"]),
        (&json!(SMS[0].1), &json!(SMS[1].1), &json!(TWILIO_SID))
    );
}

#[test]
fn rfc2822_dates_are_the_message_resources_format() {
    assert_eq!(twilio::rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    // The spec's example: "Thu, 24 Aug 2023 05:01:45 +0000".
    assert_eq!(twilio::rfc2822(1_692_853_305), "Thu, 24 Aug 2023 05:01:45 +0000");
}

/// Twilio's own test vectors: twilio/twilio-python tests/unit/test_request_validator.py
/// (token 12345; the URL with and without :443; a repeated parameter).
#[test]
fn twilio_signatures_match_twilios_published_test_vectors() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ];
    assert_eq!(twilio::signature("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(twilio::signature("12345", with_port, &params), "kvajT1Ptam85bY51eRf/AJRuM3w=");
    let repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")];
    assert_eq!(twilio::signature("12345", url, &repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    assert_ne!(twilio::signature("54321", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    // The example of Twilio's security docs (twilio.com/docs/usage/security#validating-requests).
    let docs = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];
    assert_eq!(twilio::signature("12345", url, &docs), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    assert!(twilio::SIGNATURE_SOURCE.contains("test_request_validator.py"));
}

// ---------------------------------------------------------------------------
// The fakes as servers: the order of their mocks, idempotent retries
// ---------------------------------------------------------------------------

async fn post(server: &wiremock::MockServer, path: &str, headers: &[(&str, &str)], body: String) -> (u16, String) {
    let mut request = reqwest::Client::new().post(format!("{}{path}", server.uri())).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_refusal_comes_before_a_tests_own_answer_which_comes_before_the_default() {
    let fake = Fake::new("sms", Credentials::default());
    let server = serve(fake.clone()).await;
    let phone = "+15557654321";
    // As provider_answers (delivery.rs) mounts it: priority 1, after the contract check.
    Mock::given(method("POST"))
        .and(body_string_contains("To=%2B15557654321"))
        .respond_with(twilio_error(400, 21211, "The 'To' number is not a valid phone number.", None))
        .with_priority(1)
        .mount(&server)
        .await;
    let auth = basic(TWILIO_SID, TWILIO_TOKEN);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("user-agent", USER_AGENT),
    ];
    let fields = [("To", phone), ("From", "+15005550006"), ("Body", "x")];

    let wrong_auth = basic(TWILIO_SID, "wrong");
    let (status, body) =
        post(&server, &twilio_path(), &with(&headers, "authorization", &wrong_auth), encode(&fields)).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["code"].as_i64()), (401, Some(20003)), "{body}");
    let (status, body) = post(&server, &twilio_path(), &headers, encode(&fields)).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["code"].as_i64()), (400, Some(21211)), "{body}");
    let (status, body) = post(
        &server,
        &twilio_path(),
        &headers,
        encode(&[("To", "+15550000001"), ("From", "+15005550006"), ("Body", "hi")]),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Only the default answer sends; only the refusal is a violation, for its destination.
    assert_eq!(fake.sent().iter().map(|s| s.destinations.clone()).collect::<Vec<_>>(), [["+15550000001".to_string()]]);
    let violations = fake.violations_for(phone);
    assert_eq!(
        violations.iter().map(|v| (v.breach.rule, v.answered)).collect::<Vec<_>>(),
        [("HTTP Basic auth AccountSid:AuthToken", Some(401))]
    );
    assert!(fake.violations_for("+15550000001").is_empty());
    assert!(violations[0].to_string().contains("errors/20003"), "{}", violations[0]);
}

#[tokio::test]
async fn resend_sends_an_idempotent_retry_once_and_answers_it_with_the_original_id() {
    let fake = Fake::new("mail", Credentials::default());
    let server = serve(fake.clone()).await;
    let (status, first) = post(&server, "/emails", &resend_headers(), resend_body().to_string()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = post(&server, "/emails", &resend_headers(), resend_body().to_string()).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(fake.sent().len(), 1, "the real service sends once");

    let mut changed = resend_body();
    changed["text"] = json!("another code");
    let (status, body) = post(&server, "/emails", &resend_headers(), changed.to_string()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["name"], "invalid_idempotent_request");
    assert_eq!(fake.violations_for("user-1@example.com").len(), 1);
}

#[tokio::test]
async fn the_error_builders_answer_each_providers_documented_body_and_retry_after() {
    let server = wiremock::MockServer::start().await;
    let cases = [
        (
            "/r",
            resend_error(429, "daily_quota_exceeded", "You have reached your daily email sending quota.", Some(30)),
            "retry-after",
        ),
        ("/p", postmark_error(422, 406, "Inactive recipient", None), ""),
        ("/t", twilio_error(429, 20429, "Too Many Requests", Some(5)), "retry-after"),
    ];
    for (path, template, _) in &cases {
        Mock::given(wiremock::matchers::path(*path)).respond_with(template.clone()).mount(&server).await;
    }
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", server.uri())).send();
    let r = get("/r").await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()), (429, "30"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"statusCode": 429, "name": "daily_quota_exceeded", "message": "You have reached your daily email sending quota."})
    );
    let p = get("/p").await.unwrap();
    assert!(p.headers().get("retry-after").is_none());
    assert_eq!(
        (p.status().as_u16(), p.json::<Value>().await.unwrap()),
        (422, json!({"ErrorCode": 406, "Message": "Inactive recipient"}))
    );
    let t = get("/t").await.unwrap();
    assert_eq!(t.headers()["retry-after"].to_str().unwrap(), "5");
    assert_eq!(
        t.json::<Value>().await.unwrap(),
        json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429})
    );
}
