//! The audit trail: one structured JSON log line per auth event, also kept
//! in D1 (`audit_events`, pruned after 30 days) so an operator can answer
//! "what happened to this user's login" with one query. Fields are masked
//! or hashed: never a code, a token or a secret. Pure; the D1 write is in
//! `platform::db`.

use std::cell::RefCell;

use std::borrow::Cow;

use serde::Serialize;

use crate::domain::crypto::{hex, hmac_sha256};
use crate::domain::destination::Destination;

/// How long audit events are kept.
pub const RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// One recorded event. A login request's events ride in its delivery job
/// as JSON and are stored with the delivery's (`DeliveryJob::trail`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub event: Cow<'static, str>,
    pub outcome: String,
    pub request_id: String,
    pub at_ms: i64,
    /// Since the request reached the Worker.
    pub latency_ms: i64,
    /// HMAC of the client IP: links events of one client, reveals no address.
    pub ip_hash: String,
    /// Masked, as the API shows it (`u***1@example.com`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp_id: Option<String>,
    /// The provider's own error code or name (`twilio:21610`), for delivery events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_code: Option<String>,
    /// Which try of a delivery this was (1 is the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Who acted, when not the user or client itself: `admin:<token id>`
    /// for the admin API (the token's id, never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event about to be recorded: name, outcome and what it concerns.
#[derive(Debug, Default, Clone)]
pub struct Event {
    name: &'static str,
    outcome: String,
    destination: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
    otp_id: Option<String>,
    provider_code: Option<String>,
    attempt: Option<u32>,
    actor: Option<String>,
}

impl Event {
    pub fn new(name: &'static str, outcome: impl Into<String>) -> Event {
        Event { name, outcome: outcome.into(), ..Event::default() }
    }
    pub fn destination(mut self, d: &Destination) -> Event {
        self.destination = Some(d.masked());
        self
    }
    pub fn user(mut self, id: Option<&str>) -> Event {
        self.user_id = id.map(str::to_string);
        self
    }
    pub fn session(mut self, id: &str) -> Event {
        self.session_id = Some(id.to_string());
        self
    }
    pub fn otp(mut self, id: &str) -> Event {
        self.otp_id = Some(id.to_string());
        self
    }
    /// A destination already masked (one reported by a provider, say).
    pub fn masked_destination(mut self, masked: Option<String>) -> Event {
        self.destination = masked;
        self
    }
    pub fn provider_code(mut self, code: Option<String>) -> Event {
        self.provider_code = code;
        self
    }
    pub fn attempt(mut self, n: u32) -> Event {
        self.attempt = Some(n);
        self
    }
    pub fn actor(mut self, actor: &str) -> Event {
        self.actor = Some(actor.to_string());
        self
    }
}

/// The events of one request (or one background task), in order.
#[derive(Debug)]
pub struct Trail {
    request_id: String,
    ip_hash: String,
    started_ms: i64,
    events: RefCell<Vec<AuditEvent>>,
}

impl Trail {
    pub fn new(request_id: String, ip_hash: String, started_ms: i64) -> Trail {
        Trail { request_id, ip_hash, started_ms, events: RefCell::new(Vec::new()) }
    }

    /// The request id, client IP hash and start time, for work that
    /// continues elsewhere (a queued delivery) to record under.
    pub fn origin(&self) -> (String, String, i64) {
        (self.request_id.clone(), self.ip_hash.clone(), self.started_ms)
    }

    /// Another trail for work that outlives the request (after-response
    /// delivery), with the same request id and client.
    pub fn follow_up(&self) -> Trail {
        Trail::new(self.request_id.clone(), self.ip_hash.clone(), self.started_ms)
    }

    /// Records an event at `now_ms` and writes its log line.
    pub fn record(&self, e: Event, now_ms: i64) {
        let event = AuditEvent {
            event: Cow::Borrowed(e.name),
            outcome: e.outcome,
            request_id: self.request_id.clone(),
            at_ms: now_ms,
            latency_ms: (now_ms - self.started_ms).max(0),
            ip_hash: self.ip_hash.clone(),
            destination: e.destination,
            user_id: e.user_id,
            session_id: e.session_id,
            otp_id: e.otp_id,
            provider_code: e.provider_code,
            attempt: e.attempt,
            actor: e.actor,
        };
        let level = if event.outcome == "ok" || event.outcome == "delivered" { "info" } else { "warn" };
        crate::log::emit(level, e.name, serde_json::to_value(&event).unwrap_or_default());
        self.events.borrow_mut().push(event);
    }

    /// The events recorded so far, for storage.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.events.borrow_mut())
    }
}

impl AuditEvent {
    /// An event back from its JSON (`Serialize`'s shape), as a job carries
    /// it; `None` if it is not one. By hand: a derived `Deserialize` costs
    /// the bundle 4 KB.
    pub fn from_json(v: &serde_json::Value) -> Option<AuditEvent> {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(AuditEvent {
            event: Cow::Owned(text("event")?),
            outcome: text("outcome")?,
            request_id: text("request_id")?,
            at_ms: v.get("at_ms")?.as_i64()?,
            latency_ms: v.get("latency_ms")?.as_i64()?,
            ip_hash: text("ip_hash")?,
            destination: text("destination"),
            user_id: text("user_id"),
            session_id: text("session_id"),
            otp_id: text("otp_id"),
            provider_code: text("provider_code"),
            attempt: v.get("attempt").and_then(|x| x.as_u64()).map(|n| n as u32),
            actor: text("actor"),
        })
    }
}

/// A destination as the rows of a deleted account keep it: a keyed hash
/// (`hmac:` and 32 hex digits), so the codes sent to one destination stay
/// countable together without saying where they went or whose they were.
pub fn destination_hash(pepper: &str, destination: &str) -> String {
    let mac = hmac_sha256(pepper.as_bytes(), &[b"erased-destination", destination.as_bytes()]);
    format!("hmac:{}", hex(&mac[..16]))
}

/// A client IP as the trail keeps it: 16 hex digits of a keyed hash.
pub fn ip_hash(pepper: &str, ip: &str) -> String {
    hex(&hmac_sha256(pepper.as_bytes(), &[b"audit-ip", ip.as_bytes()])[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_masked_and_hashed_fields_only() {
        let trail = Trail::new("req-1".into(), ip_hash("pepper", "203.0.113.7"), 1_000);
        let d = Destination::parse("alice@example.com").unwrap();
        trail.record(Event::new("otp_requested", "ok").destination(&d).otp("otp-1").user(Some("u-1")), 1_012);
        let events = trail.take();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!((e.event.as_ref(), e.outcome.as_str(), e.latency_ms), ("otp_requested", "ok", 12));
        assert_eq!(e.destination.as_deref(), Some("a***e@example.com"));
        let line = serde_json::to_string(e).unwrap();
        assert!(!line.contains("alice") && !line.contains("203.0.113.7"), "{line}");
        assert_eq!(e.ip_hash.len(), 16);
        assert!(trail.take().is_empty());
    }

    #[test]
    fn a_follow_up_keeps_the_request_id() {
        let trail = Trail::new("req-9".into(), "abcd".into(), 5);
        let later = trail.follow_up();
        later.record(Event::new("otp_delivered", "ok"), 50);
        assert_eq!(later.take()[0].request_id, "req-9");
    }

    #[test]
    fn an_event_comes_back_from_its_json_whole() {
        let trail = Trail::new("req-2".into(), ip_hash("pepper", "203.0.113.8"), 1_000);
        let d = Destination::parse("+15551234567").unwrap();
        trail.record(Event::new("otp_delivered", "ok").destination(&d).otp("otp-2").attempt(2), 1_050);
        trail.record(
            Event::new("session_created", "ok").session("s-1").user(Some("u-2")).provider_code(Some("x".into())),
            1_060,
        );
        trail.record(Event::new("admin_user_viewed", "ok").user(Some("u-2")).actor("admin:support"), 1_070);
        for e in trail.take() {
            assert_eq!(AuditEvent::from_json(&serde_json::to_value(&e).unwrap()), Some(e));
        }
        assert_eq!(AuditEvent::from_json(&serde_json::json!({ "event": "x" })), None);
    }
}
