//! The queue entry point's work: the delivery queue and its dead-letter
//! queue, and the webhook queue and its dead-letter queue, told apart by
//! the batch's queue name (wrangler.toml).
//!
//! Delivery retries are re-sent jobs, not `message.retry()`: the job carries
//! its own try count and the next delay. The platform's own retries (and,
//! after `max_retries`, the dead-letter queue) catch a consumer that fails
//! before deciding.
//!
//! Webhook retries are the platform's: `message.retry()` with the backoff's
//! delay, so that after the consumer's `max_retries` the platform moves the
//! message to the dead-letter queue. The backoff needs the message's
//! `attempts` ("The number of times the consumer has attempted to process
//! this message. Starts at 1": developers.cloudflare.com/queues/configuration/
//! javascript-apis; miniflare's broker sets it the same way), which
//! workers-rs 0.8 does not expose: it is read from the platform's message
//! object.

use worker::js_sys::Reflect;
use worker::worker_sys::{Message as MessageSys, MessageBatch as MessageBatchSys};
use worker::{Context, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use super::queue::{is_dead_letter_queue, is_webhook_queue};
use super::{env, runtime};
use crate::audit::Trail;
use crate::config::Config;
use crate::domain::delivery::{DeliveryJob, JOB_VERSION};
use crate::flows::delivery::{self, Courier, Processed};
use crate::flows::keep_events;
use crate::flows::webhooks::{self, Attempted};
use crate::ports::{join_all, Ports, StoreError};

/// A platform retry after the consumer could not decide (D1 unavailable).
const UNDECIDED_RETRY_SECONDS: u32 = 5;

/// A dead webhook whose row could not be written waits this long before
/// the next try.
const DEAD_LETTER_RETRY_SECONDS: u32 = 60;

fn retry_in(seconds: u32) -> worker::QueueRetryOptions {
    QueueRetryOptionsBuilder::new().with_delay_seconds(seconds).build()
}

/// The queue handler: every message of the batch at once.
pub async fn consume(raw: MessageBatchSys, env: Env, ctx: Context) {
    let batch: MessageBatch<String> = MessageBatch::from(raw.clone());
    let queue = batch.queue();
    let config = match env::config(&env) {
        Ok(config) => config,
        Err(e) => {
            crate::log::error("config_invalid", &e.to_string());
            batch.retry_all_with_options(&retry_in(60));
            return;
        }
    };
    let ports = runtime::ports(&env, ctx);
    match (is_webhook_queue(&queue), is_dead_letter_queue(&queue)) {
        (true, false) => send_webhooks(&raw, config, &ports).await,
        (true, true) => keep_dead_webhooks(&raw, &ports).await,
        (false, dead_letters) => deliver(batch, dead_letters, config, &ports).await,
    }
}

/// Each message of a raw batch, with its body (text) and `attempts`.
fn with_attempts(raw: &MessageBatchSys) -> Vec<(RawMessage, String, u32)> {
    let mut out = Vec::new();
    let Ok(messages) = raw.messages() else { return out };
    for m in messages.iter() {
        let attempts = Reflect::get(&m, &"attempts".into()).ok().and_then(|a| a.as_f64()).unwrap_or(1.0);
        let message = RawMessage::from(MessageSys::from(m));
        let body = message.body().as_string().unwrap_or_default();
        out.push((message, body, attempts.max(1.0) as u32));
    }
    out
}

/// The webhook queue: one attempt at each message, side by side; a failed
/// one is retried by the platform after the backoff's delay.
async fn send_webhooks(raw: &MessageBatchSys, config: &'static Config, ports: &Ports) {
    let attempts = with_attempts(raw).into_iter().map(|(message, body, attempts)| async move {
        match webhooks::attempt(config, ports, &body, attempts).await {
            Attempted::Done => message.ack(),
            Attempted::RetryIn(seconds) => message.retry_with_options(&retry_in(seconds)),
        }
    });
    join_all(attempts.collect()).await;
}

/// The webhook dead-letter queue: each message kept in D1, one at a time.
async fn keep_dead_webhooks(raw: &MessageBatchSys, ports: &Ports) {
    for (message, body, _) in with_attempts(raw) {
        match webhooks::dead_letter(ports, &body).await {
            Ok(()) => message.ack(),
            Err(e) => {
                crate::log::error("dependency_unavailable", &format!("Database: {e}"));
                message.retry_with_options(&retry_in(DEAD_LETTER_RETRY_SECONDS));
            }
        }
    }
}

/// The delivery queue (or, with `dead_letters`, its dead-letter queue).
async fn deliver(batch: MessageBatch<String>, dead_letters: bool, config: &'static Config, ports: &Ports) {
    let courier = Courier::new(config, ports);
    let c = &courier;
    // Every message's events, stored in one D1 write for the whole batch.
    let handled = batch.iter().map(|message| async move {
        let message = match message {
            Ok(m) => m,
            // Not a string: not ours. Left unacknowledged, it ends in the dead-letter queue.
            Err(e) => {
                crate::log::error("delivery_job_unreadable", &e.to_string());
                return Vec::new();
            }
        };
        let job = serde_json::from_str::<DeliveryJob>(message.body()).ok().filter(|j| j.v == JOB_VERSION);
        let Some(mut job) = job else {
            crate::log::emit("error", "delivery_job_unreadable", serde_json::json!({ "queue_message": message.id() }));
            message.ack();
            return Vec::new();
        };
        // The request's own events, stored once the message is done with.
        let carried = delivery::carried(&mut job);
        let (request_id, ip_hash) = (job.request_id.clone(), job.ip_hash.clone());
        let trail = Trail::new(request_id, ip_hash, job.requested_at_ms);
        if dead_letters {
            delivery::dead_letter(c, &job, &trail).await;
            message.ack();
        } else {
            match delivery::run_job(c, &job, &trail).await {
                Ok(Processed::Done) => message.ack(),
                Ok(Processed::RetryIn(seconds)) => {
                    let next = DeliveryJob { tries: job.tries + 1, ..job };
                    let requeued = match &ports.queue {
                        Some(queue) => queue.enqueue(&next, seconds).await,
                        None => Err(StoreError("no delivery queue".into())),
                    };
                    if let Err(e) = requeued {
                        // This try is claimed in D1: a platform retry of this
                        // message would be skipped, so give the code up.
                        crate::log::error("delivery_queue_unavailable", &e.to_string());
                        delivery::give_up(c, &next, &trail).await;
                    }
                    message.ack();
                }
                Err(e) => {
                    crate::log::error("dependency_unavailable", &format!("Database: {e}"));
                    message.retry_with_options(&retry_in(UNDECIDED_RETRY_SECONDS));
                    // The message comes again, with its carried events.
                    return trail.take();
                }
            }
        }
        [carried, trail.take()].concat()
    });
    let events = join_all(handled.collect()).await.concat();
    keep_events(config, ports, &events).await;
}
