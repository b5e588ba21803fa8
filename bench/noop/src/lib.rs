//! The platform's ceiling: the cheapest Worker the same toolchain can build.

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let mut resp = Response::ok(r#"{"ok":true}"#)?;
    resp.headers_mut().set("content-type", "application/json")?;
    Ok(resp)
}
