//! OTP login by email and SMS as a Cloudflare Worker.
//!
//! Layout: `http` is the HTTP surface (routes, JSON errors); `flows` holds one
//! module per flow; `platform` is the glue to D1, the Durable Object and
//! outbound fetch; `config` and `domain` are the rules, free of `worker` and
//! unit-tested natively.

pub mod config;
pub mod flows;
pub mod http;
pub mod log;
pub mod platform;

pub use platform::limiter::RateLimiter;

use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(http::handle(req, env, ctx).await)
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, _env: Env, _ctx: ScheduleContext) {
    // Cleanup jobs are added by the flows that create rows to clean.
}
