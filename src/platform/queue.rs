//! The `DeliveryQueue` port on Cloudflare Queues (`DELIVERY_QUEUE`); the
//! consumer is `platform::consumer`. The binding name and the dead-letter
//! queues' suffix match `wrangler.toml`.

use worker::{Env, MessageBuilder, Queue};

use crate::domain::delivery::DeliveryJob;
use crate::ports::{DeliveryQueue, Fut, StoreError};

pub const BINDING: &str = "DELIVERY_QUEUE";
/// How a dead-letter queue's name ends (`dead_letter_queue` in
/// wrangler.toml: `otp-edge-delivery-dlq`, and staging's
/// `otp-edge-staging-delivery-dlq`): each environment names its own queues.
pub const DEAD_LETTER_SUFFIX: &str = "-dlq";

/// Whether the batch came from a dead-letter queue.
pub fn is_dead_letter_queue(name: &str) -> bool {
    name.ends_with(DEAD_LETTER_SUFFIX)
}

/// The `DeliveryQueue` port on the `DELIVERY_QUEUE` binding.
pub struct WorkersQueue(Queue);

impl WorkersQueue {
    /// `None` when the Worker has no delivery queue bound.
    pub fn from_env(env: &Env) -> Option<WorkersQueue> {
        env.queue(BINDING).ok().map(WorkersQueue)
    }
}

impl DeliveryQueue for WorkersQueue {
    /// Sends `job`, to be handled after `delay_seconds`.
    fn enqueue(&self, job: &DeliveryJob, delay_seconds: u64) -> Fut<'_, Result<(), StoreError>> {
        let body = serde_json::to_string(job);
        Box::pin(async move {
            let body = body.map_err(|e| StoreError(e.to_string()))?;
            let message = MessageBuilder::new(body).delay_seconds(delay_seconds.min(12 * 3600) as u32).build();
            self.0.send(message).await.map_err(|e| StoreError(e.to_string()))
        })
    }
}
