//! The `DeliveryQueue` and `WebhookQueue` ports on Cloudflare Queues
//! (`DELIVERY_QUEUE`, `WEBHOOK_QUEUE`); the consumer of both is
//! `platform::consumer`. Queue and binding names match `wrangler.toml`.

use worker::{Env, MessageBuilder, Queue};

use crate::domain::delivery::DeliveryJob;
use crate::ports::{DeliveryQueue, Fut, StoreError, WebhookQueue};

pub const BINDING: &str = "DELIVERY_QUEUE";
/// The dead-letter queue of the delivery queue (`dead_letter_queue` in wrangler.toml).
pub const DEAD_LETTER_QUEUE: &str = "otp-edge-delivery-dlq";

pub const WEBHOOK_BINDING: &str = "WEBHOOK_QUEUE";
/// The webhook queue and its dead-letter queue (wrangler.toml).
pub const WEBHOOK_QUEUE: &str = "otp-edge-webhooks";
pub const WEBHOOK_DEAD_LETTER_QUEUE: &str = "otp-edge-webhooks-dlq";

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

/// The `WebhookQueue` port on the `WEBHOOK_QUEUE` binding.
pub struct WebhooksQueue(Queue);

impl WebhooksQueue {
    /// `None` when the Worker has no webhook queue bound.
    pub fn from_env(env: &Env) -> Option<WebhooksQueue> {
        env.queue(WEBHOOK_BINDING).ok().map(WebhooksQueue)
    }
}

impl WebhookQueue for WebhooksQueue {
    fn send_batch(&self, messages: Vec<String>) -> Fut<'_, Result<(), StoreError>> {
        Box::pin(async move { self.0.send_batch(messages).await.map_err(|e| StoreError(e.to_string())) })
    }
}
