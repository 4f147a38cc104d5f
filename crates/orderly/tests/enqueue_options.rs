//! What an application can ask for when it enqueues or registers (a delay,
//! a per-attempt timeout), and the clear errors it gets for what cannot
//! work (a bad queue name or job id, a data dir already open).

mod support;

use std::time::Duration;

use orderly::{Error, Fail, JobCx, JobState, NewJob, Orderly, WaitingOn};
use serde_json::{json, Value};
use support::*;

/// A delayed job waits (`scheduled`, `run_at` that far after its
/// acceptance) and then runs; it does not start before `run_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_waits_then_runs() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.handle("d", 1, |_: JobCx<Value>| async {
        Ok::<_, Fail>(Value::Null)
    })
    .expect("register");
    let e = o
        .enqueue(
            "d",
            job("later", json!({})).delay(Duration::from_millis(400)),
        )
        .await
        .expect("enqueue");
    assert_eq!(e.job.state, JobState::Scheduled, "{:?}", e.job);
    assert_eq!(e.job.run_at - e.job.enqueued_at, 400, "{:?}", e.job);
    let j = finished(&o, &e.job.id).await;
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert!(
        j.started_at.expect("started") >= j.run_at,
        "started before its run_at: {j:?}"
    );
    o.shutdown().await;
}

/// A run past the job's timeout is cancelled and fails its attempt (reason
/// `timeout`), retried while attempts remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_the_run_and_fails_the_attempt() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure("t", retry_patch(10, 2))
        .await
        .expect("configure");
    o.handle("t", 1, |cx: JobCx<Value>| async move {
        if cx.attempt == 1 {
            cx.cancelled().await;
            return Err(Fail::from("gave up"));
        }
        Ok(json!("in time"))
    })
    .expect("register");
    let e = o
        .enqueue(
            "t",
            job("slow", json!({})).timeout(Duration::from_millis(200)),
        )
        .await
        .expect("enqueue");
    let j = finished(&o, &e.job.id).await;
    assert_eq!((j.state, j.attempt), (JobState::Succeeded, 2), "{j:?}");
    let first = &attempts(&o, "slow").await[0];
    let err = first.error.clone().expect("an error");
    assert_eq!(err["reason"], "timeout", "{err}");
    o.shutdown().await;
}

/// Names and ids that cannot work are refused with an error naming them,
/// and nothing is enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_refused_with_a_clear_error() {
    let dir = tempdir();
    let o = open(&dir).await;
    let e = o
        .handle("no spaces", 1, |_: JobCx<Value>| async {
            Ok::<_, Fail>(Value::Null)
        })
        .expect_err("a queue name with a space");
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("queue"), "{e}");

    let e = o
        .enqueue("q", job("not/an/id", json!({})))
        .await
        .expect_err("an id with slashes");
    assert!(e.to_string().contains("id"), "{e}");
    let e = o
        .enqueue("bad queue", NewJob::new(&json!({})).expect("payload"))
        .await
        .expect_err("a queue name with a space");
    assert!(e.to_string().contains("queue"), "{e}");
    assert!(o.jobs("q", None, 10).await.expect("list").is_empty());
    o.shutdown().await;
}

/// A data dir already open (here or in another process) is refused, and
/// the refusal says why; once closed it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_one_dir_is_refused() {
    let dir = tempdir();
    let o = open(&dir).await;
    let err = match Orderly::open(dir.path()).await {
        Ok(_) => panic!("a second open of one data dir succeeded"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("lock"), "{err}");
    o.shutdown().await;
    let again = open(&dir).await;
    again.shutdown().await;
}

/// `enqueue` answers a waiting job as `job` reads it right after: its
/// position, its key's line and why it waits (the store's answer, explained
/// by the same service as a read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_answer_says_why_the_job_waits() {
    let dir = tempdir();
    let o = open(&dir).await;
    let first = o
        .enqueue("w", job("first", json!({})).key("acct"))
        .await
        .expect("enqueue");
    let second = o
        .enqueue("w", job("second", json!({})).key("acct"))
        .await
        .expect("enqueue");
    assert_eq!(first.job.key_position, Some(0), "{:?}", first.job);
    assert_eq!(second.job.position, Some(1), "{:?}", second.job);
    assert_eq!(second.job.key_position, Some(1), "{:?}", second.job);
    assert_eq!(
        second.job.waiting_on,
        Some(WaitingOn::Key {
            job: "first".into()
        })
    );
    let read = o.job("second").await.expect("job");
    assert_eq!(
        (read.position, read.key_position, &read.waiting_on),
        (
            second.job.position,
            second.job.key_position,
            &second.job.waiting_on
        )
    );
    o.shutdown().await;
}
