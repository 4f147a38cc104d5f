//! The `key_blocks` migration: `key_position` at any key length, as the
//! SQLite store's v6 (docs/ordering.md, "Key position at any length").
//!
//! `key_blocks (queue, key, level, block, n)` counts a key's unfinished
//! (`scheduled`, `queued` or `running`) numbered jobs per block of `seq`s,
//! at the two levels of `waiting_blocks`: level 0 per 1,024 `seq`s
//! (`seq >> 10`), level 1 per 1,048,576 (`seq >> 20`). A trigger keeps it in
//! the transaction of every row change: a keyed job entering the unfinished
//! states or getting a `seq` (numbering, a manual retry's new `seq`) adds one
//! to its two blocks; one leaving them (success, final failure,
//! cancellation, a delete) takes one away; moves among the unfinished
//! states (a claim, a retried attempt, a lease put back) change nothing. A
//! row whose count falls to zero is deleted: keys come and go, and a table
//! keeping a row for every key ever used would grow without end. The table
//! is built from the jobs already stored.

/// The SQL of the step that adds `key_blocks` (version 3).
pub(super) const KEY_BLOCKS: &str = r#"
CREATE TABLE key_blocks (
    queue text NOT NULL,
    key   text NOT NULL,
    level integer NOT NULL,
    block bigint NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, key, level, block)
);
INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 0, seq >> 10, count(*) FROM jobs
    WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    GROUP BY queue, key, seq >> 10;
INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 1, seq >> 20, count(*) FROM jobs
    WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    GROUP BY queue, key, seq >> 20;

CREATE FUNCTION jobs_key_account() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    was boolean := TG_OP <> 'INSERT' AND OLD.key IS NOT NULL AND OLD.seq IS NOT NULL
        AND OLD.state IN ('scheduled', 'queued', 'running');
    now_in boolean := TG_OP <> 'DELETE' AND NEW.key IS NOT NULL AND NEW.seq IS NOT NULL
        AND NEW.state IN ('scheduled', 'queued', 'running');
    same boolean := was AND now_in AND NEW.seq = OLD.seq AND NEW.queue = OLD.queue
        AND NEW.key = OLD.key;
    left_n bigint;
BEGIN
    IF same THEN
        RETURN NULL;
    END IF;
    IF was THEN
        UPDATE key_blocks SET n = n - 1
            WHERE queue = OLD.queue AND key = OLD.key AND level = 0 AND block = OLD.seq >> 10
            RETURNING n INTO left_n;
        IF left_n = 0 THEN
            DELETE FROM key_blocks
                WHERE queue = OLD.queue AND key = OLD.key AND level = 0 AND block = OLD.seq >> 10;
        END IF;
        UPDATE key_blocks SET n = n - 1
            WHERE queue = OLD.queue AND key = OLD.key AND level = 1 AND block = OLD.seq >> 20
            RETURNING n INTO left_n;
        IF left_n = 0 THEN
            DELETE FROM key_blocks
                WHERE queue = OLD.queue AND key = OLD.key AND level = 1 AND block = OLD.seq >> 20;
        END IF;
    END IF;
    IF now_in THEN
        INSERT INTO key_blocks (queue, key, level, block, n) VALUES (NEW.queue, NEW.key, 0, NEW.seq >> 10, 1)
            ON CONFLICT (queue, key, level, block) DO UPDATE SET n = key_blocks.n + 1;
        INSERT INTO key_blocks (queue, key, level, block, n) VALUES (NEW.queue, NEW.key, 1, NEW.seq >> 20, 1)
            ON CONFLICT (queue, key, level, block) DO UPDATE SET n = key_blocks.n + 1;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER jobs_key_account AFTER INSERT OR DELETE OR UPDATE OF seq, state, queue, key ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_key_account();
"#;
