//! Resend's rules for `POST /emails`, in the order the real service applies
//! them: its edge refuses a request without `User-Agent` before the API sees
//! it; then the API key; then the request (`Idempotency-Key`, the body
//! against `SendEmailRequest` of the vendored spec, the addresses); then the
//! idempotency store (in `Fake::verdict`, which knows what was sent).

use serde_json::{json, Value};
use wiremock::Request;

use super::{bare_address, header, is_mailbox, spec, type_of, Answer, Breach, Checked, Credentials, USER_AGENT};

pub const SPEC_SOURCE: &str =
    "resend/resend-openapi resend.json @ fd6f395f2114, info.version 1.5.0: paths./emails.post (SendEmailRequest)";
pub const USER_AGENT_SOURCE: &str = "https://resend.com/docs/api-reference/introduction#user-agent, \
                                     https://resend.com/docs/knowledge-base/403-error-1010";
pub const ERRORS_SOURCE: &str = "https://resend.com/docs/api-reference/errors";
pub const AUTH_SOURCE: &str = "https://resend.com/docs/api-reference/introduction#authentication, \
                               https://resend.com/docs/api-reference/errors (missing_api_key, invalid_api_key)";
pub const IDEMPOTENCY_SOURCE: &str = "https://resend.com/docs/dashboard/emails/idempotency-keys";
/// The errors page names `validation_error` but not this message; Resend's
/// maintainers discuss this exact 422 answer in the issue.
pub const INVALID_TO_SOURCE: &str =
    "https://github.com/resend/resend-python/issues/65 (422, \"Invalid `to` field...\")";

/// Resend's error body (`ErrorResponse` of Resend's SDKs: `statusCode`, `name`, `message`).
pub fn error(status: u16, name: &str, message: &str) -> Answer {
    Answer::json(status, json!({ "statusCode": status, "name": name, "message": message }))
}

/// `SendEmailResponse`: `{id}`.
pub fn accepted() -> Answer {
    Answer::json(200, json!({ "id": crate::helpers::random_uuid() }))
}

pub fn invalid_idempotent_request() -> Answer {
    error(409, "invalid_idempotent_request", "Same idempotency key used with a different request payload.")
}

const ADDRESS_FORMAT: &str =
    "The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.";

pub fn check(request: &Request, credentials: &Credentials) -> Checked {
    let mut checked = Checked::new("Resend");
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    if let Some(body) = &body {
        checked.destinations = destinations(body);
        checked.text = body["text"].as_str().map(str::to_string);
    }

    // Blocked at Resend's edge (Cloudflare error 1010), before the API: no JSON error body.
    match header(request, "user-agent") {
        None => {
            checked.refuse(
                Breach::new("User-Agent is present", USER_AGENT_SOURCE, "no User-Agent header"),
                Answer::text(403, "error code: 1010"),
            );
            return checked;
        }
        Some(ua) if ua != USER_AGENT => checked.flag(Breach::new(
            "User-Agent is otp-edge/<crate version>",
            super::PROJECT_USER_AGENT_RULE,
            format!("User-Agent is {ua:?}, not {USER_AGENT:?}"),
        )),
        Some(_) => {}
    }

    if request.url.path() != "/emails" {
        let detail = format!("{} is not an endpoint of the fake (POST /emails)", request.url.path());
        checked.refuse(
            Breach::new("the endpoint exists", ERRORS_SOURCE, detail),
            error(404, "not_found", "The requested endpoint does not exist."),
        );
        return checked;
    }
    if request.method.as_str() != "POST" {
        checked.refuse(
            Breach::new("POST /emails", ERRORS_SOURCE, format!("{} /emails", request.method)),
            error(405, "method_not_allowed", "Method is not allowed for the requested path."),
        );
        return checked;
    }

    match header(request, "authorization") {
        None => checked.refuse(
            Breach::new("Authorization: Bearer <API key>", AUTH_SOURCE, "no Authorization header"),
            error(401, "missing_api_key", "Missing API key in the authorization header."),
        ),
        Some(value) if value.strip_prefix("Bearer ") != Some(credentials.mail_key.as_str()) => checked.refuse(
            Breach::new("Authorization: Bearer <API key>", AUTH_SOURCE, format!("Authorization is {value:?}")),
            error(403, "invalid_api_key", "API key is invalid."),
        ),
        Some(_) => {}
    }
    if checked.refusal.is_some() {
        return checked;
    }

    let key = header(request, "idempotency-key");
    if let Some(key) = key {
        // The spec's maxLength (256); the docs: "between 1-256 chars".
        let max = spec::resend_idempotency_key_schema()["maxLength"].as_u64().unwrap() as usize;
        let length = key.chars().count();
        if length == 0 || length > max {
            checked.refuse(
                Breach::new(
                    "Idempotency-Key has 1 to 256 characters",
                    "resend.json @ fd6f395f2114 paths./emails.post.parameters[Idempotency-Key].schema.maxLength; \
                     https://resend.com/docs/dashboard/emails/idempotency-keys",
                    format!("Idempotency-Key has {length} characters"),
                ),
                error(400, "invalid_idempotency_key", "The key must be between 1-256 chars."),
            );
            return checked;
        }
    }

    let Some(body) = body else {
        checked.refuse(
            Breach::new("the body is a JSON SendEmailRequest", SPEC_SOURCE, "the body is not JSON"),
            error(400, "validation_error", "We found an error with one or more fields in the request."),
        );
        return checked;
    };
    check_body(&body, &mut checked);

    if checked.refusal.is_none() {
        checked.idempotency = key.map(|k| (k.to_string(), body));
    }
    checked
}

/// `body` against `SendEmailRequest`, and the addresses in it.
fn check_body(body: &Value, checked: &mut Checked) {
    let validator = spec::resend_request_validator();
    let mut missing = Vec::new();
    for e in validator.iter_errors(body) {
        let at = e.instance_path().to_string();
        if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
            missing.push(property.as_str().unwrap_or_default().to_string());
        } else if at == "/to" || at.starts_with("/to/") {
            checked.refuse(
                Breach::new(
                    "`to` is an address or an array of 1 to 50 addresses",
                    SPEC_SOURCE,
                    format!("at {at}: {e}"),
                ),
                error(422, "validation_error", &format!("Invalid `to` field. {ADDRESS_FORMAT}")),
            );
        } else if at == "/from" {
            checked.refuse(
                Breach::new("`from` is an address", SPEC_SOURCE, format!("at {at}: {e}")),
                error(422, "invalid_from_address", &format!("Invalid `from` field. {ADDRESS_FORMAT}")),
            );
        } else {
            checked.refuse(
                Breach::new("the body is a SendEmailRequest", SPEC_SOURCE, format!("at '{at}': {e}")),
                error(400, "validation_error", "We found an error with one or more fields in the request."),
            );
        }
    }
    if let Some(first) = missing.first() {
        // The errors page: 422 missing_required_field, "the message will list the missing fields".
        let breach = Breach::new(
            "SendEmailRequest's required fields (from, to, subject)",
            SPEC_SOURCE,
            format!("missing: {}", missing.join(", ")),
        );
        // Answered before the other errors: put it first.
        checked.breaches.insert(0, breach);
        checked.refusal = Some(error(422, "missing_required_field", &format!("Missing `{first}` field.")));
        return;
    }
    if checked.refusal.is_some() {
        return;
    }
    // Not documented as refused (the schema allows other properties): recorded, not answered.
    let known = spec::resend()["components"]["schemas"]["SendEmailRequest"]["properties"].as_object().unwrap();
    for name in body.as_object().into_iter().flat_map(|o| o.keys()).filter(|k| !known.contains_key(*k)) {
        checked.flag(Breach::new(
            "only SendEmailRequest properties",
            SPEC_SOURCE,
            format!("{name} is not a property of SendEmailRequest"),
        ));
    }
    if let Some(from) = body["from"].as_str().filter(|f| !is_mailbox(f)) {
        checked.refuse(
            Breach::new("`from` is `address` or `Name <address>`", ERRORS_SOURCE, format!("from is {from:?}")),
            error(422, "invalid_from_address", &format!("Invalid `from` field. {ADDRESS_FORMAT}")),
        );
    }
    let to: Vec<&str> = match &body["to"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        other => panic!("`to` passed the schema as a {}", type_of(other)),
    };
    for address in to.into_iter().filter(|a| !is_mailbox(a)) {
        checked.refuse(
            Breach::new("`to` holds addresses", INVALID_TO_SOURCE, format!("to holds {address:?}")),
            error(422, "validation_error", &format!("Invalid `to` field. {ADDRESS_FORMAT}")),
        );
    }
}

/// The addresses of `to` (a string or an array of strings).
fn destinations(body: &Value) -> Vec<String> {
    match &body["to"] {
        Value::String(one) => vec![bare_address(one)],
        Value::Array(many) => many.iter().filter_map(Value::as_str).map(bare_address).collect(),
        _ => vec![],
    }
}
