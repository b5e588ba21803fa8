//! The HTTP surface: every route the Worker answers, in one table, and the
//! mapping of results and errors to JSON responses.

pub mod cors;
pub mod error;
pub mod input;

use futures_util::StreamExt;
use serde::Serialize;
use worker::{Context, Env, Headers, Request, Response};

pub use error::{ApiError, ErrorCode};

use crate::domain::admin::Scope;
use crate::domain::crypto::new_uuid;
use crate::flows::admin::Action;
use crate::flows::{self, App, Client, MAX_USER_AGENT};
use crate::platform::{env, runtime};
use crate::store::admin::UserKey;

/// The OpenAPI 3.1 description of this API (`assets/openapi.json`, served
/// at /openapi.json from the Worker's static assets, and checked against
/// every black-box test response); in the native tests, read from the file.
#[cfg(test)]
pub const OPENAPI: &str = include_str!("assets/openapi.json");

/// Routes, matched on the path without its trailing slash, so `/x` and `/x/`
/// are the same endpoint (clients of the reference use the slash).
enum Route {
    Healthz,
    OpenApi,
    DemoPage,
    DemoScript,
    Jwks,
    Discovery,
    OtpRequest,
    OtpVerify,
    Register,
    Recover,
    Refresh,
    Revoke,
    Me,
    Destinations,
    /// `DELETE /api/auth/me/destinations/{kind}/`: the path's kind, unparsed.
    Destination(String),
    Sessions,
    Session(String),
    Logout,
    TwilioStatus,
    /// `GET /api/admin/users?email=|phone=`.
    AdminLookup,
    /// `/api/admin/users/{id}` and below: what it does, and the path's id, unparsed.
    Admin(Action, String),
}

/// The route of a path and the methods it accepts.
fn route_of(path: &str) -> Result<(Route, &'static str), ApiError> {
    use Action::*;
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    Ok(match path {
        "/" => (Route::DemoPage, "GET"),
        "/demo.js" => (Route::DemoScript, "GET"),
        "/openapi.json" => (Route::OpenApi, "GET"),
        "/healthz" => (Route::Healthz, "GET"),
        "/.well-known/jwks.json" => (Route::Jwks, "GET"),
        "/.well-known/openid-configuration" => (Route::Discovery, "GET"),
        "/api/auth/otp/request" => (Route::OtpRequest, "POST"),
        "/api/auth/otp/verify" => (Route::OtpVerify, "POST"),
        "/api/auth/register" => (Route::Register, "POST"),
        "/api/auth/recover" => (Route::Recover, "POST"),
        "/api/auth/token/refresh" => (Route::Refresh, "POST"),
        "/api/auth/token/revoke" => (Route::Revoke, "POST"),
        "/api/auth/me" => (Route::Me, "GET, DELETE, PATCH"),
        "/api/auth/me/destinations" => (Route::Destinations, "POST"),
        "/api/auth/sessions" => (Route::Sessions, "GET, DELETE"),
        "/api/auth/logout" => (Route::Logout, "POST"),
        "/api/webhooks/twilio/status" => (Route::TwilioStatus, "POST"),
        "/api/admin/users" => (Route::AdminLookup, "GET"),
        _ => match path.strip_prefix("/api/auth/sessions/") {
            Some(id) if !id.contains('/') => (Route::Session(id.to_string()), "DELETE"),
            _ => match path.strip_prefix("/api/auth/me/destinations/") {
                Some(kind) if !kind.contains('/') => (Route::Destination(kind.to_string()), "DELETE"),
                _ => match path.strip_prefix("/api/admin/users/").and_then(id_and_below) {
                    Some((id, "")) => (Route::Admin(View, id.into()), "GET"),
                    Some((id, "disable")) => (Route::Admin(Disable, id.into()), "POST"),
                    Some((id, "enable")) => (Route::Admin(Enable, id.into()), "POST"),
                    Some((id, "sessions")) => (Route::Admin(RevokeSessions, id.into()), "DELETE"),
                    // The limit is read from the query once the caller is authorized.
                    Some((id, "events")) => (Route::Admin(Events { limit: 0 }, id.into()), "GET"),
                    _ => return Err(ApiError::not_found()),
                },
            },
        },
    })
}

/// `{id}` or `{id}/{below}` of a path: the first segment, if not empty, and the rest.
fn id_and_below(rest: &str) -> Option<(&str, &str)> {
    let (id, below) = rest.split_once('/').unwrap_or((rest, ""));
    (!id.is_empty()).then_some((id, below))
}

/// `method` is the raw request method: the `worker` crate maps methods it
/// does not know to GET, which must not reach a GET route.
fn resolve(method: &str, path: &str) -> Result<Route, ApiError> {
    let (route, allow) = route_of(path)?;
    if allow.split(", ").any(|m| m == method || (m == "GET" && method == "HEAD")) {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Entry point for every request: never lets an error escape as a non-JSON
/// answer. Adds CORS headers for allowed origins and an `x-request-id`.
pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let origin = header(&req, "origin");
    // Cloudflare's Ray ID when it has that shape, else one of our own: a
    // client's header is never echoed or stored.
    let request_id =
        header(&req, "cf-ray").filter(|ray| input::is_ray_id(ray)).unwrap_or_else(|| new_uuid().simple().to_string());
    let allowed_origins: &[String] = env::config(&env).map(|c| c.allowed_origins.as_slice()).unwrap_or_default();
    let method = req.inner().method();
    let preflight = method == "OPTIONS";
    let result = if preflight {
        // A CORS preflight (or a plain OPTIONS): what the path accepts.
        route_of(&req.path()).and_then(|(_, allow)| {
            let mut resp = Response::empty().map_err(ApiError::internal)?.with_status(204);
            let _ = resp.headers_mut().set("allow", &format!("{allow}, OPTIONS"));
            Ok(resp)
        })
    } else {
        match resolve(&method, &req.path()) {
            Ok(Route::Healthz) => {
                let health = flows::health::check(env::config(&env), &runtime::ports(&env, ctx)).await;
                json(if health.is_up() { 200 } else { 503 }, &health)
            }
            Ok(route @ (Route::OpenApi | Route::DemoPage | Route::DemoScript)) => static_file(route, &req, &env).await,
            Ok(route) => match app(&req, env, ctx, &request_id) {
                Ok(app) => {
                    let result = dispatch(route, req, &app).await;
                    app.store_trail();
                    result
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e));
    let headers = resp.headers_mut();
    for (name, value) in cors::headers(allowed_origins, origin.as_deref(), preflight) {
        let _ = headers.set(name, &value);
    }
    // Answers differ by Origin, so caches must keep them apart.
    let _ = headers.append("vary", "Origin");
    let _ = headers.set("x-request-id", &request_id);
    resp
}

async fn dispatch(route: Route, mut req: Request, app: &App) -> Result<Response, ApiError> {
    let authorization = header(&req, "authorization");
    // HEAD reaches a GET route as HEAD: only the other methods are told apart.
    let method = req.inner().method();
    let authenticate = || flows::account::authenticate(app, authorization.as_deref());
    match route {
        Route::Healthz => unreachable!("answered without an App"),
        Route::OpenApi | Route::DemoPage | Route::DemoScript => unreachable!("answered from the static assets"),
        Route::Jwks => public(json(200, &app.keys.jwks())),
        Route::Discovery => match crate::domain::tokens::discovery(&app.config.tokens.issuer) {
            Some(document) => public(json(200, &document)),
            None => Err(ApiError::new(
                404,
                ErrorCode::NotFound,
                "No discovery here: JWT_ISSUER is not this service's URL (https://...)",
            )),
        },
        Route::OtpRequest => {
            let input = input::otp_request(&json_body(&mut req).await?)?;
            json(200, &flows::otp_request::request_otp(app, input).await?)
        }
        Route::OtpVerify => {
            let input = input::otp_verify(&json_body(&mut req).await?, app.config.otp.length)?;
            json(200, &flows::otp_verify::verify_otp(app, input).await?)
        }
        Route::Register => {
            let input = input::register(&json_body(&mut req).await?)?;
            json(201, &flows::register::register(app, input).await?)
        }
        Route::Recover => {
            let token = input::verification_token(&json_body(&mut req).await?)?;
            json(200, &flows::recover::recover(app, &token).await?)
        }
        Route::Refresh => {
            let presented = input::refresh(&json_body(&mut req).await?)?;
            json(200, &flows::refresh::refresh(app, &presented).await?)
        }
        Route::Revoke => {
            let content_type = header(&req, "content-type");
            let token = input::revocation(content_type.as_deref(), &body(&mut req).await?)?;
            flows::refresh::revoke(app, &token).await?;
            json(200, &serde_json::json!({}))
        }
        Route::Me if method == "PATCH" => {
            let who = authenticate().await?;
            let username = input::rename(&json_body(&mut req).await?)?;
            json(200, &flows::account::rename(app, &who, &username).await?)
        }
        Route::Me if method == "DELETE" => {
            let who = authenticate().await?;
            let token = input::verification_token(&json_body(&mut req).await?)?;
            json(200, &flows::account::delete_account(app, &who, &token).await?)
        }
        Route::Me => {
            let who = authenticate().await?;
            json(200, &flows::account::me(&who))
        }
        Route::Destinations => {
            let who = authenticate().await?;
            let token = input::verification_token(&json_body(&mut req).await?)?;
            json(200, &flows::account::attach_destination(app, &who, &token).await?)
        }
        Route::Destination(kind) => {
            let who = authenticate().await?;
            let Some(channel) = crate::domain::destination::Channel::parse(&kind) else {
                return Err(flows::error::Error::DestinationNotFound.into());
            };
            json(200, &flows::account::remove_destination(app, &who, channel).await?)
        }
        Route::Sessions if method == "DELETE" => {
            let who = authenticate().await?;
            let include_current = input::include_current(query(&req).as_deref())?;
            json(200, &flows::account::sign_out_everywhere(app, &who, include_current).await?)
        }
        Route::Sessions => {
            let who = authenticate().await?;
            json(200, &flows::account::sessions(app, &who).await?)
        }
        Route::Session(id) => {
            let who = authenticate().await?;
            let Some(id) = input::parse_uuid(&id) else {
                return Err(flows::error::Error::SessionNotFound.into());
            };
            json(200, &flows::account::revoke(app, &who, &id.hyphenated().to_string()).await?)
        }
        Route::Logout => {
            let who = authenticate().await?;
            json(200, &flows::account::logout(app, &who).await?)
        }
        Route::AdminLookup => {
            let actor = flows::admin::authorize(app, authorization.as_deref(), Scope::UsersRead)?;
            let destination = input::admin_lookup(query(&req).as_deref())?;
            json(200, &flows::admin::act(app, &actor, UserKey::Destination(&destination), Action::View).await?)
        }
        Route::Admin(mut action, id) => {
            let actor = flows::admin::authorize(app, authorization.as_deref(), action.scope())?;
            if let Action::Events { limit } = &mut action {
                *limit = input::events_limit(query(&req).as_deref())?;
            }
            // Only the canonical form names a user: anything else is no user's id.
            let Some(id) = input::parse_uuid(&id).map(|id| id.hyphenated().to_string()) else {
                return Err(flows::error::Error::NoSuchUser.into());
            };
            json(200, &flows::admin::act(app, &actor, UserKey::Id(&id), action).await?)
        }
        Route::TwilioStatus => {
            let signature = header(&req, "x-twilio-signature");
            let query = query(&req);
            let form = body(&mut req).await?;
            flows::delivery_status::twilio(app, query.as_deref(), &form, signature.as_deref()).await?;
            let mut resp = Response::empty().map_err(ApiError::internal)?.with_status(204);
            let _ = resp.headers_mut().set("cache-control", "no-store");
            Ok(resp)
        }
    }
}

/// Public documents (keys, discovery): verifiers may cache them for five
/// minutes (and must refetch the keys on an unknown `kid`).
fn public(resp: Result<Response, ApiError>) -> Result<Response, ApiError> {
    let mut resp = resp?;
    let _ = resp.headers_mut().set("cache-control", "public, max-age=300");
    Ok(resp)
}

/// The raw URL's query, as the client sent it (and Twilio signed it):
/// `req.url()` would re-serialize it, and pull the `url` crate's IDNA tables in.
fn query(req: &Request) -> Option<String> {
    let raw_url = req.inner().url();
    raw_url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or(q).to_string())
}

/// The static files: the demo page (with Cloudflare's Turnstile widget when
/// a site key is set) and its script, unless `DEMO_PAGE=false`, and the
/// OpenAPI document, read from the Worker's static assets.
async fn static_file(route: Route, req: &Request, env: &Env) -> Result<Response, ApiError> {
    let config = config(env)?;
    let read = |path: &'static str| async move {
        // The request's own origin: the assets binding answers any.
        let url = req.inner().url();
        let origin = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        // `internal` logs the cause (no binding, or no such file).
        crate::platform::assets::text(env, &origin, path).await.map_err(ApiError::internal)
    };
    match route {
        Route::OpenApi => {
            static_text(&read("/openapi.json").await?, "application/json; charset=utf-8", "public, max-age=300")
        }
        Route::DemoPage | Route::DemoScript if !config.demo_page => Err(ApiError::not_found()),
        Route::DemoScript => static_text(&read("/demo.js").await?, "text/javascript; charset=utf-8", "no-cache"),
        Route::DemoPage => {
            let html = read("/demo.html").await?;
            // With a site key, the page shows Cloudflare's Turnstile widget,
            // whose script and frame come from challenges.cloudflare.com
            // (Turnstile's documented CSP needs: script-src and frame-src).
            let (page, widget_origin) = match &config.turnstile_site_key {
                Some(key) => (
                    html.replace(
                        "<!--turnstile-script-->",
                        "<script src=\"https://challenges.cloudflare.com/turnstile/v0/api.js\" async defer></script>",
                    )
                    .replace(
                        "<!--turnstile-widget-->",
                        &format!(
                            "<div class=\"cf-turnstile\" data-sitekey=\"{key}\" data-action=\"otp-request\"></div>"
                        ),
                    ),
                    " https://challenges.cloudflare.com",
                ),
                None => (html, ""),
            };
            let mut resp = static_text(&page, "text/html; charset=utf-8", "no-cache")?;
            let h = resp.headers_mut();
            let _ = h.set(
                "content-security-policy",
                &format!(
                    "default-src 'none'; script-src 'self'{widget_origin};{frame} style-src 'self' 'unsafe-inline'; \
                     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                     frame-ancestors 'none'",
                    frame =
                        if widget_origin.is_empty() { String::new() } else { format!(" frame-src{widget_origin};") },
                ),
            );
            let _ = h.set("x-frame-options", "DENY");
            let _ = h.set("referrer-policy", "no-referrer");
            Ok(resp)
        }
        _ => unreachable!("not a static file"),
    }
}

fn static_text(body: &str, content_type: &str, cache: &str) -> Result<Response, ApiError> {
    let mut resp = Response::ok(body).map_err(ApiError::internal)?;
    let h = resp.headers_mut();
    let _ = h.set("content-type", content_type);
    let _ = h.set("cache-control", cache);
    let _ = h.set("x-content-type-options", "nosniff");
    Ok(resp)
}

/// What every flow needs: the configuration, D1, the caller, the time and
/// the audit trail.
fn app(req: &Request, env: Env, ctx: Context, request_id: &str) -> Result<App, ApiError> {
    let config = config(&env)?;
    let client = Client {
        ip: header(req, "cf-connecting-ip").unwrap_or_else(|| "0.0.0.0".to_string()),
        user_agent: header(req, "user-agent").unwrap_or_default().chars().take(MAX_USER_AGENT).collect(),
        accept_language: header(req, "accept-language"),
    };
    Ok(App::new(config, env::keys(config), runtime::ports(&env, ctx), client, request_id))
}

/// The deployment's settings, or the 500 that names what is wrong with them.
fn config(env: &Env) -> Result<&'static crate::config::Config, ApiError> {
    env::config(env).map_err(|e| {
        crate::log::error("config_invalid", &e.to_string());
        ApiError::new(500, ErrorCode::ConfigurationError, format!("Service misconfigured: {e}"))
    })
}

/// A JSON request body: refused with 415 unless its Content-Type is
/// `application/json` (`input::is_json`), before any of it is read.
async fn json_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    if !input::is_json(header(req, "content-type").as_deref()) {
        return Err(ApiError::unsupported_media_type());
    }
    body(req).await
}

/// The request body, read as it arrives and refused with 413 as soon as
/// more than `MAX_BODY_BYTES` have come, whatever Content-Length claims (or
/// with a chunked body, which claims nothing): no more than the limit and
/// one chunk is ever held, and the rest is never read (dropping the stream
/// cancels it).
async fn body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::payload_too_large(input::MAX_BODY_BYTES);
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > input::MAX_BODY_BYTES) {
        return Err(too_large());
    }
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let unreadable = |_| ApiError::validation("Could not read the request body");
    let mut chunks = req.stream().map_err(unreadable)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreadable)?;
        if bytes.len() + chunk.len() > input::MAX_BODY_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_is_told_the_path_the_router_answers() {
        let path = crate::domain::webhook::STATUS_CALLBACK_PATH;
        assert!(matches!(route_of(path), Ok((Route::TwilioStatus, "POST"))));
        assert!(matches!(route_of(&format!("{path}/")), Ok((Route::TwilioStatus, "POST"))));
    }

    #[test]
    fn admin_routes_take_the_id_segment_and_nothing_else_below_it() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert!(matches!(route_of("/api/admin/users/"), Ok((Route::AdminLookup, "GET"))));
        for (below, methods) in [("", "GET"), ("/disable", "POST"), ("/enable/", "POST"), ("/sessions", "DELETE")] {
            let path = format!("/api/admin/users/{id}{below}");
            assert!(
                matches!(route_of(&path), Ok((Route::Admin(_, ref got), m)) if got == id && m == methods),
                "{path}"
            );
        }
        assert!(matches!(
            route_of("/api/admin/users/not-a-uuid/events"),
            Ok((Route::Admin(Action::Events { .. }, _), "GET"))
        ));
        for path in [
            "/api/admin",
            "/api/admin/users//disable",
            "/api/admin/users/x/sessions/revoke",
            "/api/admin/users/x/disable/now",
            "/api/admin/users/x/delete",
        ] {
            assert_eq!(route_of(path).err().map(|e| e.code), Some("NOT_FOUND"), "{path}");
        }
    }
}
