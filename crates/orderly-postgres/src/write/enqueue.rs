//! Enqueue, first half: insert a batch's jobs unnumbered, in one
//! transaction that locks nothing any other enqueue waits for (the
//! sequencer numbers them after the commit, see [`super::number`]). An id
//! already stored is an idempotent replay when queue, key and payload are
//! the same, a conflict otherwise (the whole batch is refused).

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
        // One statement for the whole batch (a round trip per job made a
        // batch of 1,000 cost a thousand round trips).
        let n = p.jobs.len();
        let (mut ids, mut positions, mut keys, mut states) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut payloads, mut attempts, mut timeouts, mut run_ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (pos, new) in p.jobs.iter().enumerate() {
            let run_at = new.run_at.unwrap_or(p.now).max(p.now);
            ids.push(new.id.as_str());
            positions.push(pos as i64);
            keys.push(new.key.as_deref());
            states.push(rules::waiting_state(run_at, p.now).as_str());
            payloads.push(to_text(&new.payload));
            attempts.push(i64::from(new.max_attempts.unwrap_or(config.max_attempts)));
            timeouts.push(new.timeout_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX)));
            run_ats.push(run_at);
        }
        let inserted: std::collections::HashSet<String> = self
            .tx
            .query(
                "INSERT INTO jobs (id, batch, batch_pos, queue, key, state, payload,
                    max_attempts, timeout_ms, enqueued_at, run_at)
                 SELECT j.id, $2, j.pos, $3, j.key, j.state, j.payload, j.max_attempts,
                    j.timeout_ms, $4, j.run_at
                 FROM unnest($1::text[], $5::int8[], $6::text[], $7::text[], $8::text[],
                    $9::int8[], $10::int8[], $11::int8[])
                    AS j (id, pos, key, state, payload, max_attempts, timeout_ms, run_at)
                 ORDER BY j.pos
                 ON CONFLICT (id) DO NOTHING RETURNING id",
                &[
                    &ids, &batch, &p.queue, &p.now, &positions, &keys, &states, &payloads,
                    &attempts, &timeouts, &run_ats,
                ],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let created: Vec<bool> = p.jobs.iter().map(|j| inserted.contains(&j.id)).collect();
        if created.iter().all(|c| *c) {
            return Ok(created);
        }
        // Replays: the stored job must be this one (same queue, key, payload).
        let replayed: Vec<&str> = p
            .jobs
            .iter()
            .filter(|j| !inserted.contains(&j.id))
            .map(|j| j.id.as_str())
            .collect();
        let rows = self
            .tx
            .query(
                "SELECT id, queue, key, payload FROM jobs WHERE id = ANY($1)",
                &[&replayed],
            )
            .await
            .map_err(map_err)?;
        let stored: std::collections::HashMap<String, (String, Option<String>, String)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
        for (new, payload) in p.jobs.iter().zip(&payloads) {
            if inserted.contains(&new.id) {
                continue;
            }
            let Some((q, k, pl)) = stored.get(&new.id) else {
                // Neither inserted nor found: deleted meanwhile; say so
                // rather than pretend it is stored.
                return Err(StoreError::Backend(format!(
                    "job {:?} was neither inserted nor found",
                    new.id
                )));
            };
            // Compared as JSON: a job the SQL function stored holds its
            // payload as PostgreSQL writes jsonb (`{"n": 1}`).
            let same_payload = pl == payload
                || serde_json::from_str::<serde_json::Value>(pl).is_ok_and(|v| v == new.payload);
            if *q != p.queue || *k != new.key || !same_payload {
                return Err(StoreError::IdConflict { id: new.id.clone() });
            }
        }
        Ok(created)
    }
}
