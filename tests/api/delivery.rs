//! Delivery for real: what the fake Twilio and mail APIs receive (method,
//! path, credentials, content type, every field and the exact, localized
//! text), and what the client sees when a provider fails, hangs or refuses.

use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::helpers::{
    assert_invalid_otp, json_of, random_email, random_phone, spawn_app, spawn_app_with, sql_str, Profile, TestApp,
    MAIL_KEY, NO_ENUMERATION_PROTECTION, TWILIO_SID, TWILIO_TOKEN,
};
use crate::providers;

/// Postmark for mail, a Twilio Messaging Service (which wins over the
/// configured number), the WebOTP line, and an app name that needs escaping
/// in HTML.
pub(crate) const POSTMARK_AND_MESSAGING_SERVICE: Profile = Profile {
    name: "delivery-postmark-messaging-service",
    vars: &[
        ("MAIL_PROVIDER", "postmark"),
        ("TWILIO_MESSAGING_SERVICE_SID", MESSAGING_SERVICE_SID),
        ("OTP_WEBOTP_DOMAIN", "login.acme.test"),
        ("APP_NAME", "Acme & Co <Beta>"),
    ],
};
const MESSAGING_SERVICE_SID: &str = "MG11111111111111111111111111111111";

/// Provider calls give up after one second.
const ONE_SECOND_TIMEOUT: Profile =
    Profile { name: "delivery-one-second-timeout", vars: &[("DELIVERY_TIMEOUT_MS", "1000")] };

/// How many times a provider answers a destination so: every time.
pub(crate) const ALWAYS: u64 = u64::MAX;

/// Put in every failing provider answer: it must never reach the client.
pub(crate) const PROVIDER_DETAIL: &str = "upstream-detail-7f3a9c";

// ---------------------------------------------------------------------------
// What the providers receive
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_new_user_gets_a_registration_email_through_resend_stating_ten_minutes() {
    let app = spawn_app().await;
    let email = random_email();

    let (status, body) = json_of(request_code(&app, &email, "register", None, None).await).await;
    assert_eq!(status, 200, "{body}");

    let mail = only_delivery_to(&app, &email).await;
    assert_eq!(mail.method.as_str(), "POST");
    assert_eq!(mail.url.path(), "/emails");
    assert_eq!(header(&mail, "authorization"), format!("Bearer {MAIL_KEY}"));
    assert_eq!(header(&mail, "content-type"), "application/json");
    let sent: Value = mail.body_json().expect("a JSON body");
    let code = code_in(&message_text(&mail));
    assert_eq!(
        sent,
        json!({
            "from": "Acme <login@acme.test>",
            "to": [email],
            "subject": "Verify Your Email for Acme",
            "text": english_email_text(&code),
            "html": sent["html"],
        })
    );
    let html = sent["html"].as_str().expect("html is a string");
    assert_html_carries(html, &code, "en", &["Your Acme Verification Code", "This code will expire in 10 minutes."]);
    assert_code_verifies(&app, &body["otp_id"], &code).await;
}

#[tokio::test]
async fn a_new_user_gets_a_registration_sms_from_the_twilio_number_stating_five_minutes() {
    let app = spawn_app().await;
    let phone = random_phone();

    let (status, body) = json_of(request_code(&app, &phone, "register", None, None).await).await;
    assert_eq!(status, 200, "{body}");

    let sms = only_delivery_to(&app, &phone).await;
    assert_eq!(sms.method.as_str(), "POST");
    assert_eq!(sms.url.path(), format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"));
    assert_eq!(header(&sms, "authorization"), twilio_basic_auth());
    assert_eq!(header(&sms, "content-type"), "application/x-www-form-urlencoded");
    let text = message_text(&sms);
    let code = code_in(&text);
    assert_eq!(
        sorted_form_without_validity(&sms),
        [("Body", english_sms(&code).as_str()), ("From", "+15005550006"), ("To", phone.as_str())]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_fits_one_gsm7_segment(&text);
    assert_code_verifies(&app, &body["otp_id"], &code).await;
}

#[tokio::test]
async fn every_purpose_has_its_own_email_subject_and_the_sms_says_the_same_everywhere() {
    let app = spawn_app().await;

    for (purpose, subject) in [
        ("login", "Your Acme Login Code"),
        ("register", "Verify Your Email for Acme"),
        ("verify", "Acme Email Verification Code"),
        ("reset", "Acme Password Reset Code"),
    ] {
        let sent = messages_for(&app, purpose, None, None).await;

        assert_eq!(sent.email["subject"], subject, "{purpose}");
        assert_eq!(sent.email["text"], english_email_text(&sent.email_code), "{purpose}");
        assert_eq!(sent.sms, english_sms(&sent.sms_code), "{purpose}");
        assert_code_verifies(&app, &sent.email_otp_id, &sent.email_code).await;
        assert_code_verifies(&app, &sent.sms_otp_id, &sent.sms_code).await;
    }
}

/// What one language's messages must say; `{code}` stands for the code.
struct Localized {
    lang: &'static str,
    subject: &'static str,
    text: &'static str,
    /// Phrases the HTML body must carry (besides the code).
    html: &'static [&'static str],
    sms: &'static str,
}

fn assert_localized(sent: &Sent, want: &Localized) {
    assert_eq!(sent.email["subject"], want.subject, "{}", want.lang);
    assert_eq!(sent.email["text"], want.text.replace("{code}", &sent.email_code), "{}", want.lang);
    let html = sent.email["html"].as_str().unwrap();
    assert_html_carries(html, &sent.email_code, want.lang, want.html);
    assert_eq!(sent.sms, want.sms.replace("{code}", &sent.sms_code), "{}", want.lang);
    assert_fits_one_gsm7_segment(&sent.sms);
}

#[tokio::test]
async fn a_spanish_speaker_asking_with_the_locale_field_reads_spanish_whatever_the_browser_says() {
    let app = spawn_app().await;

    let sent = messages_for(&app, "register", Some("es-MX"), Some("de")).await;

    assert_localized(
        &sent,
        &Localized {
            lang: "es",
            subject: "Verifica tu correo para Acme",
            text: "Tu código de verificación de Acme es: {code}\n\nEste código caduca en 10 minutos.\n\n\
                   Si no solicitaste este código, ignora este correo.\n",
            html: &["Tu código de verificación de Acme", "Este código caduca en 10 minutos."],
            sms: "{code} es tu codigo de verificacion de Acme. Caduca en 5 minutos.",
        },
    );
}

#[tokio::test]
async fn a_german_browser_gets_german_messages_through_accept_language() {
    let app = spawn_app().await;

    let sent = messages_for(&app, "verify", None, Some("de-CH, en;q=0.5")).await;

    assert_localized(
        &sent,
        &Localized {
            lang: "de",
            subject: "Acme-Code zur E-Mail-Bestätigung",
            text: "Ihr Acme-Bestätigungscode lautet: {code}\n\nDieser Code läuft in 10 Minuten ab.\n\n\
                   Wenn Sie diesen Code nicht angefordert haben, ignorieren Sie diese E-Mail.\n",
            html: &["Ihr Acme-Bestätigungscode", "Dieser Code läuft in 10 Minuten ab."],
            sms: "{code} ist Ihr Acme-Bestaetigungscode. Er laeuft in 5 Minuten ab.",
        },
    );
}

#[tokio::test]
async fn a_browser_preferring_french_by_q_value_gets_french_messages() {
    let app = spawn_app().await;

    // Italian is not offered; of the rest, French has the higher weight.
    let sent = messages_for(&app, "reset", None, Some("en;q=0.5, it, fr;q=0.8")).await;

    assert_localized(
        &sent,
        &Localized {
            lang: "fr",
            subject: "Code de réinitialisation du mot de passe Acme",
            text: "Votre code de vérification Acme est : {code}\n\nCe code expire dans 10 minutes.\n\n\
                   Si vous n'avez pas demandé ce code, ignorez cet e-mail.\n",
            html: &["Votre code de vérification Acme", "Ce code expire dans 10 minutes."],
            sms: "{code} est votre code de verification Acme. Il expire dans 5 minutes.",
        },
    );
}

#[tokio::test]
async fn a_postmark_email_carries_the_server_token_the_outbound_stream_and_escaped_html() {
    let app = spawn_app_with(POSTMARK_AND_MESSAGING_SERVICE).await;
    let email = random_email();
    app.seed_user(&email, "active").await;

    let (status, body) = json_of(request_code(&app, &email, "reset", None, None).await).await;
    assert_eq!(status, 200, "{body}");

    let mail = only_delivery_to(&app, &email).await;
    assert_eq!(mail.method.as_str(), "POST");
    assert_eq!(mail.url.path(), "/email");
    assert_eq!(header(&mail, "x-postmark-server-token"), MAIL_KEY);
    assert_eq!(header(&mail, "content-type"), "application/json");
    let sent: Value = mail.body_json().expect("a JSON body");
    let code = code_in(&message_text(&mail));
    // Plain text is not HTML: the app name goes in as it is.
    assert_eq!(
        sent,
        json!({
            "From": "Acme <login@acme.test>",
            "To": email,
            "Subject": "Acme & Co <Beta> Password Reset Code",
            "TextBody": format!(
                "Your Acme & Co <Beta> verification code is: {code}\n\nThis code will expire in 10 minutes.\n\n\
                 If you didn't request this code, please ignore this email.\n"
            ),
            "HtmlBody": sent["HtmlBody"],
            "MessageStream": "outbound",
        })
    );
    let html = sent["HtmlBody"].as_str().expect("HtmlBody is a string");
    assert_html_carries(html, &code, "en", &["Your Acme &amp; Co &lt;Beta&gt; Verification Code"]);
    assert!(!html.contains("<Beta>") && !html.contains("Acme & Co"), "unescaped app name in the HTML: {html}");
    assert_code_verifies(&app, &body["otp_id"], &code).await;
}

#[tokio::test]
async fn an_sms_through_a_messaging_service_has_no_from_and_ends_with_the_webotp_line() {
    let app = spawn_app_with(POSTMARK_AND_MESSAGING_SERVICE).await;
    let phone = random_phone();

    let (status, body) = json_of(request_code(&app, &phone, "register", None, None).await).await;
    assert_eq!(status, 200, "{body}");

    let sms = only_delivery_to(&app, &phone).await;
    assert_eq!(sms.url.path(), format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"));
    assert_eq!(header(&sms, "authorization"), twilio_basic_auth());
    assert_eq!(header(&sms, "content-type"), "application/x-www-form-urlencoded");
    let text = message_text(&sms);
    let code = code_in(&text);
    let expected_body = format!(
        "{code} is your Acme & Co <Beta> verification code. It expires in 5 minutes.\n\n@login.acme.test #{code}"
    );
    assert_eq!(
        sorted_form_without_validity(&sms),
        [("Body", expected_body.as_str()), ("MessagingServiceSid", MESSAGING_SERVICE_SID), ("To", phone.as_str())]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_fits_one_gsm7_segment(&text);
    assert_code_verifies(&app, &body["otp_id"], &code).await;
}

// ---------------------------------------------------------------------------
// When the provider fails
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_mail_api_failing_with_500_is_tried_twice_then_the_verify_request_fails_with_send_failed() {
    let app = spawn_app().await;
    let email = random_email();
    provider_answers(&app, &email, provider_error(&email, 500), ALWAYS).await;

    let started = Instant::now();
    let resp = request_code(&app, &email, "verify", None, None).await;
    let took = started.elapsed();

    assert_send_failed(resp, "email").await;
    let calls = deliveries_to(&app, &email).await;
    assert_eq!(calls.len(), 2, "one try and one retry");
    assert!(took >= Duration::from_millis(250), "no backoff before the retry: answered in {took:?}");
    let code = code_in(&message_text(&calls[0]));
    let otp_id = assert_code_withdrawn(&app, &email, &code).await;
    assert_log_keeps_secrets(&app, &otp_id, &code).await;
}

#[tokio::test]
async fn a_twilio_429_is_retried_and_the_second_try_delivers_a_working_code() {
    let app = spawn_app().await;
    let phone = random_phone();
    provider_answers(&app, &phone, twilio_error(429, 20429, "Too Many Requests"), 1).await;

    let (status, body) = json_of(request_code(&app, &phone, "register", None, None).await).await;

    assert_eq!(status, 200, "{body}{}", failures_logged(&app));
    let calls = deliveries_to(&app, &phone).await;
    assert_eq!(calls.len(), 2, "one refused try and one retry");
    assert_eq!(sorted_form(&calls[0]), sorted_form(&calls[1]), "the retry sends the same message");
    let code = code_in(&message_text(&calls[1]));
    assert_code_verifies(&app, &body["otp_id"], &code).await;
}

#[tokio::test]
async fn a_mail_api_that_hangs_is_cut_off_when_the_delivery_timeout_is_spent_then_send_failed() {
    let app = spawn_app_with(ONE_SECOND_TIMEOUT).await;
    let email = random_email();
    let hanging = ResponseTemplate::new(200).set_body_json(json!({"id": "late"})).set_delay(Duration::from_secs(6));
    provider_answers(&app, &email, hanging, ALWAYS).await;

    let started = Instant::now();
    let resp = request_code(&app, &email, "register", None, None).await;
    let took = started.elapsed();

    assert_send_failed(resp, "email").await;
    eprintln!("a 1000 ms delivery timeout spent on one hanging call: answered in {took:?}");
    // DELIVERY_TIMEOUT_MS bounds the whole delivery: no time is left for a retry.
    assert!(took >= Duration::from_millis(1000), "gave up before the timeout: {took:?}");
    assert!(took < Duration::from_millis(1000 + 1700), "the timeout did not bound the delivery: {took:?}");
    let calls = deliveries_to(&app, &email).await;
    assert_eq!(calls.len(), 1, "no time left for a retry");
    assert_code_withdrawn(&app, &email, &code_in(&message_text(&calls[0]))).await;
}

#[tokio::test]
async fn twilio_refusing_the_credentials_is_not_retried_and_the_reset_request_fails_with_send_failed() {
    let app = spawn_app().await;
    let phone = random_phone();
    provider_answers(&app, &phone, twilio_error(401, 20003, "Authenticate"), ALWAYS).await;

    let resp = request_code(&app, &phone, "reset", None, None).await;

    assert_send_failed(resp, "phone").await;
    let calls = deliveries_to(&app, &phone).await;
    assert_eq!(calls.len(), 1, "a 401 is not retried");
    let code = code_in(&message_text(&calls[0]));
    let otp_id = assert_code_withdrawn(&app, &phone, &code).await;
    assert_log_keeps_secrets(&app, &otp_id, &code).await;
}

#[tokio::test]
async fn a_number_twilio_calls_invalid_is_a_validation_error_without_a_retry() {
    let app = spawn_app().await;

    for (twilio_code, purpose) in [(21211, "register"), (21614, "reset")] {
        let phone = random_phone();
        let complaint = format!("The 'To' number {phone} is not a valid phone number. {PROVIDER_DETAIL}");
        provider_answers(&app, &phone, twilio_error(400, twilio_code, &complaint), ALWAYS).await;

        let resp = request_code(&app, &phone, purpose, None, None).await;

        let (status, body) = json_of(resp).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("VALIDATION_ERROR")), "Twilio {twilio_code}: {body}");
        let calls = deliveries_to(&app, &phone).await;
        assert_eq!(calls.len(), 1, "Twilio {twilio_code} is not retried");
        let code = code_in(&message_text(&calls[0]));
        assert_reveals_nothing(&body.to_string(), &code);
        assert!(!body.to_string().contains(&twilio_code.to_string()), "Twilio's error code in the answer: {body}");
        assert_code_withdrawn(&app, &phone, &code).await;
    }
}

#[tokio::test]
async fn without_enumeration_protection_a_failed_login_sms_is_reported_at_once() {
    let app = spawn_app_with(NO_ENUMERATION_PROTECTION).await;
    let phone = random_phone();
    app.seed_user(&phone, "active").await;
    provider_answers(&app, &phone, provider_error(&phone, 503), ALWAYS).await;

    let resp = request_code(&app, &phone, "login", None, None).await;

    assert_send_failed(resp, "phone").await;
    let calls = deliveries_to(&app, &phone).await;
    assert_eq!(calls.len(), 2, "one try and one retry, before the answer");
    assert_code_withdrawn(&app, &phone, &code_in(&message_text(&calls[0]))).await;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `POST /api/auth/otp/request/` with an optional `locale` field and `Accept-Language` header.
pub(crate) async fn request_code(
    app: &TestApp,
    destination: &str,
    purpose: &str,
    locale: Option<&str>,
    accept_language: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "destination": destination, "purpose": purpose });
    if let Some(locale) = locale {
        body["locale"] = json!(locale);
    }
    let mut request = app.client.post(app.url("/api/auth/otp/request/")).json(&body);
    if let Some(accept_language) = accept_language {
        request = request.header("accept-language", accept_language);
    }
    let response = app.send(request).await;
    // A delivery before the answer that broke a provider's rules is the
    // failure to report, before whatever the client was answered.
    app.assert_provider_contract_kept_for(destination);
    response
}

/// One code by email and one by SMS, for fresh destinations (with accounts,
/// for a login), asked for the same way; what the providers received.
struct Sent {
    email: Value,
    email_code: String,
    email_otp_id: Value,
    sms: String,
    sms_code: String,
    sms_otp_id: Value,
}

async fn messages_for(app: &TestApp, purpose: &str, locale: Option<&str>, accept_language: Option<&str>) -> Sent {
    let (email, phone) = (random_email(), random_phone());
    let mut otp_ids = Vec::new();
    for destination in [&email, &phone] {
        // A login or reset code verifies only for an active account's destination.
        if purpose == "login" || purpose == "reset" {
            app.seed_user(destination, "active").await;
        }
        let (status, body) = json_of(request_code(app, destination, purpose, locale, accept_language).await).await;
        assert_eq!(status, 200, "{purpose} code for {destination}: {body}{}", failures_logged(app));
        otp_ids.push(body["otp_id"].clone());
    }
    // A login code is delivered after the answer.
    let mail = only(wait_for_deliveries(app, &email, 1).await, &email);
    let sms = only(wait_for_deliveries(app, &phone, 1).await, &phone);
    let (sms_otp_id, email_otp_id) = (otp_ids.pop().unwrap(), otp_ids.pop().unwrap());
    Sent {
        email: mail.body_json().expect("a JSON email"),
        email_code: code_in(&message_text(&mail)),
        email_otp_id,
        sms: message_text(&sms),
        sms_code: code_in(&message_text(&sms)),
        sms_otp_id,
    }
}

fn english_email_text(code: &str) -> String {
    format!(
        "Your Acme verification code is: {code}\n\nThis code will expire in 10 minutes.\n\n\
         If you didn't request this code, please ignore this email.\n"
    )
}

fn english_sms(code: &str) -> String {
    format!("{code} is your Acme verification code. It expires in 5 minutes.")
}

/// The HTML of an email: its language, the code standing alone in an
/// element, and these (already escaped) texts.
fn assert_html_carries(html: &str, code: &str, lang: &str, texts: &[&str]) {
    assert!(html.contains(&format!("lang=\"{lang}\"")), "not marked as {lang}: {html}");
    assert!(html.contains(&format!(">{code}<")), "no code {code} in the HTML: {html}");
    for text in texts {
        assert!(html.contains(text), "{text:?} missing from the HTML: {html}");
    }
}

/// Requests the fake providers received carrying a message to `destination`,
/// oldest first (every try, whatever it was answered). Fails if one broke a
/// provider's rules (tests/api/providers), even if the Worker coped.
pub(crate) async fn deliveries_to(app: &TestApp, destination: &str) -> Vec<Request> {
    let server = if is_email(destination) { &app.worker.mail } else { &app.worker.sms };
    let received = server.received_requests().await.expect("request recording is on");
    app.assert_provider_contract_kept_for(destination);
    received.into_iter().filter(|r| addressed_to(r, destination)).collect()
}

/// Polls until at least `count` requests for `destination` arrived (a login
/// is delivered after the answer); gives up after 10 s.
pub(crate) async fn wait_for_deliveries(app: &TestApp, destination: &str, count: usize) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = deliveries_to(app, destination).await;
        if calls.len() >= count || Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn only_delivery_to(app: &TestApp, destination: &str) -> Request {
    only(deliveries_to(app, destination).await, destination)
}

fn only(mut calls: Vec<Request>, destination: &str) -> Request {
    assert_eq!(calls.len(), 1, "expected exactly one message to {destination}");
    calls.remove(0)
}

fn is_email(destination: &str) -> bool {
    destination.contains('@')
}

fn addressed_to(request: &Request, destination: &str) -> bool {
    if is_email(destination) {
        // Resend: `to: [address]`; Postmark: `To: address`.
        request.body_json::<Value>().is_ok_and(|m| m["to"] == json!([destination]) || m["To"] == destination)
    } else {
        form_field(request, "To").as_deref() == Some(destination)
    }
}

/// The text that carries the code: an email's plain text, an SMS's body.
pub(crate) fn message_text(request: &Request) -> String {
    match request.body_json::<Value>() {
        Ok(mail) => {
            mail.get("text").or(mail.get("TextBody")).and_then(Value::as_str).expect("no text body").to_string()
        }
        Err(_) => form_field(request, "Body").expect("an SMS without a Body"),
    }
}

/// The six-digit code in a message.
pub(crate) fn code_in(text: &str) -> String {
    let runs: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|run| run.len() == 6).collect();
    assert!(!runs.is_empty(), "no six-digit code in {text:?}");
    runs[0].to_string()
}

pub(crate) fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

pub(crate) fn form_field(request: &Request, name: &str) -> Option<String> {
    form(request).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Every form field, by name: the exact set a request carried.
pub(crate) fn sorted_form(request: &Request) -> Vec<(String, String)> {
    let mut fields = form(request);
    fields.sort();
    fields
}

/// `sorted_form` without `ValidityPeriod`, after checking it is what is
/// left of the 300 s code's life (Twilio drops the SMS once it passed).
fn sorted_form_without_validity(request: &Request) -> Vec<(String, String)> {
    let mut fields = sorted_form(request);
    let at = fields.iter().position(|(k, _)| k == "ValidityPeriod").expect("a ValidityPeriod");
    let seconds: u64 = fields.remove(at).1.parse().expect("ValidityPeriod in whole seconds");
    assert!((295..=300).contains(&seconds), "ValidityPeriod {seconds} for a 300 s code");
    fields
}

pub(crate) fn header(request: &Request, name: &str) -> String {
    let value = request.headers.get(name).unwrap_or_else(|| panic!("no {name} header on {}", request.url));
    value.to_str().unwrap().to_string()
}

pub(crate) fn twilio_basic_auth() -> String {
    format!("Basic {}", Base64::encode_string(format!("{TWILIO_SID}:{TWILIO_TOKEN}").as_bytes()))
}

/// GSM 03.38's basic character set: a body made of these, at most 160 of
/// them, is one SMS segment.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡\
                          ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

fn assert_fits_one_gsm7_segment(text: &str) {
    let outside: String = text.chars().filter(|c| !GSM7_BASIC.contains(*c)).collect();
    assert!(outside.is_empty(), "characters outside GSM-7 ({outside:?}) in {text:?}");
    assert!(text.chars().count() <= 160, "{} characters: {text:?}", text.chars().count());
}

async fn assert_code_verifies(app: &TestApp, otp_id: &Value, code: &str) {
    let otp_id = otp_id.as_str().expect("otp_id is a string");
    let (status, body) = json_of(app.verify_otp(otp_id, code).await).await;
    assert_eq!(status, 200, "the code {code} from the message does not verify: {body}{}", failures_logged(app));
}

/// From now on, the fake provider of `destination`'s channel gives `answer`
/// to messages for `destination` (and only those), up to `times` times.
///
/// Mounted for good, not scoped: wiremock 0.6.5 sorts its mocks by priority
/// on every request but deactivates a scoped mock by its original index, so
/// dropping a `MockGuard` on a shared server switches off some other mock
/// (typically the default 200/201 answer, and every other test then gets
/// 404s). A mock that matches only this test's unique destination is
/// harmless once the test is over.
pub(crate) async fn provider_answers(app: &TestApp, destination: &str, answer: ResponseTemplate, times: u64) {
    let (server, needle) = if is_email(destination) {
        (&app.worker.mail, destination.to_string())
    } else {
        (&app.worker.sms, format!("To={}", destination.replace('+', "%2B")))
    };
    Mock::given(method("POST"))
        .and(body_string_contains(needle))
        .respond_with(answer)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(server)
        .await;
}

/// The provider of `destination`'s channel failing on its side (5xx), in
/// its own error body, with details the client must never see. Resend
/// documents `internal_server_error` (500); Twilio 20500 Internal Server
/// Error and 20503 Service Unavailable (www.twilio.com/docs/api/errors/20500, /20503).
pub(crate) fn provider_error(destination: &str, status: u16) -> ResponseTemplate {
    let detail = format!("database shard 7 unavailable ({PROVIDER_DETAIL})");
    if is_email(destination) {
        providers::resend_error(status, "internal_server_error", &detail, None)
    } else {
        providers::twilio_error(status, if status == 503 { 20503 } else { 20500 }, &detail, None)
    }
}

/// Twilio's error body, with details the client must never see.
pub(crate) fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    providers::twilio_error(status, code, &format!("{message} ({PROVIDER_DETAIL})"), None)
}

/// The client's answer when delivery failed: 502 naming the channel, and nothing more.
pub(crate) async fn assert_send_failed(resp: reqwest::Response, channel: &str) {
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body, json!({ "code": "SEND_FAILED", "message": format!("Failed to send OTP to {channel}") }));
}

/// No credential, provider detail or code in `text`.
pub(crate) fn assert_reveals_nothing(text: &str, code: &str) {
    for secret in [MAIL_KEY, TWILIO_TOKEN, TWILIO_SID, PROVIDER_DETAIL, &twilio_basic_auth()[6..]] {
        assert!(!text.contains(secret), "{secret:?} revealed in {text}");
    }
    assert!(!has_digit_run(text, code), "the code {code} revealed in {text}");
}

fn has_digit_run(text: &str, run: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit()).any(|r| r == run)
}

/// The one code requested for `destination` was invalidated (polled: after a
/// login the failure is recorded after the answer), and verifying the code
/// that was sent says it expired. Returns its id.
pub(crate) async fn assert_code_withdrawn(app: &TestApp, destination: &str, code: &str) -> String {
    let query = format!(
        "SELECT id, invalidated_at, withdrawn_at, user_id, purpose FROM otp_requests WHERE destination = {}",
        sql_str(destination)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let row = loop {
        let rows = app.d1(&query).await;
        assert_eq!(rows.len(), 1, "codes requested for {destination}: {rows:?}");
        if !rows[0]["invalidated_at"].is_null() || !rows[0]["withdrawn_at"].is_null() {
            break rows[0].clone();
        }
        assert!(Instant::now() < deadline, "the code for {destination} was never withdrawn: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let otp_id = row["id"].as_str().expect("an id").to_string();
    if row["withdrawn_at"].is_null() {
        // Sent before the answer, which told the client: the code is void.
        assert_invalid_otp(app.verify_otp(&otp_id, code).await, "OTP expired").await;
    } else {
        // A queued login code: unlinked from its account, it answers even the
        // code that was sent as a decoy does (enumeration.rs compares them).
        assert_eq!((row["purpose"].as_str(), &row["user_id"]), (Some("login"), &Value::Null), "{row}");
        assert_invalid_otp(app.verify_otp(&otp_id, code).await, "Invalid OTP").await;
    }
    otp_id
}

/// For a failure message: the deliveries the Worker logged as failed, and why.
pub(crate) fn failures_logged(app: &TestApp) -> String {
    let log = app.worker_log();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("otp_delivery_failed")).collect();
    format!("\nfailed deliveries in the Worker's log:\n{}", failures.join("\n"))
}

/// Once the Worker logged the failed delivery of `otp_id`, its whole log has
/// neither the code nor a credential.
pub(crate) async fn assert_log_keeps_secrets(app: &TestApp, otp_id: &str, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = app.worker_log();
        if log.lines().any(|l| l.contains("otp_delivery_failed") && l.contains(otp_id)) {
            break log;
        }
        assert!(Instant::now() < deadline, "no otp_delivery_failed for {otp_id} in the Worker's log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for secret in [MAIL_KEY, TWILIO_TOKEN, &twilio_basic_auth()[6..]] {
        assert!(!log.contains(secret), "{secret:?} in the Worker's log");
    }
    assert!(!has_digit_run(&log, code), "the code {code} is in the Worker's log");
}
