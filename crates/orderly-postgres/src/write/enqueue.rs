//! Enqueue, first half: insert a batch's jobs unnumbered, in one
//! transaction that locks nothing any other enqueue waits for (the
//! sequencer numbers them after the commit, see [`super::number`]). An id
//! already stored is an idempotent replay when queue, key and payload are
//! the same, a conflict otherwise (the whole batch is refused).

use futures::future::try_join_all;
use orderly_core::{rules, validate, EnqueueParams, QueueConfig, StoreError};

use super::Op;
use crate::read::parse_config;
use crate::rows::{map_err, to_text, Res};

impl Op<'_, '_> {
    /// Creates queue `name` with the default configuration if it does not
    /// exist (without locking an existing row) and returns its configuration.
    pub async fn queue_or_create(&self, name: &str, now: i64) -> Res<QueueConfig> {
        let default = serde_json::to_string(&QueueConfig::default())
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.tx
            .execute(
                "INSERT INTO queues (name, config, created_at, updated_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &default, &now],
            )
            .await
            .map_err(map_err)?;
        let text: String = self
            .tx
            .query_one("SELECT config FROM queues WHERE name = $1", &[&name])
            .await
            .map_err(map_err)?
            .get(0);
        parse_config(name, &text)
    }

    /// Inserts the batch's new jobs unnumbered; returns, per job in order,
    /// whether it is new (`false`: an exact replay of a stored job).
    pub async fn insert_unnumbered(&self, p: &EnqueueParams) -> Res<Vec<bool>> {
        validate::distinct_batch_ids(p.jobs.iter().map(|j| j.id.as_str()))?;
        let config = self.queue_or_create(&p.queue, p.now).await?;
        let batch: i64 = self
            .tx
            .query_one("SELECT nextval('batch_no')", &[])
            .await
            .map_err(map_err)?
            .get(0);
        let config = &config;
        // One statement per job, pipelined: the whole batch costs about one
        // round trip, and each statement keeps its plan (an insert and an
        // index lookup by id) whatever the batch's size.
        let inserted = try_join_all(p.jobs.iter().enumerate().map(|(pos, new)| async move {
            let payload = to_text(&new.payload);
            let run_at = new.run_at.unwrap_or(p.now).max(p.now);
            let state = rules::waiting_state(run_at, p.now);
            let max_attempts = i64::from(new.max_attempts.unwrap_or(config.max_attempts));
            let timeout_ms = new.timeout_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
            let row = self
                .tx
                .query_opt(
                    "INSERT INTO jobs (id, batch, batch_pos, queue, key, state, payload,
                        max_attempts, timeout_ms, enqueued_at, run_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (id) DO NOTHING RETURNING id",
                    &[
                        &new.id,
                        &batch,
                        &(pos as i64),
                        &p.queue,
                        &new.key,
                        &state.as_str(),
                        &payload,
                        &max_attempts,
                        &timeout_ms,
                        &p.now,
                        &run_at,
                    ],
                )
                .await
                .map_err(map_err)?;
            Ok::<_, StoreError>((row.is_some(), payload))
        }))
        .await?;
        // An id already stored is a replay only if it is this very job.
        let replays = p.jobs.iter().zip(&inserted).filter(|(_, (new, _))| !new);
        let stored = try_join_all(replays.map(|(new, (_, payload))| async move {
            let row = self
                .tx
                .query_one(
                    "SELECT queue, key, payload FROM jobs WHERE id = $1",
                    &[&new.id],
                )
                .await
                .map_err(map_err)?;
            let (q, k, pl): (String, Option<String>, String) = (row.get(0), row.get(1), row.get(2));
            // Compared as JSON: a job the SQL function stored holds its
            // payload as PostgreSQL writes jsonb (`{"n": 1}`).
            let same_payload = pl == *payload
                || serde_json::from_str::<serde_json::Value>(&pl).is_ok_and(|v| v == new.payload);
            if q != p.queue || k != new.key || !same_payload {
                return Err(StoreError::IdConflict { id: new.id.clone() });
            }
            Ok(())
        }));
        stored.await?;
        let created = inserted.into_iter().map(|(new, _)| new).collect();
        Ok(created)
    }
}
