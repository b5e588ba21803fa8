//! The `Sender` port with `fetch`: one request to a provider (or to the
//! webhook receiver), aborted when its time runs out. What to send and whether to try again is decided in
//! `flows::delivery` and `domain::delivery`.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

use crate::domain::outbound::{Provider, ProviderRequest};
use crate::ports::{Answer, Fut, Sender};

pub struct FetchSender;

impl Sender for FetchSender {
    fn send<'a>(&'a self, request: &'a ProviderRequest, timeout_ms: u64) -> Fut<'a, Result<Answer, bool>> {
        Box::pin(send_once(request, Duration::from_millis(timeout_ms)))
    }
}

/// One try, bounded by `timeout`: the fetch is aborted when time runs out.
/// `Err(true)` is a timeout, `Err(false)` a request that could not be made.
async fn send_once(request: &ProviderRequest, timeout: Duration) -> Result<Answer, bool> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|_| false)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(request.body.clone().into()));
    if request.provider == Provider::Webhook {
        // A receiver's 3xx is its answer, a failure: the Standard Webhooks
        // spec recommends not following redirects ("Delivery success and failure").
        init.with_redirect(RequestRedirect::Manual);
    }
    let req = Request::new_with_init(&request.url, &init).map_err(|_| false)?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(req);
    let call = async {
        let mut resp = fetch.send_with_signal(&signal).await.map_err(|_| false)?;
        let status = resp.status_code();
        let retry_after = resp.headers().get("retry-after").ok().flatten();
        // Error bodies are small; only their first part is looked at.
        let body = resp.text().await.unwrap_or_default();
        Ok::<_, bool>(Answer { status, retry_after, body: body.chars().take(4096).collect() })
    };
    let timer = Delay::from(timeout);
    futures_util::pin_mut!(call);
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(true)
        }
    }
}
