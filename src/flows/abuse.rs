//! The abuse controls both OTP flows run first: per client network (IPv4
//! address, IPv6 /64 and /48), per destination (its mailbox or number), and
//! for SMS the caps against pumping (the whole service, a number range, a
//! country), counted exactly in the rate-limit objects. If an object cannot
//! be reached the request fails closed (503). Every refusal is a
//! `rate_limited` audit event naming the limit.
//!
//! The SMS caps count only messages really sent: a request only looks at
//! them (`peek`), the same for a real login and the decoy of an unknown
//! account, so a full cap refuses both alike and decoys cannot drain it;
//! the slot is taken when the message is sent (`take_sms_caps`).

use super::error::{Dependency, Error};
use super::App;
use crate::audit::Event;
use crate::config::{Config, TurnstileScope};
use crate::domain::crypto::uuid_from;
use crate::domain::destination::{Channel, Destination, Phone};
use crate::domain::limits::{self, Breaker, GuessPolicy, Judged, Limit, Outcome, PendingCode, Rule};
use crate::domain::otp::Purpose;
use crate::domain::turnstile::{self, Verdict};
use crate::ports::{join, join_all, Limiter, StoreError};

/// A refusal by a limit, before it is reported.
pub struct Refused {
    pub limit: Limit,
    retry_after_ms: i64,
    /// A breaker stopped the client: a passed challenge would let it through.
    challenge: bool,
}

impl Refused {
    pub fn error(&self) -> Error {
        Error::Limited { limit: self.limit, retry_after_seconds: limits::retry_after_seconds(self.retry_after_ms) }
    }
}

/// Reports a refusal: an audit event, and the client's answer: 429, or,
/// when a breaker stopped the client and Turnstile is configured, 400
/// CAPTCHA_FAILED, asking for the challenge instead of refusing the owner.
fn report(app: &App, destination: Option<&Destination>, refused: Refused) -> Error {
    let event = Event::new("rate_limited", refused.limit.bucket());
    app.audit(match destination {
        Some(d) => event.destination(d),
        None => event,
    });
    if refused.challenge && app.config.turnstile.is_some() {
        return Error::CaptchaFailed;
    }
    refused.error()
}

fn unavailable(e: StoreError) -> Error {
    Dependency::RateLimiter.down(e)
}

/// Slots taken in one object, which `release` can give back.
pub struct Taken {
    object: String,
    ids: Vec<i64>,
}

/// One limit to ask an object about: take a slot, or only look; with a
/// breaker (`breaker_limit` names it), also under that.
struct Check {
    object: String,
    limit: Limit,
    rules: Vec<Rule>,
    take: bool,
    breaker: Option<(Limit, Breaker)>,
    /// The code the object keeps if it allows (an OTP request's destination).
    code: Option<PendingCode>,
}

impl Check {
    fn take(object: impl Into<String>, limit: Limit, rules: Vec<Rule>) -> Check {
        Check { object: object.into(), limit, rules, take: true, breaker: None, code: None }
    }

    fn peek(object: impl Into<String>, limit: Limit, rules: Vec<Rule>) -> Check {
        Check { object: object.into(), limit, rules, take: false, breaker: None, code: None }
    }
}

/// Asks every object at once. All allow: the slots taken. One refuses: the
/// slots the others took are given back (a refused request costs nothing,
/// so waiting its `Retry-After` is always enough), and of several refusals
/// the one that waits longest answers.
async fn run(limiter: &dyn Limiter, checks: Vec<Check>) -> Result<Result<Vec<Taken>, Refused>, Error> {
    let asked = checks.iter().map(|c| {
        let rules = c.rules.clone();
        let breaker = c.breaker.as_ref().map(|(_, b)| b.clone());
        async move {
            let outcome = if c.take {
                limiter.hit(&c.object, rules, breaker, c.code.clone()).await
            } else {
                limiter.peek(&c.object, rules).await
            };
            (c, outcome)
        }
    });
    let mut taken = Vec::new();
    let mut refused: Option<Refused> = None;
    let mut failed = None;
    for (check, outcome) in join_all(asked.collect()).await {
        match outcome {
            Ok(Outcome::Allowed { ids }) if !ids.is_empty() => taken.push(Taken { object: check.object.clone(), ids }),
            Ok(Outcome::Allowed { .. }) => {}
            Ok(Outcome::Refused { retry_after_ms }) => {
                // A rule's refusal outranks a breaker's: no challenge lifts it.
                if refused.as_ref().is_none_or(|r| r.challenge || retry_after_ms > r.retry_after_ms) {
                    refused = Some(Refused { limit: check.limit, retry_after_ms, challenge: false });
                }
            }
            Ok(Outcome::Challenge { retry_after_ms }) => {
                if refused.is_none() {
                    let limit = check.breaker.as_ref().map_or(check.limit, |(l, _)| *l);
                    refused = Some(Refused { limit, retry_after_ms, challenge: true });
                }
            }
            Err(e) => failed = Some(e),
        }
    }
    if failed.is_some() || refused.is_some() {
        release_all(limiter, &taken).await;
    }
    if let Some(e) = failed {
        return Err(unavailable(e));
    }
    Ok(match refused {
        Some(r) => Err(r),
        None => Ok(taken),
    })
}

fn pepper(config: &Config) -> &str {
    config.otp_pepper.expose()
}

/// The client network's checks: its address (IPv6 by /64) and, for IPv6,
/// its /48 with a higher limit.
fn network_checks(app: &App, per_address: (Limit, u32), per_48: (Limit, u32)) -> Vec<Check> {
    let l = &app.config.limits;
    let window = l.ip_window_seconds;
    let (limit, count) = per_address;
    let object = limits::ip_object(pepper(app.config), &limits::ip_key(&app.client.ip));
    let mut checks = vec![Check::take(object, limit, vec![Rule::new(limit.bucket(), window, count)])];
    if let Some(site) = limits::ip48_key(&app.client.ip) {
        let (limit, count) = per_48;
        let object = limits::ip_object(pepper(app.config), &site);
        checks.push(Check::take(object, limit, vec![Rule::new(limit.bucket(), window, count)]));
    }
    checks
}

/// The pumping caps of an SMS to `phone`, as checks that take or look.
fn sms_cap_checks(config: &Config, phone: &Phone, take: bool) -> Vec<Check> {
    let l = &config.limits;
    let make = |object: String, limit: Limit, rules: Vec<Rule>| {
        if take {
            Check::take(object, limit, rules)
        } else {
            Check::peek(object, limit, rules)
        }
    };
    let global = Limit::SmsCap;
    let mut checks = vec![make(
        limits::SMS_CAP_OBJECT.into(),
        global,
        vec![Rule::new(global.bucket(), l.sms_cap_window_seconds, l.sms_cap)],
    )];
    let range = limits::sms_prefix_limits(pepper(config), phone.digits(), l.sms_prefix_digits);
    let prefix = Limit::SmsPrefixCap;
    checks.push(make(
        range.object.clone(),
        prefix,
        vec![Rule::new(&range.bucket(prefix), 3600, l.sms_per_prefix_per_hour)],
    ));
    // Every configured prefix the number is under: a country's cap, and a
    // tighter one for a part of it.
    let country = Limit::SmsCountryCap;
    for (code, cap) in l.sms_country_daily_caps.iter().filter(|(code, _)| phone.digits().starts_with(code.as_str())) {
        checks.push(make(format!("sms-country:{code}"), country, vec![Rule::new(country.bucket(), 86_400, *cap)]));
    }
    checks
}

/// Whether an OTP request must carry a Turnstile token: with
/// `TURNSTILE_SECRET_KEY` set, every request, or with
/// `TURNSTILE_REQUIRED_FOR=sms` only SMS.
pub fn turnstile_required(config: &Config, channel: Channel) -> bool {
    config.turnstile.as_ref().is_some_and(|t| t.required_for == TurnstileScope::All || channel == Channel::Phone)
}

/// Cloudflare Turnstile, when `TURNSTILE_SECRET_KEY` is set: a token given
/// (or `required`) must pass siteverify, with the client's IP and a fresh
/// idempotency key; `true` when one passed, which also lets the client past
/// the destination's breakers. A missing (and required) or refused token is
/// 400 CAPTCHA_FAILED before anything is counted or sent; siteverify
/// unreachable (or refusing our secret) is 503: fail closed.
pub async fn check_turnstile(app: &App, token: Option<&str>, required: bool) -> Result<bool, Error> {
    let Some(turnstile) = &app.config.turnstile else { return Ok(false) };
    let refused = |why: &str| {
        app.audit(Event::new("captcha_failed", why.to_string()));
        Error::CaptchaFailed
    };
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return if required { Err(refused("missing")) } else { Ok(false) };
    };
    if token.len() > turnstile::MAX_TOKEN_LEN {
        return Err(refused("invalid-input-response"));
    }
    let key = uuid_from(&*app.ports.entropy).hyphenated().to_string();
    let request = turnstile::siteverify_request(
        &turnstile.api_base,
        turnstile.secret.expose(),
        token,
        Some(&app.client.ip),
        &key,
    );
    let verdict = match app.ports.sender.send(&request, app.config.delivery_timeout_ms).await {
        Ok(answer) => turnstile::verdict(answer.status, &answer.body),
        Err(timed_out) => Verdict::Unavailable { reason: if timed_out { "timed out" } else { "network error" }.into() },
    };
    match verdict {
        Verdict::Passed => Ok(true),
        Verdict::Refused { error_code } => Err(refused(&error_code)),
        Verdict::Unavailable { reason } => Err(Dependency::Captcha.down(StoreError(reason))),
    }
}

/// Before an OTP request does anything: the SMS country allow-list, then,
/// all at once, the client's network, the destination (rolling hour and
/// resend cooldown for this client network, and the breaker over all
/// networks it does not know, which a `passed` challenge lifts) and, for
/// SMS, whether the pumping caps have room. A refusal leaves no row and
/// sends nothing. A stranger's requests spend its own network's budget for
/// the destination, not its owner's. Allowed, the destination's object
/// keeps the `code` (`code_id`, `code_note`): a verify of it asks that
/// object first.
pub async fn admit_request(
    app: &App,
    destination: &Destination,
    passed: bool,
    code: (&str, String, i64),
) -> Result<(), Error> {
    let l = &app.config.limits;
    if let Destination::Phone(phone) = destination {
        // Before anything is counted: a number the policy refuses costs nothing.
        if let Some(refusal) = l.sms_policy.refusal(phone) {
            crate::log::emit(
                "warn",
                "sms_destination_refused",
                serde_json::json!({ "destination": destination.masked(), "reason": sms_policy_reason(refusal) }),
            );
            return Err(Error::SmsCountryNotAllowed);
        }
    }
    let dest = Limit::DestinationRequests;
    let at = limits::destination_limits(pepper(app.config), destination);
    let bucket = at.network_bucket(dest, app.network());
    let mut rules = vec![Rule::new(&bucket, l.request_window_seconds, l.requests_per_destination)];
    if l.resend_cooldown_seconds > 0 {
        rules.push(Rule::new(&bucket, l.resend_cooldown_seconds, 1));
    }
    let all = Limit::DestinationRequestsAll;
    let window = (l.request_window_seconds, l.requests_breaker);
    let breaker = at.breaker(all, window, app.network(), l.known_network_seconds, passed);
    let mut checks = network_checks(app, (Limit::IpRequests, l.ip_requests), (Limit::Ip48Requests, l.ip48_requests));
    let mut check = Check::take(at.object.clone(), dest, rules);
    check.breaker = Some((all, breaker));
    let (id, note, expires_ms) = code;
    check.code = Some(PendingCode { id: id.to_string(), key: at.key().to_string(), note, expires_ms });
    checks.push(check);
    if let Destination::Phone(phone) = destination {
        checks.extend(sms_cap_checks(app.config, phone, false));
    }
    match run(&*app.ports.limiter, checks).await? {
        Ok(_) => Ok(()),
        Err(refused) => Err(report(app, Some(destination), refused)),
    }
}

fn sms_policy_reason(refusal: crate::domain::sms_policy::SmsRefusal) -> &'static str {
    use crate::domain::sms_policy::SmsRefusal;
    match refusal {
        SmsRefusal::NotAllowedCountry => "not_allowed_country",
        SmsRefusal::HighRisk(category) => category.as_str(),
    }
}

/// Takes the pumping caps' slots for an SMS about to be sent to `phone`;
/// refused if a cap filled since the request looked.
pub async fn take_sms_caps(
    config: &Config,
    limiter: &dyn Limiter,
    phone: &Phone,
) -> Result<Result<Vec<Taken>, Refused>, Error> {
    run(limiter, sms_cap_checks(config, phone, true)).await
}

/// Gives the slots of an SMS that was not sent back.
pub async fn release_all(limiter: &dyn Limiter, taken: &[Taken]) {
    join_all(taken.iter().map(|t| release(limiter, t)).collect()).await;
}

/// An id for a new code of `destination`, which names the object that
/// holds the destination's limits (`limits::code_id`).
pub fn code_id(app: &App, destination: &Destination) -> String {
    let at = limits::destination_limits(pepper(app.config), destination);
    let random = crate::domain::crypto::random_bytes_from::<16>(&*app.ports.entropy);
    limits::code_id(pepper(app.config), &at, random).hyphenated().to_string()
}

/// What the destination's object keeps of a code besides its key: its
/// purpose and channel, which the verify's D1 batch needs before it has
/// read the row.
pub fn code_note(purpose: Purpose, channel: Channel) -> String {
    format!("{}:{}", purpose.as_str(), channel.as_str())
}

fn parse_note(note: &str) -> Option<(Purpose, Channel)> {
    let (purpose, channel) = note.split_once(':')?;
    Some((Purpose::parse(purpose)?, Channel::parse(channel)?))
}

/// A guess at a code, held by the limits until it is compared: a failure
/// under the destination's budgets (`limits::guess_code`) and a slot of
/// the client network's verify budget.
pub struct HeldGuess {
    pub purpose: Purpose,
    pub channel: Channel,
    object: String,
    key: String,
    ids: Vec<i64>,
    policy: GuessPolicy,
}

/// How a held guess ended.
pub enum Compared {
    /// Right: its failure is given back, and its network is known to the destination.
    Right,
    /// Wrong: its failure stays.
    Wrong,
    /// The code refused it before comparing (used, expired, out of attempts): not judged.
    NotJudged,
}

impl HeldGuess {
    /// Settles the guess after the answer: nothing waits on it, and until
    /// it runs the failure only over-counts (fails safe).
    pub fn settle(self, app: &App, compared: Compared) {
        let known = match compared {
            Compared::Wrong => return,
            Compared::Right => Some(self.policy.known(&self.key)),
            Compared::NotJudged => None,
        };
        let limiter = app.ports.limiter.clone();
        app.ports.background.spawn(Box::pin(async move {
            if let Err(e) = limiter.settle(&self.object, self.ids, known).await {
                crate::log::error("rate_limit_release_failed", &e.to_string());
            }
        }));
    }
}

/// Before a verify compares anything, in one round trip: the client
/// network's verify budget, and the judgement of the destination's object
/// (named by the code's id) over the guess: refused (429) while the
/// network's `VERIFY_FAILURES_PER_DAY` failures for the destination are in
/// the window; stopped while the destination's breaker
/// (`VERIFY_FAILURES_BREAKER` failures from all networks) is open for a
/// network it does not know and no challenge was `passed`, even for the
/// right code; otherwise held as a failure until `HeldGuess::settle`. The
/// object judges parallel guesses one at a time, and a held guess counts
/// as a failure until it is settled, so the limits are exact. A refusal
/// gives back what the other side took. `None`: no object knows the code.
pub async fn hold_guess(app: &App, otp_id: &uuid::Uuid, passed: bool) -> Result<Option<HeldGuess>, Error> {
    let l = &app.config.limits;
    let limiter = &*app.ports.limiter;
    let object = limits::code_object(pepper(app.config), otp_id);
    let policy = GuessPolicy {
        network: app.network().to_string(),
        failures: (l.verify_failure_window_seconds, l.verify_failures_per_destination),
        breaker: (l.verify_failure_breaker_window_seconds, l.verify_failure_breaker),
        known_seconds: l.known_network_seconds,
        passed,
    };
    let id = otp_id.hyphenated().to_string();
    let checks = network_checks(app, (Limit::IpVerifies, l.ip_verifies), (Limit::Ip48Verifies, l.ip48_verifies));
    let (network, judged) = join(run(limiter, checks), limiter.guess_code(&object, &id, policy.clone())).await;
    let held = |j: &Result<Option<Judged>, StoreError>| match j {
        Ok(Some(Judged { outcome: Outcome::Allowed { ids }, .. })) => ids.clone(),
        _ => Vec::new(),
    };
    let network = match network.and_then(|allowed| allowed.map_err(|refused| report(app, None, refused))) {
        Ok(taken) => taken,
        Err(e) => {
            // Refused by the network's budget (or its object is down): the
            // destination's held failure is given back.
            let ids = held(&judged);
            if !ids.is_empty() {
                release(limiter, &Taken { object, ids }).await;
            }
            return Err(e);
        }
    };
    let refused = match judged {
        Err(e) => {
            release_all(limiter, &network).await;
            return Err(unavailable(e));
        }
        Ok(None) => return Ok(None),
        Ok(Some(Judged { code, outcome })) => match outcome {
            Outcome::Allowed { ids } => {
                let Some((purpose, channel)) = parse_note(&code.note) else {
                    return Err(Error::internal(format!("rate limiter kept an unreadable note for code {id}")));
                };
                return Ok(Some(HeldGuess { purpose, channel, object, key: code.key, ids, policy }));
            }
            Outcome::Refused { retry_after_ms } => {
                Refused { limit: Limit::VerifyFailures, retry_after_ms, challenge: false }
            }
            Outcome::Challenge { retry_after_ms } => {
                Refused { limit: Limit::VerifyFailuresAll, retry_after_ms, challenge: true }
            }
        },
    };
    // Refused: the guess was not judged, so the network's slot is given back.
    release_all(limiter, &network).await;
    Err(report(app, None, refused))
}

/// Gives back slots; a failure only over-counts (fails safe), so it is logged.
async fn release(limiter: &dyn Limiter, taken: &Taken) {
    if let Err(e) = limiter.release(&taken.object, taken.ids.clone()).await {
        crate::log::error("rate_limit_release_failed", &e.to_string());
    }
}
