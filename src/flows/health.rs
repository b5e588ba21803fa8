//! `GET /healthz`: does each dependency answer a real request?

use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::ports::{Ports, StoreError};
use crate::store::Db;

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub config: Check,
    pub d1: Check,
    pub durable_object: Check,
}

#[derive(Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    pub fn is_up(&self) -> bool {
        self.config.ok && self.d1.ok && self.durable_object.ok
    }
}

pub async fn check(config: Result<&Config, ConfigError>, ports: &Ports) -> Health {
    let config = match config {
        Ok(_) => Check { ok: true, latency_ms: None, error: None },
        // Names the setting, never its value.
        Err(e) => Check { ok: false, latency_ms: None, error: Some(e.to_string()) },
    };
    let db = Db::new(ports.db.clone());
    let d1 = timed(ports, db.ping(), "migrations not applied").await;
    let durable_object = timed(ports, ports.limiter.ping("healthz"), "unexpected answer").await;
    let mut health = Health { status: "ok", config, d1, durable_object };
    if !health.is_up() {
        health.status = "degraded";
    }
    health
}

async fn timed(
    ports: &Ports,
    probe: impl std::future::Future<Output = Result<bool, StoreError>>,
    when_false: &str,
) -> Check {
    let start = ports.clock.now_ms();
    let outcome = probe.await;
    let latency_ms = Some((ports.clock.now_ms() - start).max(0) as u64);
    match outcome {
        Ok(true) => Check { ok: true, latency_ms, error: None },
        Ok(false) => Check { ok: false, latency_ms, error: Some(when_false.to_string()) },
        Err(e) => {
            crate::log::error("healthz_probe_failed", &e.to_string());
            Check { ok: false, latency_ms, error: Some("no answer".to_string()) }
        }
    }
}
