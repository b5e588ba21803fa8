//! Native microbenchmarks of the pure work in one login flow: what the
//! service computes itself, outside the platform (D1, the Durable Object,
//! the network). `login_flow_pure_work` runs all of it once, in the order a
//! request plus a verify does; the others break it down.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use otp_edge::config::SigningKeySeed;
use otp_edge::domain::crypto::{ct_eq, new_uuid};
use otp_edge::domain::destination::Destination;
use otp_edge::domain::limits;
use otp_edge::domain::otp::{self, OtpCode, Purpose};
use otp_edge::domain::tokens::{self, Keys, TokenSettings};

const PEPPER: &str = "bench-pepper-0123456789abcdefghijklmnopqrstuvwxyz";
const NOW: i64 = 1_800_000_000_000;

fn settings() -> TokenSettings {
    TokenSettings {
        issuer: "otp-edge".into(),
        audience: "otp-edge".into(),
        access_lifetime_seconds: 300,
        refresh_lifetime_seconds: 2_592_000,
        refresh_reuse_grace_seconds: 10,
        session_max_lifetime_seconds: 7_776_000,
        refreshes_per_session_per_minute: 10,
    }
}

fn keys() -> Keys {
    Keys::from_seeds(&[SigningKeySeed { kid: "k1".into(), seed: [7; 32] }])
}

/// Everything pure a request plus a verify computes.
fn login_flow(keys: &Keys, settings: &TokenSettings) -> String {
    // POST /otp/request
    let destination = Destination::parse(" User.Name@Example.com ").unwrap();
    let ip = limits::ip_object(PEPPER, &limits::ip_key("203.0.113.7"));
    let at = limits::destination_limits(PEPPER, &destination);
    let code = OtpCode::generate(6);
    let id = limits::code_id(PEPPER, &at, *new_uuid().as_bytes());
    let otp_id = id.hyphenated().to_string();
    let stored = otp::code_hash(PEPPER, &otp_id, Purpose::Login, &code);
    // POST /otp/verify: the object from the id, the guess's hash (D1 compares)
    let submitted = OtpCode::parse(code.expose(), 6).unwrap();
    let ip2 = limits::ip_object(PEPPER, &limits::ip_key("203.0.113.7"));
    let dest_object = limits::code_object(PEPPER, &id);
    assert_eq!(dest_object, at.object);
    assert!(ct_eq(otp::code_hash(PEPPER, &otp_id, Purpose::Login, &submitted).as_bytes(), stored.as_bytes()));
    let refresh = tokens::new_refresh_token();
    let refresh_hash = tokens::refresh_token_hash(&refresh);
    let access = keys.issue_access(
        settings,
        "user",
        &new_uuid().hyphenated().to_string(),
        &tokens::access_jti(&refresh_hash),
        NOW,
    );
    black_box((ip, dest_object, ip2));
    access
}

fn hot_path(c: &mut Criterion) {
    let keys = keys();
    let settings = settings();
    let destination = Destination::parse("user@example.com").unwrap();
    let code = OtpCode::parse("123456", 6).unwrap();
    let stored = otp::code_hash(PEPPER, "id", Purpose::Login, &code);
    let token = keys.issue_access(&settings, "user", "session", "jti", NOW);

    c.bench_function("login_flow_pure_work", |b| b.iter(|| login_flow(&keys, &settings)));
    c.bench_function("code_generate", |b| b.iter(|| OtpCode::generate(black_box(6))));
    c.bench_function("code_hmac", |b| b.iter(|| otp::code_hash(PEPPER, black_box("id"), Purpose::Login, &code)));
    c.bench_function("constant_time_compare", |b| {
        b.iter(|| ct_eq(black_box(stored.as_bytes()), black_box(stored.as_bytes())))
    });
    c.bench_function("jwt_sign", |b| b.iter(|| keys.issue_access(&settings, "user", "session", black_box("jti"), NOW)));
    c.bench_function("jwt_verify", |b| {
        b.iter(|| keys.verify_access(&settings, black_box(&token), NOW + 1000).unwrap())
    });
    c.bench_function("destination_parse_email", |b| {
        b.iter(|| Destination::parse(black_box(" User.Name+tag@Example.COM ")))
    });
    c.bench_function("destination_parse_phone", |b| b.iter(|| Destination::parse(black_box("+1 (555) 010-9999"))));
    c.bench_function("rate_limit_object_name", |b| {
        b.iter(|| limits::destination_limits(PEPPER, black_box(&destination)).object)
    });
    c.bench_function("signing_keys_from_seed", |b| {
        b.iter(|| Keys::from_seeds(black_box(&[SigningKeySeed { kid: "k".into(), seed: [1; 32] }])))
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
