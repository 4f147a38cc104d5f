//! How handler failures end (section 7): a payload of the wrong shape fails
//! the job for good with a clear error, a panic fails the attempt and the
//! runner goes on, `Err` follows the queue's backoff, `Fail::fatal` is never
//! retried and `Fail::retry_after` picks the delay. Delays are checked on
//! the times the store recorded (a lower bound the rule guarantees).

mod support;

use std::time::Duration;

use orderly::{Fail, JobCx, JobState};
use serde::Deserialize;
use serde_json::{json, Value};
use support::*;

/// The handler's payload type.
#[derive(Debug, Deserialize)]
struct Email {
    to: String,
}

/// A payload that does not fit the handler's type fails its job at once and
/// for good, naming the type; the next job runs normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_of_the_wrong_shape_fails_the_job_for_good() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure("mail", retry_patch(10, 5))
        .await
        .expect("configure");
    o.handle("mail", 1, |cx: JobCx<Email>| async move {
        Ok::<_, Fail>(format!("sent to {}", cx.payload.to))
    })
    .expect("register");
    let bad = o
        .enqueue("mail", job("bad", json!({ "to": 42 })))
        .await
        .expect("enqueue");
    let missing = o
        .enqueue("mail", job("missing", json!(["not", "an", "object"])))
        .await
        .expect("enqueue");
    let good = o
        .enqueue("mail", job("good", json!({ "to": "a@example.com" })))
        .await
        .expect("enqueue");
    for id in [&bad.job.id, &missing.job.id] {
        let j = finished(&o, id).await;
        assert_eq!(j.state, JobState::Failed, "{j:?}");
        assert_eq!(j.attempt, 1, "a bad payload was retried: {j:?}");
        let err = j.error.clone().expect("an error");
        let msg = err["message"].as_str().expect("a message").to_string();
        assert!(
            msg.contains("failures::Email"),
            "the error does not name the type: {msg}"
        );
        assert_eq!(err["reason"], "bad_payload", "{err}");
        assert_eq!(attempts(&o, id).await.len(), 1);
    }
    let g = finished(&o, &good.job.id).await;
    assert_eq!(g.state, JobState::Succeeded, "{g:?}");
    assert_eq!(g.result, Some(json!("sent to a@example.com")));
    o.shutdown().await;
}

/// A handler that panics fails that attempt (retried per the policy) and
/// the runner takes the next job; a job that always panics ends `failed`
/// after its attempts, with the panic in its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_the_attempt_and_the_runner_goes_on() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure("p", retry_patch(10, 3))
        .await
        .expect("configure");
    let ran: Log<(String, u32)> = Log::default();
    {
        let ran = ran.clone();
        o.handle("p", 1, move |cx: JobCx<Value>| {
            let ran = ran.clone();
            async move {
                ran.push((cx.id.clone(), cx.attempt));
                let panics = cx.payload["panic"].as_str().unwrap_or("never");
                if panics == "always" || (panics == "once" && cx.attempt == 1) {
                    panic!("handler blew up on {}", cx.id);
                }
                Ok::<_, Fail>(json!({ "attempt": cx.attempt }))
            }
        })
        .expect("register");
    }
    let once = o
        .enqueue("p", job("once", json!({ "panic": "once" })))
        .await
        .expect("enqueue");
    let always = o
        .enqueue("p", job("always", json!({ "panic": "always" })))
        .await
        .expect("enqueue");
    let calm = o
        .enqueue("p", job("calm", json!({})))
        .await
        .expect("enqueue");

    let j = finished(&o, &once.job.id).await;
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert_eq!(j.attempt, 2, "{j:?}");
    let first = &attempts(&o, "once").await[0];
    assert_eq!(first.outcome.as_deref(), Some("failed"), "{first:?}");
    let msg = first.error.as_ref().expect("error")["message"].to_string();
    assert!(msg.contains("panicked"), "{msg}");

    let j = finished(&o, &always.job.id).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert_eq!(j.attempt, 3, "{j:?}");
    let msg = j.error.expect("error")["message"].to_string();
    assert!(msg.contains("panicked"), "{msg}");

    let j = finished(&o, &calm.job.id).await;
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert_eq!(
        ran.get().iter().filter(|(id, _)| id == "always").count(),
        3,
        "{:?}",
        ran.get()
    );
    // The runner is still alive after the panics.
    let later = o
        .enqueue("p", job("later", json!({})))
        .await
        .expect("enqueue");
    assert_eq!(finished(&o, &later.job.id).await.state, JobState::Succeeded);
    o.shutdown().await;
}

/// `Err` is retried after the queue's backoff until the attempts run out;
/// `Fail::fatal` fails the job on its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn err_retries_with_backoff_and_fatal_does_not() {
    let dir = tempdir();
    let o = open(&dir).await;
    // 200 ms, jittered into [160, 240).
    o.configure("r", retry_patch(200, 3))
        .await
        .expect("configure");
    o.handle("r", 1, |cx: JobCx<Value>| async move {
        match cx.payload["kind"].as_str() {
            Some("fatal") => Err(Fail::fatal("this cannot work")),
            Some("flaky") => Err(Fail::from(format!("flaky on attempt {}", cx.attempt))),
            _ => Ok(Value::Null),
        }
    })
    .expect("register");
    let flaky = o
        .enqueue("r", job("flaky", json!({ "kind": "flaky" })))
        .await
        .expect("enqueue");
    let fatal = o
        .enqueue("r", job("fatal", json!({ "kind": "fatal" })))
        .await
        .expect("enqueue");

    let j = finished(&o, &fatal.job.id).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert_eq!(j.attempt, 1, "a fatal failure was retried: {j:?}");
    assert_eq!(j.error, Some(json!({ "message": "this cannot work" })));

    let j = finished(&o, &flaky.job.id).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert_eq!(j.attempt, 3, "{j:?}");
    assert_eq!(j.error, Some(json!({ "message": "flaky on attempt 3" })));
    let history = attempts(&o, "flaky").await;
    assert_eq!(history.len(), 3, "{history:?}");
    for w in history.windows(2) {
        let ended = w[0].ended_at.expect("ended");
        let gap = w[1].started_at - ended;
        assert!(
            gap >= 160,
            "attempt {} started {gap} ms after attempt {} failed: the 200 ms backoff (jitter down to 160) was not kept",
            w[1].attempt,
            w[0].attempt
        );
    }
    o.shutdown().await;
}

/// `Fail::retry_after` replaces the queue's backoff: the next attempt waits
/// (state `scheduled`, `run_at` that far ahead) and then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_delays_the_next_attempt() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure("ra", retry_patch(10, 3))
        .await
        .expect("configure");
    o.handle("ra", 1, |cx: JobCx<Value>| async move {
        if cx.attempt == 1 {
            Err(Fail::retry_after("busy", Duration::from_millis(700)))
        } else {
            Ok(json!("done"))
        }
    })
    .expect("register");
    let e = o
        .enqueue("ra", job("later", json!({})))
        .await
        .expect("enqueue");
    let waiting = wait_for_state(&o, &e.job.id, JobState::Scheduled).await;
    let first = attempts(&o, "later").await[0].clone();
    let failed_at = first.ended_at.expect("the first attempt ended");
    assert_eq!(
        waiting.run_at - failed_at,
        700,
        "run_at is not 700 ms after the failure: {waiting:?}"
    );
    let j = finished(&o, &e.job.id).await;
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert_eq!(j.attempt, 2);
    let second = attempts(&o, "later").await[1].clone();
    assert!(
        second.started_at - failed_at >= 700,
        "the retry started {} ms after the failure",
        second.started_at - failed_at
    );
    o.shutdown().await;
}
