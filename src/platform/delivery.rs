//! Sends messages through the providers with `fetch`: a bounded timeout per
//! try, one retry after a short backoff for 429 and 5xx, no retry for other
//! refusals. Errors carry no credentials, provider bodies or codes.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::config::{Config, MailProvider, SmsProvider};
use crate::domain::destination::{Channel, Destination};
use crate::domain::message::{self, MessageInput};
use crate::domain::outbound::{self, Outcome, ProviderRequest};

const RETRY_BACKOFF: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// The provider said this phone number can never receive SMS.
    InvalidNumber { provider_code: i64 },
    /// Timeout, network error or a refusal; a short description for the log.
    Failed(String),
}

/// Builds the message for `destination` and sends it through the configured
/// provider of its channel.
pub async fn deliver(
    config: &Config,
    destination: &Destination,
    input: &MessageInput<'_>,
) -> Result<(), DeliveryError> {
    let request = match destination.channel() {
        Channel::Email => {
            let email = message::email(input);
            if config.mail.provider == MailProvider::Log {
                print_to_console(destination, &format!("Subject: {}\n{}", email.subject, email.text));
                return Ok(());
            }
            outbound::mail_request(&config.mail, destination.as_str(), &email)
                .ok_or_else(|| DeliveryError::Failed("mail provider not configured".into()))?
        }
        Channel::Phone => {
            let text = message::sms(input);
            match (config.sms.provider, &config.sms.twilio) {
                (SmsProvider::Twilio, Some(twilio)) => outbound::twilio_request(twilio, destination.as_str(), &text),
                _ => {
                    print_to_console(destination, &text);
                    return Ok(());
                }
            }
        }
    };
    send_with_retry(&request, Duration::from_millis(config.delivery_timeout_ms)).await
}

/// The development `log` provider: the one place a code is printed.
fn print_to_console(destination: &Destination, text: &str) {
    let line = format!("[otp-edge] message to {}:\n{}", destination.as_str(), text);
    #[cfg(target_arch = "wasm32")]
    worker::console_log!("{}", line);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

async fn send_with_retry(request: &ProviderRequest, timeout: Duration) -> Result<(), DeliveryError> {
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            Delay::from(RETRY_BACKOFF).await;
        }
        match send_once(request, timeout).await {
            Ok((status, body)) => match outbound::classify(status, &body) {
                Outcome::Sent => return Ok(()),
                Outcome::InvalidNumber { provider_code } => return Err(DeliveryError::InvalidNumber { provider_code }),
                Outcome::Failed { status, provider_code } => {
                    return Err(DeliveryError::Failed(format!(
                        "provider refused: HTTP {status}, code {provider_code:?}"
                    )))
                }
                Outcome::Retry => last = format!("provider answered HTTP {status}"),
            },
            Err(reason) => last = reason,
        }
    }
    Err(DeliveryError::Failed(format!("{last} (after a retry)")))
}

/// One try, bounded by `timeout`: the fetch is aborted when time runs out.
async fn send_once(request: &ProviderRequest, timeout: Duration) -> Result<(u16, String), String> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|_| "bad header".to_string())?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(request.body.clone().into()));
    let req = Request::new_with_init(&request.url, &init).map_err(|_| "bad provider URL".to_string())?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(req);
    let call = async {
        let mut resp = fetch.send_with_signal(&signal).await.map_err(|_| "network error".to_string())?;
        let status = resp.status_code();
        // A bounded read: error bodies are small; a huge one is cut.
        let body = resp.text().await.unwrap_or_default();
        Ok::<_, String>((status, body.chars().take(4096).collect()))
    };
    let timer = Delay::from(timeout);
    futures_util::pin_mut!(call);
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(format!("timed out after {} ms", timeout.as_millis()))
        }
    }
}
