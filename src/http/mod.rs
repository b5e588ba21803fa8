//! The HTTP surface: every route the Worker answers, in one table, and the
//! mapping of results and errors to JSON responses.

pub mod error;

use serde::Serialize;
use worker::{Context, Env, Headers, Method, Request, Response};

pub use error::ApiError;

use crate::flows;

/// Routes, matched on the path without its trailing slash, so `/x` and `/x/`
/// are the same endpoint (clients of the reference use the slash).
enum Route {
    Healthz,
}

fn resolve(method: &Method, path: &str) -> Result<Route, ApiError> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let (route, allow) = match path {
        "/healthz" => (Route::Healthz, "GET"),
        _ => return Err(ApiError::not_found()),
    };
    let allowed = allow.split(", ").any(|m| m == method.as_ref() || (m == "GET" && *method == Method::Head));
    if allowed {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

/// Entry point for every request: never lets an error escape as a non-JSON
/// answer.
pub async fn handle(req: Request, env: Env, _ctx: Context) -> Response {
    let result = match resolve(&req.method(), &req.path()) {
        Ok(route) => dispatch(route, req, &env).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(route: Route, _req: Request, env: &Env) -> Result<Response, ApiError> {
    match route {
        Route::Healthz => {
            let health = flows::health::check(env).await;
            let status = if health.is_up() { 200 } else { 503 };
            json(status, &health)
        }
    }
}

/// A JSON response with the headers every answer of an auth API carries.
pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response, ApiError> {
    let text = serde_json::to_string(body).map_err(ApiError::internal)?;
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(ApiError::internal);
    set("content-type", "application/json; charset=utf-8")?;
    // Codes, tokens and user data must never sit in a shared cache.
    set("cache-control", "no-store")?;
    set("x-content-type-options", "nosniff")?;
    Ok(Response::ok(text).map_err(ApiError::internal)?.with_status(status).with_headers(headers))
}

pub fn error_response(e: &ApiError) -> Response {
    let mut resp = match json(e.status, &e.body()) {
        Ok(resp) => resp,
        // Serializing a fixed struct cannot fail; keep a plain answer anyway.
        Err(_) => return Response::error("Internal error", 500).unwrap_or_else(|_| Response::empty().unwrap()),
    };
    let headers = resp.headers_mut();
    if let Some(secs) = e.retry_after {
        let _ = headers.set("retry-after", &secs.to_string());
    }
    if let Some(allow) = e.allow {
        let _ = headers.set("allow", allow);
    }
    resp
}
