//! The operation timeout around every store call made for a request, and
//! the enqueue it wraps (too long to sit in the trait impl).

use std::collections::HashSet;

use futures::future::try_join_all;
use orderly_core::{Committed, EnqueueParams, Enqueued, StoreError};
use tokio_postgres::IsolationLevel;

use crate::rows::{self, map_err, Res};
use crate::write::Op;
use crate::{commit_err, read, waits, PostgresStore};

impl PostgresStore {
    /// `op`, answering `Unavailable` if it takes longer than the operation
    /// timeout (its transaction, dropped, rolls back; a commit cut off is
    /// reported not confirmed, never done) and dropping the idle sessions.
    pub(crate) async fn bounded<T>(&self, op: impl std::future::Future<Output = Res<T>>) -> Res<T> {
        match tokio::time::timeout(self.op_timeout, op).await {
            Ok(out) => out,
            Err(_) => {
                // A session that left a query unanswered is not trusted
                // again: the idle ones go (the cut-off one is back among
                // them by now), new ones are opened as needed.
                drop(self.hub.pool.retain(|_, _| false));
                Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within {:?}",
                    self.op_timeout
                )))
            }
        }
    }

    /// [`Store::job_enqueue_many`], unbounded.
    pub(crate) async fn enqueue_many(
        &self,
        params: EnqueueParams,
    ) -> Res<Committed<Vec<Enqueued>>> {
        let mine = self
            .hub
            .local_ids(params.jobs.iter().map(|j| j.id.clone()).collect());
        let created = in_tx!(self, op => op.insert_unnumbered(&params).await?).value;
        let mut changes = self.hub.number_after(&mine).await?;
        let jobs = in_read!(self, tx => {
            // One lookup by id per job, pipelined.
            let mut jobs = try_join_all(params.jobs.iter().map(|new| async move {
                read::job_by_id(tx, &new.id).await?.ok_or_else(|| {
                    StoreError::Backend(format!("job {:?} was committed but is not numbered", new.id))
                })
            }))
            .await?;
            waits::fill_enqueue_waits(tx, &mut jobs, &created).await?;
            jobs
        });
        // Another node's pass may have numbered this enqueue's jobs: they are
        // still this write's changes (its wake-ups and events), as they were
        // created, and so are any other rows its own passes numbered.
        let recorded: HashSet<String> = changes.jobs.iter().map(|c| c.id.clone()).collect();
        for ((job, new), created) in jobs.iter().zip(&params.jobs).zip(&created) {
            if *created && !recorded.contains(&job.id) {
                let run_at = new.run_at.unwrap_or(params.now).max(params.now);
                let state = orderly_core::rules::waiting_state(run_at, params.now);
                changes
                    .jobs
                    .push(rows::change(job, None, state, params.now));
            }
        }
        changes.jobs.sort_by_key(|c| c.seq);
        Ok(Committed {
            value: jobs
                .into_iter()
                .zip(created)
                .map(|(job, created)| Enqueued { job, created })
                .collect(),
            changes,
        })
    }
}
