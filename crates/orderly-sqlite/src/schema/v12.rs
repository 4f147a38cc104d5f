//! Schema v12: the block counts of the newest block are not kept row by row.
//!
//! Every enqueue added one to its job's two `waiting_blocks` rows (level 0
//! and level 1), and every claim of a job near the front of a short queue
//! took one away: two `UPDATE`s per write, about 14,000 of an enqueue's
//! 79,000 writer instructions (claim_probe, docs/performance.md), and a
//! page of its commit. Yet no read ever uses the rows of the block the
//! newest `seq` is in: a position adds the blocks *before* the job's own
//! block and counts its own block in the index. So the writer now keeps
//! the rows of *closed* blocks only. `meta.blocks_closed_below` is the
//! first open level-0 block (level 1: that value `>> 10`); it is never
//! below the block of any stored `seq`, and changes to jobs in open blocks
//! touch no block row (`crate::tally`). When the writer hands out the
//! first `seq` of a later block, in the same transaction, it counts the
//! blocks it closes from the jobs (at most 1,024 rows each), the level-1
//! blocks it closes from their level-0 rows, and moves the bound
//! (`WriteCtx::take_seq`). The same holds for `key_blocks`.
//!
//! The migration sets the bound to the block of the highest stored `seq`
//! and deletes the rows at and above it, which the writer no longer keeps
//! and rebuilds when it closes them.

/// The migration from v11.
pub(super) const V12: &str = "
INSERT INTO meta (name, value) SELECT 'blocks_closed_below', coalesce(max(seq), 0) >> 10 FROM jobs;
DELETE FROM waiting_blocks WHERE level = 0
    AND block >= (SELECT value FROM meta WHERE name = 'blocks_closed_below');
DELETE FROM waiting_blocks WHERE level = 1
    AND block >= (SELECT value FROM meta WHERE name = 'blocks_closed_below') >> 10;
DELETE FROM key_blocks WHERE level = 0
    AND block >= (SELECT value FROM meta WHERE name = 'blocks_closed_below');
DELETE FROM key_blocks WHERE level = 1
    AND block >= (SELECT value FROM meta WHERE name = 'blocks_closed_below') >> 10;
";
