//! Access tokens (EdDSA JWTs through jwt-compact), the JWKS that publishes
//! their keys, and opaque refresh tokens. Pure; unit-tested natively.

use std::borrow::Cow;
use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use chrono::{DateTime, TimeZone, Utc};
use ed25519_compact::{KeyPair, PublicKey, SecretKey, Seed, Signature};
use jwt_compact::alg::{SecretBytes, SigningKey, VerifyingKey};
use jwt_compact::{Algorithm, AlgorithmExt, Claims, Header, TimeOptions, UntrustedToken, ValidationError};
use serde::{Deserialize, Serialize};

use super::crypto::{ct_eq, hex, hmac_sha256, random_bytes_from, sha256, Csprng, Entropy};

/// One Ed25519 signing key: a key id and its 32-byte seed (RFC 8032 private key).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeySeed {
    pub kid: String,
    pub seed: [u8; 32],
}

impl fmt::Debug for SigningKeySeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeySeed {{ kid: {:?}, seed: [redacted] }}", self.kid)
    }
}

/// Ed25519 with deterministic RFC 8032 signatures. jwt-compact's own
/// ed25519-compact binding adds random noise from a getrandom version that
/// has no entropy source on Workers; a deterministic signature is standard
/// Ed25519 and also makes a re-issued token byte-identical.
///
/// The service verifies only tokens it signed itself, with keys it holds,
/// so it checks a signature by signing the message again and comparing,
/// in constant time: a deterministic Ed25519 signature is one value per key
/// and message, so this accepts exactly the signature the key makes, a
/// subset of what Ed25519 verification accepts (no malleable variants), and
/// making it needs the secret key. Other services verify the same tokens
/// the usual way, with the JWKS. Signing is cheaper than verifying (24 vs
/// 59 us natively), and ed25519-compact's verification code (about 20 KB of
/// wasm, its double scalar multiplication) leaves the bundle.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdDsa;

impl Algorithm for EdDsa {
    type SigningKey = SecretKey;
    type VerifyingKey = SecretKey;
    type Signature = Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("EdDSA")
    }

    fn sign(&self, signing_key: &SecretKey, message: &[u8]) -> Signature {
        signing_key.sign(message, None)
    }

    fn verify_signature(&self, signature: &Signature, key: &SecretKey, message: &[u8]) -> bool {
        ct_eq(key.sign(message, None).as_ref(), signature.as_ref())
    }
}

impl SigningKey<EdDsa> for SecretKey {
    fn from_slice(raw: &[u8]) -> anyhow::Result<Self> {
        SecretKey::from_slice(raw).map_err(|e| anyhow::anyhow!(e))
    }
    fn to_verifying_key(&self) -> SecretKey {
        self.clone()
    }
    fn as_bytes(&self) -> SecretBytes<'_> {
        SecretBytes::borrowed(self.as_ref())
    }
}

impl VerifyingKey<EdDsa> for SecretKey {
    fn from_slice(raw: &[u8]) -> anyhow::Result<Self> {
        SecretKey::from_slice(raw).map_err(|e| anyhow::anyhow!(e))
    }
    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_ref())
    }
}

/// `token_type` of an access token (as SimpleJWT names it).
pub const ACCESS: &str = "access";

/// The claims of an access token besides `iat` and `exp`, as
/// `verify_access` reads them. It ignores the others (`Issued`'s
/// `auth_time` and `amr`), so tokens with and without them verify alike.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    pub token_type: String,
}

/// The claims of an access token as it is issued: `AccessClaims`, and
/// `auth_time` and `amr` (OpenID Connect Core 1.0, section 2; `amr`'s
/// values from RFC 8176), which say when and how the user authenticated:
/// when the session was opened (by a login, a registration or a recovery;
/// a refresh keeps it) and with which code. They are informational, for relying
/// parties: this service's own sensitive operations (attaching a
/// destination, deleting the account) check a fresh verification token, not
/// these claims. Borrowed, so issuing copies nothing.
#[derive(Serialize)]
struct Issued<'a> {
    sub: &'a str,
    sid: &'a str,
    jti: &'a str,
    iss: &'a str,
    aud: &'a str,
    token_type: &'a str,
    auth_time: i64,
    amr: &'a [&'a str],
}

/// How a session authenticated, as the `amr` of its tokens (RFC 8176,
/// section 2, and the IANA "Authentication Method Reference Values"
/// registry): `otp` for a one-time code, and `sms` when it came by SMS.
/// Neither registers a value for a code sent by email, so an email code is
/// `otp` alone. `channel` is the code's `otp_type` as the session row
/// stores it (`sessions.auth_channel`; NULL for sessions opened before it
/// existed, which count as `otp`).
pub fn amr(channel: Option<&str>) -> &'static [&'static str] {
    match channel {
        Some("phone") => &["otp", "sms"],
        _ => &["otp"],
    }
}

/// Who the token is for and how they authenticated: its `sub`, `sid`,
/// `auth_time` (the session's opening, in ms) and `amr` (`amr`).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub auth_time_ms: i64,
    pub amr: &'a [&'a str],
}

/// Who issues tokens, for whom, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_lifetime_seconds: u64,
    pub refresh_lifetime_seconds: u64,
    pub refresh_reuse_grace_seconds: u64,
    /// `SESSION_MAX_LIFETIME_SECONDS`: a session ends this long after it
    /// was opened, however often it refreshes; then its user signs in again.
    pub session_max_lifetime_seconds: u64,
    /// `REFRESH_PER_SESSION_PER_MINUTE`: rotations of one session per
    /// `REFRESH_WINDOW_MS`.
    pub refreshes_per_session_per_minute: u32,
}

/// A session's refreshes are counted in windows of a minute, each opened by
/// the first refresh after the previous one closed.
pub const REFRESH_WINDOW_MS: i64 = 60_000;

impl TokenSettings {
    pub fn session_max_lifetime_ms(&self) -> i64 {
        self.session_max_lifetime_seconds as i64 * 1000
    }

    /// When a session opened at `created_at_ms` ends, however often it refreshes.
    pub fn session_end_ms(&self, created_at_ms: i64) -> i64 {
        created_at_ms + self.session_max_lifetime_ms()
    }

    /// At `now_ms`, sessions opened at or before this have reached their
    /// maximum lifetime: the live ones were created after it.
    pub fn live_sessions_created_after_ms(&self, now_ms: i64) -> i64 {
        now_ms - self.session_max_lifetime_ms()
    }

    /// The expiry of a refresh token issued at `now_ms`: its lifetime from
    /// now, but never past its session's end.
    pub fn refresh_expiry_ms(&self, now_ms: i64, session_created_at_ms: i64) -> i64 {
        (now_ms + self.refresh_lifetime_seconds as i64 * 1000).min(self.session_end_ms(session_created_at_ms))
    }

    /// `(iat, exp)` in whole seconds of an access token issued at
    /// `issued_at_ms` for a session that ends at `session_end_ms`: its
    /// lifetime, cut so that it does not outlive the session (by more than
    /// the part of a second `iat` drops; and it lives at least a second).
    pub fn access_times(&self, issued_at_ms: i64, session_end_ms: i64) -> (i64, i64) {
        let iat = issued_at_ms.div_euclid(1000);
        let exp = (iat + self.access_lifetime_seconds as i64).min(session_end_ms.div_euclid(1000)).max(iat + 1);
        (iat, exp)
    }
}

struct KeyEntry {
    kid: String,
    secret: SecretKey,
    public: PublicKey,
}

/// The signing keys: the first signs, all verify.
pub struct Keys {
    entries: Vec<KeyEntry>,
}

impl Keys {
    pub fn from_seeds(seeds: &[SigningKeySeed]) -> Keys {
        let entries = seeds
            .iter()
            .map(|s| {
                let pair = KeyPair::from_seed(Seed::new(s.seed));
                KeyEntry { kid: s.kid.clone(), secret: pair.sk, public: pair.pk }
            })
            .collect();
        Keys { entries }
    }

    /// The public keys as a JWK Set (RFC 7517, RFC 8037 for OKP keys).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "kid": k.kid,
                    "use": "sig",
                    "alg": "EdDSA",
                    "x": Base64UrlUnpadded::encode_string(k.public.as_ref()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Signs an access token that lives its full lifetime, for a session
    /// opened by an email code at `issued_at_ms`.
    pub fn issue_access(
        &self,
        settings: &TokenSettings,
        user_id: &str,
        session_id: &str,
        jti: &str,
        issued_at_ms: i64,
    ) -> String {
        let subject = Subject { user_id, session_id, auth_time_ms: issued_at_ms, amr: amr(None) };
        self.issue_access_within(settings, subject, jti, issued_at_ms, i64::MAX)
    }

    /// Signs an access token for a session that ends at `session_end_ms`
    /// (`TokenSettings::access_times`). Deterministic: the same inputs give
    /// the same token.
    pub fn issue_access_within(
        &self,
        settings: &TokenSettings,
        subject: Subject<'_>,
        jti: &str,
        issued_at_ms: i64,
        session_end_ms: i64,
    ) -> String {
        let signer = &self.entries[0];
        let (iat, exp) = settings.access_times(issued_at_ms, session_end_ms);
        let mut claims = Claims::new(Issued {
            sub: subject.user_id,
            sid: subject.session_id,
            jti,
            iss: &settings.issuer,
            aud: &settings.audience,
            token_type: ACCESS,
            auth_time: subject.auth_time_ms.div_euclid(1000),
            amr: subject.amr,
        });
        claims.issued_at = Some(at(iat * 1000));
        claims.expiration = Some(at(exp * 1000));
        let header = Header::empty().with_key_id(signer.kid.clone()).with_token_type("JWT");
        EdDsa.token(&header, &claims, &signer.secret).expect("claims always serialize")
    }

    /// Checks an access token completely: EdDSA only, a known `kid`, the
    /// signature, expiry, issuer, audience and token type.
    pub fn verify_access(
        &self,
        settings: &TokenSettings,
        token: &str,
        now_ms: i64,
    ) -> Result<AccessClaims, TokenError> {
        let untrusted = UntrustedToken::new(token).map_err(|_| TokenError::Malformed)?;
        if untrusted.algorithm() != "EdDSA" {
            return Err(TokenError::Algorithm);
        }
        let kid = untrusted.header().key_id.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self.entries.iter().find(|k| k.kid == kid).ok_or(TokenError::UnknownKey)?;
        let token = EdDsa.validator::<AccessClaims>(&key.secret).validate(&untrusted).map_err(|e| match e {
            ValidationError::AlgorithmMismatch { .. } => TokenError::Algorithm,
            ValidationError::InvalidSignature
            | ValidationError::MalformedSignature(_)
            | ValidationError::InvalidSignatureLen { .. } => TokenError::Signature,
            _ => TokenError::Malformed,
        })?;
        let claims = token.claims();
        let clock = TimeOptions::new(chrono::Duration::zero(), move || at(now_ms));
        claims.validate_expiration(&clock).map_err(|e| match e {
            ValidationError::NoClaim(_) => TokenError::Claims,
            _ => TokenError::Expired,
        })?;
        let c = &claims.custom;
        if c.iss != settings.issuer || c.aud != settings.audience || c.token_type != ACCESS {
            return Err(TokenError::Claims);
        }
        Ok(c.clone())
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Why an access token was refused; each maps to a 401 with a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    /// `alg` is not EdDSA (`none`, HMAC, anything else).
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    /// Wrong issuer, audience or token type, or a missing claim.
    Claims,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Malformed => "TOKEN_MALFORMED",
            TokenError::Algorithm => "TOKEN_ALGORITHM_REJECTED",
            TokenError::UnknownKey => "TOKEN_KEY_UNKNOWN",
            TokenError::Signature => "TOKEN_SIGNATURE_INVALID",
            TokenError::Expired => "TOKEN_EXPIRED",
            TokenError::Claims => "TOKEN_CLAIMS_INVALID",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            TokenError::Malformed => "The access token is not a well-formed JWT",
            TokenError::Algorithm => "The access token must be signed with EdDSA",
            TokenError::UnknownKey => "The access token was signed with an unknown key",
            TokenError::Signature => "The access token signature is invalid",
            TokenError::Expired => "The access token has expired",
            TokenError::Claims => "The access token is not an access token for this service",
        }
    }
}

/// The OpenID Provider Metadata (OpenID Connect Discovery 1.0, section 3)
/// for verifying this service's access tokens, served at
/// `/.well-known/openid-configuration`: `None` unless the issuer is an
/// http(s) origin, with no path, query or fragment (section 4: the document
/// is found under the issuer, and this Worker answers it at the root; `iss`
/// must equal the issuer exactly). Only
/// what the service does: EdDSA-signed JWTs, its keys, RFC 7009
/// revocation for public clients (no client authentication); no
/// authorization or token endpoint, so none is claimed.
pub fn discovery(issuer: &str) -> Option<serde_json::Value> {
    let base = issuer.trim_end_matches('/');
    let is_url = base.strip_prefix("https://").or_else(|| base.strip_prefix("http://"));
    if is_url.is_none_or(|host| host.is_empty() || host.contains(['/', '?', '#'])) {
        return None;
    }
    Some(serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/api/auth/token/revoke/"),
        "revocation_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "sid", "auth_time", "amr", "token_type"],
    }))
}

/// A new refresh token: 256 random bits, base64url, opaque.
pub fn new_refresh_token() -> String {
    new_refresh_token_from(&Csprng)
}

/// A refresh token from `entropy`: 256 random bits, base64url.
pub fn new_refresh_token_from(entropy: &dyn Entropy) -> String {
    Base64UrlUnpadded::encode_string(&random_bytes_from::<32>(entropy))
}

/// The token that replaces `old` on rotation. Derived, not random, so two
/// concurrent refreshes with the same token (two tabs) get the same
/// successor within the grace window; unguessable without `OTP_PEPPER`.
pub fn successor_refresh_token(pepper: &str, old: &str) -> String {
    Base64UrlUnpadded::encode_string(&hmac_sha256(pepper.as_bytes(), &[b"refresh-rotate", old.as_bytes()]))
}

/// What is stored for a refresh token: its SHA-256 (it is 256 random bits,
/// so nothing is left to brute-force).
pub fn refresh_token_hash(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

/// The `jti` of the access token issued with a refresh token: derived from
/// it, so a re-issue within the grace window is the same token.
pub fn access_jti(refresh_hash: &str) -> String {
    let digest = sha256(format!("jti:{refresh_hash}").as_bytes());
    uuid::Builder::from_random_bytes(digest[..16].try_into().expect("16 bytes")).into_uuid().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "otp-edge".into(),
            audience: "apps".into(),
            access_lifetime_seconds: 300,
            refresh_lifetime_seconds: 86_400,
            refresh_reuse_grace_seconds: 10,
            session_max_lifetime_seconds: 7 * 86_400,
            refreshes_per_session_per_minute: 10,
        }
    }

    fn keys(names: &[(&str, u8)]) -> Keys {
        Keys::from_seeds(
            &names.iter().map(|(kid, b)| SigningKeySeed { kid: kid.to_string(), seed: [*b; 32] }).collect::<Vec<_>>(),
        )
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let k = keys(&[("a", 1)]);
        let t = k.issue_access(&settings(), "user-1", "sess-1", "jti-1", NOW);
        let c = k.verify_access(&settings(), &t, NOW + 1000).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.sid.as_str(), c.jti.as_str(), c.token_type.as_str()),
            ("user-1", "sess-1", "jti-1", "access")
        );
        let header: serde_json::Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "a");
        let payload: serde_json::Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(), 300);
        assert_eq!(payload["iss"], "otp-edge");
        assert_eq!(payload["aud"], "apps");
    }

    #[test]
    fn the_token_says_when_and_how_the_session_authenticated() {
        let (k, s) = (keys(&[("a", 1)]), settings());
        let subject = Subject { user_id: "u", session_id: "s", auth_time_ms: NOW - 5_999, amr: amr(Some("phone")) };
        let t = k.issue_access_within(&s, subject, "j", NOW, i64::MAX);
        assert!(k.verify_access(&s, &t, NOW).is_ok());
        let payload: serde_json::Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["auth_time"], NOW / 1000 - 6, "whole seconds, down");
        assert_eq!(payload["amr"], serde_json::json!(["otp", "sms"]));
        assert_eq!(amr(Some("email")), ["otp"], "RFC 8176 registers no value for email");
        assert_eq!(amr(None), ["otp"], "a session from before the column");
    }

    #[test]
    fn a_token_issued_before_auth_time_and_amr_still_verifies() {
        let (k, s) = (keys(&[("a", 1)]), settings());
        let mut claims = Claims::new(serde_json::json!({
            "sub": "u", "sid": "s", "jti": "j", "iss": "otp-edge", "aud": "apps", "token_type": "access"
        }));
        claims.expiration = Some(at(NOW + 300_000));
        let header = Header::empty().with_key_id("a").with_token_type("JWT");
        let t = EdDsa.token(&header, &claims, &k.entries[0].secret).unwrap();
        let c = k.verify_access(&s, &t, NOW).unwrap();
        assert_eq!(c.sub, "u");
    }

    #[test]
    fn an_access_token_does_not_outlive_its_session() {
        let (k, s) = (keys(&[("a", 1)]), settings());
        let exp = |t: &str| -> i64 {
            let payload = Base64UrlUnpadded::decode_vec(t.split('.').nth(1).unwrap()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["exp"].as_i64().unwrap()
        };
        // Far from the end: the full 300 s.
        assert_eq!(s.access_times(NOW + 999, NOW + 3_600_000), (NOW / 1000, NOW / 1000 + 300));
        // 120.5 s before the end: 120 s, whole seconds down.
        assert_eq!(s.access_times(NOW, NOW + 120_500), (NOW / 1000, NOW / 1000 + 120));
        let subject = Subject { user_id: "u", session_id: "s", auth_time_ms: NOW, amr: amr(None) };
        let t = k.issue_access_within(&s, subject, "j", NOW, NOW + 120_500);
        assert_eq!(exp(&t), NOW / 1000 + 120);
        assert!(k.verify_access(&s, &t, NOW + 120_000).is_ok());
        assert_eq!(k.verify_access(&s, &t, NOW + 120_001), Err(TokenError::Expired), "before the session's end");
        // In the session's last second, a token still lives one second.
        assert_eq!(s.access_times(NOW + 200, NOW + 900), (NOW / 1000, NOW / 1000 + 1));
        assert_eq!(exp(&k.issue_access(&s, "u", "s", "j", NOW)), NOW / 1000 + 300, "no session end");
    }

    #[test]
    fn a_refresh_never_extends_a_session_past_its_maximum_lifetime() {
        let s = settings(); // refresh tokens live a day, sessions a week
        let day = 86_400_000;
        assert_eq!(s.session_end_ms(NOW), NOW + 7 * day);
        assert_eq!(s.refresh_expiry_ms(NOW, NOW), NOW + day, "a new session: the refresh lifetime");
        assert_eq!(s.refresh_expiry_ms(NOW + 3 * day, NOW), NOW + 4 * day);
        assert_eq!(s.refresh_expiry_ms(NOW + 6 * day + 5, NOW), NOW + 7 * day, "cut to the session's end");
        assert_eq!(s.live_sessions_created_after_ms(NOW + 7 * day), NOW, "opened at NOW: ended at NOW + 7 days");
    }

    #[test]
    fn signing_is_deterministic() {
        let k = keys(&[("a", 1)]);
        assert_eq!(k.issue_access(&settings(), "u", "s", "j", NOW), k.issue_access(&settings(), "u", "s", "j", NOW));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let old = keys(&[("old", 1)]);
        let t = old.issue_access(&settings(), "u", "s", "j", NOW);
        let rotated = keys(&[("new", 2), ("old", 1)]);
        assert!(rotated.verify_access(&settings(), &t, NOW).is_ok());
        let t2 = rotated.issue_access(&settings(), "u", "s", "j", NOW);
        assert!(t2.starts_with(&Base64UrlUnpadded::encode_string(br#"{"alg":"EdDSA""#)[..10]));
        assert_eq!(old.verify_access(&settings(), &t2, NOW), Err(TokenError::UnknownKey));
    }

    fn forge(header: &str, payload: &str, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            Base64UrlUnpadded::encode_string(header.as_bytes()),
            Base64UrlUnpadded::encode_string(payload.as_bytes()),
            sig
        )
    }

    #[test]
    fn rejected_tokens_say_why() {
        let k = keys(&[("a", 1)]);
        let s = settings();
        let good = k.issue_access(&s, "u", "s", "j", NOW);
        let parts: Vec<&str> = good.split('.').collect();
        let payload = String::from_utf8(Base64UrlUnpadded::decode_vec(parts[1]).unwrap()).unwrap();

        assert_eq!(k.verify_access(&s, &good, NOW + 301_000), Err(TokenError::Expired));
        assert_eq!(k.verify_access(&s, "not a jwt", NOW), Err(TokenError::Malformed));
        assert_eq!(
            k.verify_access(&s, &forge(r#"{"alg":"none","kid":"a"}"#, &payload, ""), NOW),
            Err(TokenError::Algorithm)
        );
        assert_eq!(
            k.verify_access(&s, &forge(r#"{"alg":"HS256","kid":"a"}"#, &payload, parts[2]), NOW),
            Err(TokenError::Algorithm)
        );
        assert_eq!(
            k.verify_access(&s, &forge(r#"{"alg":"EdDSA","kid":"zz"}"#, &payload, parts[2]), NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            k.verify_access(&s, &forge(r#"{"alg":"EdDSA"}"#, &payload, parts[2]), NOW),
            Err(TokenError::UnknownKey)
        );
        let tampered = payload.replace("\"sub\":\"u\"", "\"sub\":\"admin\"");
        assert_eq!(
            k.verify_access(&s, &forge(r#"{"alg":"EdDSA","kid":"a","typ":"JWT"}"#, &tampered, parts[2]), NOW),
            Err(TokenError::Signature)
        );

        // Checked by signing again: another key under the same kid, or one
        // flipped bit anywhere in the signature, is refused.
        let other = keys(&[("a", 2)]).issue_access(&s, "u", "s", "j", NOW);
        assert_eq!(k.verify_access(&s, &other, NOW), Err(TokenError::Signature));
        let signature = Base64UrlUnpadded::decode_vec(parts[2]).unwrap();
        for bit in [0, 7, 255, 256, 511] {
            let mut flipped = signature.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let t = format!("{}.{}.{}", parts[0], parts[1], Base64UrlUnpadded::encode_string(&flipped));
            assert_eq!(k.verify_access(&s, &t, NOW), Err(TokenError::Signature), "bit {bit}");
        }
        // And what is accepted is standard Ed25519: the public key verifies it.
        let public = k.entries[0].public;
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = Signature::from_slice(&signature).unwrap();
        assert!(public.verify(signed.as_bytes(), &sig).is_ok());

        for wrong in
            [TokenSettings { issuer: "x".into(), ..s.clone() }, TokenSettings { audience: "x".into(), ..s.clone() }]
        {
            let t = k.issue_access(&wrong, "u", "s", "j", NOW);
            assert_eq!(k.verify_access(&s, &t, NOW), Err(TokenError::Claims));
        }
    }

    #[test]
    fn jwks_publishes_every_public_key() {
        let k = keys(&[("new", 2), ("old", 1)]);
        let jwks = k.jwks();
        let list = jwks["keys"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["kid"], "new");
        assert_eq!(list[1]["kty"], "OKP");
        assert_eq!(list[1]["crv"], "Ed25519");
        assert_eq!(Base64UrlUnpadded::decode_vec(list[0]["x"].as_str().unwrap()).unwrap().len(), 32);
        assert!(list[0].get("d").is_none(), "no private part");
    }

    #[test]
    fn refresh_tokens_are_opaque_and_rotation_is_stable() {
        let t = new_refresh_token();
        assert_eq!(Base64UrlUnpadded::decode_vec(&t).unwrap().len(), 32);
        assert_ne!(t, new_refresh_token());
        assert_eq!(successor_refresh_token("p", &t), successor_refresh_token("p", &t));
        assert_ne!(successor_refresh_token("p", &t), successor_refresh_token("q", &t));
        assert_eq!(refresh_token_hash(&t).len(), 64);
        assert_eq!(access_jti("h"), access_jti("h"));
        assert_ne!(access_jti("h"), access_jti("g"));
    }

    #[test]
    fn discovery_is_served_only_for_an_issuer_that_is_a_url() {
        let doc = discovery("https://auth.example.com").expect("a URL issuer");
        assert_eq!(doc["issuer"], "https://auth.example.com", "iss must equal it exactly");
        assert_eq!(doc["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
        assert_eq!(doc["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA"]));
        assert_eq!(doc["revocation_endpoint"], "https://auth.example.com/api/auth/token/revoke/");
        // A trailing slash is not doubled, and the issuer stays as given.
        let doc = discovery("http://127.0.0.1:8787/").expect("http, as in development");
        assert_eq!(doc["jwks_uri"], "http://127.0.0.1:8787/.well-known/jwks.json");
        assert_eq!(doc["issuer"], "http://127.0.0.1:8787/");
        // Not an origin this Worker answers the document at.
        let not_origins =
            ["otp-edge", "https://", "https://a.example/auth", "https://a.example?x=1", "ftp://a.example"];
        for not_a_url in not_origins {
            assert_eq!(discovery(not_a_url), None, "{not_a_url}");
        }
    }
}
