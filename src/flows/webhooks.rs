//! Signed webhooks of audit events (README "Webhooks"; the rules in
//! `domain::standard_webhooks`): the events the settings select are queued
//! after the answer, with the audit rows (`flows::keep_events`); the webhook
//! queue's consumer signs and POSTs each one, and retries with backoff what
//! the receiver did not take; what reaches the dead-letter queue is kept in
//! D1, for the cron to replay when an operator asks.

use serde_json::Value;

use crate::audit::AuditEvent;
use crate::config::Config;
use crate::domain::crypto::{random_bytes_from, uuid_from};
use crate::domain::outbound::{Provider, ProviderRequest, USER_AGENT};
use crate::domain::standard_webhooks::{self as spec, EventType, Queued};
use crate::domain::time::rfc3339_millis;
use crate::ports::{Ports, StoreError, WebhookQueue};
use crate::store::Db;

/// How long one attempt may take: the spec's recommended request timeout is
/// "somewhere between 15 and 30s" ("Request timeouts").
pub const TIMEOUT_MS: u64 = 15_000;

/// Dead webhooks the cron puts back on the queue per batch, and batches per run.
const REPLAY_BATCH: u32 = 100;
const REPLAY_ROUNDS: u32 = 10;

/// What a webhook's `data` may hold of an audit event (an allow list, so a
/// field added to the trail is not sent unless added here): its name and
/// outcome, the request id, the ids it names, the destination masked, a
/// provider's error code, a delivery's attempt, the admin token's id that
/// acted (`actor`). Never a code, a token, an address or the client's IP hash.
const DATA_FIELDS: [&str; 10] = [
    "event",
    "outcome",
    "request_id",
    "user_id",
    "session_id",
    "otp_id",
    "destination",
    "provider_code",
    "attempt",
    "actor",
];

/// A deleted account's event names the account's id alone: receivers erase
/// what they hold of it (GDPR Art. 17(2), 19), and nothing more of the
/// person is sent.
const ACCOUNT_DELETED_FIELDS: [&str; 4] = ["event", "outcome", "request_id", "user_id"];

/// The body of the webhook of `e`: the spec's recommended structure
/// ("Payload structure"): `type`, `timestamp` (when the event happened,
/// RFC 3339) and a thin `data` ("Thin vs full payloads"), the audit event's
/// own JSON (its log line's) cut to `DATA_FIELDS`.
pub fn payload(kind: EventType, e: &AuditEvent) -> String {
    let allowed: &[&str] = if kind == EventType::AccountDeleted { &ACCOUNT_DELETED_FIELDS } else { &DATA_FIELDS };
    // Copied into a new map: removing keys would bring the map's removal
    // code into the bundle.
    let mut data = serde_json::Map::new();
    if let Value::Object(fields) = serde_json::to_value(e).unwrap_or_default() {
        for (k, v) in fields {
            if allowed.contains(&k.as_str()) {
                data.insert(k, v);
            }
        }
    }
    let data = Value::Object(data);
    // Type and timestamp need no escaping; the order is the spec's.
    format!(r#"{{"type":"{}","timestamp":"{}","data":{data}}}"#, kind.as_str(), rfc3339_millis(e.at_ms))
}

/// The queue messages of the events the settings select, each with a new
/// webhook id (`msg_` and 32 hex digits; no `.`, as the spec requires).
pub fn outgoing(config: &Config, ports: &Ports, events: &[AuditEvent]) -> Vec<String> {
    let mut messages = Vec::new();
    let Some(settings) = &config.webhooks else { return messages };
    for e in events {
        if let Some(kind) = EventType::of_audit(&e.event, &e.outcome).filter(|k| settings.events.contains(k)) {
            let id = format!("msg_{}", uuid_from(&*ports.entropy).simple());
            messages.push(Queued { id, body: payload(kind, e) }.to_message());
        }
    }
    messages
}

/// Queues the webhooks of `events`: one `sendBatch` (more only past its
/// 100 messages; each is under 2 KB, so 100 stay under its 256 KB), tried
/// once more after a short pause, as the audit rows are.
/// Runs after the answer, so a failure is logged: the events stay in the
/// audit trail.
pub async fn publish(config: &Config, ports: &Ports, events: &[AuditEvent]) {
    let messages = outgoing(config, ports, events);
    if messages.is_empty() {
        return;
    }
    let Some(queue) = &ports.webhooks else {
        return crate::log::error("webhook_queue_unavailable", "no WEBHOOK_QUEUE binding: webhooks not sent");
    };
    for batch in messages.chunks(spec::BATCH_MESSAGES) {
        if queue.send_batch(batch.to_vec()).await.is_ok() {
            continue;
        }
        ports.clock.sleep(200).await;
        if let Err(e) = queue.send_batch(batch.to_vec()).await {
            crate::log::error("webhook_queue_unavailable", &e.to_string());
        }
    }
}

/// What became of one attempt at a queued webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted {
    /// The receiver answered 2xx, or the message can never be sent:
    /// acknowledge it.
    Done,
    /// Retry after this many seconds (the platform counts the retries and,
    /// past `max_retries`, moves the message to the dead-letter queue).
    RetryIn(u32),
}

/// Attempt number `attempts` (1 is the first) at the queued webhook
/// `message`: signed now, with the current settings, and POSTed within
/// `TIMEOUT_MS`.
pub async fn attempt(config: &Config, ports: &Ports, message: &str, attempts: u32) -> Attempted {
    let Some(q) = Queued::from_message(message) else {
        crate::log::error("webhook_unreadable", "a webhook queue message that is not one");
        return Attempted::Done;
    };
    let Some(settings) = &config.webhooks else {
        // WEBHOOK_URL was removed since it was queued: webhooks are off.
        crate::log::emit(
            "warn",
            "webhook_dropped",
            serde_json::json!({ "webhook_id": q.id, "reason": "no WEBHOOK_URL" }),
        );
        return Attempted::Done;
    };
    let timestamp = ports.clock.now_ms().div_euclid(1000);
    let request = ProviderRequest {
        provider: Provider::Webhook,
        url: settings.url.clone(),
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("user-agent", USER_AGENT.to_string()),
            ("webhook-signature", settings.key.sign(&q.id, timestamp, &q.body)),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-id", q.id.clone()),
        ],
        body: q.body,
    };
    let (failure, retry_after) = match ports.sender.send(&request, TIMEOUT_MS).await {
        Ok(answer) if spec::delivered(answer.status) => return Attempted::Done,
        Ok(answer) => (answer.status.to_string(), answer.retry_after),
        Err(true) => ("timeout".to_string(), None),
        Err(false) => ("unreachable".to_string(), None),
    };
    let random = u32::from_le_bytes(random_bytes_from::<4>(&*ports.entropy));
    let wait = spec::retry_delay(&settings.retry_delays, attempts, retry_after.as_deref(), random);
    crate::log::emit(
        "warn",
        "webhook_attempt_failed",
        serde_json::json!({ "webhook_id": q.id, "attempt": attempts, "answer": failure, "retry_in_s": wait }),
    );
    Attempted::RetryIn(wait)
}

/// A webhook whose retries ran out (the dead-letter queue's message): kept
/// in D1 (`webhook_dead_letters`, which is its audit record) to be
/// replayed, and logged. `Err`: D1 failed, and the message is to be retried.
pub async fn dead_letter(ports: &Ports, message: &str) -> Result<(), StoreError> {
    let Some(q) = Queued::from_message(message) else {
        crate::log::error("webhook_unreadable", "a webhook dead letter that is not one");
        return Ok(());
    };
    let body: Value = serde_json::from_str(&q.body).unwrap_or_default();
    let kind = body["type"].as_str().unwrap_or_default();
    Db::new(ports.db.clone()).keep_dead_letter(&q, kind, ports.clock.now_ms()).await?;
    crate::log::emit(
        "error",
        "webhook_dead_lettered",
        serde_json::json!({ "webhook_id": q.id, "type": kind, "request_id": body["data"]["request_id"] }),
    );
    Ok(())
}

/// Puts the dead webhooks an operator marked for replay back on the queue
/// (same id and body, a fresh count of attempts) and forgets them; the
/// cron's step. How many went back.
pub async fn replay(db: &Db, queue: &dyn WebhookQueue) -> Result<usize, StoreError> {
    let mut replayed = 0;
    for _ in 0..REPLAY_ROUNDS {
        let due = db.dead_letters_to_replay(REPLAY_BATCH).await?;
        if due.is_empty() {
            break;
        }
        let (mut ids, mut messages) = (Vec::new(), Vec::new());
        for q in due {
            messages.push(q.to_message());
            ids.push(q.id);
        }
        queue.send_batch(messages).await?;
        // Sent, then forgotten: a failure in between sends them twice,
        // under the same ids, which receivers deduplicate.
        db.forget_dead_letters(&ids).await?;
        replayed += ids.len();
    }
    Ok(replayed)
}
