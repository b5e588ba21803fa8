//! The audit trail's rows.

use super::Db;
use crate::audit::AuditEvent;
use crate::ports::{Clock, Stmt, StoreError};

impl Db {
    /// Stores audit events (one transaction). An event names its user only
    /// while the account exists: one written after the account was deleted
    /// (a queued login's carried events, a request that was still running)
    /// keeps no link to the person, like the events the deletion unlinked.
    pub async fn insert_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let statements = events
            .iter()
            .map(|e| {
                Stmt::new(
                    "INSERT INTO audit_events (at, request_id, event, outcome, latency_ms, ip_hash, destination, \
                     user_id, session_id, otp_id, provider_code, attempt, actor) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT id FROM users WHERE id = ?8), ?9, ?10, ?11, ?12, ?13)",
                    vec![
                        e.at_ms.into(),
                        e.request_id.as_str().into(),
                        e.event.as_ref().into(),
                        e.outcome.as_str().into(),
                        e.latency_ms.into(),
                        e.ip_hash.as_str().into(),
                        e.destination.as_deref().into(),
                        e.user_id.as_deref().into(),
                        e.session_id.as_deref().into(),
                        e.otp_id.as_deref().into(),
                        e.provider_code.as_deref().into(),
                        e.attempt.into(),
                        e.actor.as_deref().into(),
                    ],
                )
            })
            .collect();
        self.db.batch(statements).await?;
        Ok(())
    }

    /// Stores the events a trail recorded (`store_audit`), after the answer:
    /// a failure has no client to report to, so it is logged.
    pub async fn keep_audit(&self, events: &[AuditEvent], clock: &dyn Clock) {
        if let Err(e) = self.store_audit(events, clock).await {
            crate::log::error("audit_store_failed", &e.to_string());
        }
    }

    /// `insert_audit`, tried once more after a short pause: the trail is
    /// written after the response, where a transient failure has no client
    /// to report to.
    pub async fn store_audit(&self, events: &[AuditEvent], clock: &dyn Clock) -> Result<(), StoreError> {
        if self.insert_audit(events).await.is_ok() {
            return Ok(());
        }
        clock.sleep(200).await;
        self.insert_audit(events).await
    }
}
