//! The ports of one Worker invocation, on the Workers runtime: D1, the
//! rate-limiter objects, `fetch`, the delivery and webhook queues,
//! `Date.now()` and timers, and `ctx.waitUntil`.

use std::rc::Rc;
use std::time::Duration;

use worker::{Context, Date, Delay, Env};

use super::queue::{WebhooksQueue, WorkersQueue};
use super::{d1::D1, delivery::FetchSender, limiter::DurableLimiter};
use crate::domain::crypto::Csprng;
use crate::ports::{Background, Clock, DeliveryQueue, Fut, Ports, WebhookQueue};

pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now_ms(&self) -> i64 {
        Date::now().as_millis() as i64
    }

    fn sleep(&self, ms: u64) -> Fut<'_, ()> {
        Box::pin(Delay::from(Duration::from_millis(ms)))
    }
}

/// Work after the answer, kept alive by `ctx.waitUntil`.
pub struct WaitUntil(Context);

impl Background for WaitUntil {
    fn spawn(&self, work: Fut<'static, ()>) {
        self.0.wait_until(work);
    }
}

/// The ports of an invocation. Bindings that are missing fail their calls,
/// not the invocation.
pub fn ports(env: &Env, ctx: Context) -> Ports {
    let queue = WorkersQueue::from_env(env).map(|q| Rc::new(q) as Rc<dyn DeliveryQueue>);
    Ports {
        db: Rc::new(D1::from_env(env)),
        limiter: Rc::new(DurableLimiter::from_env(env)),
        sender: Rc::new(FetchSender),
        queue,
        webhooks: WebhooksQueue::from_env(env).map(|q| Rc::new(q) as Rc<dyn WebhookQueue>),
        clock: Rc::new(WorkerClock),
        entropy: Rc::new(Csprng),
        background: Rc::new(WaitUntil(ctx)),
    }
}
