//! The static files (the demo page, its script, the OpenAPI document) are
//! Workers Static Assets (`[assets]` in wrangler.toml), not part of the
//! wasm bundle: Cloudflare's asset layer stores and caches them, and the
//! Worker reads them through the `ASSETS` binding (it runs first for every
//! path, `run_worker_first`, so each answer keeps the headers the HTTP
//! surface sets). They were about 17 KB of the gzipped bundle.
//! <https://developers.cloudflare.com/workers/static-assets/binding/>

use worker::Env;

/// Binding name of the assets in wrangler.toml.
pub const BINDING: &str = "ASSETS";

/// The text of asset `path` (`/demo.html`), fetched through the binding on
/// the request's own origin. `Err` says why, for the log: no binding (a
/// deployment without the `[assets]` section) or no such file.
pub async fn text(env: &Env, origin: &str, path: &str) -> Result<String, String> {
    let assets = env.assets(BINDING).map_err(|e| format!("no {BINDING} binding: {e}"))?;
    let mut resp = assets.fetch(format!("{origin}{path}"), None).await.map_err(|e| e.to_string())?;
    if resp.status_code() != 200 {
        return Err(format!("asset {path} answered HTTP {}", resp.status_code()));
    }
    resp.text().await.map_err(|e| e.to_string())
}
