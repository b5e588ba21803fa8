//! Twilio's rules for `CreateMessage` (`POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json`), checked against the
//! vendored operation of twilio/twilio-oai and Twilio's error dictionary,
//! and the `X-Twilio-Signature` Twilio puts on its status callbacks.

use std::collections::BTreeMap;

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use wiremock::Request;

use super::{check_project_user_agent, header, random_sid, spec, Answer, Breach, Checked, Credentials};

pub const SPEC_SOURCE: &str = "twilio/twilio-oai spec/json/twilio_api_v2010.json @ d50069b44ea8, info.version 1.0.0: \
                               CreateMessage (CreateMessageRequest)";
pub const AUTH_SOURCE: &str = "https://www.twilio.com/docs/api/errors/20003 (401; causes include credentials of \
                               another account than the one accessed)";
pub const NOT_FOUND_SOURCE: &str = "https://www.twilio.com/docs/api/errors/20404; AccountSid pattern: \
                                    twilio_api_v2010.json @ d50069b44ea8 CreateMessage.parameters[AccountSid]";
const SPEC_SOURCE_AND_400: &str = "twilio_api_v2010.json @ d50069b44ea8 CreateMessageRequest; \
                                   https://www.twilio.com/docs/api/errors/400";
/// Twilio ignores parameters it does not know, with warning 20001.
pub const UNKNOWN_PARAMETER_SOURCE: &str = "https://www.twilio.com/docs/api/errors/20001";
pub const SIGNATURE_SOURCE: &str = "https://www.twilio.com/docs/usage/webhooks/webhooks-security; test vectors: \
                                    twilio/twilio-python tests/unit/test_request_validator.py @ 30368b08ba58";

/// Twilio's exception body `{code, message, more_info, status}`; `more_info`
/// is the error's page (https://www.twilio.com/docs/usage/twilios-response).
pub fn error(status: u16, code: i64, message: &str) -> Answer {
    Answer::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

/// A create-message refusal: Twilio answers them 400
/// (https://help.twilio.com/articles/21923437804315: "Twilio's API returns a
/// HTTP status code 400 and includes a specific 5-digit Twilio error code").
fn refuse(checked: &mut Checked, code: i64, rule: &'static str, source: &'static str, message: String) {
    checked.refuse(Breach::new(rule, source, message.clone()), error(400, code, &message));
}

/// The form fields, in order; none unless the body is form-encoded
/// (https://www.twilio.com/docs/api/errors/21604: a JSON body is not read).
fn form(request: &Request) -> Vec<(String, String)> {
    let content_type = header(request, "content-type").unwrap_or_default();
    if content_type.split(';').next().unwrap_or_default().trim() != "application/x-www-form-urlencoded" {
        return vec![];
    }
    form_urlencoded::parse(&request.body).into_owned().collect()
}

pub fn check(request: &Request, credentials: &Credentials) -> Checked {
    let mut checked = Checked::new("Twilio");
    let fields = form(request);
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    checked.destinations = field("To").map(|t| vec![t.to_string()]).unwrap_or_default();
    checked.text = field("Body").map(str::to_string);
    check_project_user_agent(request, &mut checked);

    let path = request.url.path();
    let account = path.strip_prefix("/2010-04-01/Accounts/").and_then(|rest| rest.strip_suffix("/Messages.json"));
    let pattern = spec::twilio_account_sid_schema()["pattern"].as_str().unwrap();
    let account = match account {
        Some(sid) if request.method.as_str() == "POST" && matches_pattern(pattern, sid) => sid,
        _ => {
            let message = format!("The requested resource {path} was not found");
            checked.refuse(
                Breach::new("POST .../Accounts/{AccountSid}/Messages.json", NOT_FOUND_SOURCE, message.clone()),
                error(404, 20404, &message),
            );
            return checked;
        }
    };

    let authorization = header(request, "authorization").unwrap_or_default();
    let user = authorization
        .strip_prefix("Basic ")
        .and_then(|b64| Base64::decode_vec(b64.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|pair| pair.split_once(':').map(|(user, password)| (user.to_string(), password.to_string())));
    match user {
        Some((user, password)) if user == credentials.twilio_sid && password == credentials.twilio_token => {
            if account != user {
                let detail = format!("the path's AccountSid {account} is not the authenticated account {user}");
                checked.refuse(
                    Breach::new("the path's AccountSid is the Basic auth user", AUTH_SOURCE, detail),
                    error(401, 20003, "Authenticate"),
                );
                return checked;
            }
        }
        _ => {
            let detail = format!("Authorization {authorization:?} is not Basic AccountSid:AuthToken");
            checked.refuse(
                Breach::new("HTTP Basic auth AccountSid:AuthToken", AUTH_SOURCE, detail),
                error(401, 20003, "Authenticate"),
            );
            return checked;
        }
    }
    check_fields(&fields, &mut checked);
    checked
}

fn check_fields(fields: &[(String, String)], checked: &mut Checked) {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    // Required: `To` (CreateMessageRequest.required); one of each x-twilio.conditional group.
    let Some(to) = field("To") else {
        let source = "https://www.twilio.com/docs/api/errors/21604; CreateMessageRequest.required";
        return refuse(checked, 21604, "To is required", source, "A 'To' phone number is required.".into());
    };
    if field("From").is_none() && field("MessagingServiceSid").is_none() {
        let source = "https://www.twilio.com/docs/api/errors/21603; CreateMessage x-twilio.conditional";
        return refuse(
            checked,
            21603,
            "From or MessagingServiceSid",
            source,
            "A 'From' phone number is required.".into(),
        );
    }
    if ["Body", "MediaUrl", "ContentSid"].iter().all(|name| field(name).is_none()) {
        let source = "https://www.twilio.com/docs/api/errors/21602; CreateMessage x-twilio.conditional";
        return refuse(checked, 21602, "Body, MediaUrl or ContentSid", source, "Message body is required.".into());
    }

    let schema = spec::twilio_request_schema();
    let properties = schema["properties"].as_object().unwrap();
    let mut instance = serde_json::Map::new();
    for (name, value) in fields {
        let Some(property) = properties.get(name) else {
            // Twilio accepts the request and ignores the parameter: flagged, not refused.
            checked.flag(Breach::new(
                "only CreateMessageRequest parameters",
                UNKNOWN_PARAMETER_SOURCE,
                format!("{name} is not a parameter of CreateMessage ({SPEC_SOURCE}); Twilio would ignore it"),
            ));
            continue;
        };
        let typed = typed(property, value);
        match instance.get_mut(name) {
            Some(Value::Array(values)) => values.extend(typed.as_array().cloned().unwrap_or_default()),
            Some(_) => {} // A repeated scalar: the first counts.
            None => {
                instance.insert(name.clone(), typed);
            }
        }
    }
    let instance = Value::Object(instance);
    for e in spec::twilio_request_validator().iter_errors(&instance) {
        let at = e.instance_path().to_string();
        let message = |what: &str| format!("{what} (at {at}: {e})");
        match at.trim_start_matches('/') {
            "MessagingServiceSid" => refuse(
                checked,
                21705,
                "MessagingServiceSid matches ^MG[0-9a-fA-F]{32}$",
                "https://www.twilio.com/docs/api/errors/21705; CreateMessageRequest.properties.MessagingServiceSid.pattern",
                message("The Messaging Service Sid is invalid."),
            ),
            "StatusCallback" => refuse(
                checked,
                21609,
                "StatusCallback is a URL",
                "https://www.twilio.com/docs/api/errors/21609; CreateMessageRequest.properties.StatusCallback.format",
                message("The StatusCallback URL is not a valid URL."),
            ),
            "ValidityPeriod" => refuse(
                checked,
                21624,
                "ValidityPeriod is an integer from 1 to 36000",
                VALIDITY_SOURCE,
                message("Validity period can only be set to integers between 1 and 36,000 seconds."),
            ),
            // No more specific code is documented: Twilio's generic 400.
            _ => refuse(checked, 400, "a CreateMessageRequest (types, enums, patterns)", SPEC_SOURCE_AND_400, message("Bad Request")),
        }
    }
    if checked.refusal.is_some() {
        return;
    }

    // Rules the spec states in words.
    if let Some(body) = field("Body") {
        // Counted as UTF-16 units: "emojis ... will be counted as multiple characters".
        let length = body.encode_utf16().count();
        if length > 1600 {
            refuse(
                checked,
                21617,
                "Body has at most 1600 characters",
                "https://www.twilio.com/docs/api/errors/21617; CreateMessageRequest.properties.Body.description",
                format!("The concatenated message body exceeds the 1600 character limit ({length})."),
            );
        }
    }
    if !is_twilio_to(to) {
        refuse(
            checked,
            21211,
            "To is an E.164 number or a channel address",
            "https://www.twilio.com/docs/api/errors/21211; CreateMessageRequest.properties.To.description",
            format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if let Some(from) = field("From").filter(|f| !is_twilio_sender(f)) {
        refuse(
            checked,
            21606,
            "From is an E.164 number, a short code or an alphanumeric sender ID",
            FROM_SOURCE,
            format!("The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."),
        );
    }
    if let Some(url) = field("StatusCallback") {
        if let Err(why) = status_callback_problem(url) {
            refuse(
                checked,
                21609,
                "StatusCallback is an http(s) URL with a valid hostname",
                "https://www.twilio.com/docs/api/errors/21609; CreateMessageRequest.properties.StatusCallback.description",
                format!("The StatusCallback URL {url} is not a valid URL: {why}."),
            );
        }
    }
    if let Some(seconds) = instance["ValidityPeriod"].as_i64().filter(|s| !(1..=36000).contains(s)) {
        refuse(
            checked,
            21624,
            "ValidityPeriod is an integer from 1 to 36000",
            VALIDITY_SOURCE,
            format!("Validity period can only be set to integers between 1 and 36,000 seconds ({seconds})."),
        );
    }
}

pub const VALIDITY_SOURCE: &str = "CreateMessageRequest.properties.ValidityPeriod.description (\"integers from 1 to \
                                   36000\", seconds); https://www.twilio.com/docs/api/errors/21624";
pub const FROM_SOURCE: &str = "CreateMessageRequest.properties.From.description; \
                               https://www.twilio.com/docs/api/errors/21606; alphanumeric sender ID: \
                               twilio_messaging_v1.json @ d50069b44ea8 AlphaSender, \
                               https://help.twilio.com/articles/223181348; short code: \
                               https://www.twilio.com/docs/glossary/what-is-a-short-code";

/// A form value typed as the property's schema says (so the validator sees
/// integers, booleans and arrays); a value that does not parse stays a string,
/// which the validator then refuses.
fn typed(property: &Value, value: &str) -> Value {
    let property = match property["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &spec::twilio()["components"]["schemas"][name]
        }
        None => property,
    };
    match property["type"].as_str() {
        Some("integer") => value.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(value)),
        Some("number") => value
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| json!(value)),
        Some("boolean") => match value {
            "true" | "True" => json!(true),
            "false" | "False" => json!(false),
            _ => json!(value),
        },
        Some("array") => json!([value]),
        _ => json!(value),
    }
}

/// The spec's regex patterns are anchored character classes; a tiny matcher
/// for `^XX[0-9a-fA-F]{32}$`, the only form the fakes need.
fn matches_pattern(pattern: &str, value: &str) -> bool {
    let prefix = pattern.strip_prefix('^').and_then(|p| p.strip_suffix("[0-9a-fA-F]{32}$"));
    let Some(prefix) = prefix else { panic!("unexpected SID pattern {pattern}") };
    value.len() == prefix.len() + 32
        && value.starts_with(prefix)
        && value[prefix.len()..].chars().all(|c| c.is_ascii_hexdigit())
}

/// E.164: `+`, then 2 to 15 digits, the first not 0.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

/// `To`: an E.164 number (21211: "Twilio requires phone numbers in E.164
/// format"), or a channel address such as `whatsapp:+15552229999`.
fn is_twilio_to(to: &str) -> bool {
    is_e164(to) || to.split_once(':').is_some_and(|(channel, address)| !channel.is_empty() && !address.is_empty())
}

/// `From`: an E.164 number; a short code ("between three and seven digits");
/// an alphanumeric sender ID ("up to 11 characters ... A-Z, a-z, 0-9, space,
/// hyphen, plus, underscore and ampersand ... cannot contain only numbers",
/// and Twilio's help centre: "must contain at least one letter"); or a
/// channel address.
pub fn is_twilio_sender(from: &str) -> bool {
    let short_code = (3..=7).contains(&from.len()) && from.chars().all(|c| c.is_ascii_digit());
    let alphanumeric = (1..=11).contains(&from.chars().count())
        && from.chars().all(|c| c.is_ascii_alphanumeric() || " -+_&".contains(c))
        && from.chars().any(|c| c.is_ascii_alphabetic());
    let channel = !from.starts_with('+') && from.split_once(':').is_some_and(|(c, a)| !c.is_empty() && is_e164(a));
    is_e164(from) || short_code || alphanumeric || channel
}

/// StatusCallback: "URL must contain a valid hostname and underscores are not
/// allowed" (the spec); http(s), at most 4000 characters (21609).
fn status_callback_problem(url: &str) -> Result<(), String> {
    if url.len() > 4000 {
        return Err(format!("{} characters, more than 4000", url.len()));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme {}", parsed.scheme()));
    }
    match parsed.host_str() {
        None | Some("") => Err("no hostname".into()),
        Some(host) if host.contains('_') => Err(format!("hostname {host} has an underscore")),
        Some(_) => Ok(()),
    }
}

/// The Message resource Twilio answers with 201 (`api.v2010.account.message`,
/// shaped as the spec's `create` example).
pub fn created(request: &Request, credentials: &Credentials) -> Answer {
    let fields: BTreeMap<String, String> = form(request).into_iter().rev().collect();
    let field = |name: &str| fields.get(name).cloned();
    let sid = random_sid("SM");
    let account = &credentials.twilio_sid;
    let now = rfc2822(crate::helpers::now_ms() / 1000);
    let messaging_service = field("MessagingServiceSid");
    Answer::json(
        201,
        json!({
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": field("Body"),
            "date_created": now,
            "date_sent": null,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": field("From"),
            "messaging_service_sid": messaging_service,
            "num_media": "0",
            "num_segments": "1",
            "price": null,
            "price_unit": null,
            "sid": sid,
            "status": "queued",
            "subresource_uris": { "media": format!("/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json") },
            "to": field("To"),
            "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
        }),
    )
}

/// RFC 2822 in GMT, as the Message resource's dates: `Thu, 24 Aug 2023 05:01:45 +0000`.
pub fn rfc2822(unix_seconds: i64) -> String {
    let (days, secs) = (unix_seconds.div_euclid(86_400), unix_seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `X-Twilio-Signature` as Twilio computes it for a request to your URL:
/// base64 of HMAC-SHA1, keyed with the auth token, over the full URL
/// followed by each POST parameter's name and value, sorted by name (a
/// repeated name's values sorted too, as Twilio's own validators do).
pub fn signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Base64::encode_string(&mac.finalize().into_bytes())
}
