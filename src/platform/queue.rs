//! The `DeliveryQueue` and `WebhookQueue` ports on Cloudflare Queues
//! (`DELIVERY_QUEUE`, `WEBHOOK_QUEUE`); the consumer of both is
//! `platform::consumer`. The binding names and the queue names' suffixes
//! match `wrangler.toml`.

use worker::{Env, MessageBuilder, Queue};

use crate::domain::delivery::DeliveryJob;
use crate::ports::{DeliveryQueue, Fut, StoreError, WebhookQueue};

pub const BINDING: &str = "DELIVERY_QUEUE";
/// How a dead-letter queue's name ends (`dead_letter_queue` in
/// wrangler.toml: `otp-edge-delivery-dlq`, and staging's
/// `otp-edge-staging-delivery-dlq`): each environment names its own queues.
pub const DEAD_LETTER_SUFFIX: &str = "-dlq";

/// Whether the batch came from a dead-letter queue.
pub fn is_dead_letter_queue(name: &str) -> bool {
    name.ends_with(DEAD_LETTER_SUFFIX)
}

pub const WEBHOOK_BINDING: &str = "WEBHOOK_QUEUE";
/// How the webhook queue's name ends, before a dead-letter queue's suffix
/// (`otp-edge-webhooks`, `otp-edge-webhooks-dlq`, staging's
/// `otp-edge-staging-webhooks` ...).
pub const WEBHOOK_SUFFIX: &str = "-webhooks";

/// Whether the batch came from the webhook queue or its dead-letter queue.
pub fn is_webhook_queue(name: &str) -> bool {
    name.strip_suffix(DEAD_LETTER_SUFFIX).unwrap_or(name).ends_with(WEBHOOK_SUFFIX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_told_apart_by_their_names_in_every_environment() {
        let told = |n: &str| (is_webhook_queue(n), is_dead_letter_queue(n));
        for env in ["otp-edge", "otp-edge-staging"] {
            assert_eq!(told(&format!("{env}-delivery")), (false, false));
            assert_eq!(told(&format!("{env}-delivery-dlq")), (false, true));
            assert_eq!(told(&format!("{env}-webhooks")), (true, false));
            assert_eq!(told(&format!("{env}-webhooks-dlq")), (true, true));
        }
        // Every queue wrangler.toml consumes is one of the four kinds above.
        let toml = include_str!("../../wrangler.toml");
        let consumed: Vec<&str> =
            toml.lines().filter_map(|l| l.trim().strip_prefix("queue = \"")?.strip_suffix('"')).collect();
        assert!(consumed.len() >= 8, "{consumed:?}");
        for q in consumed {
            assert!(
                q.ends_with("-delivery")
                    || q.ends_with("-delivery-dlq")
                    || q.ends_with("-webhooks")
                    || q.ends_with("-webhooks-dlq"),
                "{q}"
            );
        }
    }
}
