//! Schema v6: `key_position` at any key length (docs/ordering.md, "Key
//! position at any length").
//!
//! `key_blocks (queue, key, level, block, n)` counts a key's unfinished
//! (`scheduled`, `queued` or `running`) jobs per block of `seq`s, at the
//! two levels of `waiting_blocks`: level 0 per 1,024 `seq`s (`seq >> 10`),
//! level 1 per 1,048,576 (`seq >> 20`). Triggers keep it in the transaction
//! of every row change, so no write path can forget it: a keyed job
//! entering the unfinished states (an insert, a manual retry, which also
//! gives a new `seq`) adds one to its two blocks; one leaving them (success,
//! final failure, cancellation, a delete) takes one away; moves among the
//! unfinished states (a claim, a failed attempt retried, a lease put back)
//! change nothing. A row whose count falls to zero is deleted: keys come
//! and go (one per customer, one per order), and a table that kept a row
//! for every key ever used would grow without end. The table is built from
//! the jobs already stored.

/// The migration from v5.
pub(super) const V6: &str = r#"
CREATE TABLE key_blocks (
    queue TEXT NOT NULL,
    key   TEXT NOT NULL,
    level INTEGER NOT NULL,
    block INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, key, level, block)
) WITHOUT ROWID;
INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 0, seq >> 10, count(*) FROM jobs
    WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    GROUP BY queue, key, seq >> 10;
INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 1, seq >> 20, count(*) FROM jobs
    WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    GROUP BY queue, key, seq >> 20;

CREATE TRIGGER jobs_key_insert AFTER INSERT ON jobs
WHEN new.key IS NOT NULL AND new.state IN ('scheduled', 'queued', 'running') BEGIN
    INSERT INTO key_blocks (queue, key, level, block, n) VALUES (new.queue, new.key, 0, new.seq >> 10, 1)
        ON CONFLICT (queue, key, level, block) DO UPDATE SET n = n + 1;
    INSERT INTO key_blocks (queue, key, level, block, n) VALUES (new.queue, new.key, 1, new.seq >> 20, 1)
        ON CONFLICT (queue, key, level, block) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_key_leave AFTER UPDATE OF state, seq, queue, key ON jobs
WHEN old.key IS NOT NULL AND old.state IN ('scheduled', 'queued', 'running')
  AND (new.state NOT IN ('scheduled', 'queued', 'running') OR new.seq <> old.seq
       OR new.queue <> old.queue OR new.key IS NOT old.key) BEGIN
    UPDATE key_blocks SET n = n - 1
        WHERE queue = old.queue AND key = old.key AND level = 0 AND block = old.seq >> 10;
    UPDATE key_blocks SET n = n - 1
        WHERE queue = old.queue AND key = old.key AND level = 1 AND block = old.seq >> 20;
    DELETE FROM key_blocks
        WHERE queue = old.queue AND key = old.key AND level = 0 AND block = old.seq >> 10 AND n = 0;
    DELETE FROM key_blocks
        WHERE queue = old.queue AND key = old.key AND level = 1 AND block = old.seq >> 20 AND n = 0;
END;
CREATE TRIGGER jobs_key_enter AFTER UPDATE OF state, seq, queue, key ON jobs
WHEN new.key IS NOT NULL AND new.state IN ('scheduled', 'queued', 'running')
  AND (old.state NOT IN ('scheduled', 'queued', 'running') OR new.seq <> old.seq
       OR new.queue <> old.queue OR new.key IS NOT old.key) BEGIN
    INSERT INTO key_blocks (queue, key, level, block, n) VALUES (new.queue, new.key, 0, new.seq >> 10, 1)
        ON CONFLICT (queue, key, level, block) DO UPDATE SET n = n + 1;
    INSERT INTO key_blocks (queue, key, level, block, n) VALUES (new.queue, new.key, 1, new.seq >> 20, 1)
        ON CONFLICT (queue, key, level, block) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_key_delete AFTER DELETE ON jobs
WHEN old.key IS NOT NULL AND old.state IN ('scheduled', 'queued', 'running') BEGIN
    UPDATE key_blocks SET n = n - 1
        WHERE queue = old.queue AND key = old.key AND level = 0 AND block = old.seq >> 10;
    UPDATE key_blocks SET n = n - 1
        WHERE queue = old.queue AND key = old.key AND level = 1 AND block = old.seq >> 20;
    DELETE FROM key_blocks
        WHERE queue = old.queue AND key = old.key AND level = 0 AND block = old.seq >> 10 AND n = 0;
    DELETE FROM key_blocks
        WHERE queue = old.queue AND key = old.key AND level = 1 AND block = old.seq >> 20 AND n = 0;
END;
"#;
