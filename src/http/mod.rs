//! The HTTP surface: every route the Worker answers, in one table, and the
//! mapping of results and errors to JSON responses.

pub mod error;
pub mod input;

use serde::Serialize;
use worker::{Context, Date, Env, Headers, Method, Request, Response};

pub use error::ApiError;

use crate::flows::{self, App, Client, MAX_USER_AGENT};
use crate::platform::{db::Db, env};

/// Routes, matched on the path without its trailing slash, so `/x` and `/x/`
/// are the same endpoint (clients of the reference use the slash).
enum Route {
    Healthz,
    Jwks,
    OtpRequest,
    OtpVerify,
    Register,
    Refresh,
    Me,
    Sessions,
    Session(String),
    Logout,
}

fn resolve(method: &Method, path: &str) -> Result<Route, ApiError> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let (route, allow) = match path {
        "/healthz" => (Route::Healthz, "GET"),
        "/.well-known/jwks.json" => (Route::Jwks, "GET"),
        "/api/auth/otp/request" => (Route::OtpRequest, "POST"),
        "/api/auth/otp/verify" => (Route::OtpVerify, "POST"),
        "/api/auth/register" => (Route::Register, "POST"),
        "/api/auth/token/refresh" => (Route::Refresh, "POST"),
        "/api/auth/me" => (Route::Me, "GET"),
        "/api/auth/sessions" => (Route::Sessions, "GET"),
        "/api/auth/logout" => (Route::Logout, "POST"),
        _ => match path.strip_prefix("/api/auth/sessions/") {
            Some(id) if !id.contains('/') => (Route::Session(id.to_string()), "DELETE"),
            _ => return Err(ApiError::not_found()),
        },
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
pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let result = match resolve(&req.method(), &req.path()) {
        Ok(route) => dispatch(route, req, env, ctx).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(route: Route, mut req: Request, env: Env, ctx: Context) -> Result<Response, ApiError> {
    if let Route::Healthz = route {
        let health = flows::health::check(&env).await;
        return json(if health.is_up() { 200 } else { 503 }, &health);
    }
    let app = app(&req, env, ctx)?;
    let authorization = req.headers().get("authorization").ok().flatten();
    let authenticate = || flows::account::authenticate(&app, authorization.as_deref());
    match route {
        Route::Healthz => unreachable!("answered above"),
        Route::Jwks => {
            let mut resp = json(200, &flows::session::keys(&app).jwks())?;
            // Public keys: verifiers may cache them (and must refetch on an unknown kid).
            let _ = resp.headers_mut().set("cache-control", "public, max-age=300");
            Ok(resp)
        }
        Route::OtpRequest => {
            let input = input::otp_request(&body(&mut req).await?)?;
            json(200, &flows::otp_request::request_otp(&app, input).await?)
        }
        Route::OtpVerify => {
            let input = input::otp_verify(&body(&mut req).await?, app.config.otp.length)?;
            json(200, &flows::otp_verify::verify_otp(&app, input).await?)
        }
        Route::Register => {
            let input = input::register(&body(&mut req).await?)?;
            json(201, &flows::register::register(&app, input).await?)
        }
        Route::Refresh => {
            let presented = input::refresh(&body(&mut req).await?)?;
            json(200, &flows::refresh::refresh(&app, &presented).await?)
        }
        Route::Me => {
            let who = authenticate().await?;
            json(200, &flows::account::me(&who))
        }
        Route::Sessions => {
            let who = authenticate().await?;
            json(200, &flows::account::sessions(&app, &who).await?)
        }
        Route::Session(id) => {
            let who = authenticate().await?;
            let Some(id) = input::parse_uuid(&id) else {
                return Err(ApiError::new(404, "SESSION_NOT_FOUND", "No such active session"));
            };
            json(200, &flows::account::revoke(&app, &who, &id.hyphenated().to_string()).await?)
        }
        Route::Logout => {
            let who = authenticate().await?;
            json(200, &flows::account::logout(&app, &who).await?)
        }
    }
}

/// What every flow needs: the configuration, D1, the caller and the time.
fn app(req: &Request, env: Env, ctx: Context) -> Result<App, ApiError> {
    let config = env::config(&env).map_err(|e| {
        crate::log::error("config_invalid", &e.to_string());
        ApiError::new(500, "CONFIGURATION_ERROR", format!("Service misconfigured: {e}"))
    })?;
    let db = Db::from_env(&env).map_err(|e| ApiError::unavailable("Database", e))?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let client = Client {
        ip: header("cf-connecting-ip").unwrap_or_else(|| "0.0.0.0".to_string()),
        user_agent: header("user-agent").unwrap_or_default().chars().take(MAX_USER_AGENT).collect(),
        accept_language: header("accept-language"),
    };
    Ok(App { config, env, ctx, db, client, now_ms: Date::now().as_millis() as i64 })
}

/// The request body, refused with 413 past the limit, whatever
/// Content-Length claims.
async fn body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > input::MAX_BODY_BYTES) {
        return Err(ApiError::payload_too_large(input::MAX_BODY_BYTES));
    }
    let bytes = req.bytes().await.map_err(|_| ApiError::validation("Could not read the request body"))?;
    if bytes.len() > input::MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(input::MAX_BODY_BYTES));
    }
    Ok(bytes)
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
    if let Some(challenge) = e.www_authenticate {
        let _ = headers.set("www-authenticate", challenge);
    }
    resp
}
