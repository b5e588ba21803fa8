//! Request bodies parsed into typed inputs. Every problem is a 4xx
//! `ApiError` with a stable code; nothing here can panic on client input.
//! Pure: no `worker` import, unit-tested natively.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::account::{Device, Username};
use crate::domain::destination::{Channel, Destination};
use crate::domain::otp::{OtpCode, Purpose};
pub use crate::flows::otp_request::OtpRequestInput;
pub use crate::flows::otp_verify::OtpVerifyInput;
pub use crate::flows::register::RegisterInput;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Whether a Content-Type declares a JSON body: the media type
/// `application/json`, in any case, with any parameters (`; charset=utf-8`;
/// the body is read as UTF-8 whatever they say, as RFC 8259 8.1 requires).
/// Nothing else, not even `application/*+json`: this is the rule of the
/// reference's parser, Django REST Framework's `JSONParser` (media type
/// `application/json`; any other answers 415 `UnsupportedMediaType`,
/// django-rest-framework.org/api-guide/parsers and /exceptions). It is also
/// what keeps cross-site pages out: a browser sends `text/plain`, form and
/// multipart bodies to another origin without asking it first (a CORS-simple
/// request), but `application/json` only after a preflight the origin allows.
/// A missing Content-Type is not JSON either.
pub fn is_json(content_type: Option<&str>) -> bool {
    is_media_type(content_type, "application/json")
}

/// Whether a `Content-Type` value names `media_type` (in any case, with any
/// parameters).
fn is_media_type(content_type: Option<&str>, media_type: &str) -> bool {
    let declared = content_type.map(|v| v.split(';').next().unwrap_or_default().trim());
    declared.is_some_and(|t| t.eq_ignore_ascii_case(media_type))
}

/// Whether a `cf-ray` header value is a Cloudflare Ray ID: 16 lowercase hex
/// digits, a dash and the data centre's three-letter (IATA) code, as in
/// Cloudflare's own example `CF-RAY: 230b030023ae2822-SJC` (Cloudflare HTTP
/// headers, developers.cloudflare.com/fundamentals/reference/http-headers/).
/// Cloudflare sets it in production; where nothing sets it (`wrangler dev`,
/// a direct request), it is whatever the client sent, so anything else (too
/// long, other characters) must never become the request id that is echoed
/// and stored in the audit trail.
pub fn is_ray_id(cf_ray: &str) -> bool {
    let Some((ray, colo)) = cf_ray.split_once('-') else { return false };
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    ray.len() == 16 && ray.bytes().all(lower_hex) && colo.len() == 3 && colo.bytes().all(|b| b.is_ascii_uppercase())
}

/// A JSON object body, with typed field access.
pub struct Body(Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::validation("Request body must be a JSON object")),
            Err(_) => Err(ApiError::validation("Request body must be valid JSON")),
        }
    }

    /// A string field; absent and `null` are `None`, other types an error.
    pub fn optional_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(format!("{field} must be a string"))),
        }
    }

    /// An optional short text field: trimmed, empty is `None`, at most
    /// `max` characters, no control characters.
    pub fn optional_text(&self, field: &str, max: usize) -> Result<Option<String>, ApiError> {
        let Some(s) = self.optional_str(field)?.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if s.chars().count() > max || s.chars().any(char::is_control) {
            return Err(ApiError::validation(format!("{field} must be at most {max} printable characters")));
        }
        Ok(Some(s.to_string()))
    }
}

pub fn otp_request(bytes: &[u8]) -> Result<OtpRequestInput, ApiError> {
    let body = Body::parse(bytes)?;
    let destination = body.optional_str("destination")?.map(str::trim).unwrap_or("");
    if destination.is_empty() {
        return Err(ApiError::validation("Email or phone number required"));
    }
    let destination = Destination::parse(destination).map_err(|e| ApiError::validation(e.to_string()))?;
    // Absent means login; an explicit null is refused, as the reference's
    // serializer refuses it ("This field may not be null").
    if body.0.get("purpose").is_some_and(Value::is_null) {
        return Err(ApiError::validation("purpose may not be null"));
    }
    let purpose = match body.optional_str("purpose")? {
        None => Purpose::Login,
        Some(p) => Purpose::parse(p)
            .ok_or_else(|| ApiError::validation("purpose must be one of login, register, verify, reset"))?,
    };
    let locale = body.optional_text("locale", 35)?;
    let turnstile_token = body.optional_str("turnstile_token")?.map(str::to_string);
    Ok(OtpRequestInput { destination, purpose, locale, turnstile_token })
}

pub fn otp_verify(bytes: &[u8], code_length: usize) -> Result<OtpVerifyInput, ApiError> {
    let body = Body::parse(bytes)?;
    let otp_id = body.optional_str("otp_id")?.map(str::trim).unwrap_or("");
    let code = body.optional_str("otp_code")?.map(str::trim).unwrap_or("");
    if otp_id.is_empty() || code.is_empty() {
        return Err(ApiError::validation("OTP ID and code required"));
    }
    let otp_id = parse_uuid(otp_id).ok_or_else(|| ApiError::validation("otp_id must be a UUID"))?;
    let code = OtpCode::parse(code, code_length)
        .ok_or_else(|| ApiError::validation(format!("otp_code must be {code_length} digits")))?;
    let turnstile_token = body.optional_str("turnstile_token")?.map(str::to_string);
    Ok(OtpVerifyInput { otp_id, code, device: device(&body)?, turnstile_token })
}

/// Usernames: see `Username::parse`.
pub fn username(input: &str) -> Result<Username, ApiError> {
    Username::parse(input).map_err(ApiError::validation)
}

fn device(body: &Body) -> Result<Device, ApiError> {
    Ok(Device {
        install_id: body.optional_text("install_id", 128)?,
        platform: body.optional_text("platform", 32)?,
        app_version: body.optional_text("app_version", 32)?,
    })
}

pub fn register(bytes: &[u8]) -> Result<RegisterInput, ApiError> {
    let body = Body::parse(bytes)?;
    let token = body.optional_text("verification_token", 128)?;
    let name = body.optional_str("username")?.unwrap_or("");
    let Some(verification_token) = token else {
        return Err(ApiError::validation("verification_token and username required"));
    };
    Ok(RegisterInput { verification_token, username: username(name)?, device: device(&body)? })
}

/// `{verification_token}`: attaching a destination, deleting the account.
pub fn verification_token(bytes: &[u8]) -> Result<String, ApiError> {
    let token = Body::parse(bytes)?.optional_text("verification_token", 128)?;
    token.ok_or_else(|| ApiError::validation("verification_token required"))
}

/// `{username}` of a username change: register's rules.
pub fn rename(bytes: &[u8]) -> Result<Username, ApiError> {
    match Body::parse(bytes)?.optional_str("username")? {
        Some(name) => username(name),
        None => Err(ApiError::validation("username required")),
    }
}

/// `{refresh}`: the opaque refresh token. Any string is looked up (an
/// unknown one is a 401); only a missing or non-string value is a 400.
pub fn refresh(bytes: &[u8]) -> Result<String, ApiError> {
    let body = Body::parse(bytes)?;
    match body.optional_str("refresh")?.map(str::trim) {
        Some(token) if !token.is_empty() => Ok(token.to_string()),
        _ => Err(ApiError::validation("refresh required")),
    }
}

/// Whether a body is declared form-encoded (`application/x-www-form-urlencoded`).
pub fn is_form(content_type: Option<&str>) -> bool {
    is_media_type(content_type, "application/x-www-form-urlencoded")
}

/// The `token` of a revocation request: form-encoded, as RFC 7009 2.1 sends
/// it, or the JSON object `{token}` this API's other endpoints take. The
/// optional `token_type_hint` is ignored, as the RFC allows: every kind of
/// token is looked up. Missing: 400 with the RFC's `invalid_request`.
pub fn revocation(content_type: Option<&str>, bytes: &[u8]) -> Result<String, ApiError> {
    let token = if is_form(content_type) {
        form_urlencoded::parse(bytes).find(|(k, _)| k == "token").map(|(_, v)| v.trim().to_string())
    } else if is_json(content_type) {
        Body::parse(bytes)?.optional_str("token")?.map(|t| t.trim().to_string())
    } else {
        return Err(ApiError::unsupported_media_type_of("application/x-www-form-urlencoded or application/json"));
    };
    match token {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(ApiError { oauth_error: Some("invalid_request"), ..ApiError::validation("token required") }),
    }
}

/// `?include_current=true|false` of signing out everywhere (absent: false).
pub fn include_current(query: Option<&str>) -> Result<bool, ApiError> {
    match query_value(query, "include_current").as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::validation("include_current must be true or false")),
    }
}

/// The first query parameter of `query` named `name`.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let mut pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    pairs.find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `?email=` or `?phone=` of an admin lookup: exactly one, normalized as a
/// login normalizes a destination (`Destination::parse`). In a query, `+`
/// means a space: a phone's `+` is sent as `%2B`.
pub fn admin_lookup(query: Option<&str>) -> Result<Destination, ApiError> {
    let found = match (query_value(query, "email"), query_value(query, "phone")) {
        (Some(email), None) => Destination::parse(&email).ok().filter(|d| d.channel() == Channel::Email),
        (None, Some(phone)) => Destination::parse(&phone).ok().filter(|d| d.channel() == Channel::Phone),
        _ => None,
    };
    found.ok_or_else(|| ApiError::validation("Give one of email (an address) and phone (E.164, + sent as %2B)"))
}

/// `?limit=` of an event listing: 1 to `MAX_EVENTS`, `DEFAULT_EVENTS` when absent.
pub fn events_limit(query: Option<&str>) -> Result<u32, ApiError> {
    use crate::flows::admin::{DEFAULT_EVENTS, MAX_EVENTS};
    match query_value(query, "limit") {
        None => Ok(DEFAULT_EVENTS),
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_EVENTS).contains(n))
            .ok_or_else(|| ApiError::validation("limit must be a whole number from 1 to 200")),
    }
}

/// Only the canonical hyphenated form (what `otp_id` answers carry).
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    (s.len() == 36).then(|| Uuid::try_parse(s).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: ApiError) -> (u16, &'static str) {
        (e.status, e.code)
    }

    #[test]
    fn request_defaults_to_login_and_normalizes() {
        let r = otp_request(br#"{"destination":"  Bob@Example.com "}"#).unwrap();
        assert_eq!(r.destination.as_str(), "bob@example.com");
        assert_eq!(r.purpose, Purpose::Login);
        let r = otp_request(br#"{"destination":"+1 (555) 010-9999","purpose":"reset","locale":"es-MX","extra":1}"#)
            .unwrap();
        assert_eq!(r.destination.as_str(), "+15550109999");
        assert_eq!(r.purpose, Purpose::Reset);
        assert_eq!(r.locale.as_deref(), Some("es-MX"));
    }

    #[test]
    fn bad_request_bodies_are_validation_errors() {
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            b"\"x\"",
            b"null",
            b"{}",
            br#"{"destination":""}"#,
            br#"{"destination":"   "}"#,
            br#"{"destination":42}"#,
            br#"{"destination":["a@b.co"]}"#,
            br#"{"destination":"nope"}"#,
            br#"{"destination":"a@b.co","purpose":null}"#,
            br#"{"destination":"a@b.co","purpose":"admin"}"#,
            br#"{"destination":"a@b.co","purpose":1}"#,
            br#"{"destination":"a@b.co","locale":5}"#,
            b"{\"destination\":\"a@b.co\"",
            b"\xff\xfe",
        ] {
            let e = otp_request(body).unwrap_err();
            assert_eq!(code_of(e), (400, "VALIDATION_ERROR"), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn only_application_json_is_a_json_body() {
        for json in
            ["application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;x=y"]
        {
            assert!(is_json(Some(json)), "{json}");
        }
        for other in [
            "",
            "text/plain",
            "text/plain; charset=application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=application/json",
            "application/jsonp",
            "application/problem+json",
            "application/json-seq",
            "text/json",
            "application/ json",
        ] {
            assert!(!is_json(Some(other)), "{other}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn only_cloudflares_ray_id_shape_is_a_request_id() {
        for ray in ["230b030023ae2822-SJC", "8d2c4e1a9b3f7a21-LHR", "0000000000000000-AAA"] {
            assert!(is_ray_id(ray), "{ray}");
        }
        let long = format!("{}-LHR", "a".repeat(6000));
        for other in [
            "",
            "-",
            long.as_str(),
            "8d2c4e1a9b3f7a21",
            "8d2c4e1a9b3f7a21-",
            "8d2c4e1a9b3f7a21-lhr",
            "8d2c4e1a9b3f7a21-LHRX",
            "8d2c4e1a9b3f7a21-LH",
            "8D2C4E1A9B3F7A21-LHR",
            "8d2c4e1a9b3f7a2g-LHR",
            "8d2c4e1a9b3f7a211-LHR",
            "8d2c4e1a9b3f7a21-LHR ",
            " 8d2c4e1a9b3f7a21-LHR",
            "8d2c4e1a9b3f7a21-LHR\r\nx-injected: 1",
            "8d2c4e1a9b3f7a21-L-R",
            "8d2c4e1a9b3f7a21-LÉR",
            "８d2c4e1a9b3f7a21-LHR",
        ] {
            assert!(!is_ray_id(other), "{other:?}");
        }
    }

    #[test]
    fn oversized_bodies_are_413() {
        let big = format!(r#"{{"destination":"a@b.co","pad":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(code_of(otp_request(big.as_bytes()).unwrap_err()), (413, "PAYLOAD_TOO_LARGE"));
    }

    #[test]
    fn usernames_follow_the_documented_rules() {
        assert_eq!(username("  Alice_01 ").unwrap().as_str(), "alice_01");
        for good in ["abc", "a.b-c_d", "0day", &"x".repeat(30)] {
            assert!(username(good).is_ok(), "{good}");
        }
        for bad in ["ab", "", "_abc", ".abc", "a b c", "ünï", "abc!", &"x".repeat(31)] {
            assert_eq!(username(bad).unwrap_err().code, "VALIDATION_ERROR", "{bad}");
        }
    }

    #[test]
    fn register_and_refresh_bodies() {
        let r = register(br#"{"verification_token":"tok","username":"Bob","install_id":"i1"}"#).unwrap();
        assert_eq!((r.verification_token.as_str(), r.username.as_str()), ("tok", "bob"));
        assert_eq!(r.device.install_id.as_deref(), Some("i1"));
        for bad in [
            &br#"{"username":"bob"}"#[..],
            br#"{"verification_token":"t"}"#,
            br#"{"verification_token":1,"username":"bob"}"#,
        ] {
            assert_eq!(register(bad).unwrap_err().code, "VALIDATION_ERROR");
        }
        assert_eq!(rename(br#"{"username":" Zoe.K "}"#).unwrap().as_str(), "zoe.k");
        for bad in [&b"{}"[..], br#"{"username":null}"#, br#"{"username":5}"#, br#"{"username":"a"}"#, b"[]"] {
            assert_eq!(rename(bad).unwrap_err().code, "VALIDATION_ERROR", "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(verification_token(br#"{"verification_token":" t "}"#).unwrap(), "t");
        for bad in [&b"{}"[..], br#"{"verification_token":""}"#, br#"{"verification_token":7}"#, b"null"] {
            assert_eq!(verification_token(bad).unwrap_err().code, "VALIDATION_ERROR");
        }
        assert_eq!(refresh(br#"{"refresh":"abc"}"#).unwrap(), "abc");
        assert_eq!(refresh(br#"{"refresh":5}"#).unwrap_err().code, "VALIDATION_ERROR");
        assert_eq!(refresh(b"{}").unwrap_err().code, "VALIDATION_ERROR");
    }

    #[test]
    fn admin_lookups_take_one_destination_normalized_as_a_login_does() {
        let email = admin_lookup(Some("email=%20Ana%40Example.COM%20")).unwrap();
        assert_eq!(email, Destination::parse("ana@example.com").unwrap());
        let phone = admin_lookup(Some("x=1&phone=%2B1%20(555)%20010-9999")).unwrap();
        assert_eq!(phone.as_str(), "+15550109999");
        for bad in [
            None,
            Some(""),
            Some("email="),
            Some("email=ana@example.com&phone=%2B15550109999"),
            Some("email=%2B15550109999"),
            Some("phone=ana@example.com"),
            Some("phone=+15550109999"),
            Some("phone=15550109999"),
            Some("destination=a@b.co"),
        ] {
            assert_eq!(code_of(admin_lookup(bad).unwrap_err()), (400, "VALIDATION_ERROR"), "{bad:?}");
        }
    }

    #[test]
    fn an_event_listing_takes_1_to_200() {
        assert_eq!(events_limit(None).unwrap(), 50);
        assert_eq!(events_limit(Some("limit=1")).unwrap(), 1);
        assert_eq!(events_limit(Some("limit=200")).unwrap(), 200);
        for bad in ["limit=0", "limit=201", "limit=-1", "limit=", "limit=ten", "limit=1.5"] {
            assert_eq!(code_of(events_limit(Some(bad)).unwrap_err()), (400, "VALIDATION_ERROR"), "{bad}");
        }
    }

    #[test]
    fn include_current_is_true_or_false() {
        assert_eq!(include_current(None).unwrap(), false);
        assert_eq!(include_current(Some("")).unwrap(), false);
        assert_eq!(include_current(Some("include_current=true")).unwrap(), true);
        assert_eq!(include_current(Some("x=1&include_current=false")).unwrap(), false);
        for bad in ["include_current=1", "include_current=", "include_current=TRUE", "include_current"] {
            assert_eq!(include_current(Some(bad)).unwrap_err().code, "VALIDATION_ERROR", "{bad}");
        }
    }

    #[test]
    fn verify_parses_and_trims() {
        let v = otp_verify(
            br#"{"otp_id":"67e55044-10b1-426f-9247-bb680e5fe0c8","otp_code":" 012345 ","install_id":"dev-1","platform":"ios"}"#,
            6,
        )
        .unwrap();
        assert_eq!(v.code.expose(), "012345");
        assert_eq!(v.device.install_id.as_deref(), Some("dev-1"));
        assert_eq!(v.device.platform.as_deref(), Some("ios"));
        assert_eq!(v.device.app_version, None);
    }

    #[test]
    fn bad_verify_bodies_are_validation_errors() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let long_install = format!(r#"{{"otp_id":"{id}","otp_code":"123456","install_id":"{}"}}"#, "i".repeat(129));
        for body in [
            "{}".to_string(),
            format!(r#"{{"otp_id":"{id}"}}"#),
            r#"{"otp_code":"123456"}"#.to_string(),
            r#"{"otp_id":"not-a-uuid","otp_code":"123456"}"#.to_string(),
            r#"{"otp_id":"67e5504410b1426f9247bb680e5fe0c8","otp_code":"123456"}"#.to_string(),
            format!(r#"{{"otp_id":"{id}","otp_code":123456}}"#),
            r#"{"otp_id":1,"otp_code":"123456"}"#.to_string(),
            format!(r#"{{"otp_id":"{id}","otp_code":"12345"}}"#),
            format!(r#"{{"otp_id":"{id}","otp_code":"1234567"}}"#),
            format!(r#"{{"otp_id":"{id}","otp_code":"١٢٣٤٥٦"}}"#),
            format!(r#"{{"otp_id":"{id}","otp_code":"12345a"}}"#),
            format!(r#"{{"otp_id":"{id}","otp_code":"123456","platform":7}}"#),
            long_install,
        ] {
            let e = otp_verify(body.as_bytes(), 6).unwrap_err();
            assert_eq!(code_of(e), (400, "VALIDATION_ERROR"), "{body}");
        }
    }

    #[test]
    fn a_revocation_takes_the_rfc_form_or_json_and_says_invalid_request_without_a_token() {
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        let json = Some("application/json");
        assert_eq!(revocation(form, b"token=abc%2Bd&token_type_hint=refresh_token").unwrap(), "abc+d");
        assert_eq!(revocation(json, br#"{"token":" abc ","token_type_hint":"access_token"}"#).unwrap(), "abc");
        for (content_type, body) in [
            (form, &b"token_type_hint=refresh_token"[..]),
            (form, b"token="),
            (json, b"{}"),
            (json, br#"{"token":""}"#),
        ] {
            let e = revocation(content_type, body).unwrap_err();
            assert_eq!((e.status, e.code, e.oauth_error), (400, "VALIDATION_ERROR", Some("invalid_request")));
        }
        assert_eq!(code_of(revocation(json, br#"{"token":7}"#).unwrap_err()), (400, "VALIDATION_ERROR"));
        assert_eq!(code_of(revocation(Some("text/plain"), b"token=abc").unwrap_err()), (415, "UNSUPPORTED_MEDIA_TYPE"));
        assert_eq!(code_of(revocation(None, b"token=abc").unwrap_err()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    }
}
