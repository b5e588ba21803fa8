//! The webhooks whose retries ran out (`webhook_dead_letters`, migration
//! 0014), kept for a replay.

use super::Db;
use crate::domain::standard_webhooks::Queued;
use crate::ports::{text, Stmt, StoreError};

impl Db {
    /// Keeps a dead webhook, by its id: the same one dying again (after a
    /// replay) is one row, its replay request cleared.
    pub async fn keep_dead_letter(&self, q: &Queued, kind: &str, now_ms: i64) -> Result<(), StoreError> {
        let stmt = Stmt::new(
            "INSERT INTO webhook_dead_letters (id, type, body, dead_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, dead_at = excluded.dead_at, \
             replay_requested_at = NULL",
            vec![q.id.as_str().into(), kind.into(), q.body.as_str().into(), now_ms.into()],
        );
        self.db.batch(vec![stmt]).await.map(|_| ())
    }

    /// Up to `limit` dead webhooks an operator asked to replay, oldest first.
    pub async fn dead_letters_to_replay(&self, limit: u32) -> Result<Vec<Queued>, StoreError> {
        let stmt = Stmt::new(
            "SELECT id, body FROM webhook_dead_letters WHERE replay_requested_at IS NOT NULL \
             ORDER BY dead_at LIMIT ?1",
            vec![limit.into()],
        );
        let mut due = Vec::new();
        for row in self.db.all(stmt).await? {
            if let (Some(id), Some(body)) = (text(&row, "id"), text(&row, "body")) {
                due.push(Queued { id, body });
            }
        }
        Ok(due)
    }

    /// Forgets dead webhooks that are back on the queue: one statement, the
    /// ids as a JSON array.
    pub async fn forget_dead_letters(&self, ids: &[String]) -> Result<(), StoreError> {
        let stmt = Stmt::new(
            "DELETE FROM webhook_dead_letters WHERE id IN (SELECT value FROM json_each(?1))",
            vec![serde_json::Value::from(ids).to_string().into()],
        );
        self.db.batch(vec![stmt]).await.map(|_| ())
    }
}
