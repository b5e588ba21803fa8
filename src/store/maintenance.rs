//! The hourly cron cleanup.

use super::Db;
use crate::domain::tokens::TokenSettings;
use crate::ports::{Arg, Stmt, StoreError};

/// Ended sessions are kept this long after their end (for the sessions'
/// audit and support questions), then deleted. Audit events are kept on
/// their own (`audit::RETENTION_MS`).
pub const KEEP_ENDED_SESSIONS_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// Rows each pruning statement deletes at most per round.
pub const PRUNE_BATCH: u32 = 5_000;

/// Rounds of `PRUNE_BATCH` one cron run goes through at most; what is left
/// waits for the next hour.
pub const PRUNE_ROUNDS: u32 = 20;

/// When a session's rows may go.
#[derive(Debug, Clone, Copy)]
pub struct SessionRetention {
    /// `REFRESH_REUSE_GRACE_SECONDS`: a retired token is kept at least this long.
    pub reuse_grace_ms: i64,
    /// `SESSION_MAX_LIFETIME_SECONDS`.
    pub max_lifetime_ms: i64,
    pub keep_ended_ms: i64,
}

impl SessionRetention {
    pub fn of(tokens: &TokenSettings) -> SessionRetention {
        SessionRetention {
            reuse_grace_ms: tokens.refresh_reuse_grace_seconds as i64 * 1000,
            max_lifetime_ms: tokens.session_max_lifetime_ms(),
            keep_ended_ms: KEEP_ENDED_SESSIONS_MS,
        }
    }
}

/// What a session cleanup deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub retired_tokens: u32,
    pub sessions: u32,
}

/// The ids of sessions that had ended by `at`: revoked, expired, or opened
/// at or before `created_by` (`at` minus the maximum lifetime); both are
/// parameters. The cleanup's side of `sessions::live` (which needs
/// `revoked_at IS NULL` whatever the clock says), as a UNION of three
/// indexed ranges (migration 0010): SQLite does not use the indexes of an
/// OR of ranges, and would scan every session, live ones too.
fn ended_by(at: &str, created_by: &str) -> String {
    format!(
        "SELECT id FROM sessions WHERE revoked_at <= {at} UNION SELECT id FROM sessions WHERE expires_at <= {at} \
         UNION SELECT id FROM sessions WHERE created_at <= {created_by}"
    )
}

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

    /// Prunes what sessions left behind, in rounds of at most `PRUNE_BATCH`
    /// rows per statement (each round one transaction), until a round finds
    /// less or `PRUNE_ROUNDS` ran: retired refresh tokens of sessions that
    /// ended, once past their grace window (nothing can use them: the
    /// session's end answers before reuse detection would), and sessions
    /// ended more than `keep_ended_ms` ago with no retired token left.
    pub async fn prune_sessions(&self, now_ms: i64, r: &SessionRetention) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        for _ in 0..PRUNE_ROUNDS {
            let round = self.prune_sessions_once(now_ms, r, PRUNE_BATCH).await?;
            total.retired_tokens += round.retired_tokens;
            total.sessions += round.sessions;
            if round.retired_tokens < PRUNE_BATCH && round.sessions < PRUNE_BATCH {
                break;
            }
        }
        Ok(total)
    }

    /// One round of `prune_sessions`, at most `batch` rows per statement.
    pub async fn prune_sessions_once(
        &self,
        now_ms: i64,
        r: &SessionRetention,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let tokens_args: Vec<Arg> =
            vec![now_ms.into(), (now_ms - r.max_lifetime_ms).into(), (now_ms - r.reuse_grace_ms).into(), batch.into()];
        let tokens = Stmt::new(
            format!(
                "DELETE FROM retired_refresh_tokens WHERE rowid IN (SELECT t.rowid FROM retired_refresh_tokens t \
                 WHERE t.session_id IN ({}) AND t.retired_at < ?3 LIMIT ?4) RETURNING 1 AS deleted",
                ended_by("?1", "?2")
            ),
            tokens_args,
        );
        let cutoff = now_ms - r.keep_ended_ms;
        // Sessions whose tokens are all gone, so deleting one cascades to
        // nothing and the statement stays bounded.
        let sessions = Stmt::new(
            format!(
                "DELETE FROM sessions WHERE id IN (SELECT e.id FROM ({}) e \
                 WHERE NOT EXISTS (SELECT 1 FROM retired_refresh_tokens t WHERE t.session_id = e.id) LIMIT ?3) \
                 RETURNING 1 AS deleted",
                ended_by("?1", "?2")
            ),
            vec![cutoff.into(), (cutoff - r.max_lifetime_ms).into(), batch.into()],
        );
        let results = self.db.batch(vec![tokens, sessions]).await?;
        let count = |i: usize| results.get(i).map_or(0, |rows| rows.len() as u32);
        Ok(Pruned { retired_tokens: count(0), sessions: count(1) })
    }
}
