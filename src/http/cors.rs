//! CORS for browser apps on other origins. Tokens travel in the body and
//! the `Authorization` header, never in cookies, so credentials are not
//! allowed; only the exact origins in `ALLOWED_ORIGINS` get CORS headers.
//! Pure: unit-tested natively.

/// Methods and request headers a browser may use cross-origin.
pub const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";
pub const ALLOW_HEADERS: &str = "authorization, content-type, accept-language";
/// Response headers a browser app may read (the 429 countdown needs it).
pub const EXPOSE_HEADERS: &str = "retry-after";
/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE: &str = "600";

/// The CORS headers for a response to `origin`: none unless it is allowed.
pub fn headers(allowed: &[String], origin: Option<&str>, preflight: bool) -> Vec<(&'static str, String)> {
    let Some(origin) = origin.filter(|o| allowed.iter().any(|a| a == o)) else {
        return Vec::new();
    };
    let mut h = vec![("access-control-allow-origin", origin.to_string())];
    if preflight {
        h.push(("access-control-allow-methods", ALLOW_METHODS.to_string()));
        h.push(("access-control-allow-headers", ALLOW_HEADERS.to_string()));
        h.push(("access-control-max-age", MAX_AGE.to_string()));
    } else {
        h.push(("access-control-expose-headers", EXPOSE_HEADERS.to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_allowed_origins_get_headers() {
        let allowed = vec!["https://app.example.com".to_string()];
        assert!(headers(&allowed, Some("https://evil.example.com"), false).is_empty());
        assert!(headers(&allowed, Some("https://app.example.com.evil.com"), true).is_empty());
        assert!(headers(&allowed, None, false).is_empty());
        assert!(headers(&[], Some("https://app.example.com"), true).is_empty());
        let h = headers(&allowed, Some("https://app.example.com"), false);
        assert_eq!(h[0], ("access-control-allow-origin", "https://app.example.com".to_string()));
        assert!(h.iter().any(|(k, v)| *k == "access-control-expose-headers" && v == "retry-after"));
        assert!(!h.iter().any(|(k, _)| *k == "access-control-allow-credentials"));
        let p = headers(&allowed, Some("https://app.example.com"), true);
        // JSON bodies need `content-type: application/json` (input::is_json), which a
        // browser sends cross-origin only once the preflight allows the header.
        for needed in ["authorization", "content-type"] {
            assert!(p.iter().any(|(k, v)| *k == "access-control-allow-headers" && v.contains(needed)), "{needed}");
        }
    }
}
