//! What a waiting job's answers and a restarted server's estimates read
//! (contract section 4.1): every write that answers a waiting job answers
//! it with the `position`, `key_position` and wait facts a read right after
//! gives; the latest starts of a queue come from the end of its start log.

use crate::job::{Job, JobState, NewJob};
use crate::queue::QueuePatch;
use crate::store::{LatestStart, Store};

use super::{
    at, claim_as, complete, configure, enqueue, fail, keyed, nj, retry, try_enqueue, FLAT_BACKOFF,
    T0, WORKER,
};

/// What a read of `job` right now says about its wait, beside the job.
async fn as_read(s: &dyn Store, job: &Job) -> Job {
    s.job_get(&job.id)
        .await
        .unwrap_or_else(|e| panic!("job_get({:?}) failed: {e:?}", job.id))
        .unwrap_or_else(|| panic!("job {:?} not found", job.id))
}

/// `answer` explains its wait exactly as a read right after it does.
async fn explains_like_a_read(s: &dyn Store, answer: &Job, what: &str) {
    let read = as_read(s, answer).await;
    assert_eq!(
        (
            answer.state,
            answer.position,
            answer.key_position,
            &answer.wait_facts
        ),
        (
            read.state,
            read.position,
            read.key_position,
            &read.wait_facts
        ),
        "{what}: the answer of {:?} must say what a read right after says",
        answer.id
    );
}

/// Enqueue (a batch of keyed, keyless and delayed jobs, and a replay),
/// a manual retry and a failed attempt that goes back to wait all answer
/// with the position, key position and wait facts of a read right after.
pub async fn write_answers_explain_waiting_jobs<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "why";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(2),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    let once = NewJob {
        max_attempts: Some(1),
        ..keyed("a1", "A")
    };
    for job in &enqueue(s, q, vec![once, nj("n1")], T0).await {
        explains_like_a_read(s, job, "enqueue").await;
    }
    let running = claim_as(s, q, WORKER, 1, None, T0).await.value;
    assert_eq!(running[0].job.id, "a1");
    let batch = enqueue(
        s,
        q,
        vec![
            keyed("a2", "A"),
            keyed("b1", "B"),
            keyed("a3", "A"),
            at(keyed("b2", "B"), T0 + 60_000),
            nj("n2"),
        ],
        T0 + 1,
    )
    .await;
    let keys: Vec<_> = batch.iter().map(|j| j.key_position).collect();
    assert_eq!(
        keys,
        [Some(1), Some(0), Some(2), Some(1), None],
        "unfinished jobs of each key ahead, a1 running included"
    );
    assert_eq!(
        batch[0]
            .wait_facts
            .as_ref()
            .and_then(|f| f.key_head.clone()),
        Some("a1".to_string()),
        "a2 waits on the running a1"
    );
    assert_eq!(
        batch[3]
            .wait_facts
            .as_ref()
            .and_then(|f| f.key_head.clone()),
        Some("b1".to_string()),
        "b2 waits on b1, enqueued in the same batch"
    );
    for job in &batch {
        explains_like_a_read(s, job, "enqueue").await;
    }
    // A replay answers the stored job, explained the same way.
    let replay = try_enqueue(s, q, vec![keyed("a2", "A")], T0 + 2)
        .await
        .expect("replay");
    assert!(!replay[0].created);
    explains_like_a_read(s, &replay[0].job, "a replayed enqueue").await;

    // a1 fails for good (one attempt): a2 now holds the key.
    let failed = fail(s, &running[0], true, T0 + 3).await;
    assert_eq!(failed.state, JobState::Failed);
    explains_like_a_read(s, &failed, "a report").await;
    // Its manual retry joins the end of the line, behind a2 and a3.
    let again = retry(s, "a1", T0 + 4).await.expect("retry");
    assert_eq!(again.key_position, Some(2), "a2 and a3 are ahead of it");
    explains_like_a_read(s, &again, "a retry").await;

    // A failed attempt with attempts left waits again, still the key's head.
    let leases = claim_as(s, q, WORKER, 1, None, T0 + 5).await.value;
    assert_eq!(leases[0].job.id, "n1");
    let leases = claim_as(s, q, WORKER, 1, None, T0 + 5).await.value;
    assert_eq!(leases[0].job.id, "a2");
    let back = fail(s, &leases[0], true, T0 + 6).await;
    assert_eq!(back.state, JobState::Scheduled, "a2 waits to retry");
    explains_like_a_read(s, &back, "a failed attempt retried").await;
}

/// `(start_no, job, ended)` of the latest starts.
fn shape(records: &[LatestStart]) -> Vec<(i64, &str, bool)> {
    records
        .iter()
        .map(|r| {
            (
                r.start.start_no,
                r.start.job_id.as_str(),
                r.ended_at.is_some(),
            )
        })
        .collect()
}

/// The latest starts of a queue, oldest first, with their ends once they
/// ended: only that queue's, at most the limit.
pub async fn start_latest_reads_the_end_of_the_log<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "recent";
    assert!(
        s.start_latest(q, 5).await.expect("start_latest").is_empty(),
        "a queue never used has no starts"
    );
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(
        s,
        q,
        vec![nj("r1"), nj("r2"), keyed("r3", "K"), nj("r4")],
        T0,
    )
    .await;
    enqueue(s, "other", vec![nj("o1")], T0).await;
    let mut starts = Vec::new();
    for i in 0..3 {
        let now = T0 + 10 * i;
        let l = claim_as(s, q, WORKER, 1, None, now).await.value;
        starts.push(l[0].job.start_no.expect("numbered"));
        complete(s, &l[0], now + 5).await;
        claim_as(s, "other", WORKER, 1, None, now).await;
    }
    let l = claim_as(s, q, WORKER, 1, None, T0 + 100).await.value;
    starts.push(l[0].job.start_no.expect("numbered"));

    let latest = s.start_latest(q, 2).await.expect("start_latest");
    assert_eq!(
        shape(&latest),
        [(starts[2], "r3", true), (starts[3], "r4", false)],
        "the last two, oldest first; the running one has not ended"
    );
    assert_eq!(latest[0].start.key.as_deref(), Some("K"));
    assert_eq!(latest[0].start.started_at, T0 + 20);
    assert_eq!(latest[0].ended_at, Some(T0 + 25));
    assert_eq!(latest[0].outcome.as_deref(), Some("succeeded"));
    assert_eq!(latest[1].start.started_at, T0 + 100);
    let all = s.start_latest(q, 100).await.expect("start_latest");
    assert_eq!(
        all.iter().map(|r| r.start.start_no).collect::<Vec<_>>(),
        starts,
        "every start of the queue and none of another"
    );
    assert!(s.start_latest(q, 0).await.expect("limit 0").is_empty());
}
