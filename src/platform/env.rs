//! Reads the typed `Config` from the Worker's vars and secrets, once per isolate.

use std::sync::OnceLock;

use worker::Env;

use crate::config::{Config, ConfigError};

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The parsed configuration. Vars and secrets cannot change within an isolate,
/// so a successful parse is kept; a failed one is retried on the next request.
pub fn config(env: &Env) -> Result<&'static Config, ConfigError> {
    if let Some(config) = CONFIG.get() {
        return Ok(config);
    }
    let parsed = Config::from_lookup(&|name| read_setting(env, name))?;
    Ok(CONFIG.get_or_init(|| parsed))
}

/// A var or secret as a string. Non-string `[vars]` (numbers, booleans) are
/// turned into their JSON text so `RATE_LIMIT_PER_HOUR = 5` works too.
fn read_setting(env: &Env, name: &str) -> Option<String> {
    if let Ok(var) = env.var(name) {
        return Some(var.to_string());
    }
    match env.object_var::<serde_json::Value>(name).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The signing keys derived from the configuration, once per isolate.
pub fn keys(config: &Config) -> &'static crate::domain::tokens::Keys {
    static KEYS: OnceLock<crate::domain::tokens::Keys> = OnceLock::new();
    KEYS.get_or_init(|| crate::domain::tokens::Keys::from_seeds(&config.jwt_signing_keys))
}
