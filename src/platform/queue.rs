//! The delivery queue (Cloudflare Queues, `DELIVERY_QUEUE`): producer and
//! consumer of delivery jobs, and the consumer of its dead-letter queue.
//! Queue and binding names match `wrangler.toml`.
//!
//! Retries are re-sent jobs, not `message.retry()`: the job carries its own
//! try count and the next delay (workers-rs 0.8 does not expose a message's
//! `attempts`). The platform's own retries (and, after `max_retries`, the
//! dead-letter queue) catch a consumer that fails before deciding.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use worker::{Env, MessageBatch, MessageBuilder, MessageExt, QueueRetryOptionsBuilder};

use crate::audit::Trail;
use crate::domain::delivery::{DeliveryJob, JOB_VERSION};
use crate::flows::delivery::{self, Processed};
use crate::platform::{db::Db, env};

pub const BINDING: &str = "DELIVERY_QUEUE";
/// The dead-letter queue of the delivery queue (`dead_letter_queue` in wrangler.toml).
pub const DEAD_LETTER_QUEUE: &str = "otp-edge-delivery-dlq";

/// A platform retry after the consumer could not decide (D1 unavailable).
const UNDECIDED_RETRY_SECONDS: u32 = 5;

/// Whether the Worker has a delivery queue bound.
pub fn available(env: &Env) -> bool {
    env.queue(BINDING).is_ok()
}

/// Sends `job`, to be handled after `delay_seconds`.
pub async fn enqueue(env: &Env, job: &DeliveryJob, delay_seconds: u64) -> worker::Result<()> {
    let body = serde_json::to_string(job).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let message = MessageBuilder::new(body).delay_seconds(delay_seconds.min(12 * 3600) as u32).build();
    env.queue(BINDING)?.send(message).await
}

/// The queue handler: every message of the batch at once.
pub async fn consume(batch: MessageBatch<String>, env: Env) {
    let dead_letters = batch.queue() == DEAD_LETTER_QUEUE;
    let (config, db) = match (env::config(&env), Db::from_env(&env)) {
        (Ok(config), Ok(db)) => (config, db),
        (Err(e), _) => {
            crate::log::error("config_invalid", &e.to_string());
            batch.retry_all_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(60).build());
            return;
        }
        (_, Err(e)) => {
            crate::log::error("dependency_unavailable", &format!("Database: {e}"));
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new().with_delay_seconds(UNDECIDED_RETRY_SECONDS).build(),
            );
            return;
        }
    };
    let (env, db) = (&env, &db);
    let handled = batch.iter().map(|message| async move {
        let message = match message {
            Ok(m) => m,
            // Not a string: not ours. Left unacknowledged, it ends in the dead-letter queue.
            Err(e) => return crate::log::error("delivery_job_unreadable", &e.to_string()),
        };
        let job = serde_json::from_str::<DeliveryJob>(message.body()).ok().filter(|j| j.v == JOB_VERSION);
        let Some(job) = job else {
            crate::log::emit("error", "delivery_job_unreadable", serde_json::json!({ "queue_message": message.id() }));
            return message.ack();
        };
        let (request_id, ip_hash) = (job.request_id.clone(), job.ip_hash.clone());
        let trail = Trail::new(request_id, ip_hash, job.requested_at_ms);
        if dead_letters {
            delivery::dead_letter(db, &job, &trail).await;
            message.ack();
        } else {
            match delivery::run_job(config, db, &job, &trail).await {
                Ok(Processed::Done) => message.ack(),
                Ok(Processed::RetryIn(seconds)) => {
                    let next = DeliveryJob { tries: job.tries + 1, ..job };
                    if let Err(e) = enqueue(env, &next, seconds).await {
                        // This try is claimed in D1: a platform retry of this
                        // message would be skipped, so give the code up.
                        crate::log::error("delivery_queue_unavailable", &e.to_string());
                        delivery::give_up(db, &next, &trail).await;
                    }
                    message.ack();
                }
                Err(e) => {
                    crate::log::error("dependency_unavailable", &format!("Database: {e}"));
                    message.retry_with_options(
                        &QueueRetryOptionsBuilder::new().with_delay_seconds(UNDECIDED_RETRY_SECONDS).build(),
                    );
                }
            }
        }
        if let Err(e) = db.store_audit(&trail.take()).await {
            crate::log::error("audit_store_failed", &e.to_string());
        }
    });
    join_all(handled.collect()).await;
}

/// Runs a batch's futures concurrently to the end (futures-util's
/// `join_all` would bring its larger `FuturesOrdered` into the bundle).
async fn join_all<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    poll_fn(|cx| {
        for slot in pending.iter_mut() {
            if slot.as_mut().is_some_and(|f| f.as_mut().poll(cx).is_ready()) {
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
