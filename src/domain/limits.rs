//! Rate limits as sliding logs: a rule allows at most `limit` events in any
//! window of `window_ms`. The whole algorithm is here (decide, hit, guess,
//! release) over an `EventLog` port; the Durable Object is only its storage
//! and wire format, and native tests run the same algorithm on SQLite.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::crypto::{hex, hmac_sha256};
use super::destination::Destination;

/// The limits the service enforces, each with its bucket in the rate-limit
/// objects (also its name in the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    IpRequests,
    IpVerifies,
    /// An IPv6 client's /48 (a site), above its /64's own limits.
    Ip48Requests,
    Ip48Verifies,
    /// Requests for one destination from one client network.
    DestinationRequests,
    /// Requests for one destination from networks it does not know: the
    /// breaker far above `DestinationRequests`.
    DestinationRequestsAll,
    /// Failed verifications of one destination's codes from one client network.
    VerifyFailures,
    /// Failed verifications of one destination's codes from networks it does
    /// not know: the breaker that bounds guessing from many networks.
    VerifyFailuresAll,
    /// SMS the whole service sends.
    SmsCap,
    /// SMS to one number range (`SMS_PREFIX_DIGITS`).
    SmsPrefixCap,
    /// SMS to one country (`SMS_COUNTRY_DAILY_CAPS`).
    SmsCountryCap,
    /// Refreshes of one session (`REFRESH_PER_SESSION_PER_MINUTE`), counted
    /// in its D1 row, not in a rate-limit object (store/sessions.rs).
    SessionRefreshes,
}

impl Limit {
    pub fn bucket(self) -> &'static str {
        match self {
            Limit::IpRequests => "ip_request",
            Limit::IpVerifies => "ip_verify",
            Limit::Ip48Requests => "ip48_request",
            Limit::Ip48Verifies => "ip48_verify",
            Limit::DestinationRequests => "otp_request",
            Limit::DestinationRequestsAll => "otp_request_all",
            Limit::VerifyFailures => "verify_failure",
            Limit::VerifyFailuresAll => "verify_failure_all",
            Limit::SmsCap => "sms",
            Limit::SmsPrefixCap => "sms_prefix",
            Limit::SmsCountryCap => "sms_country",
            Limit::SessionRefreshes => "session_refresh",
        }
    }
}

/// At most `limit` events of `bucket` in any `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub bucket: String,
    pub window_ms: i64,
    pub limit: u32,
}

impl Rule {
    pub fn new(bucket: &str, window_seconds: u64, limit: u32) -> Rule {
        Rule { bucket: bucket.to_string(), window_ms: window_seconds as i64 * 1000, limit }
    }
}

/// What a rate-limit object answers: the one outcome type of a hit, a
/// guess and the Durable Object's wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed; `ids` are the events recorded, which `release` can give back.
    Allowed { ids: Vec<i64> },
    /// Refused: waiting `retry_after_ms` frees a slot.
    Refused { retry_after_ms: i64 },
    /// The breaker is open for this client (neither known to the
    /// destination nor past a challenge): waiting `retry_after_ms`, or
    /// passing a challenge, lets it through.
    Challenge { retry_after_ms: i64 },
}

/// A limit on what clients the destination does not know can do together,
/// far above each client's own: it stops a stranger spreading over many
/// networks, without stopping the destination's owner. It does not apply
/// to a client that passed a challenge (`exempt`) or whose network verified
/// one of the destination's codes within `known`'s window (NIST SP 800-63B
/// 5.2.2: accept attempts from addresses the subscriber authenticated from
/// before). Every event counts toward it, exempt or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub rule: Rule,
    /// The bucket of this network's verified codes for the destination.
    pub known: Rule,
    pub exempt: bool,
}

/// A verification guess, judged in the destination's object: the client
/// network's failure budget (`rule`), the destination's breaker, and whether
/// the guess `failed`. A right guess makes the network known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guess {
    pub rule: Rule,
    pub breaker: Option<Breaker>,
    pub failed: bool,
}

/// Decides one rule from the bucket's newest events inside the window
/// (`at > now - window`), newest first, at most `limit` of them: `Some`
/// milliseconds to wait, or `None` (allowed).
///
/// With `limit` events in the window the next is refused until the oldest of
/// those leaves it, at `at + window`: then exactly `limit - 1` remain.
pub fn decide(rule: &Rule, now_ms: i64, newest_in_window: &[i64]) -> Option<i64> {
    if rule.limit == 0 {
        return Some(rule.window_ms.max(1));
    }
    let limit = rule.limit as usize;
    if newest_in_window.len() < limit {
        return None;
    }
    let oldest_counted = newest_in_window[limit - 1];
    Some((oldest_counted + rule.window_ms - now_ms).max(1))
}

/// All rules must allow; a refusal waits for the slowest rule to free up.
pub fn decide_all<E>(
    rules: &[Rule],
    now_ms: i64,
    mut newest_in_window: impl FnMut(&Rule) -> Result<Vec<i64>, E>,
) -> Result<Option<i64>, E> {
    let mut wait: Option<i64> = None;
    for rule in rules {
        if let Some(ms) = decide(rule, now_ms, &newest_in_window(rule)?) {
            wait = Some(wait.map_or(ms, |w| w.max(ms)));
        }
    }
    Ok(wait)
}

/// One rate-limit object's events, as the algorithm needs them: the Durable
/// Object's SQLite storage in the Worker, SQLite natively. Synchronous on
/// purpose: with no `await` between a check and its record, two requests
/// to one object can never both take the last slot.
pub trait EventLog {
    type Error;
    /// Deletes the events whose longest window has passed.
    fn prune(&self, now_ms: i64) -> Result<(), Self::Error>;
    /// The times of `bucket`'s events after `after_ms`, newest first, at most `limit`.
    fn newest(&self, bucket: &str, after_ms: i64, limit: u32) -> Result<Vec<i64>, Self::Error>;
    /// Records an event; its id.
    fn record(&self, bucket: &str, at_ms: i64, expires_ms: i64) -> Result<i64, Self::Error>;
    fn remove(&self, id: i64) -> Result<(), Self::Error>;
    /// Keeps `code` until its `expires_ms` (pruned with the events).
    fn remember(&self, code: &PendingCode) -> Result<(), Self::Error>;
    /// What was kept of code `id`, if it has not expired.
    fn recall(&self, id: &str, now_ms: i64) -> Result<Option<Remembered>, Self::Error>;
}

/// A code whose request the destination's object allowed, kept there so
/// that a verify of it can ask the object first, knowing only the code's
/// id: the object recalls which destination's budgets the guess falls
/// under (`key`), and a `note` (the code's purpose and channel), without
/// reading D1 first. Nothing in it identifies a person: the key is a keyed
/// hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    pub id: String,
    pub key: String,
    pub note: String,
    pub expires_ms: i64,
}

/// What an object recalls of a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub key: String,
    pub note: String,
}

/// Prunes, then decides every rule: the wait of the slowest refusing rule.
fn check<L: EventLog>(log: &L, rules: &[Rule], now_ms: i64) -> Result<Option<i64>, L::Error> {
    log.prune(now_ms)?;
    wait(log, rules, now_ms)
}

/// Decides every rule from the log as it stands.
fn wait<L: EventLog>(log: &L, rules: &[Rule], now_ms: i64) -> Result<Option<i64>, L::Error> {
    decide_all(rules, now_ms, |rule| log.newest(&rule.bucket, window_floor(rule, now_ms), rule.limit))
}

/// Records one event per bucket of `rules` at `now_ms`, kept for the
/// bucket's longest window.
fn record<L: EventLog>(log: &L, rules: &[Rule], now_ms: i64) -> Result<Vec<i64>, L::Error> {
    let mut buckets: Vec<&str> = rules.iter().map(|r| r.bucket.as_str()).collect();
    buckets.sort_unstable();
    buckets.dedup();
    buckets
        .into_iter()
        .map(|bucket| {
            let longest = rules.iter().filter(|r| r.bucket == bucket).map(|r| r.window_ms).max().unwrap_or(0);
            log.record(bucket, now_ms, now_ms + longest)
        })
        .collect()
}

/// A request under `rules`: a slot under every rule, or none.
pub fn hit<L: EventLog>(log: &L, rules: &[Rule], now_ms: i64) -> Result<Outcome, L::Error> {
    hit_with(log, rules, None, now_ms)
}

/// Whether the breaker stops this client: `Some` wait while it is open for it.
fn breaker_wait<L: EventLog>(log: &L, breaker: &Breaker, now_ms: i64) -> Result<Option<i64>, L::Error> {
    let Some(ms) = wait(log, std::slice::from_ref(&breaker.rule), now_ms)? else { return Ok(None) };
    if breaker.exempt || is_known(log, breaker, now_ms)? {
        return Ok(None);
    }
    Ok(Some(ms))
}

fn is_known<L: EventLog>(log: &L, breaker: &Breaker, now_ms: i64) -> Result<bool, L::Error> {
    let known = &breaker.known;
    Ok(!log.newest(&known.bucket, window_floor(known, now_ms), 1)?.is_empty())
}

/// A request under `rules` and, if given, a breaker: refused by a rule
/// first, then stopped by the breaker; allowed, a slot under every rule and
/// the breaker.
pub fn hit_with<L: EventLog>(
    log: &L,
    rules: &[Rule],
    breaker: Option<&Breaker>,
    now_ms: i64,
) -> Result<Outcome, L::Error> {
    if let Some(retry_after_ms) = check(log, rules, now_ms)? {
        return Ok(Outcome::Refused { retry_after_ms });
    }
    if let Some(b) = breaker {
        if let Some(retry_after_ms) = breaker_wait(log, b, now_ms)? {
            return Ok(Outcome::Challenge { retry_after_ms });
        }
    }
    let mut counted: Vec<Rule> = rules.to_vec();
    counted.extend(breaker.map(|b| b.rule.clone()));
    Ok(Outcome::Allowed { ids: record(log, &counted, now_ms)? })
}

/// Whether a request under `rules` would be allowed, recording nothing:
/// for limits that count only what really happens later (SMS sent).
pub fn peek<L: EventLog>(log: &L, rules: &[Rule], now_ms: i64) -> Result<Outcome, L::Error> {
    Ok(match check(log, rules, now_ms)? {
        Some(retry_after_ms) => Outcome::Refused { retry_after_ms },
        None => Outcome::Allowed { ids: Vec::new() },
    })
}

/// A verification guess: refused while the network's failure budget is
/// spent, stopped while the breaker is open for the client, even for the
/// right code (a lockout that spared right codes would not stop guessing);
/// otherwise allowed. A wrong guess is recorded under the budget and the
/// breaker; a right one makes the client's network known.
pub fn guess<L: EventLog>(log: &L, g: &Guess, now_ms: i64) -> Result<Outcome, L::Error> {
    let rules = std::slice::from_ref(&g.rule);
    if let Some(retry_after_ms) = check(log, rules, now_ms)? {
        return Ok(Outcome::Refused { retry_after_ms });
    }
    if let Some(b) = &g.breaker {
        // The breaker's own window may be longer than the budget's: prune
        // kept its events (they expire at their bucket's longest window).
        if let Some(retry_after_ms) = breaker_wait(log, b, now_ms)? {
            return Ok(Outcome::Challenge { retry_after_ms });
        }
    }
    let ids = match (g.failed, &g.breaker) {
        (true, Some(b)) => record(log, &[g.rule.clone(), b.rule.clone()], now_ms)?,
        (true, None) => record(log, rules, now_ms)?,
        (false, Some(b)) => {
            record(log, std::slice::from_ref(&b.known), now_ms)?;
            Vec::new()
        }
        (false, None) => Vec::new(),
    };
    Ok(Outcome::Allowed { ids })
}

/// Gives back the events of an allowed hit whose work did not count.
pub fn release<L: EventLog>(log: &L, ids: &[i64]) -> Result<(), L::Error> {
    ids.iter().try_for_each(|id| log.remove(*id))
}

/// An OTP request's hit (`hit_with`): allowed, the object also keeps its
/// `code`, which a verify then asks about by id (`guess_code`).
pub fn hit_remembering<L: EventLog>(
    log: &L,
    rules: &[Rule],
    breaker: Option<&Breaker>,
    code: &PendingCode,
    now_ms: i64,
) -> Result<Outcome, L::Error> {
    let outcome = hit_with(log, rules, breaker, now_ms)?;
    if matches!(outcome, Outcome::Allowed { .. }) {
        log.remember(code)?;
    }
    Ok(outcome)
}

/// How a destination's object judges a guess at one of its codes from one
/// client network: the network's failure budget, the breaker over networks
/// the destination does not know (lifted by a `passed` challenge), and how
/// long a verified network stays known. Windows in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuessPolicy {
    pub network: String,
    pub failures: (u64, u32),
    pub breaker: (u64, u32),
    pub known_seconds: u64,
    pub passed: bool,
}

impl GuessPolicy {
    /// The guess, under the buckets of the destination with `key`.
    pub fn guess(&self, key: &str, failed: bool) -> Guess {
        let at = DestinationLimits::of_key(key);
        let (window, count) = self.failures;
        let all = Limit::VerifyFailuresAll;
        Guess {
            rule: Rule::new(&at.network_bucket(Limit::VerifyFailures, &self.network), window, count),
            breaker: Some(at.breaker(all, self.breaker, &self.network, self.known_seconds, self.passed)),
            failed,
        }
    }

    /// The bucket that says the network verified one of the destination's codes.
    pub fn known(&self, key: &str) -> Rule {
        DestinationLimits::of_key(key).known(&self.network, self.known_seconds)
    }
}

/// A guess at code `id`, judged before the code is compared (`guess`), as
/// a failure: allowed, it holds a slot under the budget and the breaker
/// until `settle` gives it back (the guess was right, or the code refused
/// it unjudged), so parallel guesses can never spend more than the budget.
/// `None`: the object does not know the code (no such request, or past
/// its end).
pub fn guess_code<L: EventLog>(
    log: &L,
    id: &str,
    policy: &GuessPolicy,
    now_ms: i64,
) -> Result<Option<Judged>, L::Error> {
    let Some(code) = log.recall(id, now_ms)? else { return Ok(None) };
    let outcome = guess(log, &policy.guess(&code.key, true), now_ms)?;
    Ok(Some(Judged { code, outcome }))
}

/// A judged guess: the code as the object recalls it, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    pub code: Remembered,
    pub outcome: Outcome,
}

/// Settles a guess `guess_code` allowed: its slots given back (`ids`) and,
/// when it was right, the network made `known`.
pub fn settle<L: EventLog>(log: &L, ids: &[i64], known: Option<&Rule>, now_ms: i64) -> Result<(), L::Error> {
    release(log, ids)?;
    if let Some(rule) = known {
        record(log, std::slice::from_ref(rule), now_ms)?;
    }
    Ok(())
}

/// Start of the window at `now`: events at or before it no longer count.
pub fn window_floor(rule: &Rule, now_ms: i64) -> i64 {
    now_ms - rule.window_ms
}

/// `Retry-After` in whole seconds, rounded up so waiting it always suffices.
pub fn retry_after_seconds(retry_after_ms: i64) -> u64 {
    ((retry_after_ms.max(1) + 999) / 1000) as u64
}

/// The rate-limit key of a client address: IPv4 as is, IPv6 by its /64 (one
/// subscriber usually holds a whole /64, so counting single addresses would
/// let one client rotate through billions of them).
pub fn ip_key(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => "unknown".to_string(),
    }
}

/// The /48 of an IPv6 address (a site: one customer's network), or `None`
/// for IPv4. One /48 holds 65,536 /64s, each with limits of its own, which
/// one client can rotate through (a /48 is free from tunnel brokers).
pub fn ip48_key(ip: &str) -> Option<String> {
    match ip.trim().parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
        _ => None,
    }
}

/// How many rate-limit objects the destinations are spread over. A fixed,
/// small number, so that every object is in use after the first few
/// requests: one object per destination would be created on the first
/// request for a destination never seen before, which made such requests
/// measurably slower, and a destination never seen is usually one without
/// an account (a timing oracle, OWASP ASVS 5 V6.3 / V2).
pub const DESTINATION_SHARDS: u16 = 64;

/// Bits of an OTP id that carry its destination's shard (`code_id`).
const SHARD_BITS: u8 = 0x3f;
const _: () = assert!(DESTINATION_SHARDS == SHARD_BITS as u16 + 1);

fn shard_object(shard: u8) -> String {
    format!("dest-shard:{shard}")
}

/// The mask hiding the shard in an id, from the id's other bits.
fn shard_mask(pepper: &str, bytes: &[u8; 16]) -> u8 {
    let mut rest = *bytes;
    rest[15] &= !SHARD_BITS;
    hmac_sha256(pepper.as_bytes(), &[b"otp-id-shard", &rest])[0] & SHARD_BITS
}

/// An OTP id from 16 random bytes (a version 4 UUID) that also says which
/// object holds its destination's limits, so a verify can ask that object
/// before it reads anything else. The shard is masked by a keyed hash of
/// the id's random bits: ids of one destination share no visible bits.
pub fn code_id(pepper: &str, at: &DestinationLimits, random: [u8; 16]) -> uuid::Uuid {
    let mut bytes = *uuid::Builder::from_random_bytes(random).as_uuid().as_bytes();
    let mask = shard_mask(pepper, &bytes);
    bytes[15] = (bytes[15] & !SHARD_BITS) | ((at.shard ^ mask) & SHARD_BITS);
    uuid::Uuid::from_bytes(bytes)
}

/// The object that holds the limits of code `id`'s destination: any id
/// names one, and an object that does not know the code says so.
pub fn code_object(pepper: &str, id: &uuid::Uuid) -> String {
    let bytes = id.as_bytes();
    shard_object((bytes[15] ^ shard_mask(pepper, bytes)) & SHARD_BITS)
}

/// Where a destination's limits live: the object, and the key its buckets
/// carry inside it. Both come from a keyed hash, so no email, phone or IP
/// appears in object names, storage or platform logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationLimits {
    pub object: String,
    /// Which of the `DESTINATION_SHARDS` objects `object` is.
    pub shard: u8,
    key: String,
}

impl DestinationLimits {
    /// The buckets of the destination with `key`, inside its object
    /// (which `object` then does not name).
    pub fn of_key(key: &str) -> DestinationLimits {
        DestinationLimits { object: String::new(), shard: 0, key: key.to_string() }
    }

    /// The destination's own part of its bucket names.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The bucket of `limit` for this destination.
    pub fn bucket(&self, limit: Limit) -> String {
        format!("{}:{}", limit.bucket(), self.key)
    }

    /// The bucket of `limit` for this destination and one client network
    /// (`network_id`).
    pub fn network_bucket(&self, limit: Limit, network: &str) -> String {
        format!("{}:{}:{network}", limit.bucket(), self.key)
    }

    /// The bucket of the codes for this destination verified from a client network.
    pub fn known_bucket(&self, network: &str) -> String {
        format!("known:{}:{network}", self.key)
    }

    /// The rule that a client `network` verified one of this destination's
    /// codes within `known_seconds`.
    pub fn known(&self, network: &str, known_seconds: u64) -> Rule {
        Rule::new(&self.known_bucket(network), known_seconds, 1)
    }

    /// The breaker over every network of `limit` (`window_seconds`,
    /// `count`): requests and verifies alike spare a `network` the
    /// destination knows, and an `exempt` (challenge-passing) client.
    pub fn breaker(
        &self,
        limit: Limit,
        (window_seconds, count): (u64, u32),
        network: &str,
        known_seconds: u64,
        exempt: bool,
    ) -> Breaker {
        Breaker {
            rule: Rule::new(&self.bucket(limit), window_seconds, count),
            known: self.known(network, known_seconds),
            exempt,
        }
    }
}

/// The client network the per-destination budgets are kept for: an IPv4
/// address, or an IPv6 /48 (a site: one /48 holds 65,536 /64s, which one
/// client can rotate through), as a keyed hash (no address in storage).
pub fn network_id(pepper: &str, ip: &str) -> String {
    let network = ip48_key(ip).unwrap_or_else(|| ip_key(ip));
    hex(&hmac_sha256(pepper.as_bytes(), &[b"client-network", network.as_bytes()])[..12])
}

pub fn destination_limits(pepper: &str, destination: &Destination) -> DestinationLimits {
    let digest = hmac_sha256(pepper.as_bytes(), &[b"rate-limit-destination", destination.limit_key().as_bytes()]);
    let shard = (u16::from_be_bytes([digest[0], digest[1]]) % DESTINATION_SHARDS) as u8;
    DestinationLimits { object: shard_object(shard), shard, key: hex(&digest[2..18]) }
}

pub fn ip_object(pepper: &str, ip_key: &str) -> String {
    format!("ip:{}", hex(&hmac_sha256(pepper.as_bytes(), &[b"rate-limit-ip", ip_key.as_bytes()])))
}

/// The one object that counts SMS sent by the whole service.
pub const SMS_CAP_OBJECT: &str = "sms-cap";

/// Where an SMS number range's cap lives: one of the shard objects, under
/// a keyed hash of the range (sharded like destinations, so a range never
/// seen before does not create an object).
pub fn sms_prefix_limits(pepper: &str, digits: &str, prefix_digits: usize) -> DestinationLimits {
    let prefix = &digits[..digits.len().min(prefix_digits)];
    let digest = hmac_sha256(pepper.as_bytes(), &[b"rate-limit-sms-prefix", prefix.as_bytes()]);
    let shard = (u16::from_be_bytes([digest[0], digest[1]]) % DESTINATION_SHARDS) as u8;
    DestinationLimits { object: format!("sms-prefix-shard:{shard}"), shard, key: hex(&digest[2..18]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn hourly(limit: u32) -> Rule {
        Rule { bucket: "req".into(), window_ms: HOUR, limit }
    }

    #[test]
    fn allows_until_the_limit_then_refuses() {
        let r = hourly(5);
        let now = 10 * HOUR;
        assert_eq!(decide(&r, now, &[]), None);
        assert_eq!(decide(&r, now, &[now - 1, now - 2, now - 3, now - 4]), None);
        let five = [now - 100, now - 200, now - 300, now - 400, now - 500];
        // The oldest counted event (now - 500) leaves the window at now - 500 + HOUR.
        assert_eq!(decide(&r, now, &five), Some(HOUR - 500));
    }

    #[test]
    fn waiting_retry_after_frees_exactly_one_slot() {
        let r = hourly(2);
        let mut log: Vec<i64> = Vec::new(); // newest first
        let newest = |log: &Vec<i64>, now: i64| -> Vec<i64> {
            log.iter().copied().filter(|&at| at > window_floor(&r, now)).take(r.limit as usize).collect()
        };
        let mut now = 1_000;
        for _ in 0..2 {
            assert_eq!(decide(&r, now, &newest(&log, now)), None);
            log.insert(0, now);
            now += 10_000;
        }
        let Some(retry_after_ms) = decide(&r, now, &newest(&log, now)) else { panic!("should refuse") };
        // One millisecond early is still refused; on time is allowed.
        assert!(decide(&r, now + retry_after_ms - 1, &newest(&log, now + retry_after_ms - 1)).is_some());
        assert_eq!(decide(&r, now + retry_after_ms, &newest(&log, now + retry_after_ms)), None);
    }

    #[test]
    fn the_slowest_rule_sets_retry_after() {
        let hour = hourly(5);
        let cooldown = Rule { bucket: "req".into(), window_ms: 30_000, limit: 1 };
        let now = HOUR;
        let events = [now - 1_000];
        let d = decide_all::<()>(&[hour.clone(), cooldown.clone()], now, |rule| {
            Ok(events.iter().copied().filter(|&at| at > window_floor(rule, now)).collect())
        });
        assert_eq!(d, Ok(Some(29_000)));
        let full: Vec<i64> = (1..=5).map(|i| now - i * 60_000).collect();
        let d = decide_all::<()>(&[hour, cooldown], now, |rule| {
            Ok(full.iter().copied().filter(|&at| at > window_floor(rule, now)).collect())
        });
        assert_eq!(d, Ok(Some(HOUR - 300_000)));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(1), 1);
        assert_eq!(retry_after_seconds(1000), 1);
        assert_eq!(retry_after_seconds(1001), 2);
        assert_eq!(retry_after_seconds(-5), 1);
        assert_eq!(retry_after_seconds(HOUR), 3600);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        assert!(decide(&hourly(0), 0, &[]).is_some());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(ip_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(ip_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(ip_key("2001:db8:1:3::1"), ip_key("2001:db8:1:2::1"));
        assert_eq!(ip_key("203.0.113.7"), "203.0.113.7");
        assert_eq!(ip_key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(ip_key("garbage"), "unknown");
    }

    #[test]
    fn object_names_hide_the_key() {
        let d = Destination::parse("alice@example.com").unwrap();
        let at = destination_limits("pepper", &d);
        let bucket = at.bucket(Limit::DestinationRequests);
        assert!(at.object.starts_with("dest-shard:") && !bucket.contains("alice"), "{at:?}");
        assert_eq!(at, destination_limits("pepper", &Destination::parse(" ALICE@example.com").unwrap()));
        assert_ne!(bucket, destination_limits("other-pepper", &d).bucket(Limit::DestinationRequests));
        // Destinations spread over the shards; each keeps its own buckets.
        let shards: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| destination_limits("pepper", &Destination::parse(&format!("u{i}@example.com")).unwrap()).object)
            .collect();
        assert_eq!(shards.len(), DESTINATION_SHARDS as usize);
        assert!(!ip_object("pepper", "203.0.113.7").contains("203"));
    }

    /// The smallest event log: a list, newest last.
    #[derive(Default)]
    struct Log(std::cell::RefCell<Vec<(i64, String, i64, i64)>>, std::cell::RefCell<Vec<PendingCode>>);

    impl EventLog for Log {
        type Error = ();
        fn prune(&self, now_ms: i64) -> Result<(), ()> {
            self.0.borrow_mut().retain(|e| e.3 > now_ms);
            Ok(())
        }
        fn newest(&self, bucket: &str, after_ms: i64, limit: u32) -> Result<Vec<i64>, ()> {
            let log = self.0.borrow();
            let mut at: Vec<i64> = log.iter().filter(|e| e.1 == bucket && e.2 > after_ms).map(|e| e.2).collect();
            at.sort_unstable_by(|a, b| b.cmp(a));
            at.truncate(limit as usize);
            Ok(at)
        }
        fn record(&self, bucket: &str, at_ms: i64, expires_ms: i64) -> Result<i64, ()> {
            let mut log = self.0.borrow_mut();
            let id = log.iter().map(|e| e.0).max().unwrap_or(0) + 1;
            log.push((id, bucket.to_string(), at_ms, expires_ms));
            Ok(id)
        }
        fn remove(&self, id: i64) -> Result<(), ()> {
            self.0.borrow_mut().retain(|e| e.0 != id);
            Ok(())
        }
        fn remember(&self, code: &PendingCode) -> Result<(), ()> {
            self.1.borrow_mut().push(code.clone());
            Ok(())
        }
        fn recall(&self, id: &str, now_ms: i64) -> Result<Option<Remembered>, ()> {
            let codes = self.1.borrow();
            let code = codes.iter().find(|c| c.id == id && c.expires_ms > now_ms);
            Ok(code.map(|c| Remembered { key: c.key.clone(), note: c.note.clone() }))
        }
    }

    #[test]
    fn a_hit_takes_a_slot_under_every_rule_or_none_and_can_be_given_back() {
        let log = Log::default();
        let rules = [hourly(2), Rule { bucket: "req".into(), window_ms: 10_000, limit: 1 }];
        let now = HOUR;
        let Ok(Outcome::Allowed { ids }) = hit(&log, &rules, now) else { panic!("first hit refused") };
        assert_eq!(ids.len(), 1, "one event per bucket, kept for its longest window");
        assert_eq!(log.0.borrow()[0].3, now + HOUR);
        // The 10 s rule refuses; nothing is recorded for the refused hit.
        assert_eq!(hit(&log, &rules, now + 1), Ok(Outcome::Refused { retry_after_ms: 9_999 }));
        assert_eq!(log.0.borrow().len(), 1);
        release(&log, &ids).unwrap();
        assert!(matches!(hit(&log, &rules, now + 2), Ok(Outcome::Allowed { .. })), "the slot was given back");
    }

    fn plain(rule: &Rule, failed: bool) -> Guess {
        Guess { rule: rule.clone(), breaker: None, failed }
    }

    #[test]
    fn a_guess_is_refused_while_the_budget_is_spent_and_counted_only_if_wrong() {
        let log = Log::default();
        let budget = Rule { bucket: "verify_failure".into(), window_ms: HOUR, limit: 2 };
        assert_eq!(
            guess(&log, &plain(&budget, false), 1),
            Ok(Outcome::Allowed { ids: vec![] }),
            "a right guess is free"
        );
        assert!(matches!(guess(&log, &plain(&budget, true), 2), Ok(Outcome::Allowed { ids }) if ids.len() == 1));
        assert!(matches!(guess(&log, &plain(&budget, true), 3), Ok(Outcome::Allowed { .. })));
        assert_eq!(
            guess(&log, &plain(&budget, false), 4),
            Ok(Outcome::Refused { retry_after_ms: HOUR - 2 }),
            "even a right one"
        );
        // Pruning on use: once the first failure expires, guesses are judged again.
        assert_eq!(guess(&log, &plain(&budget, false), 2 + HOUR), Ok(Outcome::Allowed { ids: vec![] }));
        assert_eq!(log.0.borrow().len(), 1, "the expired failure was pruned");
    }

    const DAY: i64 = 24 * HOUR;

    /// Network `net`'s guess at one destination: 2 failures a day per
    /// network, a breaker of 3 failures in 10 days, networks known 90 days.
    fn guess_from(net: &str, failed: bool, exempt: bool) -> Guess {
        Guess {
            rule: Rule { bucket: format!("verify_failure:d:{net}"), window_ms: DAY, limit: 2 },
            breaker: Some(Breaker {
                rule: Rule { bucket: "verify_failure_all:d".into(), window_ms: 10 * DAY, limit: 3 },
                known: Rule { bucket: format!("known:d:{net}"), window_ms: 90 * DAY, limit: 1 },
                exempt,
            }),
            failed,
        }
    }

    #[test]
    fn the_breaker_stops_strangers_but_not_known_networks_or_a_passed_challenge() {
        let log = Log::default();
        let t = 10 * DAY;
        // The owner verifies once from home: home is known.
        assert_eq!(guess(&log, &guess_from("home", false, false), t), Ok(Outcome::Allowed { ids: vec![] }));
        // A stranger spreads failures over networks a and b.
        assert!(
            matches!(guess(&log, &guess_from("a", true, false), t + 1), Ok(Outcome::Allowed { ids }) if ids.len() == 2)
        );
        assert!(matches!(guess(&log, &guess_from("a", true, false), t + 2), Ok(Outcome::Allowed { .. })));
        assert_eq!(
            guess(&log, &guess_from("a", true, false), t + 3),
            Ok(Outcome::Refused { retry_after_ms: DAY - 2 }),
            "network a's own budget is spent"
        );
        assert!(matches!(guess(&log, &guess_from("b", true, false), t + 4), Ok(Outcome::Allowed { .. })));
        // Three failures in ten days: the breaker is open for networks it does not know, right code or not.
        assert_eq!(
            guess(&log, &guess_from("c", false, false), t + 5),
            Ok(Outcome::Challenge { retry_after_ms: 10 * DAY - 4 })
        );
        assert_eq!(log.0.borrow().iter().filter(|e| e.1.starts_with("known:d:c")).count(), 0, "not made known");
        // The owner's network is known, and a passed challenge is let through.
        assert_eq!(guess(&log, &guess_from("home", false, false), t + 6), Ok(Outcome::Allowed { ids: vec![] }));
        assert_eq!(guess(&log, &guess_from("c", false, true), t + 7), Ok(Outcome::Allowed { ids: vec![] }));
        // Network b's budget still has room, but the breaker stops it.
        assert!(matches!(guess(&log, &guess_from("b", true, false), t + 8), Ok(Outcome::Challenge { .. })));
        // A known network's failures still count, and its own budget still binds.
        assert!(matches!(guess(&log, &guess_from("home", true, false), t + 9), Ok(Outcome::Allowed { .. })));
        assert!(matches!(guess(&log, &guess_from("home", true, false), t + 10), Ok(Outcome::Allowed { .. })));
        assert!(matches!(guess(&log, &guess_from("home", false, false), t + 11), Ok(Outcome::Refused { .. })));
        // Known lasts 90 days from the last verified code (t + 6); then home is a stranger too.
        let later = t + 6 + 90 * DAY;
        for (i, net) in ["x", "y", "z"].into_iter().enumerate() {
            assert!(matches!(
                guess(&log, &guess_from(net, true, false), later - 10 + i as i64),
                Ok(Outcome::Allowed { .. })
            ));
        }
        assert!(matches!(guess(&log, &guess_from("home", false, false), later), Ok(Outcome::Challenge { .. })));
    }

    #[test]
    fn a_hit_under_a_breaker_counts_toward_it_and_is_stopped_when_it_is_open() {
        let log = Log::default();
        let per_network = |net: &str| vec![Rule { bucket: format!("otp_request:d:{net}"), window_ms: HOUR, limit: 5 }];
        let breaker = |net: &str, exempt| Breaker {
            rule: Rule { bucket: "otp_request_all:d".into(), window_ms: HOUR, limit: 2 },
            known: Rule { bucket: format!("known:d:{net}"), window_ms: 90 * DAY, limit: 1 },
            exempt,
        };
        let t = DAY;
        assert!(
            matches!(hit_with(&log, &per_network("a"), Some(&breaker("a", false)), t), Ok(Outcome::Allowed { ids }) if ids.len() == 2)
        );
        assert!(matches!(
            hit_with(&log, &per_network("b"), Some(&breaker("b", true)), t + 1),
            Ok(Outcome::Allowed { .. })
        ));
        assert_eq!(
            hit_with(&log, &per_network("c"), Some(&breaker("c", false)), t + 2),
            Ok(Outcome::Challenge { retry_after_ms: HOUR - 2 })
        );
        assert_eq!(log.0.borrow().len(), 4, "a stopped hit records nothing");
        // A known network passes; its hit still counts.
        log.record("known:d:home", t, t + 90 * DAY).unwrap();
        assert!(
            matches!(hit_with(&log, &per_network("home"), Some(&breaker("home", false)), t + 3), Ok(Outcome::Allowed { ids }) if ids.len() == 2)
        );
    }

    #[test]
    fn networks_are_ipv4_addresses_and_ipv6_sites_hidden_by_a_keyed_hash() {
        assert_eq!(network_id("p", "2001:db8:1:2::1"), network_id("p", "2001:db8:1:ffff::9"), "one /48");
        assert_ne!(network_id("p", "2001:db8:1::1"), network_id("p", "2001:db8:2::1"));
        assert_ne!(network_id("p", "203.0.113.7"), network_id("p", "203.0.113.8"));
        assert_eq!(network_id("p", "::ffff:203.0.113.7"), network_id("p", "203.0.113.7"));
        assert_ne!(network_id("p", "203.0.113.7"), network_id("q", "203.0.113.7"));
        assert!(!network_id("p", "203.0.113.7").contains("203"));
    }

    #[test]
    fn a_code_id_names_its_destinations_object_and_hides_it() {
        let pepper = "pepper-0123456789abcdefghijklmnopqrstuvwxyz";
        let mut seen_low_bits = std::collections::HashSet::new();
        let mut same_under_another_pepper = 0;
        for i in 0..200u32 {
            let destination = Destination::parse(&format!("user{i}@example.com")).unwrap();
            let at = destination_limits(pepper, &destination);
            let mut random = [0u8; 16];
            random[..4].copy_from_slice(&i.to_be_bytes());
            random[15] = 0x5a;
            let id = code_id(pepper, &at, random);
            assert_eq!(id.get_version_num(), 4, "still a version 4 UUID");
            assert_eq!(code_object(pepper, &id), at.object);
            same_under_another_pepper +=
                (code_object("another-pepper-0123456789abcdefghijklmnop", &id) == at.object) as u32;
            seen_low_bits.insert(id.as_bytes()[15] & SHARD_BITS);
        }
        // Keyed: another pepper reads a random shard (1 in 64 the same).
        assert!(same_under_another_pepper < 20, "{same_under_another_pepper} of 200");
        // One destination's ids share no visible shard bits.
        let at = destination_limits(pepper, &Destination::parse("one@example.com").unwrap());
        let bits: std::collections::HashSet<u8> =
            (0..64u8).map(|i| code_id(pepper, &at, [i; 16]).as_bytes()[15] & SHARD_BITS).collect();
        assert!(bits.len() > 20, "masked: {} distinct", bits.len());
        assert!(seen_low_bits.len() > 20);
    }

    fn policy(net: &str, passed: bool) -> GuessPolicy {
        GuessPolicy {
            network: net.into(),
            failures: (86_400, 2),
            breaker: (864_000, 3),
            known_seconds: 90 * 86_400,
            passed,
        }
    }

    #[test]
    fn a_guess_at_a_code_holds_a_failure_until_it_is_settled() {
        let log = Log::default();
        let t = DAY;
        let code =
            PendingCode { id: "c1".into(), key: "d".into(), note: "login:email".into(), expires_ms: t + 600_000 };
        let rules = [hourly(5)];
        assert!(matches!(hit_remembering(&log, &rules, None, &code, t), Ok(Outcome::Allowed { .. })));
        assert_eq!(guess_code(&log, "c2", &policy("a", false), t), Ok(None), "an unknown code");
        // Two guesses in flight hold both of network a's failures: a third is refused at once.
        let Ok(Some(first)) = guess_code(&log, "c1", &policy("a", false), t + 1) else { panic!("not judged") };
        assert_eq!(first.code, Remembered { key: "d".into(), note: "login:email".into() });
        let Outcome::Allowed { ids } = first.outcome else { panic!("refused") };
        assert_eq!(ids.len(), 2, "under the budget and the breaker");
        assert!(matches!(
            guess_code(&log, "c1", &policy("a", false), t + 2),
            Ok(Some(Judged { outcome: Outcome::Allowed { .. }, .. }))
        ));
        assert!(matches!(
            guess_code(&log, "c1", &policy("a", false), t + 3),
            Ok(Some(Judged { outcome: Outcome::Refused { .. }, .. }))
        ));
        // The first was right: its failure is given back, and network a is known.
        let known = policy("a", false).known("d");
        settle(&log, &ids, Some(&known), t + 4).unwrap();
        assert_eq!(log.newest(&known.bucket, 0, 5).unwrap(), vec![t + 4]);
        assert!(matches!(
            guess_code(&log, "c1", &policy("a", false), t + 5),
            Ok(Some(Judged { outcome: Outcome::Allowed { .. }, .. }))
        ));
        // The code expires: the object forgets it.
        assert_eq!(guess_code(&log, "c1", &policy("a", false), t + 600_000), Ok(None));
        // A refused request is not remembered.
        let refused = PendingCode { id: "c3".into(), ..code };
        for i in 0..6 {
            let _ =
                hit_remembering(&log, &rules, None, &PendingCode { id: format!("x{i}"), ..refused.clone() }, t + 10);
        }
        assert!(matches!(hit_remembering(&log, &rules, None, &refused, t + 11), Ok(Outcome::Refused { .. })));
        assert_eq!(guess_code(&log, "c3", &policy("b", false), t + 12), Ok(None));
    }
}
