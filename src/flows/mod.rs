//! One module per flow a client can run. Each takes parsed input and the
//! request's `App` (configuration, D1, the caller) and returns a typed body
//! or an `ApiError`.

pub mod abuse;
pub mod account;
pub mod delivery;
pub mod delivery_status;
pub mod health;
pub mod otp_request;
pub mod otp_verify;
pub mod refresh;
pub mod register;
pub mod session;

use worker::{Context, Date, Env};

use crate::audit::{Event, Trail};
use crate::config::Config;
use crate::platform::db::Db;

/// Who is calling, as far as the edge can tell.
#[derive(Debug, Clone)]
pub struct Client {
    /// From `CF-Connecting-IP` only: Cloudflare sets it and clients cannot.
    /// `X-Forwarded-For` is client-controlled and ignored.
    pub ip: String,
    /// Truncated to `MAX_USER_AGENT` characters.
    pub user_agent: String,
    pub accept_language: Option<String>,
}

pub const MAX_USER_AGENT: usize = 256;

/// What a flow may use while serving one request.
pub struct App {
    pub config: &'static Config,
    pub env: Env,
    pub ctx: Context,
    pub db: Db,
    pub client: Client,
    /// The request's clock reading, Unix milliseconds.
    pub now_ms: i64,
    /// The audit events of this request; stored after the response.
    pub trail: Trail,
}

impl App {
    /// Records an audit event (log line now, D1 row after the response).
    pub fn audit(&self, event: Event) {
        self.trail.record(event, Date::now().as_millis() as i64);
    }
}
