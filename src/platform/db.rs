//! D1 access: every SQL statement the Worker runs against the `DB` binding.

use worker::{D1Database, Env};

pub struct Db {
    inner: D1Database,
}

impl Db {
    pub fn from_env(env: &Env) -> worker::Result<Db> {
        Ok(Db { inner: env.d1("DB")? })
    }

    /// A real query that also proves the migrations ran: counts the tables
    /// the service needs.
    pub async fn ping(&self) -> worker::Result<bool> {
        #[derive(serde::Deserialize)]
        struct Row {
            tables: u32,
        }
        let row: Option<Row> = self
            .inner
            .prepare(
                "SELECT COUNT(*) AS tables FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('users', 'devices', 'sessions', 'otp_requests')",
            )
            .first(None)
            .await?;
        Ok(row.is_some_and(|r| r.tables == 4))
    }
}
