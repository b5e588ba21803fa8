//! OTP login by email and SMS as a Cloudflare Worker.
//!
//! Layout: `http` is the HTTP surface (routes, JSON errors); `flows` holds one
//! module per flow; `platform` is the glue to D1, the Durable Object and
//! outbound fetch; `config` and `domain` are the rules, free of `worker` and
//! unit-tested natively.

pub mod audit;
pub mod config;
pub mod domain;
pub mod flows;
pub mod http;
pub mod log;
#[cfg(test)]
pub mod native;
pub mod platform;
pub mod ports;
pub mod store;

pub use platform::limiter::RateLimiter;

use worker::{event, Context, Date, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(http::handle(req, env, ctx).await)
}

/// The queue entry point: the delivery queue (login codes sent after the
/// answer, tried again with backoff while they live), the webhook queue
/// (signed webhooks of audit events) and their dead-letter queues
/// (`wrangler.toml`). Written out rather than with `#[event(queue)]`, whose
/// glue it repeats (worker-macros 0.8.7, `event.rs`), so that the consumer
/// keeps the platform's batch object: a webhook's backoff needs each
/// message's `attempts`, which workers-rs 0.8 does not expose.
mod queue_entry {
    use worker::wasm_bindgen::prelude::wasm_bindgen;
    use worker::wasm_bindgen::JsValue;

    #[wasm_bindgen(
        wasm_bindgen = ::worker::wasm_bindgen,
        wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
        js_sys = ::worker::js_sys
    )]
    pub async fn queue(
        batch: ::worker::worker_sys::MessageBatch,
        env: ::worker::Env,
        ctx: ::worker::worker_sys::Context,
    ) -> Result<JsValue, JsValue> {
        // Every failure is handled per message: nothing is thrown.
        let work = crate::platform::consumer::consume(batch, env, ::worker::Context::new(ctx));
        ::std::panic::AssertUnwindSafe(work).await;
        Ok(JsValue::UNDEFINED)
    }
}

/// Rows kept after they expire or are used, for support questions.
const KEEP_STALE_MS: i64 = 24 * 60 * 60 * 1000;

/// The cron trigger: deletes OTP rows and verification tokens that expired
/// or were used more than a day ago, and audit events past retention; puts
/// the dead webhooks marked for replay back on the webhook queue; then
/// prunes retired refresh tokens of ended sessions and sessions a month
/// after their end, which needs the settings (when a session ends).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let now_ms = Date::now().as_millis() as i64;
    let db = store::Db::new(std::rc::Rc::new(platform::d1::D1::from_env(&env)));
    match db.delete_stale(now_ms, KEEP_STALE_MS).await {
        Ok(()) => log::info("cleanup_done", serde_json::json!({})),
        Err(e) => log::error("cleanup_failed", &e.to_string()),
    }
    if let Some(queue) = platform::queue::WebhooksQueue::from_env(&env) {
        match flows::webhooks::replay(&db, &queue).await {
            Ok(0) => {}
            Ok(n) => log::info("webhooks_replayed", serde_json::json!({ "webhooks": n })),
            Err(e) => log::error("webhook_replay_failed", &e.to_string()),
        }
    }
    let retention = match platform::env::config(&env) {
        Ok(config) => store::maintenance::SessionRetention::of(&config.tokens),
        Err(e) => return log::error("cleanup_failed", &format!("sessions not pruned: {e}")),
    };
    match db.prune_sessions(now_ms, &retention).await {
        Ok(p) => log::info(
            "sessions_pruned",
            serde_json::json!({ "retired_refresh_tokens": p.retired_tokens, "sessions": p.sessions }),
        ),
        Err(e) => log::error("cleanup_failed", &format!("sessions: {e}")),
    }
}
