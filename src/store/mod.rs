//! Every SQL statement the service runs, per aggregate: codes (`otp`),
//! accounts (`users`), sessions and refresh tokens (`sessions`), the audit
//! trail (`audit`), the dead webhooks (`webhooks`) and the cron cleanup
//! (`maintenance`). Statements are plain data (`ports::Stmt`) run through the
//! `Database` port, so the same SQL runs on D1 in the Worker and on SQLite in
//! native tests. Read-modify-write steps are single statements (`UPDATE ...
//! RETURNING`) or one batch (one transaction), so parallel requests cannot
//! interleave them.

pub mod admin;
pub mod audit;
pub mod maintenance;
pub mod otp;
pub mod sessions;
pub mod users;
pub mod webhooks;

use std::rc::Rc;

use serde::Deserialize;

use crate::domain::destination::{Channel, Destination};
use crate::ports::{first, Database, Stmt, StoreError};

/// The service's storage: the statements of every aggregate, on a database.
#[derive(Clone)]
pub struct Db {
    db: Rc<dyn Database>,
}

impl Db {
    pub fn new(db: Rc<dyn Database>) -> Db {
        Db { db }
    }

    /// A real query that also proves the migrations ran: counts the tables
    /// the service needs.
    pub async fn ping(&self) -> Result<bool, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            tables: u32,
        }
        let stmt = Stmt::new(
            "SELECT COUNT(*) AS tables FROM sqlite_master WHERE type = 'table' \
             AND name IN ('users', 'devices', 'sessions', 'otp_requests')",
            vec![],
        );
        let row: Option<Row> = first(self.db.all(stmt).await?)?;
        Ok(row.is_some_and(|r| r.tables == 4))
    }
}

/// A user row, as the API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub phone_e164: Option<String>,
    pub status: String,
    pub email_verified: i64,
    pub phone_verified: i64,
}

impl UserRow {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

const USER_COLUMNS: &str = "id, username, email, phone_e164, status, email_verified, phone_verified";

/// The users column that holds this kind of destination.
fn user_column(destination: &Destination) -> &'static str {
    channel_column(destination.channel())
}

/// The users column holding a destination of `channel`.
fn channel_column(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Phone => "phone_e164",
    }
}

/// The users column saying a destination of `channel` was verified.
fn channel_verified_column(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email_verified",
        Channel::Phone => "phone_verified",
    }
}

/// One row changed (`RETURNING id`).
#[derive(Deserialize)]
struct Id {
    #[allow(dead_code)]
    id: String,
}
