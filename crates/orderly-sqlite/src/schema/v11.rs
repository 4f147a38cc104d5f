//! Schema v11: a queue's counts by state are one row, not six.
//!
//! `queue_counts` held a row per queue and state. A claim moved two of them
//! (`queued` down, `running` up) and the end of an attempt two more, each an
//! `UPDATE` of its own (about 7,000 writer instructions apiece, claim_probe,
//! docs/performance.md). Now each queue has one row with a column per state,
//! in `JobState::ALL`'s order, and every change a request makes to a queue's
//! counts is one `UPDATE` of that row (`crate::tally`). The rows are built
//! from the old table's.

/// The migration from v10.
pub(super) const V11: &str = "
CREATE TABLE queue_counts_v11 (
    queue     TEXT PRIMARY KEY,
    scheduled INTEGER NOT NULL DEFAULT 0,
    queued    INTEGER NOT NULL DEFAULT 0,
    running   INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO queue_counts_v11 (queue, scheduled, queued, running, succeeded, failed, cancelled)
    SELECT queue,
        sum(CASE state WHEN 'scheduled' THEN n ELSE 0 END),
        sum(CASE state WHEN 'queued' THEN n ELSE 0 END),
        sum(CASE state WHEN 'running' THEN n ELSE 0 END),
        sum(CASE state WHEN 'succeeded' THEN n ELSE 0 END),
        sum(CASE state WHEN 'failed' THEN n ELSE 0 END),
        sum(CASE state WHEN 'cancelled' THEN n ELSE 0 END)
    FROM queue_counts GROUP BY queue;
DROP TABLE queue_counts;
ALTER TABLE queue_counts_v11 RENAME TO queue_counts;
";
