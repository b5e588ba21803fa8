//! Sends messages through the providers with `fetch`. One delivery is bounded
//! by `DELIVERY_TIMEOUT_MS` as a whole; a failed try is tried once more only
//! as `domain::delivery::retry_in_call` allows (a `Retry-After` honoured when
//! it fits, no quota retried, no request of unknown fate repeated unless the
//! provider deduplicates it). Failures carry no credentials, bodies or codes.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::config::{Config, MailProvider, SmsProvider};
use crate::domain::delivery::{self, Failure};
use crate::domain::destination::{Channel, Destination};
use crate::domain::message::{self, MessageInput};
use crate::domain::outbound::{self, Outcome, Provider, ProviderAnswer, ProviderRequest, SmsOptions};
use crate::domain::webhook;

/// One message on its way out.
pub struct Outgoing<'a> {
    pub otp_id: &'a str,
    pub destination: &'a Destination,
    pub message: MessageInput<'a>,
    /// When the code expires: Twilio may hold the SMS for what is left of it.
    pub expires_at_ms: i64,
}

/// Builds the message for its destination and sends it through the
/// configured provider of its channel.
pub async fn deliver(config: &Config, out: &Outgoing<'_>) -> Result<(), Failure> {
    let destination = out.destination;
    let request = match destination.channel() {
        Channel::Email => {
            let email = message::email(&out.message);
            if config.mail.provider == MailProvider::Log {
                print_to_console(destination, &format!("Subject: {}\n{}", email.subject, email.text));
                return Ok(());
            }
            let provider = match config.mail.provider {
                MailProvider::Postmark => Provider::Postmark,
                _ => Provider::Resend,
            };
            outbound::mail_request(&config.mail, destination.as_str(), &email, out.otp_id).ok_or(Failure {
                provider,
                outcome: Outcome::Misconfigured { status: 0, code: None },
                idempotent: false,
                tries: 0,
            })?
        }
        Channel::Phone => {
            let text = message::sms(&out.message);
            match (config.sms.provider, &config.sms.twilio) {
                (SmsProvider::Twilio, Some(twilio)) => {
                    let callback =
                        config.public_base_url.as_deref().map(|b| webhook::status_callback_url(b, out.otp_id));
                    let left_ms = out.expires_at_ms - Date::now().as_millis() as i64;
                    let options = SmsOptions {
                        status_callback: callback.as_deref(),
                        // Whole seconds, rounded up: a code sent at once keeps its full lifetime.
                        validity_period_seconds: Some((left_ms.max(0) as u64).div_ceil(1000)),
                    };
                    outbound::twilio_request(twilio, destination.as_str(), &text, options)
                }
                _ => {
                    print_to_console(destination, &text);
                    return Ok(());
                }
            }
        }
    };
    send(&request, Duration::from_millis(config.delivery_timeout_ms)).await
}

/// The development `log` provider: the one place a code is printed.
fn print_to_console(destination: &Destination, text: &str) {
    let line = format!("[otp-edge] message to {}:\n{}", destination.as_str(), text);
    #[cfg(target_arch = "wasm32")]
    worker::console_log!("{}", line);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// Sends `request`, within `budget` for every try together.
async fn send(request: &ProviderRequest, budget: Duration) -> Result<(), Failure> {
    let started = now_ms();
    let remaining = || budget.saturating_sub(Duration::from_millis(now_ms().saturating_sub(started)));
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = match send_once(request, remaining()).await {
            Ok((status, retry_after, body)) => outbound::classify(
                request.provider,
                &ProviderAnswer { status, retry_after: retry_after.as_deref(), body: &body },
            ),
            Err(timed_out) => Outcome::Unanswered { timed_out },
        };
        if outcome == Outcome::Sent {
            return Ok(());
        }
        match delivery::retry_in_call(&outcome, request.idempotent(), remaining()) {
            Some(wait) if tries == 1 => Delay::from(wait).await,
            _ => return Err(Failure { provider: request.provider, outcome, idempotent: request.idempotent(), tries }),
        }
    }
}

/// One try, bounded by `timeout`: the fetch is aborted when time runs out.
/// `Err(true)` is a timeout, `Err(false)` a request that could not be made.
async fn send_once(request: &ProviderRequest, timeout: Duration) -> Result<(u16, Option<String>, String), bool> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|_| false)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(request.body.clone().into()));
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
        Ok::<_, bool>((status, retry_after, body.chars().take(4096).collect()))
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
