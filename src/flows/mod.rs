//! One module per flow a client can run. Each takes parsed input (domain
//! types) and the request's `App` (configuration, the ports, the caller) and
//! returns a typed body or an `error::Error`; flows know nothing of HTTP.
//! They reach the platform only through `ports`, so every one of them runs
//! natively against SQLite in tests.

pub mod abuse;
pub mod account;
pub mod admin;
pub mod delivery;
pub mod delivery_status;
pub mod error;
pub mod health;
pub mod otp_request;
pub mod otp_verify;
pub mod recover;
pub mod refresh;
pub mod register;
pub mod session;
pub mod webhooks;

#[cfg(test)]
mod tests;

use crate::audit::{AuditEvent, Event, Trail};
use crate::config::Config;
use crate::domain::tokens::Keys;
use crate::ports::Ports;
use crate::store::Db;

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
    /// The signing keys derived from `config`.
    pub keys: &'static Keys,
    pub ports: Ports,
    pub db: Db,
    pub client: Client,
    /// The request's clock reading, Unix milliseconds.
    pub now_ms: i64,
    /// The audit events of this request; stored after the response.
    pub trail: Trail,
    /// The caller's network as the per-destination budgets key it, worked
    /// out once, when a flow first asks (`App::network`).
    network: std::cell::OnceCell<String>,
}

impl App {
    pub fn new(config: &'static Config, keys: &'static Keys, ports: Ports, client: Client, request_id: &str) -> App {
        let now_ms = ports.clock.now_ms();
        let trail =
            Trail::new(request_id.to_string(), crate::audit::ip_hash(config.otp_pepper.expose(), &client.ip), now_ms);
        App { config, keys, db: Db::new(ports.db.clone()), ports, client, now_ms, trail, network: Default::default() }
    }

    /// The caller's network (`limits::network_id`: its IPv4 address or IPv6
    /// /48, keyed-hashed): what a destination's budgets and a code's
    /// superseding are kept per.
    pub fn network(&self) -> &str {
        self.network.get_or_init(|| crate::domain::limits::network_id(self.config.otp_pepper.expose(), &self.client.ip))
    }

    /// Records an audit event (log line now, D1 row after the response).
    pub fn audit(&self, event: Event) {
        self.trail.record(event, self.ports.clock.now_ms());
    }

    /// Keeps this request's audit events after the response (`keep_events`).
    pub fn store_trail(&self) {
        let events = self.trail.take();
        if events.is_empty() {
            return;
        }
        let (config, ports) = (self.config, self.ports.clone());
        self.ports.background.spawn(Box::pin(async move { keep_events(config, &ports, &events).await }));
    }
}

/// Where every recorded audit event goes, after the answer: its D1 row, and
/// for the events the webhook settings select, the webhook queue (one
/// `sendBatch`). Failures are logged.
pub async fn keep_events(config: &Config, ports: &Ports, events: &[AuditEvent]) {
    Db::new(ports.db.clone()).keep_audit(events, &*ports.clock).await;
    webhooks::publish(config, ports, events).await;
}
