//! `POST /api/webhooks/twilio/status`: Twilio reports the fate of an SMS
//! (`StatusCallback`, sent when `PUBLIC_BASE_URL` is set). Only requests that
//! carry Twilio's signature for this account are believed; the final
//! statuses (delivered, undelivered, failed, with Twilio's error code) go to
//! the audit trail, where an operator sees codes that never arrived.

use super::error::Error;
use super::App;
use crate::audit::Event;
use crate::domain::crypto::ct_eq;
use crate::domain::destination::Destination;
use crate::domain::webhook::{self, STATUS_CALLBACK_PATH};

/// `query` is the callback URL's query string (it carries `otp_id`), `body`
/// the form Twilio posted, `signature` its `X-Twilio-Signature`.
pub async fn twilio(app: &App, query: Option<&str>, body: &[u8], signature: Option<&str>) -> Result<(), Error> {
    let config = app.config;
    let (Some(twilio), Some(base)) = (config.sms.twilio.as_ref(), config.public_base_url.as_deref()) else {
        // No callbacks were asked for: there is nothing here.
        return Err(Error::NotFound);
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    // Twilio signs the URL it was given, which this service built from PUBLIC_BASE_URL.
    let url = match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{base}{STATUS_CALLBACK_PATH}?{q}"),
        None => format!("{base}{STATUS_CALLBACK_PATH}"),
    };
    let signed =
        signature.is_some_and(|sig| webhook::valid_twilio_signature(twilio.auth_token.expose(), &url, &params, sig));
    let report = webhook::status_report(&params);
    if !signed || !ct_eq(report.account_sid.as_bytes(), twilio.account_sid.as_bytes()) {
        crate::log::emit(
            "warn",
            "twilio_callback_refused",
            serde_json::json!({ "reason": if signed { "other_account" } else { "bad_signature" } }),
        );
        return Err(Error::SignatureInvalid);
    }
    let Some(status) = report.status else { return Ok(()) };
    let otp_id = query
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "otp_id").map(|(_, v)| v.into_owned()))
        .and_then(|id| uuid::Uuid::try_parse(&id).ok())
        .map(|id| id.hyphenated().to_string());
    let masked = report.to.as_deref().and_then(|to| Destination::parse(to).ok()).map(|d| d.masked());
    let mut event = Event::new("otp_delivery_status", status.as_str())
        .masked_destination(masked)
        .provider_code(report.error_code.map(|c| format!("twilio:{c}")));
    if let Some(id) = &otp_id {
        event = event.otp(id);
    }
    app.audit(event);
    Ok(())
}
