//! The providers' published specifications, vendored under
//! `tests/fixtures/providers/` (README.md there says where each comes from),
//! compiled into JSON Schema validators once per test process.

use std::sync::OnceLock;

use serde_json::{json, Value};

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (`CreateMessage`) of twilio/twilio-oai.
const TWILIO: &str = include_str!("../../fixtures/providers/twilio_api_v2010.create_message.json");
/// `POST /emails` of resend/resend-openapi.
const RESEND: &str = include_str!("../../fixtures/providers/resend.send_email.json");

pub const TWILIO_MESSAGES_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";

pub fn twilio() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(TWILIO).expect("the vendored Twilio spec is not JSON"))
}

pub fn resend() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(RESEND).expect("the vendored Resend spec is not JSON"))
}

/// `CreateMessageRequest`: the form body of `CreateMessage`.
pub fn twilio_request_schema() -> &'static Value {
    &twilio()["paths"][TWILIO_MESSAGES_PATH]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        ["schema"]
}

/// The `AccountSid` path parameter's schema (its `pattern`).
pub fn twilio_account_sid_schema() -> &'static Value {
    let parameters = twilio()["paths"][TWILIO_MESSAGES_PATH]["post"]["parameters"].as_array().unwrap();
    &parameters.iter().find(|p| p["name"] == "AccountSid").expect("no AccountSid parameter")["schema"]
}

/// The `Idempotency-Key` header parameter's schema (its `maxLength`).
pub fn resend_idempotency_key_schema() -> &'static Value {
    let parameters = resend()["paths"]["/emails"]["post"]["parameters"].as_array().unwrap();
    &parameters.iter().find(|p| p["name"] == "Idempotency-Key").expect("no Idempotency-Key parameter")["schema"]
}

/// `CreateMessageRequest` as a validator. OpenAPI 3.0 schemas follow JSON
/// Schema draft 4 (Wright-00); formats (`uri`, `date-time`) are asserted,
/// Twilio's own (`phone-number`) are unknown and ignored.
pub fn twilio_request_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let root = with_components(twilio_request_schema(), twilio());
        jsonschema::draft4::options().should_validate_formats(true).build(&root).expect("CreateMessageRequest")
    })
}

/// `SendEmailRequest` as a validator (OpenAPI 3.1: JSON Schema 2020-12).
pub fn resend_request_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema = &resend()["paths"]["/emails"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let root = with_components(schema, resend());
        jsonschema::draft202012::options().should_validate_formats(true).build(&root).expect("SendEmailRequest")
    })
}

/// The schema with the document's `components` beside it, so its
/// `#/components/...` references resolve.
fn with_components(schema: &Value, doc: &Value) -> Value {
    let mut root = schema.as_object().expect("a schema object").clone();
    root.insert("components".into(), doc["components"].clone());
    Value::Object(root)
}

/// A response schema of the spec made checkable: OpenAPI 3.0's
/// `nullable: true` becomes JSON Schema's `type: [T, "null"]` (and an
/// enum's `null`), so the fakes' own answers can be checked in native tests.
pub fn nullable_to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), nullable_to_json_schema(v))).collect();
            if out.remove("nullable") == Some(json!(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(nullable_to_json_schema).collect()),
        other => other.clone(),
    }
}
