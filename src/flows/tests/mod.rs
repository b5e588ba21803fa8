//! Native tests of every flow: the flows as the Worker runs them, on the
//! native ports (`crate::native`): SQLite with the real migrations and SQL,
//! rate-limit objects running the real algorithm, a provider fake, a clock
//! the test moves. A `World` is one deployment; `world.app(ip)` one request.

mod account;
mod admin;
mod cleanup;
mod disabled;
mod limits;
mod lockout;
mod otp_request;
mod otp_verify;
mod pumping;
mod recover;
mod refresh;
mod register;
mod revoke;
mod round_trips;
mod sessions;
mod step_up;
mod turnstile;
mod webhooks;

use std::collections::HashMap;

use serde_json::Value;

use super::error::Error;
use super::otp_request::OtpRequestInput;
use super::otp_request::OtpRequested;
use super::otp_verify::OtpVerifyInput;
use super::otp_verify::Verified;
use super::register::RegisterInput;
use super::session::LoggedIn;
use super::{App, Client};
use crate::config::Config;
use crate::domain::account::{Device as DeviceInput, Username};
use crate::domain::destination::Destination;
use crate::domain::otp::{OtpCode, Purpose};
use crate::domain::tokens::Keys;
use crate::http::ApiError;
use crate::native::{block_on, Fakes};

pub use crate::native::T0;

pub const PEPPER: &str = "test-pepper-0123456789abcdefghijklmnopqrstuvwxyz";
const SEED: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// The settings of every world: real providers (faked), development.
fn base_settings() -> HashMap<&'static str, String> {
    HashMap::from([
        ("ENVIRONMENT", "development".to_string()),
        ("APP_NAME", "Acme".to_string()),
        ("DEFAULT_FROM_EMAIL", "Acme <login@acme.test>".to_string()),
        ("MAIL_PROVIDER", "resend".to_string()),
        ("MAIL_API_BASE", "http://mail.test".to_string()),
        ("MAIL_API_KEY", "re_test".to_string()),
        ("SMS_PROVIDER", "twilio".to_string()),
        ("TWILIO_API_BASE", "http://twilio.test".to_string()),
        ("TWILIO_ACCOUNT_SID", format!("AC{}", "0".repeat(32))),
        ("TWILIO_AUTH_TOKEN", "twilio-token".to_string()),
        ("TWILIO_PHONE_NUMBER", "+15005550006".to_string()),
        ("OTP_PEPPER", PEPPER.to_string()),
        ("JWT_SIGNING_KEYS", SEED.to_string()),
    ])
}

/// One deployment: its settings and its native ports.
pub struct World {
    pub fakes: Fakes,
    /// The Turnstile token the next requests carry.
    pub turnstile_token: std::cell::RefCell<Option<String>>,
    pub config: &'static Config,
    pub keys: &'static Keys,
}

impl World {
    pub fn new() -> World {
        World::with(&[])
    }

    /// A world with these settings on top of the defaults.
    pub fn with(vars: &[(&'static str, &str)]) -> World {
        let mut settings = base_settings();
        for (k, v) in vars {
            settings.insert(k, v.to_string());
        }
        let config = Config::from_lookup(&|k| settings.get(k).cloned()).expect("test settings parse");
        // A test's settings live as long as the test process, as a Worker's do.
        let config: &'static Config = Box::leak(Box::new(config));
        let keys: &'static Keys = Box::leak(Box::new(Keys::from_seeds(&config.jwt_signing_keys)));
        World { fakes: Fakes::new(), turnstile_token: Default::default(), config, keys }
    }

    /// A request from client `ip`.
    pub fn app(&self, ip: &str) -> App {
        let client = Client { ip: ip.to_string(), user_agent: "native-test".into(), accept_language: None };
        App::new(self.config, self.keys, self.fakes.ports(), client, "req-native")
    }

    /// An OTP request, and then what the platform runs after the answer
    /// (`wait_until`: a protected login's row and job, the audit rows).
    pub async fn request(&self, ip: &str, destination: &str, purpose: Purpose) -> Result<OtpRequested, Error> {
        let result = self.request_answer(ip, destination, purpose).await;
        self.fakes.run_later().await;
        result
    }

    /// An OTP request up to its answer only.
    pub async fn request_answer(&self, ip: &str, destination: &str, purpose: Purpose) -> Result<OtpRequested, Error> {
        let app = self.app(ip);
        let input = OtpRequestInput {
            destination: Destination::parse(destination).unwrap(),
            purpose,
            locale: None,
            turnstile_token: self.turnstile_token.borrow().clone(),
        };
        let result = super::otp_request::request_otp(&app, input).await;
        app.store_trail();
        result
    }

    pub async fn verify(&self, ip: &str, otp_id: &str, code: &str) -> Result<Verified, Error> {
        self.verify_from(ip, otp_id, code, DeviceInput::default()).await
    }

    pub async fn verify_from(
        &self,
        ip: &str,
        otp_id: &str,
        code: &str,
        device: DeviceInput,
    ) -> Result<Verified, Error> {
        self.verify_with(ip, otp_id, code, device, None).await
    }

    /// A verify that carries a Turnstile token.
    pub async fn verify_with(
        &self,
        ip: &str,
        otp_id: &str,
        code: &str,
        device: DeviceInput,
        turnstile_token: Option<&str>,
    ) -> Result<Verified, Error> {
        let app = self.app(ip);
        let input = OtpVerifyInput {
            otp_id: uuid::Uuid::try_parse(otp_id).unwrap(),
            code: OtpCode::parse(code, self.config.otp.length).unwrap(),
            device,
            turnstile_token: turnstile_token.map(str::to_string),
        };
        let result = super::otp_verify::verify_otp(&app, input).await;
        app.store_trail();
        result
    }

    pub async fn register(&self, ip: &str, verification_token: &str, username: &str) -> Result<LoggedIn, Error> {
        let app = self.app(ip);
        let input = RegisterInput {
            verification_token: verification_token.to_string(),
            username: Username::parse(username).expect("a valid username"),
            device: DeviceInput::default(),
        };
        let result = super::register::register(&app, input).await;
        app.store_trail();
        result
    }

    /// Requests a code that must be delivered, and reads it from the message.
    pub async fn code_for(&self, ip: &str, destination: &str, purpose: Purpose) -> (String, String) {
        let otp = self.request(ip, destination, purpose).await.unwrap_or_else(|e| panic!("{destination}: {e:?}"));
        self.deliver_queued().await;
        (otp.otp_id, self.last_code_to(destination))
    }

    /// Signs the account of `destination` in with a login code; the answer.
    pub async fn logged_in(&self, ip: &str, destination: &str) -> crate::flows::session::LoggedIn {
        let (otp_id, code) = self.code_for(ip, destination, Purpose::Login).await;
        match self.verify(ip, &otp_id, &code).await {
            Ok(crate::flows::otp_verify::Verified::Login(logged_in)) => logged_in,
            other => panic!("{destination} not logged in: {other:?}"),
        }
    }

    /// The verification token a verified `purpose` code for `destination` gives.
    pub async fn token_for(&self, ip: &str, destination: &str, purpose: Purpose) -> String {
        use crate::flows::otp_verify::Verified;
        let (otp_id, code) = self.code_for(ip, destination, purpose).await;
        match self.verify(ip, &otp_id, &code).await {
            Ok(Verified::Register { verification_token, .. }) | Ok(Verified::Other { verification_token, .. }) => {
                verification_token
            }
            other => panic!("no verification token for {destination}: {other:?}"),
        }
    }

    /// Runs the work after answers, then every queued delivery that is due
    /// (moving the clock to it), until none is left.
    pub async fn deliver_queued(&self) {
        loop {
            self.fakes.run_later().await;
            let next = self.fakes.queue.queued.borrow_mut().pop_front();
            let Some((mut job, delay)) = next else { return };
            let carried = super::delivery::carried(&mut job);
            // A retry's wait passes on the clock; a first try's short
            // LOGIN_DELIVERY_DELAY_SECONDS does not, so tests can state the
            // times of what a login leads to from T0 (the otp_request tests
            // check that delay on the queued job itself).
            if job.tries > 0 {
                self.fakes.clock.advance(delay as i64 * 1000);
            }
            let ports = self.fakes.ports();
            let courier = super::delivery::Courier::new(self.config, &ports);
            let (request_id, ip_hash, at) = (job.request_id.clone(), job.ip_hash.clone(), job.requested_at_ms);
            let trail = crate::audit::Trail::new(request_id, ip_hash, at);
            match super::delivery::run_job(&courier, &job, &trail).await.expect("the queued job ran") {
                super::delivery::Processed::Done => {}
                super::delivery::Processed::RetryIn(seconds) => {
                    let next = crate::domain::delivery::DeliveryJob { tries: job.tries + 1, ..job };
                    self.fakes.queue.queued.borrow_mut().push_back((next, seconds));
                }
            }
            super::keep_events(self.config, &ports, &[carried, trail.take()].concat()).await;
        }
    }

    /// The code in the newest message to `destination`.
    pub fn last_code_to(&self, destination: &str) -> String {
        let sent = self.fakes.providers.requests_to(destination);
        let last = sent.last().unwrap_or_else(|| panic!("nothing was sent to {destination}"));
        let len = self.config.otp.length;
        let body = form_or_json_text(&last.body);
        body.split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == len)
            .unwrap_or_else(|| panic!("no code in {body:?}"))
            .to_string()
    }

    /// A user with this destination; its id.
    pub fn seed_user(&self, destination: &str, status: &str) -> String {
        let id = crate::domain::crypto::new_uuid().hyphenated().to_string();
        let column = if destination.contains('@') { "email" } else { "phone_e164" };
        let username = format!("user_{}", &id[..8]);
        self.fakes.db.execute(&format!(
            "INSERT INTO users (id, username, {column}, status, created_at, updated_at) \
             VALUES ('{id}', '{username}', '{destination}', '{status}', {T0}, {T0})"
        ));
        id
    }

    /// Rows of a query on the database.
    pub fn rows(&self, sql: &str) -> Vec<Value> {
        self.fakes.db.query(sql).into_iter().map(Value::Object).collect()
    }

    /// The audit events stored so far, as `(event, outcome)`.
    pub fn events(&self) -> Vec<(String, String)> {
        self.rows("SELECT event, outcome FROM audit_events ORDER BY id")
            .into_iter()
            .map(|r| (r["event"].as_str().unwrap().to_string(), r["outcome"].as_str().unwrap().to_string()))
            .collect()
    }

    /// `refusal` with the seconds the error says to wait (429 and 503):
    /// `(status, code, message, retry_after)`.
    pub fn refusal_with_retry_after<T: std::fmt::Debug, E: Into<ApiError> + std::fmt::Debug>(
        result: Result<T, E>,
    ) -> (u16, &'static str, String, Option<u64>) {
        let e: ApiError = result.expect_err("expected a refusal").into();
        (e.status, e.code, e.message, e.retry_after)
    }
}

/// The text of a provider request body: Twilio's `Body`, an email's text.
fn form_or_json_text(body: &str) -> String {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        return json.get("text").or(json.get("TextBody")).and_then(Value::as_str).unwrap_or_default().to_string();
    }
    form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "Body").map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Runs an async test body.
pub fn run<T>(test: impl std::future::Future<Output = T>) -> T {
    block_on(test)
}

/// A digit-wise different code.
pub fn wrong(code: &str) -> String {
    code.chars().map(|c| char::from_digit((c.to_digit(10).unwrap() + 1) % 10, 10).unwrap()).collect()
}

/// The error's `(status, code, message)`, as the client would see it.
pub fn refusal<T: std::fmt::Debug, E: Into<ApiError> + std::fmt::Debug>(
    result: Result<T, E>,
) -> (u16, &'static str, String) {
    let e: ApiError = result.expect_err("expected a refusal").into();
    (e.status, e.code, e.message)
}
