//! Black-box tests: the real Worker under `wrangler dev`, spoken to over HTTP.
//! One file per endpoint or flow; `helpers` starts everything.

mod account;
mod admin;
mod audit;
mod bad_input;
mod browser;
mod cleanup;
mod contract;
mod cors;
mod delivery;
mod delivery_failures;
mod delivery_queue;
mod deploy;
mod enumeration;
mod fail_closed;
mod fuzz;
mod generated_client;
mod health;
#[allow(dead_code)] // not every stage of the suite uses every helper
mod helpers;
mod limits;
mod lockout;
mod otp_request;
mod otp_verify;
mod production;
mod providers;
mod pumping;
mod register;
mod routing;
mod sessions;
mod turnstile;
mod twilio_status;
mod webhooks;
