//! `GET /healthz`: does each dependency answer a real request?

use serde::Serialize;
use worker::{Date, Env};

use crate::platform::{db::Db, env, limiter::Limiter};

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

pub async fn check(env: &Env) -> Health {
    let config = match env::config(env) {
        Ok(_) => Check { ok: true, latency_ms: None, error: None },
        // Names the setting, never its value.
        Err(e) => Check { ok: false, latency_ms: None, error: Some(e.to_string()) },
    };
    let d1 = timed(
        async {
            let db = Db::from_env(env)?;
            db.ping().await
        },
        "migrations not applied",
    )
    .await;
    let durable_object = timed(
        async {
            let limiter = Limiter::from_env(env)?;
            limiter.ping("healthz").await
        },
        "unexpected answer",
    )
    .await;
    let mut health = Health { status: "ok", config, d1, durable_object };
    if !health.is_up() {
        health.status = "degraded";
    }
    health
}

async fn timed(probe: impl std::future::Future<Output = worker::Result<bool>>, when_false: &str) -> Check {
    let start = Date::now().as_millis();
    let outcome = probe.await;
    let latency_ms = Some(Date::now().as_millis().saturating_sub(start));
    match outcome {
        Ok(true) => Check { ok: true, latency_ms, error: None },
        Ok(false) => Check { ok: false, latency_ms, error: Some(when_false.to_string()) },
        Err(e) => {
            crate::log::error("healthz_probe_failed", &e.to_string());
            Check { ok: false, latency_ms, error: Some("no answer".to_string()) }
        }
    }
}
