//! Postmark's rules for `POST /email`. Postmark publishes no machine-readable
//! spec: the fields, their types and the error codes are written here from
//! its developer documentation (tests/fixtures/providers/postmark.md).

use serde_json::{json, Value};
use wiremock::Request;

use super::{
    bare_address, check_project_user_agent, header, is_mailbox, type_of, Answer, Breach, Checked, Credentials,
};

pub const EMAIL_SOURCE: &str = "https://postmarkapp.com/developer/api/email-api#send-a-single-email";
pub const ERRORS_SOURCE: &str = "https://postmarkapp.com/developer/api/overview#error-codes";
pub const AUTH_SOURCE: &str = "https://postmarkapp.com/developer/api/overview#authentication \
                               (401, ErrorCode 10 Bad or missing API token)";
/// Since 2023-11-28 Postmark refuses missing headers (415) and mistyped fields (422, ErrorCode 403).
pub const VALIDATION_SOURCE: &str =
    "https://postmarkapp.com/updates/changes-to-email-api-validation-action-may-be-required";
pub const REQUIRED_SOURCE: &str =
    "https://postmarkapp.com/support/article/troubleshooting-422-unprocessable-entity-errors";

/// The documented fields of a single email and their JSON types.
const FIELDS: [(&str, &str); 15] = [
    ("From", "string"),
    ("To", "string"),
    ("Cc", "string"),
    ("Bcc", "string"),
    ("Subject", "string"),
    ("Tag", "string"),
    ("HtmlBody", "string"),
    ("TextBody", "string"),
    ("ReplyTo", "string"),
    ("Headers", "array"),
    ("TrackOpens", "boolean"),
    ("TrackLinks", "string"),
    ("Metadata", "object"),
    ("Attachments", "array"),
    ("MessageStream", "string"),
];

/// Postmark's error body `{ErrorCode, Message}`.
pub fn error(status: u16, error_code: i64, message: &str) -> Answer {
    Answer::json(status, json!({ "ErrorCode": error_code, "Message": message }))
}

/// The documented success body.
pub fn accepted(checked: &Checked) -> Answer {
    Answer::json(
        200,
        json!({
            "To": checked.destinations.join(", "),
            "SubmittedAt": otp_edge::domain::time::rfc3339_millis(crate::helpers::now_ms()),
            "MessageID": crate::helpers::random_uuid(),
            "ErrorCode": 0,
            "Message": "OK",
        }),
    )
}

fn invalid_email_request(checked: &mut Checked, rule: &'static str, source: &'static str, message: String) {
    checked.refuse(Breach::new(rule, source, message.clone()), error(422, 300, &message));
}

pub fn check(request: &Request, credentials: &Credentials) -> Checked {
    let mut checked = Checked::new("Postmark");
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    if let Some(body) = &body {
        checked.destinations = destinations(body);
        checked.text = body["TextBody"].as_str().map(str::to_string);
    }
    check_project_user_agent(request, &mut checked);

    if request.url.path() != "/email" || request.method.as_str() != "POST" {
        let detail = format!("{} {} (the fake knows POST /email)", request.method, request.url.path());
        // "404 — Entity doesn't exist"; the body is not documented.
        checked.refuse(
            Breach::new("POST /email", "https://postmarkapp.com/developer/api/overview#response-codes", detail),
            Answer::text(404, ""),
        );
        return checked;
    }

    match header(request, "x-postmark-server-token") {
        None => checked.refuse(
            Breach::new("X-Postmark-Server-Token is the server token", AUTH_SOURCE, "no X-Postmark-Server-Token"),
            error(401, 10, "Bad or missing API token: the request did not contain the X-Postmark-Server-Token header."),
        ),
        // "The header name and value are case insensitive."
        Some(token) if !token.eq_ignore_ascii_case(&credentials.mail_key) => checked.refuse(
            Breach::new("X-Postmark-Server-Token is the server token", AUTH_SOURCE, format!("token {token:?}")),
            error(401, 10, "Bad or missing API token: the X-Postmark-Server-Token given is not a valid server token."),
        ),
        Some(_) => {}
    }
    if checked.refusal.is_some() {
        return checked;
    }

    for name in ["content-type", "accept"] {
        let value = header(request, name).unwrap_or_default();
        if !value.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json") {
            // 415 Unsupported Media Type; its body is not documented.
            checked.refuse(
                Breach::new(
                    "Accept and Content-Type are application/json",
                    VALIDATION_SOURCE,
                    format!("{name}: {value:?}"),
                ),
                Answer::text(415, ""),
            );
        }
    }
    if checked.refusal.is_some() {
        return checked;
    }

    let Some(body) = body.filter(Value::is_object) else {
        checked.refuse(
            Breach::new("the body is a JSON object", VALIDATION_SOURCE, "the body is not a JSON object"),
            error(422, 402, "Invalid JSON"),
        );
        return checked;
    };
    check_fields(&body, &mut checked);
    checked
}

fn check_fields(body: &Value, checked: &mut Checked) {
    let fields = body.as_object().unwrap();
    for (name, value) in fields {
        match FIELDS.iter().find(|(known, _)| known == name) {
            Some((_, expected)) if value.is_null() || type_of(value) == *expected => {}
            Some((_, expected)) => checked.refuse(
                Breach::new(
                    "each field has its documented type",
                    VALIDATION_SOURCE,
                    format!("{name} is a {} (documented: {expected}; {EMAIL_SOURCE})", type_of(value)),
                ),
                error(422, 403, &format!("Invalid request field(s) - {name}")),
            ),
            // Not documented as refused: recorded, not answered.
            None => checked.flag(Breach::new(
                "only documented fields",
                EMAIL_SOURCE,
                format!("{name} is not a field of a single email"),
            )),
        }
    }
    if checked.refusal.is_some() {
        return;
    }
    let text = |name: &str| body[name].as_str().filter(|s| !s.trim().is_empty());
    match text("From") {
        None => invalid_email_request(
            checked,
            "From is required",
            REQUIRED_SOURCE,
            "Invalid 'From' address: none given.".into(),
        ),
        Some(from) if !is_mailbox(from) => invalid_email_request(
            checked,
            "From is `address` or `Name <address>`",
            ERRORS_SOURCE,
            format!("Invalid 'From' address: '{from}'."),
        ),
        Some(_) => {}
    }
    match text("To") {
        None => invalid_email_request(
            checked,
            "To is required",
            REQUIRED_SOURCE,
            "Invalid 'To' address: none given.".into(),
        ),
        Some(to) => {
            for address in to.split(',').filter(|a| !is_mailbox(a)) {
                invalid_email_request(
                    checked,
                    "To holds comma-separated addresses",
                    ERRORS_SOURCE,
                    format!("Error parsing 'To': Illegal email address '{}'.", address.trim()),
                );
            }
        }
    }
    if text("Subject").is_none() {
        invalid_email_request(checked, "Subject is required", REQUIRED_SOURCE, "A Subject is required.".into());
    }
    if text("HtmlBody").is_none() && text("TextBody").is_none() {
        invalid_email_request(
            checked,
            "HtmlBody or TextBody is required",
            REQUIRED_SOURCE,
            "Provide either email TextBody or HtmlBody or both.".into(),
        );
    }
}

fn destinations(body: &Value) -> Vec<String> {
    body["To"].as_str().map(|to| to.split(',').map(bare_address).collect()).unwrap_or_default()
}
