//! The rules: destinations, codes, hashing, limits, tokens and messages.
//! Nothing here imports `worker`; everything is unit-tested natively.

pub mod account;
pub mod admin;
pub mod crypto;
pub mod delivery;
pub mod destination;
pub mod i18n;
pub mod limits;
pub mod message;
pub mod otp;
pub mod outbound;
pub mod secret;
pub mod sms_policy;
pub mod standard_webhooks;
pub mod time;
pub mod tokens;
pub mod turnstile;
pub mod webhook;
