//! The consumer of the delivery queue and of its dead-letter queue (the
//! Worker's `queue` entry point).
//!
//! Retries are re-sent jobs, not `message.retry()`: the job carries its own
//! try count and the next delay (workers-rs 0.8 does not expose a message's
//! `attempts`). The platform's own retries (and, after `max_retries`, the
//! dead-letter queue) catch a consumer that fails before deciding.

use worker::{Context, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

use super::queue::is_dead_letter_queue;
use super::{env, runtime};
use crate::audit::Trail;
use crate::domain::delivery::{DeliveryJob, JOB_VERSION};
use crate::flows::delivery::{self, Courier, Processed};
use crate::ports::{join_all, StoreError};

/// A platform retry after the consumer could not decide (D1 unavailable).
const UNDECIDED_RETRY_SECONDS: u32 = 5;

/// The queue handler: every message of the batch at once.
pub async fn consume(batch: MessageBatch<String>, env: Env, ctx: Context) {
    let dead_letters = is_dead_letter_queue(&batch.queue());
    let config = match env::config(&env) {
        Ok(config) => config,
        Err(e) => {
            crate::log::error("config_invalid", &e.to_string());
            batch.retry_all_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(60).build());
            return;
        }
    };
    let ports = runtime::ports(&env, ctx);
    let courier = Courier::new(config, &ports);
    let (ports, c) = (&ports, &courier);
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
                    message.retry_with_options(
                        &QueueRetryOptionsBuilder::new().with_delay_seconds(UNDECIDED_RETRY_SECONDS).build(),
                    );
                    // The message comes again, with its carried events.
                    return trail.take();
                }
            }
        }
        [carried, trail.take()].concat()
    });
    let events = join_all(handled.collect()).await.concat();
    c.db.keep_audit(&events, &*ports.clock).await;
}
