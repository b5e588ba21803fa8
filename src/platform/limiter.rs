//! The `RateLimiter` Durable Object (SQLite-backed, one object per key) and
//! the Worker-side client that calls it.

use worker::*;

/// Binding name of the Durable Object namespace in wrangler.toml.
pub const BINDING: &str = "RATE_LIMITER";

#[durable_object]
pub struct RateLimiter {
    state: State,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match req.path().as_str() {
            "/ping" => {
                // A real read of this object's SQLite storage.
                let one: Vec<serde_json::Value> =
                    self.state.storage().sql().exec("SELECT 1 AS ok", None)?.to_array()?;
                Response::from_json(&serde_json::json!({ "ok": one.len() == 1 }))
            }
            _ => Response::error("unknown limiter operation", 404),
        }
    }
}

/// Calls into rate-limiter objects by name.
pub struct Limiter {
    namespace: ObjectNamespace,
}

impl Limiter {
    pub fn from_env(env: &Env) -> Result<Limiter> {
        Ok(Limiter { namespace: env.durable_object(BINDING)? })
    }

    /// Round trip to one object: proves the namespace, the object and its
    /// storage answer.
    pub async fn ping(&self, name: &str) -> Result<bool> {
        let stub = self.namespace.get_by_name(name)?;
        let mut resp = stub.fetch_with_str("https://limiter/ping").await?;
        if resp.status_code() != 200 {
            return Ok(false);
        }
        let body: serde_json::Value = resp.json().await?;
        Ok(body["ok"] == serde_json::Value::Bool(true))
    }
}
