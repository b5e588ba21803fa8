//! The hourly cron cleanup.

use super::Db;
use crate::ports::{Stmt, StoreError};

impl Db {
    /// OTP rows and verification tokens that expired, or were used, more
    /// than `keep_ms` ago, and audit events past retention: one transaction.
    pub async fn delete_stale(&self, now_ms: i64, keep_ms: i64) -> Result<(), StoreError> {
        let cutoff = now_ms - keep_ms;
        let otps = Stmt::new(
            "DELETE FROM otp_requests WHERE expires_at < ?1 OR verified_at < ?1 OR invalidated_at < ?1",
            vec![cutoff.into()],
        );
        let tokens =
            Stmt::new("DELETE FROM verification_tokens WHERE expires_at < ?1 OR consumed_at < ?1", vec![cutoff.into()]);
        let audit =
            Stmt::new("DELETE FROM audit_events WHERE at < ?1", vec![(now_ms - crate::audit::RETENTION_MS).into()]);
        self.db.batch(vec![otps, tokens, audit]).await?;
        Ok(())
    }
}
