//! Configuration, parsed once from Worker vars and secrets into a typed struct.
//!
//! This module does not import `worker`: it reads settings through a lookup
//! function, so the rules are unit-tested natively. A missing or malformed
//! setting is an error that names it; production refuses development-only
//! settings (log delivery, plain-http provider URLs).

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};

pub use crate::domain::admin::AdminToken;
use crate::domain::destination::Destination;
use crate::domain::otp::{self, OtpCode};
pub use crate::domain::outbound::{MailConfig, MailProvider, TwilioConfig, TwilioSender};
pub use crate::domain::secret::Secret;
use crate::domain::sms_policy::{self, SmsPolicy};
use crate::domain::standard_webhooks::{self as webhooks, EventType, SigningKey};
pub use crate::domain::tokens::SigningKeySeed;
use crate::domain::tokens::TokenSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProvider {
    Twilio,
    /// Prints messages to the console. Development only.
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsConfig {
    pub provider: SmsProvider,
    /// Present whenever `provider` is `Twilio`.
    pub twilio: Option<TwilioConfig>,
}

/// How codes are made and how long they live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpSettings {
    /// Digits per code, 6 to 10.
    pub length: usize,
    pub ttl_phone_seconds: u64,
    pub ttl_email_seconds: u64,
    /// Verification attempts per code.
    pub max_attempts: u32,
    /// Lifetime of the verification token a register/verify/reset code yields.
    pub verification_token_ttl_seconds: u64,
}

/// A destination that gets a fixed code and no message, until `expires_at_ms`
/// (for automated tests and app-store review; refused in production).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestIdentity {
    pub destination: Destination,
    pub code: OtpCode,
    pub expires_at_ms: i64,
}

/// Abuse limits, enforced exactly by the rate-limiter Durable Object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// OTP requests per destination from one client network (an IPv4
    /// address or IPv6 /48) per `request_window_seconds`.
    pub requests_per_destination: u32,
    pub request_window_seconds: u64,
    /// The breaker: requests per destination per `request_window_seconds`
    /// from all networks it does not know (`DESTINATION_REQUESTS_BREAKER`).
    pub requests_breaker: u32,
    /// Minimum gap between two requests for one destination from one network; 0 disables.
    pub resend_cooldown_seconds: u64,
    /// Failed verifications per destination from one client network, across all its codes.
    pub verify_failures_per_destination: u32,
    pub verify_failure_window_seconds: u64,
    /// The breaker: failed verifications per destination, from all networks,
    /// per `verify_failure_breaker_window_seconds` (`VERIFY_FAILURES_BREAKER`).
    pub verify_failure_breaker: u32,
    pub verify_failure_breaker_window_seconds: u64,
    /// How long a network that verified a destination's code stays known to
    /// it, so the breakers do not apply to it (`KNOWN_NETWORK_SECONDS`).
    pub known_network_seconds: u64,
    pub ip_requests: u32,
    pub ip_verifies: u32,
    pub ip_window_seconds: u64,
    /// Where SMS may go: the default block list of high-risk ranges, with
    /// `SMS_ALLOWED_COUNTRY_CODES` and `SMS_BLOCKED_PREFIXES` on top.
    pub sms_policy: SmsPolicy,
    /// SMS the whole service sends per `sms_cap_window_seconds`.
    pub sms_cap: u32,
    pub sms_cap_window_seconds: u64,
    /// SMS to one number range (the first `sms_prefix_digits` digits of the
    /// E.164 number, country code included) per rolling hour.
    pub sms_prefix_digits: usize,
    pub sms_per_prefix_per_hour: u32,
    /// SMS per rolling 24 hours to numbers under a prefix (a calling code
    /// such as `44`, or a part of a country): `SMS_COUNTRY_DAILY_CAPS`; a
    /// number counts toward every prefix it is under.
    pub sms_country_daily_caps: Vec<(String, u32)>,
    /// An IPv6 client's /48, above its /64's limits.
    pub ip48_requests: u32,
    pub ip48_verifies: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub environment: Environment,
    pub app_name: String,
    pub mail: MailConfig,
    pub sms: SmsConfig,
    /// Key for the HMAC over stored codes and for hashing rate-limit keys.
    pub otp_pepper: Secret,
    /// The first key signs; all of them verify.
    pub jwt_signing_keys: Vec<SigningKeySeed>,
    pub otp: OtpSettings,
    /// Login requests for unknown or disabled accounts look like real ones.
    pub enumeration_protection: bool,
    pub test_identities: Vec<TestIdentity>,
    /// Bound on one delivery, its retry included: a client waiting for a
    /// code to be sent waits at most this long.
    pub delivery_timeout_ms: u64,
    /// `LOGIN_DELIVERY_DELAY_SECONDS`: how long a login's queued job (real
    /// or decoy) waits before its first try (flows::delivery).
    pub login_delivery_delay_seconds: u64,
    /// `PUBLIC_BASE_URL`: where this service is reachable from the internet
    /// (`https://auth.example.com`). With it, Twilio reports each SMS's fate
    /// to `/api/webhooks/twilio/status`.
    pub public_base_url: Option<String>,
    pub limits: LimitSettings,
    pub tokens: TokenSettings,
    /// `OTP_WEBOTP_DOMAIN`: the origin SMS codes are bound to (WebOTP).
    pub webotp_domain: Option<String>,
    /// `SMS_RETRIEVER_APP_HASH`: the Android app's 11-character hash that
    /// ends each SMS, for Google's SMS Retriever API.
    pub sms_retriever_hash: Option<String>,
    /// Exact browser origins that get CORS headers; empty allows none.
    pub allowed_origins: Vec<String>,
    /// Serve the demo login page at `/` (default on in development only).
    pub demo_page: bool,
    /// Cloudflare Turnstile before a code is sent (`TURNSTILE_SECRET_KEY`).
    pub turnstile: Option<TurnstileConfig>,
    /// `TURNSTILE_SITE_KEY`: the widget the demo page shows.
    pub turnstile_site_key: Option<String>,
    /// Signed webhooks of audit events (`WEBHOOK_URL`); none without a URL.
    pub webhooks: Option<WebhookConfig>,
    /// `ADMIN_API_TOKENS`: the admin API's service tokens, as hashes and
    /// scopes (`domain::admin`); none: every admin request is 401.
    pub admin_tokens: Vec<AdminToken>,
}

/// Where audit events go as Standard Webhooks, and how (README "Webhooks").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `WEBHOOK_URL`, whole: https in production.
    pub url: String,
    /// `WEBHOOK_SECRET`: the key of the `whsec_` secret.
    pub key: SigningKey,
    /// `WEBHOOK_EVENTS`: the types sent; others are not queued.
    pub events: Vec<EventType>,
    /// `WEBHOOK_RETRY_DELAYS_SECONDS`: the wait before each retry.
    pub retry_delays: Vec<u32>,
}

/// Which OTP requests need a Turnstile token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnstileScope {
    /// Only requests for an SMS (what costs money).
    Sms,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnstileConfig {
    pub secret: Secret,
    pub api_base: String,
    pub required_for: TurnstileScope,
}

/// Cloudflare's dummy secret keys (always passes, always fails, "token
/// already spent": developers.cloudflare.com/turnstile/troubleshooting/testing).
pub const TURNSTILE_TEST_SECRETS: [&str; 3] = [
    "1x0000000000000000000000000000000AA",
    "2x0000000000000000000000000000000AA",
    "3x0000000000000000000000000000000AA",
];
/// A login's job (real or decoy) waits this long in the queue before its
/// first try, so that delivering the code (the consumer's D1 claim, the
/// provider call, the audit rows) never runs alongside the answer's way
/// out. Measured by `make timing`: with a consumer started at once, answers
/// for registered accounts were slower than for unknown destinations (4.4 %
/// at the median, Mann-Whitney p = 0.029 over 200 each); with one second,
/// not separable (0.4 %, p = 0.97). It serves ASVS 5 V6.3.8 (no valid user
/// deduced from different response times), for one second more before a
/// login code arrives; 0 trades that for speed.
pub const DEFAULT_LOGIN_DELIVERY_DELAY_SECONDS: u64 = 1;

/// A session ends 90 days after its sign-in, however often it refreshes
/// (ASVS 5 V7.3.2: an absolute maximum session lifetime). SP 800-63B 7.2
/// asks AAL1 to reauthenticate at least every 30 days: 2,592,000 for that.
pub const DEFAULT_SESSION_MAX_LIFETIME_SECONDS: u64 = 90 * DAY;

pub const DEFAULT_TURNSTILE_API_BASE: &str = "https://challenges.cloudflare.com";

/// A setting that is missing or malformed. Never carries a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting, problem: problem.into() }
}

pub const DEFAULT_MAIL_API_BASE_RESEND: &str = "https://api.resend.com";
pub const DEFAULT_MAIL_API_BASE_POSTMARK: &str = "https://api.postmarkapp.com";
pub const DEFAULT_TWILIO_API_BASE: &str = "https://api.twilio.com";

/// Reads settings by name. Empty values count as unset.
struct Settings<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    production: bool,
}

impl Settings<'_> {
    fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| err(name, "is required but not set"))
    }

    fn one_of<T: Copy>(&self, name: &'static str, default: T, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        choices.iter().find(|(label, _)| label.eq_ignore_ascii_case(&value)).map(|(_, v)| *v).ok_or_else(|| {
            let labels: Vec<&str> = choices.iter().map(|(l, _)| *l).collect();
            err(name, format!("must be one of {}", labels.join(", ")))
        })
    }

    /// A provider base URL: http(s), no trailing slash; https only in production.
    fn base_url(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let url = self.get(name).unwrap_or_else(|| default.to_string());
        let url = url.trim_end_matches('/').to_string();
        let rest = if let Some(rest) = url.strip_prefix("https://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://") {
            if self.production {
                return Err(err(name, "must use https:// in production"));
            }
            rest
        } else {
            return Err(err(name, "must be an http(s) URL"));
        };
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(err(name, "must be an http(s) URL with a host"));
        }
        Ok(url)
    }

    /// A whole number in `range`, or `default` when unset.
    fn number(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        value
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| err(name, format!("must be a whole number from {} to {}", range.start(), range.end())))
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" || v == "1" => Ok(true),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(_) => Err(err(name, "must be true or false")),
        }
    }

    fn refuse_in_production(&self, name: &'static str, what: &str) -> Result<(), ConfigError> {
        if self.production {
            Err(err(name, format!("{what} is development-only and refused when ENVIRONMENT=production")))
        } else {
            Ok(())
        }
    }
}

impl Config {
    /// Parses every setting; `lookup` returns a var or secret by name.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut s = Settings { lookup, production: true };
        let environment = s.one_of(
            "ENVIRONMENT",
            Environment::Production,
            &[("development", Environment::Development), ("production", Environment::Production)],
        )?;
        s.production = environment == Environment::Production;

        let app_name = s.get("APP_NAME").unwrap_or_else(|| "OTP Edge".to_string());
        if app_name.chars().count() > 40 || app_name.chars().any(char::is_control) {
            return Err(err("APP_NAME", "must be at most 40 printable characters"));
        }
        let mail = parse_mail(&s)?;
        let sms = parse_sms(&s)?;

        let otp_pepper = s.required("OTP_PEPPER")?;
        // NIST SP 800-63B 5.1.1.2 asks for a secret salt of at least 112 bits;
        // 32 characters of base64 or hex is comfortably above that.
        if otp_pepper.len() < 32 {
            return Err(err("OTP_PEPPER", "must be at least 32 characters (use 32 random bytes, base64url)"));
        }
        let jwt_signing_keys = parse_signing_keys(&s.required("JWT_SIGNING_KEYS")?)?;

        let otp = OtpSettings {
            length: s.number("OTP_LENGTH", 6, otp::MIN_LENGTH as u64..=otp::MAX_LENGTH as u64)? as usize,
            ttl_phone_seconds: s.number("OTP_TTL_PHONE_SECONDS", 300, 1..=3600)?,
            ttl_email_seconds: s.number("OTP_TTL_EMAIL_SECONDS", 600, 1..=3600)?,
            max_attempts: s.number("OTP_MAX_ATTEMPTS", 3, 1..=10)? as u32,
            verification_token_ttl_seconds: s.number("VERIFICATION_TOKEN_TTL_SECONDS", 600, 1..=86_400)?,
        };
        let enumeration_protection = s.boolean("ENUMERATION_PROTECTION", true)?;
        let test_identities = match s.get("TEST_IDENTITIES") {
            None => Vec::new(),
            Some(value) => {
                s.refuse_in_production("TEST_IDENTITIES", "a fixed-code test identity")?;
                parse_test_identities(&value, otp.length)?
            }
        };

        let webotp_domain = s.get("OTP_WEBOTP_DOMAIN").map(|d| d.to_ascii_lowercase());
        if let Some(d) = &webotp_domain {
            let host_ok = d.len() <= 60
                && d.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !host_ok {
                return Err(err(
                    "OTP_WEBOTP_DOMAIN",
                    "must be a host name such as app.example.com (at most 60 characters)",
                ));
            }
        }
        let sms_retriever_hash = s.get("SMS_RETRIEVER_APP_HASH");
        if let Some(hash) = &sms_retriever_hash {
            // Base64 of a truncated SHA-256 (Google's AppSignatureHelper): 11 characters.
            if hash.len() != 11 || !hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
                return Err(err("SMS_RETRIEVER_APP_HASH", "must be the app's 11-character hash (A-Z a-z 0-9 + /)"));
            }
            if webotp_domain.is_some() {
                return Err(err(
                    "SMS_RETRIEVER_APP_HASH",
                    "and OTP_WEBOTP_DOMAIN both need the SMS's last line: set one of them",
                ));
            }
        }
        let delivery_timeout_ms = s.number("DELIVERY_TIMEOUT_MS", 5000, 100..=30_000)?;
        let login_delivery_delay_seconds =
            s.number("LOGIN_DELIVERY_DELAY_SECONDS", DEFAULT_LOGIN_DELIVERY_DELAY_SECONDS, 0..=60)?;
        let public_base_url = match s.get("PUBLIC_BASE_URL") {
            None => None,
            Some(_) => Some(s.base_url("PUBLIC_BASE_URL", "")?),
        };
        let allowed_origins =
            parse_origins(&s.get("ALLOWED_ORIGINS").unwrap_or_default()).map_err(|p| err("ALLOWED_ORIGINS", p))?;
        // In production the demo page is off unless DEMO_PAGE=true says otherwise.
        let demo_page = s.boolean("DEMO_PAGE", !s.production)?;
        let turnstile = match s.get("TURNSTILE_SECRET_KEY") {
            None => None,
            Some(secret) => {
                if TURNSTILE_TEST_SECRETS.contains(&secret.as_str()) {
                    s.refuse_in_production("TURNSTILE_SECRET_KEY", "a Turnstile test secret key")?;
                }
                Some(TurnstileConfig {
                    api_base: s.base_url("TURNSTILE_API_BASE", DEFAULT_TURNSTILE_API_BASE)?,
                    required_for: s.one_of(
                        "TURNSTILE_REQUIRED_FOR",
                        TurnstileScope::All,
                        &[("sms", TurnstileScope::Sms), ("all", TurnstileScope::All)],
                    )?,
                    secret: Secret::new(secret),
                })
            }
        };
        let turnstile_site_key = s.get("TURNSTILE_SITE_KEY");
        if turnstile_site_key
            .as_deref()
            .is_some_and(|k| k.len() > 64 || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(err(
                "TURNSTILE_SITE_KEY",
                "must be a Turnstile site key such as 0x4AAAAAAAB... (A-Z a-z 0-9 _ -)",
            ));
        }
        let admin_tokens = crate::domain::admin::parse_tokens(&s.get("ADMIN_API_TOKENS").unwrap_or_default())
            .map_err(|p| err("ADMIN_API_TOKENS", p))?;
        let limits = parse_limits(&s)?;
        let webhooks = parse_webhooks(&s)?;
        // The service's public URL (https://auth.example.com), so JWT
        // middleware finds the keys from it (/.well-known/openid-configuration).
        let issuer = s.get("JWT_ISSUER").unwrap_or_else(|| "otp-edge".to_string());
        if s.production && issuer.starts_with("http://") {
            // OpenID Connect Discovery 1.0, section 3: the issuer is an https URL.
            return Err(err("JWT_ISSUER", "must use https:// in production"));
        }
        let tokens = TokenSettings {
            issuer,
            audience: s.get("JWT_AUDIENCE").unwrap_or_else(|| "otp-edge".to_string()),
            access_lifetime_seconds: s.number("ACCESS_TOKEN_LIFETIME_SECONDS", 300, 1..=DAY)?,
            refresh_lifetime_seconds: s.number("REFRESH_TOKEN_LIFETIME_SECONDS", 30 * DAY, 60..=365 * DAY)?,
            refresh_reuse_grace_seconds: s.number("REFRESH_REUSE_GRACE_SECONDS", 10, 0..=300)?,
            // Any positive number of seconds (tests use a few), up to a century.
            session_max_lifetime_seconds: s.number(
                "SESSION_MAX_LIFETIME_SECONDS",
                DEFAULT_SESSION_MAX_LIFETIME_SECONDS,
                1..=100 * 365 * DAY,
            )?,
            refreshes_per_session_per_minute: s.number("REFRESH_PER_SESSION_PER_MINUTE", 10, 1..=1_000_000)? as u32,
        };

        Ok(Config {
            environment,
            app_name,
            mail,
            sms,
            otp_pepper: Secret::new(otp_pepper),
            jwt_signing_keys,
            otp,
            enumeration_protection,
            test_identities,
            delivery_timeout_ms,
            login_delivery_delay_seconds,
            public_base_url,
            limits,
            tokens,
            webotp_domain,
            sms_retriever_hash,
            allowed_origins,
            demo_page,
            turnstile,
            turnstile_site_key,
            webhooks,
            admin_tokens,
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// The fixed code for `destination`, if it is a test identity still valid at `now_ms`.
    pub fn test_identity(&self, destination: &Destination, now_ms: i64) -> Option<&TestIdentity> {
        self.test_identities.iter().find(|t| &t.destination == destination && now_ms < t.expires_at_ms)
    }
}

/// `TEST_IDENTITIES`: comma-separated `destination:code:YYYY-MM-DD`, valid
/// until the start (00:00 UTC) of that date.
pub fn parse_test_identities(value: &str, code_length: usize) -> Result<Vec<TestIdentity>, ConfigError> {
    const NAME: &str = "TEST_IDENTITIES";
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let mut parts = entry.rsplitn(3, ':');
            let (date, code, dest) = (parts.next(), parts.next(), parts.next());
            let (Some(date), Some(code), Some(dest)) = (date, code, dest) else {
                return Err(err(NAME, "each entry must be destination:code:YYYY-MM-DD"));
            };
            let destination = Destination::parse(dest)
                .map_err(|_| err(NAME, "an entry's destination is not an email or E.164 phone"))?;
            let code = OtpCode::parse(code, code_length)
                .ok_or_else(|| err(NAME, format!("an entry's code must be {code_length} digits (OTP_LENGTH)")))?;
            let expires_at_ms = crate::domain::time::date_start_ms(date)
                .ok_or_else(|| err(NAME, "an entry's expiry must be a date, YYYY-MM-DD"))?;
            Ok(TestIdentity { destination, code, expires_at_ms })
        })
        .collect()
}

const DAY: u64 = 86_400;

fn parse_limits(s: &Settings) -> Result<LimitSettings, ConfigError> {
    let count = |name, default| s.number(name, default, 1..=1_000_000).map(|n| n as u32);
    let window = |name, default| s.number(name, default, 1..=30 * DAY);
    let allowed = sms_policy::parse_prefixes(&s.get("SMS_ALLOWED_COUNTRY_CODES").unwrap_or_default(), 6)
        .map_err(|p| err("SMS_ALLOWED_COUNTRY_CODES", format!("{p}; use calling codes such as 1,44,49 or 1876")))?;
    let blocked = sms_policy::parse_prefixes(&s.get("SMS_BLOCKED_PREFIXES").unwrap_or_default(), 15)
        .map_err(|p| err("SMS_BLOCKED_PREFIXES", p))?;
    Ok(LimitSettings {
        requests_per_destination: count("RATE_LIMIT_PER_HOUR", 5)?,
        request_window_seconds: window("RATE_LIMIT_WINDOW_SECONDS", 3600)?,
        requests_breaker: count("DESTINATION_REQUESTS_BREAKER", 20)?,
        resend_cooldown_seconds: s.number("RESEND_COOLDOWN_SECONDS", 0, 0..=DAY)?,
        verify_failures_per_destination: count("VERIFY_FAILURES_PER_DAY", 10)?,
        verify_failure_window_seconds: window("VERIFY_FAILURES_WINDOW_SECONDS", DAY)?,
        verify_failure_breaker: count("VERIFY_FAILURES_BREAKER", 100)?,
        verify_failure_breaker_window_seconds: window("VERIFY_FAILURES_BREAKER_WINDOW_SECONDS", 10 * DAY)?,
        known_network_seconds: s.number("KNOWN_NETWORK_SECONDS", 90 * DAY, 1..=365 * DAY)?,
        ip_requests: count("IP_REQUESTS_PER_HOUR", 300)?,
        ip_verifies: count("IP_VERIFIES_PER_HOUR", 600)?,
        ip_window_seconds: window("IP_WINDOW_SECONDS", 3600)?,
        sms_policy: SmsPolicy::new(allowed, blocked),
        sms_cap: count("SMS_DAILY_CAP", 10_000)?,
        sms_cap_window_seconds: window("SMS_CAP_WINDOW_SECONDS", DAY)?,
        sms_prefix_digits: s.number("SMS_PREFIX_DIGITS", 8, 4..=15)? as usize,
        sms_per_prefix_per_hour: count("SMS_PER_PREFIX_PER_HOUR", 20)?,
        sms_country_daily_caps: parse_country_caps(&s.get("SMS_COUNTRY_DAILY_CAPS").unwrap_or_default())
            .map_err(|p| err("SMS_COUNTRY_DAILY_CAPS", p))?,
        ip48_requests: count("IPV6_48_REQUESTS_PER_HOUR", 1200)?,
        ip48_verifies: count("IPV6_48_VERIFIES_PER_HOUR", 2400)?,
    })
}

/// The webhook settings, when `WEBHOOK_URL` is set. The URL is checked as
/// the provider base URLs are (https in production) and kept whole.
fn parse_webhooks(s: &Settings) -> Result<Option<WebhookConfig>, ConfigError> {
    let Some(url) = s.get("WEBHOOK_URL") else { return Ok(None) };
    s.base_url("WEBHOOK_URL", "")?;
    // Never echoed: a malformed secret is described, not shown.
    let key = SigningKey::parse(&s.required("WEBHOOK_SECRET")?)
        .ok_or_else(|| err("WEBHOOK_SECRET", "must be whsec_ followed by the base64 of 24 to 64 random bytes"))?;
    let events = webhooks::parse_event_types(&s.get("WEBHOOK_EVENTS").unwrap_or_else(|| "all".into()))
        .map_err(|p| err("WEBHOOK_EVENTS", p))?;
    let retry_delays = match s.get("WEBHOOK_RETRY_DELAYS_SECONDS") {
        None => webhooks::DEFAULT_RETRY_DELAYS.to_vec(),
        Some(list) => {
            let bad =
                || err("WEBHOOK_RETRY_DELAYS_SECONDS", "must be 1 to 100 comma-separated seconds, each 1 to 43200");
            let mut delays = Vec::new();
            for d in list.split(',') {
                let d = d.trim().parse::<u32>().ok().filter(|d| (1..=webhooks::MAX_DELAY_SECONDS).contains(d));
                delays.push(d.ok_or_else(bad)?);
            }
            if delays.len() > 100 {
                return Err(bad());
            }
            delays
        }
    };
    Ok(Some(WebhookConfig { url, key, events, retry_delays }))
}

fn parse_mail(s: &Settings) -> Result<MailConfig, ConfigError> {
    let provider = s.one_of(
        "MAIL_PROVIDER",
        MailProvider::Resend,
        &[("resend", MailProvider::Resend), ("postmark", MailProvider::Postmark), ("log", MailProvider::Log)],
    )?;
    let default_base = match provider {
        MailProvider::Postmark => DEFAULT_MAIL_API_BASE_POSTMARK,
        _ => DEFAULT_MAIL_API_BASE_RESEND,
    };
    let api_base = s.base_url("MAIL_API_BASE", default_base)?;
    let from = s.get("DEFAULT_FROM_EMAIL").unwrap_or_else(|| "noreply@example.com".to_string());
    if !looks_like_sender(&from) {
        return Err(err(
            "DEFAULT_FROM_EMAIL",
            "must be an address like noreply@yourapp.com or \"App <noreply@yourapp.com>\"",
        ));
    }
    let api_key = match provider {
        MailProvider::Log => {
            s.refuse_in_production("MAIL_PROVIDER", "log")?;
            None
        }
        MailProvider::Resend | MailProvider::Postmark => {
            if s.get("DEFAULT_FROM_EMAIL").is_none() {
                return Err(err("DEFAULT_FROM_EMAIL", "is required when MAIL_PROVIDER sends real mail"));
            }
            Some(Secret::new(s.required("MAIL_API_KEY")?))
        }
    };
    Ok(MailConfig { provider, api_base, api_key, from })
}

fn parse_sms(s: &Settings) -> Result<SmsConfig, ConfigError> {
    let provider =
        s.one_of("SMS_PROVIDER", SmsProvider::Twilio, &[("twilio", SmsProvider::Twilio), ("log", SmsProvider::Log)])?;
    let twilio = match provider {
        SmsProvider::Log => {
            s.refuse_in_production("SMS_PROVIDER", "log")?;
            None
        }
        SmsProvider::Twilio => {
            let api_base = s.base_url("TWILIO_API_BASE", DEFAULT_TWILIO_API_BASE)?;
            let account_sid = s.required("TWILIO_ACCOUNT_SID")?;
            // The pattern of AccountSid in Twilio's OpenAPI (twilio_api_v2010.json, CreateMessage).
            if !is_twilio_sid(&account_sid, "AC") {
                return Err(err("TWILIO_ACCOUNT_SID", "must be AC followed by 32 hexadecimal digits"));
            }
            let auth_token = Secret::new(s.required("TWILIO_AUTH_TOKEN")?);
            let sender = match (s.get("TWILIO_MESSAGING_SERVICE_SID"), s.get("TWILIO_PHONE_NUMBER")) {
                (Some(sid), _) => {
                    // MessagingServiceSid's pattern in the same operation.
                    if !is_twilio_sid(&sid, "MG") {
                        return Err(err(
                            "TWILIO_MESSAGING_SERVICE_SID",
                            "must be MG followed by 32 hexadecimal digits",
                        ));
                    }
                    TwilioSender::MessagingService(sid)
                }
                (None, Some(from)) => {
                    if !is_twilio_from(&from) {
                        return Err(err(
                            "TWILIO_PHONE_NUMBER",
                            "must be an E.164 number such as +15005550006, a short code (3 to 7 digits) or an \
                             alphanumeric sender ID (up to 11 of A-Z a-z 0-9 space - + _ &, with a letter)",
                        ));
                    }
                    TwilioSender::Address(from)
                }
                (None, None) => {
                    return Err(err("TWILIO_PHONE_NUMBER", "is required unless TWILIO_MESSAGING_SERVICE_SID is set"))
                }
            };
            Some(TwilioConfig { api_base, account_sid, auth_token, sender })
        }
    };
    Ok(SmsConfig { provider, twilio })
}

/// `SMS_COUNTRY_DAILY_CAPS`: comma-separated `prefix:cap` (`44:500,234:50`),
/// a prefix being a calling code or any longer number prefix; kept longest
/// prefix first, so the most specific cap is found first.
pub fn parse_country_caps(value: &str) -> Result<Vec<(String, u32)>, String> {
    let mut caps = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = || format!("{entry} is not prefix:cap, such as 44:500");
            let (prefix, cap) = entry.split_once(':').ok_or_else(bad)?;
            let prefix = prefix.trim().trim_start_matches('+');
            let ok = (1..=15).contains(&prefix.len())
                && prefix.bytes().all(|b| b.is_ascii_digit())
                && !prefix.starts_with('0');
            let cap = cap.trim().parse::<u32>().ok().filter(|c| (1..=1_000_000).contains(c));
            match (ok, cap) {
                (true, Some(cap)) => Ok((prefix.to_string(), cap)),
                _ => Err(bad()),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    caps.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    if caps.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("a prefix appears twice".into());
    }
    Ok(caps)
}

/// `ALLOWED_ORIGINS`: comma-separated exact origins (`scheme://host[:port]`).
pub fn parse_origins(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains('/') && !host.contains('*') => Ok(o.to_string()),
                _ => Err(format!("{o} is not an origin like https://app.example.com (no path, no wildcard)")),
            }
        })
        .collect()
}

/// `JWT_SIGNING_KEYS`: comma-separated `kid:seed`, each seed 32 random bytes in
/// base64url. The first key signs new tokens; all of them verify.
pub fn parse_signing_keys(value: &str) -> Result<Vec<SigningKeySeed>, ConfigError> {
    const NAME: &str = "JWT_SIGNING_KEYS";
    let mut keys: Vec<SigningKeySeed> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (kid, seed) = entry.split_once(':').ok_or_else(|| err(NAME, "each key must be kid:base64url-seed"))?;
        let kid_ok =
            !kid.is_empty() && kid.len() <= 64 && kid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !kid_ok {
            return Err(err(NAME, "a key id must be 1 to 64 of A-Z a-z 0-9 - _ ."));
        }
        let bytes = Base64UrlUnpadded::decode_vec(seed.trim_end_matches('='))
            .map_err(|_| err(NAME, format!("key {kid}: seed is not base64url")))?;
        let seed: [u8; 32] =
            bytes.try_into().map_err(|_| err(NAME, format!("key {kid}: seed must decode to exactly 32 bytes")))?;
        if keys.iter().any(|k| k.kid == kid) {
            return Err(err(NAME, format!("key id {kid} appears twice")));
        }
        keys.push(SigningKeySeed { kid: kid.to_string(), seed });
    }
    if keys.is_empty() {
        return Err(err(NAME, "must hold at least one key"));
    }
    Ok(keys)
}

/// `^AC[0-9a-fA-F]{32}$` and its kin: a prefix and 32 hexadecimal digits.
fn is_twilio_sid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What Twilio's `From` accepts for SMS: an E.164 number; a short code (3 to
/// 7 digits, Twilio's glossary); or an alphanumeric sender ID of at most 11
/// characters of A-Z a-z 0-9, space, `-`, `+`, `_` and `&`, with at least one
/// letter (Twilio help center, "Alphanumeric Sender ID"; the spec's `From`:
/// "cannot contain only numbers").
fn is_twilio_from(s: &str) -> bool {
    let short_code = (3..=7).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let alphanumeric = (1..=11).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b" -+_&".contains(&b))
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.trim() == s;
    is_e164(s) || short_code || alphanumeric
}

fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// `a@b.c` or `Name <a@b.c>`: enough to catch a typo in a sender setting.
fn looks_like_sender(s: &str) -> bool {
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) => &inner[i + 1..],
        (None, None) => s,
        _ => return false,
    };
    match addr.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !addr.contains(char::is_whitespace),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // bytes 0..32
    const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789ABCDEF";
    const SERVICE_SID: &str = "MG0123456789abcdef0123456789abcdef";

    fn dev() -> HashMap<&'static str, String> {
        HashMap::from([
            ("ENVIRONMENT", "development".to_string()),
            ("MAIL_PROVIDER", "log".to_string()),
            ("SMS_PROVIDER", "log".to_string()),
            ("OTP_PEPPER", "p".repeat(43)),
            ("JWT_SIGNING_KEYS", format!("k1:{SEED}")),
        ])
    }

    fn prod() -> HashMap<&'static str, String> {
        let mut m = dev();
        m.insert("ENVIRONMENT", "production".into());
        m.insert("MAIL_PROVIDER", "resend".into());
        m.insert("MAIL_API_KEY", "re_123".into());
        m.insert("DEFAULT_FROM_EMAIL", "Acme <noreply@acme.test>".into());
        m.insert("SMS_PROVIDER", "twilio".into());
        m.insert("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into());
        m.insert("TWILIO_AUTH_TOKEN", "tok".into());
        m.insert("TWILIO_PHONE_NUMBER", "+15005550006".into());
        m
    }

    fn parse(m: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(&|k| m.get(k).cloned())
    }

    #[test]
    fn development_settings_parse() {
        let c = parse(&dev()).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.mail.provider, MailProvider::Log);
        assert_eq!(c.sms.twilio, None);
        assert_eq!(c.jwt_signing_keys[0].kid, "k1");
        assert_eq!(c.jwt_signing_keys[0].seed[31], 31);
    }

    #[test]
    fn production_settings_parse_with_real_provider_defaults() {
        let c = parse(&prod()).unwrap();
        assert!(c.is_production());
        assert_eq!(c.mail.api_base, "https://api.resend.com");
        let t = c.sms.twilio.unwrap();
        assert_eq!(t.api_base, "https://api.twilio.com");
        assert_eq!(t.sender, TwilioSender::Address("+15005550006".into()));
    }

    #[test]
    fn environment_defaults_to_production() {
        let mut m = dev();
        m.remove("ENVIRONMENT");
        assert_eq!(parse(&m).unwrap_err().setting, "MAIL_PROVIDER");
    }

    #[test]
    fn production_refuses_development_only_settings() {
        for (name, value) in [
            ("MAIL_PROVIDER", "log"),
            ("SMS_PROVIDER", "log"),
            ("MAIL_API_BASE", "http://127.0.0.1:9000"),
            ("TWILIO_API_BASE", "http://127.0.0.1:9001"),
            ("JWT_ISSUER", "http://auth.example.com"),
        ] {
            let mut m = prod();
            m.insert(name, value.into());
            let e = parse(&m).unwrap_err();
            assert_eq!(e.setting, name, "{value}");
            assert!(e.problem.contains("production"), "{e}");
        }
    }

    #[test]
    fn missing_and_malformed_settings_name_the_setting() {
        let cases: Vec<(&str, Option<&str>)> = vec![
            ("OTP_PEPPER", None),
            ("OTP_PEPPER", Some("short")),
            ("JWT_SIGNING_KEYS", None),
            ("JWT_SIGNING_KEYS", Some("nokid")),
            ("JWT_SIGNING_KEYS", Some("k1:AAAA")),
            ("ENVIRONMENT", Some("staging")),
            ("MAIL_PROVIDER", Some("smtp")),
        ];
        for (name, value) in cases {
            let mut m = dev();
            match value {
                Some(v) => m.insert(name, v.into()),
                None => m.remove(name),
            };
            assert_eq!(parse(&m).unwrap_err().setting, name, "{name}={value:?}");
        }
        for name in ["MAIL_API_KEY", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "TWILIO_PHONE_NUMBER"] {
            let mut m = prod();
            m.remove(name);
            assert_eq!(parse(&m).unwrap_err().setting, name);
        }
    }

    #[test]
    fn messaging_service_replaces_the_phone_number() {
        let mut m = prod();
        m.remove("TWILIO_PHONE_NUMBER");
        m.insert("TWILIO_MESSAGING_SERVICE_SID", SERVICE_SID.into());
        let t = parse(&m).unwrap().sms.twilio.unwrap();
        assert_eq!(t.sender, TwilioSender::MessagingService(SERVICE_SID.into()));
    }

    #[test]
    fn twilio_identifiers_follow_twilio_formats() {
        for (name, bad) in [
            ("TWILIO_ACCOUNT_SID", "AC0123"),
            ("TWILIO_ACCOUNT_SID", "MG0123456789abcdef0123456789abcdef"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdeg"),
            ("TWILIO_PHONE_NUMBER", "15005550006x"),
            ("TWILIO_PHONE_NUMBER", "+0123"),
            ("TWILIO_PHONE_NUMBER", "AcmeLoginCodes"),
            ("TWILIO_PHONE_NUMBER", "12"),
            ("TWILIO_PHONE_NUMBER", "12345678"),
            ("TWILIO_PHONE_NUMBER", "Acme.Login"),
        ] {
            let mut m = prod();
            m.insert(name, bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, name, "{name}={bad}");
        }
        let mut m = prod();
        m.insert("TWILIO_MESSAGING_SERVICE_SID", "MG123".into());
        assert_eq!(parse(&m).unwrap_err().setting, "TWILIO_MESSAGING_SERVICE_SID");
        // Short codes and alphanumeric sender IDs are what Twilio's From accepts too.
        for from in ["+15005550006", "12345", "894546", "Acme", "Acme Login", "2FA-Code", "A&B_Co+"] {
            let mut m = prod();
            m.insert("TWILIO_PHONE_NUMBER", from.into());
            assert_eq!(parse(&m).unwrap().sms.twilio.unwrap().sender, TwilioSender::Address(from.into()), "{from}");
        }
    }

    #[test]
    fn a_login_codes_queue_delay_is_one_second_unless_set_within_a_minute() {
        let mut m = dev();
        assert_eq!(parse(&m).unwrap().login_delivery_delay_seconds, 1);
        for (value, seconds) in [("0", 0), ("60", 60)] {
            m.insert("LOGIN_DELIVERY_DELAY_SECONDS", value.into());
            assert_eq!(parse(&m).unwrap().login_delivery_delay_seconds, seconds);
        }
        for bad in ["61", "-1", "1.5", "soon"] {
            m.insert("LOGIN_DELIVERY_DELAY_SECONDS", bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, "LOGIN_DELIVERY_DELAY_SECONDS", "{bad}");
        }
    }

    #[test]
    fn a_session_lives_90_days_unless_set_to_any_positive_number_of_seconds() {
        let mut m = dev();
        assert_eq!(parse(&m).unwrap().tokens.session_max_lifetime_seconds, 7_776_000);
        for (value, seconds) in [("1", 1), ("4", 4), ("2592000", 2_592_000), ("3153600000", 3_153_600_000)] {
            m.insert("SESSION_MAX_LIFETIME_SECONDS", value.into());
            assert_eq!(parse(&m).unwrap().tokens.session_max_lifetime_seconds, seconds);
        }
        for bad in ["0", "-5", "3153600001", "1.5", "90d"] {
            m.insert("SESSION_MAX_LIFETIME_SECONDS", bad.into());
            let e = parse(&m).unwrap_err();
            assert_eq!(e.setting, "SESSION_MAX_LIFETIME_SECONDS", "{bad}");
            assert!(e.problem.contains("from 1 to"), "{e}");
        }
    }

    #[test]
    fn a_session_refreshes_ten_times_a_minute_unless_set_from_1_to_a_million() {
        let mut m = dev();
        assert_eq!(parse(&m).unwrap().tokens.refreshes_per_session_per_minute, 10);
        for (value, n) in [("1", 1), ("1000000", 1_000_000)] {
            m.insert("REFRESH_PER_SESSION_PER_MINUTE", value.into());
            assert_eq!(parse(&m).unwrap().tokens.refreshes_per_session_per_minute, n);
        }
        for bad in ["0", "1000001", "-1", "ten"] {
            m.insert("REFRESH_PER_SESSION_PER_MINUTE", bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, "REFRESH_PER_SESSION_PER_MINUTE", "{bad}");
        }
    }

    #[test]
    fn the_sms_retriever_hash_is_eleven_characters_and_excludes_webotp() {
        let mut m = dev();
        m.insert("SMS_RETRIEVER_APP_HASH", "FA+9qCX9VSu".into());
        assert_eq!(parse(&m).unwrap().sms_retriever_hash.as_deref(), Some("FA+9qCX9VSu"));
        for bad in ["FA+9qCX9VS", "FA+9qCX9VSuu", "FA 9qCX9VSu"] {
            m.insert("SMS_RETRIEVER_APP_HASH", bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, "SMS_RETRIEVER_APP_HASH", "{bad}");
        }
        m.insert("SMS_RETRIEVER_APP_HASH", "FA+9qCX9VSu".into());
        m.insert("OTP_WEBOTP_DOMAIN", "login.acme.test".into());
        assert_eq!(parse(&m).unwrap_err().setting, "SMS_RETRIEVER_APP_HASH");
    }

    #[test]
    fn turnstile_is_off_without_a_secret_and_test_secrets_stay_out_of_production() {
        assert_eq!(parse(&dev()).unwrap().turnstile, None);
        let mut m = dev();
        m.insert("TURNSTILE_SECRET_KEY", TURNSTILE_TEST_SECRETS[0].into());
        let t = parse(&m).unwrap().turnstile.unwrap();
        assert_eq!((t.api_base.as_str(), t.required_for), ("https://challenges.cloudflare.com", TurnstileScope::All));
        m.insert("TURNSTILE_REQUIRED_FOR", "sms".into());
        assert_eq!(parse(&m).unwrap().turnstile.unwrap().required_for, TurnstileScope::Sms);
        m.insert("TURNSTILE_REQUIRED_FOR", "email".into());
        assert_eq!(parse(&m).unwrap_err().setting, "TURNSTILE_REQUIRED_FOR");
        let mut p = prod();
        p.insert("TURNSTILE_SECRET_KEY", TURNSTILE_TEST_SECRETS[0].into());
        assert_eq!(parse(&p).unwrap_err().setting, "TURNSTILE_SECRET_KEY");
        p.insert("TURNSTILE_SECRET_KEY", "0x4AAAAAAABkMYinukE8nzYS_real_secret".into());
        assert!(parse(&p).unwrap().turnstile.is_some());
        p.insert("TURNSTILE_SITE_KEY", "<script>".into());
        assert_eq!(parse(&p).unwrap_err().setting, "TURNSTILE_SITE_KEY");
    }

    #[test]
    fn the_public_base_url_is_https_in_production() {
        assert_eq!(parse(&prod()).unwrap().public_base_url, None);
        let mut m = prod();
        m.insert("PUBLIC_BASE_URL", "https://auth.acme.test/".into());
        assert_eq!(parse(&m).unwrap().public_base_url.as_deref(), Some("https://auth.acme.test"));
        m.insert("PUBLIC_BASE_URL", "http://auth.acme.test".into());
        assert_eq!(parse(&m).unwrap_err().setting, "PUBLIC_BASE_URL");
        let mut d = dev();
        d.insert("PUBLIC_BASE_URL", "http://127.0.0.1:8787".into());
        assert_eq!(parse(&d).unwrap().public_base_url.as_deref(), Some("http://127.0.0.1:8787"));
    }

    #[test]
    fn webhooks_need_a_url_an_https_one_in_production_and_a_whsec_secret() {
        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut m = prod();
        // No URL: no webhooks, whatever else is set.
        m.insert("WEBHOOK_SECRET", "nonsense".into());
        m.insert("WEBHOOK_EVENTS", "nonsense".into());
        assert_eq!(parse(&m).unwrap().webhooks, None);
        m.insert("WEBHOOK_URL", "https://hooks.acme.test/otp-edge/".into());
        m.remove("WEBHOOK_EVENTS");
        let e = parse(&m).unwrap_err();
        assert_eq!(e.setting, "WEBHOOK_SECRET");
        assert!(!e.to_string().contains("nonsense"), "{e}");
        m.insert("WEBHOOK_SECRET", SECRET.into());
        let w = parse(&m).unwrap().webhooks.unwrap();
        // The URL is kept whole, its trailing slash too.
        assert_eq!(w.url, "https://hooks.acme.test/otp-edge/");
        assert_eq!((w.events.len(), w.retry_delays.as_slice()), (8, &webhooks::DEFAULT_RETRY_DELAYS[..]));
        assert_eq!(w.key, SigningKey::parse(SECRET).unwrap());
        assert!(!format!("{w:?}").contains("MfKQ9r8"));
        // A short (23-byte) key, or one without the prefix, is refused unseen.
        for bad in ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
            m.insert("WEBHOOK_SECRET", bad.into());
            let e = parse(&m).unwrap_err();
            assert_eq!(e.setting, "WEBHOOK_SECRET");
            assert!(!e.to_string().contains("MfKQ9r8"), "{e}");
        }
        m.insert("WEBHOOK_SECRET", SECRET.into());
        m.insert("WEBHOOK_EVENTS", "session.created,session.revoked".into());
        assert_eq!(parse(&m).unwrap().webhooks.unwrap().events, [EventType::SessionCreated, EventType::SessionRevoked]);
        m.insert("WEBHOOK_EVENTS", "session.created,user.updated".into());
        assert_eq!(parse(&m).unwrap_err().setting, "WEBHOOK_EVENTS");
        m.remove("WEBHOOK_EVENTS");
        m.insert("WEBHOOK_RETRY_DELAYS_SECONDS", "1, 2,4".into());
        assert_eq!(parse(&m).unwrap().webhooks.unwrap().retry_delays, [1, 2, 4]);
        for bad in ["", "1,,2", "43201", "0", "-1", "a"] {
            m.insert("WEBHOOK_RETRY_DELAYS_SECONDS", bad.into());
            let parsed = parse(&m);
            // An empty value is unset: the default schedule.
            if bad.is_empty() {
                assert_eq!(parsed.unwrap().webhooks.unwrap().retry_delays.len(), 9);
            } else {
                assert_eq!(parsed.unwrap_err().setting, "WEBHOOK_RETRY_DELAYS_SECONDS", "{bad}");
            }
        }
        m.remove("WEBHOOK_RETRY_DELAYS_SECONDS");
        m.insert("WEBHOOK_URL", "http://hooks.acme.test/x".into());
        assert_eq!(parse(&m).unwrap_err().setting, "WEBHOOK_URL");
        m.insert("WEBHOOK_URL", "hooks.acme.test".into());
        assert_eq!(parse(&m).unwrap_err().setting, "WEBHOOK_URL");
        let mut d = dev();
        d.insert("WEBHOOK_URL", "http://127.0.0.1:9999/hook".into());
        d.insert("WEBHOOK_SECRET", SECRET.into());
        assert_eq!(parse(&d).unwrap().webhooks.unwrap().url, "http://127.0.0.1:9999/hook");
    }

    #[test]
    fn signing_keys_keep_order_and_refuse_duplicates() {
        let keys = parse_signing_keys(&format!("new:{SEED}, old:{SEED}")).unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["new", "old"]);
        assert!(parse_signing_keys(&format!("a:{SEED},a:{SEED}")).is_err());
    }

    #[test]
    fn otp_settings_have_the_reference_defaults_and_bounds() {
        let c = parse(&dev()).unwrap();
        assert_eq!(
            c.otp,
            OtpSettings {
                length: 6,
                ttl_phone_seconds: 300,
                ttl_email_seconds: 600,
                max_attempts: 3,
                verification_token_ttl_seconds: 600
            }
        );
        assert!(c.enumeration_protection);
        for (name, bad) in [
            ("OTP_LENGTH", "5"),
            ("OTP_LENGTH", "11"),
            ("OTP_TTL_EMAIL_SECONDS", "0"),
            ("OTP_MAX_ATTEMPTS", "x"),
            ("ENUMERATION_PROTECTION", "maybe"),
        ] {
            let mut m = dev();
            m.insert(name, bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, name, "{name}={bad}");
        }
        let mut m = dev();
        m.insert("OTP_LENGTH", "8".into());
        m.insert("ENUMERATION_PROTECTION", "false".into());
        let c = parse(&m).unwrap();
        assert_eq!(c.otp.length, 8);
        assert!(!c.enumeration_protection);
    }

    #[test]
    fn test_identities_parse_expire_and_are_refused_in_production() {
        let mut m = dev();
        m.insert("TEST_IDENTITIES", "Review@Acme.test:246810:2027-01-31, +1 555 000 1234:135790:2027-01-31".into());
        let c = parse(&m).unwrap();
        let review = Destination::parse("review@acme.test").unwrap();
        let before = chrono::NaiveDate::from_ymd_opt(2027, 1, 30)
            .unwrap()
            .and_hms_opt(23, 59, 59)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        assert_eq!(c.test_identity(&review, before).unwrap().code.expose(), "246810");
        assert!(c.test_identity(&review, before + 1000).is_none(), "expired at 2027-01-31T00:00Z");
        let phone = Destination::parse("+15550001234").unwrap();
        assert!(c.test_identity(&phone, before).is_some());

        for bad in ["a@b.co:12345:2027-01-01", "nobody:123456:2027-01-01", "a@b.co:123456:tomorrow", "a@b.co:123456"] {
            m.insert("TEST_IDENTITIES", bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, "TEST_IDENTITIES", "{bad}");
        }
        let mut p = prod();
        p.insert("TEST_IDENTITIES", "a@b.co:123456:2027-01-01".into());
        assert!(parse(&p).unwrap_err().problem.contains("production"));
    }

    #[test]
    fn limits_have_documented_defaults_and_are_checked() {
        let l = parse(&dev()).unwrap().limits;
        assert_eq!((l.requests_per_destination, l.request_window_seconds, l.resend_cooldown_seconds), (5, 3600, 0));
        assert_eq!((l.verify_failures_per_destination, l.verify_failure_window_seconds), (10, 86_400));
        assert_eq!(l.requests_breaker, 20);
        assert_eq!((l.verify_failure_breaker, l.verify_failure_breaker_window_seconds), (100, 864_000));
        assert_eq!(l.known_network_seconds, 7_776_000);
        assert_eq!((l.ip_requests, l.ip_verifies, l.ip_window_seconds), (300, 600, 3600));
        assert_eq!(l.sms_policy, SmsPolicy::new(vec![], vec![]), "the default block list alone");
        let mut m = dev();
        m.insert("SMS_ALLOWED_COUNTRY_CODES", "+1, 44,49, 1876".into());
        m.insert("SMS_BLOCKED_PREFIXES", "4475".into());
        let policy = parse(&m).unwrap().limits.sms_policy;
        let expected = SmsPolicy::new(vec!["1".into(), "44".into(), "49".into(), "1876".into()], vec!["4475".into()]);
        assert_eq!(policy, expected);
        for (name, bad) in [
            ("SMS_ALLOWED_COUNTRY_CODES", "1,uk"),
            ("SMS_ALLOWED_COUNTRY_CODES", "0044"),
            ("SMS_ALLOWED_COUNTRY_CODES", "1234567"),
            ("SMS_BLOCKED_PREFIXES", "44x"),
            ("RATE_LIMIT_PER_HOUR", "0"),
            ("IP_WINDOW_SECONDS", "-1"),
        ] {
            let mut m = dev();
            m.insert(name, bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, name, "{name}={bad}");
        }
    }

    #[test]
    fn pumping_caps_have_defaults_and_country_caps_parse() {
        let l = parse(&dev()).unwrap().limits;
        assert_eq!((l.sms_prefix_digits, l.sms_per_prefix_per_hour), (8, 20));
        assert!(l.sms_country_daily_caps.is_empty());
        assert_eq!((l.ip48_requests, l.ip48_verifies), (1200, 2400));
        assert_eq!(
            parse_country_caps("44:500, +234:50, 4477:10").unwrap(),
            [("4477".to_string(), 10), ("234".to_string(), 50), ("44".to_string(), 500)]
        );
        for bad in ["44", "uk:5", "44:0", "44:x", "044:5", "44:5,44:6"] {
            let mut m = dev();
            m.insert("SMS_COUNTRY_DAILY_CAPS", bad.into());
            assert_eq!(parse(&m).unwrap_err().setting, "SMS_COUNTRY_DAILY_CAPS", "{bad}");
        }
    }

    #[test]
    fn origins_are_exact_and_the_demo_page_is_development_only() {
        assert_eq!(
            parse_origins(" https://a.example, http://localhost:3000 ").unwrap(),
            ["https://a.example", "http://localhost:3000"]
        );
        assert!(parse_origins("").unwrap().is_empty());
        for bad in ["*", "https://*.example.com", "https://a.example/path", "a.example", "ftp://a"] {
            assert!(parse_origins(bad).is_err(), "{bad}");
        }
        let mut m = dev();
        m.insert("ALLOWED_ORIGINS", "https://*.example.com".into());
        assert_eq!(parse(&m).unwrap_err().setting, "ALLOWED_ORIGINS");
        assert!(parse(&dev()).unwrap().demo_page);
        assert!(!parse(&prod()).unwrap().demo_page);
        let mut p = prod();
        p.insert("DEMO_PAGE", "true".into());
        assert!(parse(&p).unwrap().demo_page);
    }

    #[test]
    fn admin_tokens_are_optional_and_a_malformed_entry_is_a_configuration_error() {
        assert!(parse(&dev()).unwrap().admin_tokens.is_empty());
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let mut m = prod();
        m.insert("ADMIN_API_TOKENS", format!("support:users:read audit:read:{hash}\n"));
        let tokens = parse(&m).unwrap().admin_tokens;
        assert_eq!(tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["support"]);
        for bad in ["oea_not_a_hash", "support:users:read:oea_not_a_hash", "x:root:0"] {
            m.insert("ADMIN_API_TOKENS", bad.into());
            let e = parse(&m).unwrap_err();
            assert_eq!(e.setting, "ADMIN_API_TOKENS", "{bad}");
            assert!(!e.to_string().contains("oea_"), "{e}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = parse(&prod()).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("re_123") && !dump.contains(&"p".repeat(43)) && !dump.contains("tok\""));
        assert!(dump.contains("[redacted]"));
    }

    /// The `KEY = "value"` lines of one table of wrangler.toml.
    fn vars_of(toml: &str, table: &str) -> Vec<(String, String)> {
        let mut inside = false;
        let mut vars = Vec::new();
        for line in toml.lines().map(str::trim) {
            if line.starts_with('[') {
                inside = line == format!("[{table}]");
            } else if let (true, Some((key, value))) = (inside && !line.starts_with('#'), line.split_once('=')) {
                let value = value.trim().strip_prefix('"').and_then(|v| v.split_once('"'));
                vars.push((key.trim().to_string(), value.expect("a quoted value").0.to_string()));
            }
        }
        vars
    }

    #[test]
    fn staging_has_every_production_setting_and_differs_only_where_it_must() {
        let toml = include_str!("../wrangler.toml");
        let (production, staging) = (vars_of(toml, "vars"), vars_of(toml, "env.staging.vars"));
        assert!(production.len() > 40, "{production:?}");
        // Wrangler does not inherit [vars] into an environment: a setting
        // left out would be the service's default, not production's value.
        let keys = |vars: &[(String, String)]| vars.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&staging), keys(&production), "env.staging.vars vs vars");
        let differ: Vec<&str> =
            production.iter().zip(&staging).filter(|(p, s)| p.1 != s.1).map(|(p, _)| p.0.as_str()).collect();
        let intended = ["APP_NAME", "DEFAULT_FROM_EMAIL", "PUBLIC_BASE_URL", "JWT_ISSUER", "JWT_AUDIENCE", "DEMO_PAGE"];
        assert_eq!(differ, intended, "staging runs with production's settings but these");
        // What the operator puts in, as secrets or by editing the file.
        let operator = [
            ("OTP_PEPPER", "p".repeat(43)),
            ("JWT_SIGNING_KEYS", format!("k1:{SEED}")),
            ("MAIL_API_KEY", "re_123".to_string()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_string()),
            ("TWILIO_AUTH_TOKEN", "tok".to_string()),
            ("TWILIO_PHONE_NUMBER", "+15005550006".to_string()),
        ];
        let deployment = |vars: &[(String, String)]| {
            let mut m: HashMap<String, String> = vars.iter().cloned().collect();
            for (k, v) in &operator {
                m.insert(k.to_string(), v.clone());
            }
            Config::from_lookup(&|k| m.get(k).cloned())
        };
        let (deployed, staged) = (deployment(&production).expect("vars"), deployment(&staging).expect("staging"));
        assert!(deployed.is_production() && staged.is_production(), "staging runs under production's rules");
        assert_ne!(staged.tokens.issuer, deployed.tokens.issuer, "staging's tokens are not production's");
    }
}
