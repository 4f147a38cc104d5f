//! Enqueue contract tests: consecutive seqs, idempotent replays, batches
//! that repeat an id, and payloads kept exactly (contract sections 2, 3 and
//! 4.1).

use serde_json::{json, Value};

use crate::job::{JobState, NewJob};
use crate::queue::{QueueConfig, QueueInfo};
use crate::store::{ListParams, Store, StoreError};

use super::{
    at, claim, claim_expect, complete, conc, configure, enqueue, expect_conflict, expect_invalid,
    get, keyed, nj, queue_info, try_enqueue, try_enqueue_committed, XorShift, T0,
};

/// Section 2: a batch gets consecutive, strictly increasing `seq`s in its
/// order; new jobs are waiting with attempt 0 and a position counting the
/// waiting jobs ahead; `job_get` shows the same; positions shrink as earlier
/// jobs start.
pub async fn enqueue_assigns_consecutive_seqs<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "enqueue";
    let batch = enqueue(
        s,
        q,
        vec![
            nj("e1"),
            keyed("e2", "k"),
            at(nj("e3"), T0 + 5_000),
            at(nj("e4"), T0 - 1_000),
        ],
        T0,
    )
    .await;
    let base = batch[0].seq;
    assert_eq!(
        batch.iter().map(|j| j.seq).collect::<Vec<_>>(),
        vec![base, base + 1, base + 2, base + 3],
        "a batch gets consecutive seqs in its order"
    );
    let expect_states = [
        JobState::Queued,
        JobState::Queued,
        JobState::Scheduled,
        JobState::Queued,
    ];
    for (i, j) in batch.iter().enumerate() {
        let id = format!("e{}", i + 1);
        assert_eq!(j.id, id, "jobs come back in batch order");
        assert_eq!(j.queue, q);
        assert_eq!(j.state, expect_states[i], "state of {id}");
        assert_eq!(j.attempt, 0, "attempt of new {id}");
        assert_eq!(j.position, Some(i as u64), "position of {id}");
        assert_eq!(j.payload, json!({ "id": id }), "payload of {id}");
        assert_eq!(j.max_attempts, QueueConfig::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(j.enqueued_at, T0);
        assert_eq!(j.started_at, None);
        assert_eq!(j.finished_at, None);
        assert_eq!(j.start_no, None);
        assert_eq!(j.lease_expires_at, None);
        assert!(!j.cancel_requested);
        assert_eq!(j.result, None);
        assert_eq!(j.error, None);
    }
    assert_eq!(batch[0].key, None);
    assert_eq!(batch[1].key.as_deref(), Some("k"));
    assert_eq!(batch[0].run_at, T0, "run_at defaults to now");
    assert_eq!(
        batch[2].run_at,
        T0 + 5_000,
        "a delayed job keeps its run_at"
    );
    for j in &batch {
        assert_eq!(&get(s, &j.id).await, j, "job_get shows the enqueued job");
    }

    let later = enqueue(s, q, vec![nj("e5")], T0 + 1).await;
    assert!(
        later[0].seq > batch[3].seq,
        "a later enqueue gets a higher seq ({} after {})",
        later[0].seq,
        batch[3].seq
    );
    assert_eq!(later[0].position, Some(4), "four waiting jobs ahead of e5");
    assert_eq!(get(s, "e5").await, later[0]);

    let e1 = claim_expect(s, q, 1, T0 + 2, &["e1"], "lowest seq first").await;
    assert_eq!(get(s, "e1").await.position, None);
    for (id, pos) in [("e2", 0), ("e3", 1), ("e4", 2), ("e5", 3)] {
        assert_eq!(
            get(s, id).await.position,
            Some(pos),
            "position of {id} after e1 started"
        );
    }
    complete(s, &e1[0], T0 + 3).await;
    let e2 = claim_expect(s, q, 1, T0 + 3, &["e2"], "e2 is next").await;
    complete(s, &e2[0], T0 + 4).await;
    claim_expect(s, q, 1, T0 + 4, &["e4"], "e3 is not due; e4 is next").await;
    assert_eq!(get(s, "e3").await.position, Some(0));
    assert_eq!(get(s, "e5").await.position, Some(1));
}

/// Section 3: replaying an id with the same queue, key and payload returns
/// the stored job (`created: false`); anything different is `IdConflict` and
/// the whole batch is refused; a batch naming one id twice (with the same or
/// another payload) is `Invalid` and stores nothing; seqs stay strictly
/// increasing afterwards.
pub async fn idempotent_enqueue<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "idem";
    let dup = || NewJob {
        payload: json!({ "n": 1 }),
        ..keyed("dup", "k")
    };
    let first = enqueue(s, q, vec![dup()], T0).await.remove(0);

    let replay = try_enqueue(s, q, vec![dup()], T0 + 10)
        .await
        .unwrap_or_else(|e| panic!("replay failed: {e:?}"));
    assert_eq!(replay.len(), 1);
    assert!(!replay[0].created, "a replay is not created again");
    assert_eq!(
        replay[0].job.seq, first.seq,
        "a replay returns the same seq"
    );
    assert_eq!(replay[0].job.id, "dup");
    assert_eq!(
        replay[0].job.enqueued_at, T0,
        "a replay keeps the original job"
    );
    assert_eq!(replay[0].job.state, JobState::Queued);

    let mixed = try_enqueue(s, q, vec![nj("i2"), dup()], T0 + 20)
        .await
        .unwrap_or_else(|e| panic!("batch with a replay failed: {e:?}"));
    assert!(mixed[0].created && !mixed[1].created);
    assert!(mixed[0].job.seq > first.seq);
    assert_eq!(mixed[1].job.seq, first.seq);
    let high = mixed[0].job.seq;

    let cases = [
        (
            "different payload",
            q,
            NewJob {
                payload: json!({ "n": 2 }),
                ..dup()
            },
        ),
        (
            "different key",
            q,
            NewJob {
                key: Some("other".into()),
                ..dup()
            },
        ),
        ("no key", q, NewJob { key: None, ..dup() }),
        ("different queue", "idem-other", dup()),
    ];
    for (what, queue, job) in cases {
        expect_conflict(
            try_enqueue(s, queue, vec![job], T0 + 30).await,
            "dup",
            &format!("replay of dup with {what}"),
        );
    }

    let counts_before = queue_info(s, q).await.counts;
    let bad = NewJob {
        payload: json!({ "n": 3 }),
        ..dup()
    };
    expect_conflict(
        try_enqueue(s, q, vec![nj("b1"), nj("b2"), bad, nj("b4")], T0 + 40).await,
        "dup",
        "a batch whose third job conflicts",
    );
    for id in ["b1", "b2", "b4"] {
        assert_eq!(
            s.job_get(id).await.expect("job_get"),
            None,
            "a refused batch stores none of its jobs ({id} was stored)"
        );
    }
    let z2 = NewJob {
        payload: json!({ "other": true }),
        ..nj("z")
    };
    expect_invalid(
        try_enqueue(s, q, vec![nj("z"), z2], T0 + 41).await,
        "jobs[1].id",
        "a batch reusing one id with two payloads",
    );
    expect_invalid(
        try_enqueue(s, q, vec![nj("z"), nj("z")], T0 + 41).await,
        "jobs[1].id",
        "a batch repeating one id with the same payload",
    );
    assert_eq!(s.job_get("z").await.expect("job_get"), None);
    assert_eq!(
        queue_info(s, q).await.counts,
        counts_before,
        "refused batches change no count"
    );
    assert_eq!(get(s, "dup").await.seq, first.seq, "dup is unchanged");

    let after = enqueue(
        s,
        q,
        vec![
            NewJob {
                payload: json!("reused"),
                ..nj("b1")
            },
            nj("b2"),
        ],
        T0 + 50,
    )
    .await;
    assert!(
        after[0].seq > high,
        "seqs keep increasing after a refused batch ({} after {high})",
        after[0].seq
    );
    assert_eq!(after[1].seq, after[0].seq + 1);
}

/// Sections 3 and 4.1: a payload comes back exactly as accepted (from
/// `job_get`, a claim and a listing), and an idempotent replay compares
/// payloads as JSON values, not as text.
pub async fn payloads_are_kept_exactly<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "payloads";
    let payloads = [
        Value::Null,
        json!(true),
        json!("plain"),
        json!("unicode ✓ \u{0} \"quoted\" \\ back\nslash"),
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
        json!([
            0.1,
            0.30000000000000004,
            1e300,
            -2.5e-10,
            123456.789,
            5e-324,
            1.7976931348623157e308
        ]),
        json!({ "nested": { "a": [1, { "b": null }], "z": "" }, "empty": {}, "list": [] }),
    ];
    let jobs: Vec<NewJob> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| NewJob {
            payload: p.clone(),
            ..nj(&format!("p{i}"))
        })
        .collect();
    configure(s, q, conc(100)).await;
    let stored = enqueue(s, q, jobs, T0).await;
    let leases = claim(s, q, 100, T0).await;
    let listed = s
        .job_list(ListParams {
            queue: q.into(),
            key: None,
            state: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("job_list");
    assert_eq!(leases.len(), payloads.len());
    assert_eq!(listed.len(), payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        let id = format!("p{i}");
        assert_eq!(&stored[i].payload, p, "payload of {id} as enqueued");
        assert_eq!(
            &get(s, &id).await.payload,
            p,
            "payload of {id} from job_get"
        );
        assert_eq!(&leases[i].job.payload, p, "payload of {id} as claimed");
        assert_eq!(&listed[i].payload, p, "payload of {id} as listed");
    }

    // Same JSON value, keys written in another order: a replay.
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 3}}"#).expect("json");
    let b: Value = serde_json::from_str(r#"{"a": {"x": 3, "y": 2}, "b": 1}"#).expect("json");
    let first = enqueue(
        s,
        q,
        vec![NewJob {
            payload: a,
            ..nj("ordered")
        }],
        T0,
    )
    .await;
    let replay = try_enqueue(
        s,
        q,
        vec![NewJob {
            payload: b,
            ..nj("ordered")
        }],
        T0 + 1,
    )
    .await
    .unwrap_or_else(|e| panic!("a replay with reordered object keys was refused: {e:?}"));
    assert!(!replay[0].created);
    assert_eq!(replay[0].job.seq, first[0].seq);
}

/// Sections 3 and 4.1: numbers in a payload come back bit for bit, including
/// floats that need all 17 significant digits (500 random finite `f64`s).
pub async fn payload_floats_are_kept_exactly<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "payload-floats";
    let mut rng = XorShift::new(7);
    let floats: Vec<f64> = (0..500)
        .map(|_| f64::from_bits(rng.next()))
        .filter(|f| f.is_finite())
        .collect();
    let payload = json!(floats);
    enqueue(
        s,
        q,
        vec![NewJob {
            payload: payload.clone(),
            ..nj("floats")
        }],
        T0,
    )
    .await;
    let back = get(s, "floats").await.payload;
    let back: Vec<f64> = back
        .as_array()
        .unwrap_or_else(|| panic!("payload is no longer an array: {back}"))
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    let changed: Vec<String> = floats
        .iter()
        .zip(&back)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .map(|(a, b)| format!("{a:e} came back as {b:e}"))
        .collect();
    assert!(
        changed.is_empty(),
        "{} of {} payload floats changed in storage, e.g. {:?}",
        changed.len(),
        floats.len(),
        &changed[..changed.len().min(3)]
    );
}

/// Section 3: a batch naming one id twice is refused whole with `Invalid`
/// (`invalid_value`, naming the repeated `jobs[i].id`), whether the two
/// jobs are the same or differ, and even when the id is stored already (each
/// alone would be a replay): nothing of it is stored, no count changes, and a
/// queue it would have created does not appear.
pub async fn batch_with_a_repeated_id_is_refused_whole<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "batch-dup";
    let x0 = enqueue(s, q, vec![nj("x0")], T0).await.remove(0);
    let queues = || async {
        let mut list = s.queue_list().await.expect("queue_list");
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    };
    let before = queues().await;
    let total = |list: &[QueueInfo]| -> u64 {
        list.iter()
            .map(|i| {
                let c = &i.counts;
                c.scheduled + c.queued + c.running + c.succeeded + c.failed + c.cancelled
            })
            .sum()
    };
    assert_eq!(total(&before), 1);

    let cases: Vec<(&str, &str, Vec<NewJob>, &str)> = vec![
        (
            "the same job twice",
            q,
            vec![nj("r1"), nj("r2"), nj("r1")],
            "jobs[2].id",
        ),
        (
            "one id with two payloads",
            q,
            vec![
                nj("r1"),
                NewJob {
                    payload: json!("other"),
                    ..nj("r1")
                },
            ],
            "jobs[1].id",
        ),
        (
            "one id with two keys",
            q,
            vec![keyed("r1", "k"), nj("r1")],
            "jobs[1].id",
        ),
        (
            "a stored id twice",
            q,
            vec![nj("x0"), nj("x0")],
            "jobs[1].id",
        ),
        (
            "a repeated id after a replay",
            q,
            vec![nj("r3"), nj("x0"), at(nj("r3"), T0 + 5_000)],
            "jobs[2].id",
        ),
        (
            "a repeated id in a queue never used",
            "batch-dup-new",
            vec![nj("n1"), nj("n1")],
            "jobs[1].id",
        ),
    ];
    for (what, queue, jobs, field) in cases {
        let batch_ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        expect_invalid(
            try_enqueue_committed(s, queue, jobs, T0 + 10).await,
            field,
            &format!("a batch with {what}"),
        );
        for id in batch_ids.iter().filter(|id| *id != "x0") {
            assert_eq!(
                s.job_get(id).await.expect("job_get"),
                None,
                "a batch with {what} was refused, yet {id} was stored"
            );
        }
        let after = queues().await;
        assert_eq!(total(&after), 1, "a batch with {what} stored jobs");
        assert_eq!(after, before, "a batch with {what} changed the queues");
    }
    assert_eq!(get(s, "x0").await, x0, "the stored x0 is unchanged");
    match s.queue_get("batch-dup-new").await {
        Err(StoreError::QueueNotFound(_)) => {}
        other => panic!("a refused batch created its queue: {other:?}"),
    }

    let ok = enqueue(s, q, vec![nj("r1"), nj("r2")], T0 + 20).await;
    assert!(
        ok[0].seq > x0.seq && ok[1].seq == ok[0].seq + 1,
        "the same ids in a batch of distinct ids are accepted"
    );
}
