//! `orderly job ID`'s first line: where a job stands, why it waits and when
//! it likely starts, in plain words (contract section 4.1).

use std::time::{Duration, SystemTime};

use orderly_client::proto::{JobView, WaitingOnView};

/// A time of the API as a `SystemTime`; `None` if it cannot be read.
fn time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Seconds from `now` to `t` (0 if `t` passed), as whole seconds.
fn secs_until(t: SystemTime, now: SystemTime) -> u64 {
    let d = t.duration_since(now).unwrap_or(Duration::ZERO);
    (d.as_millis() as u64).div_ceil(1000)
}

/// A span of seconds in words: `14 s`, `3 min`, `2 h`.
fn span(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h", secs.div_ceil(3600)),
    }
}

/// A range of seconds in words: `10–14 s`, or one figure when both agree.
fn span_range(lo: u64, hi: u64) -> String {
    let (a, b) = (span(lo), span(hi));
    if a == b {
        return a;
    }
    match (a.split_once(' '), b.split_once(' ')) {
        (Some((x, ua)), Some((y, ub))) if ua == ub => format!("{x}–{y} {ua}"),
        _ => format!("{a} – {b}"),
    }
}

/// The summary line of `job` read at `now`, e.g. `queued, 3 ahead; waiting
/// for job 4f0e… of key acct-7; likely starts in 10–14 s (estimate)`.
pub fn summary(job: &JobView, now: SystemTime) -> String {
    let mut parts = Vec::new();
    let state = job.state.as_str();
    parts.push(match job.position {
        Some(p) => format!("{state}, {p} ahead"),
        None => state.to_string(),
    });
    let key = job.key.as_deref().unwrap_or("");
    if let Some(w) = &job.waiting_on {
        let in_ = |t: &str| match time(t) {
            Some(t) => format!("in {}", span(secs_until(t, now))),
            None => format!("at {t}"),
        };
        parts.push(match w {
            WaitingOnView::Scheduled { until } => format!("scheduled to start {}", in_(until)),
            WaitingOnView::RetryBackoff { until } => {
                format!("retries after its backoff, {}", in_(until))
            }
            WaitingOnView::Key { job: head } => {
                let behind = match job.key_position {
                    Some(n) if n > 1 => format!(" ({n} of its key ahead)"),
                    _ => String::new(),
                };
                format!("waiting for job {head} of key {key}{behind}")
            }
            WaitingOnView::Concurrency { limit } => {
                format!("the queue runs its limit of {limit} at once")
            }
            WaitingOnView::Line if job.position == Some(0) => "next in line".into(),
            WaitingOnView::Line => "earlier jobs are handed out first".into(),
            WaitingOnView::Paused => "the queue is paused".into(),
            WaitingOnView::NoWorker => "no worker has asked for work recently".into(),
        });
        parts.push(match &job.eta {
            Some(eta) => match (time(&eta.earliest), time(&eta.latest)) {
                (Some(a), Some(b)) => format!(
                    "likely starts in {} (estimate)",
                    span_range(secs_until(a, now), secs_until(b, now))
                ),
                _ => format!("likely starts {}–{} (estimate)", eta.earliest, eta.latest),
            },
            None => "no estimate yet".into(),
        });
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderly_client::proto::{EtaView, JobState};
    use serde_json::json;

    fn at(secs: u64) -> String {
        humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .to_string()
    }

    fn job(v: serde_json::Value) -> JobView {
        let mut base = json!({
            "id": "j", "queue": "q", "key": null, "seq": 1, "state": "queued",
            "position": 0, "payload": null, "attempt": 0, "max_attempts": 5,
            "timeout_ms": null, "enqueued_at": at(0), "run_at": at(0),
            "started_at": null, "finished_at": null, "progress": null,
            "result": null, "error": null, "cancel_requested": false,
            "worker": null, "lease_expires_at": null, "start_no": null
        });
        for (k, x) in v.as_object().expect("object") {
            base[k] = x.clone();
        }
        serde_json::from_value(base).expect("a job view")
    }

    const NOW: u64 = 1_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn a_job_behind_its_key_with_an_estimate() {
        let mut j = job(json!({"key": "acct-7", "position": 3, "key_position": 1}));
        j.waiting_on = Some(WaitingOnView::Key { job: "4f0e".into() });
        j.eta = Some(EtaView {
            earliest: at(NOW + 10),
            latest: at(NOW + 14),
        });
        assert_eq!(
            summary(&j, now()),
            "queued, 3 ahead; waiting for job 4f0e of key acct-7; likely starts in 10–14 s (estimate)"
        );
    }

    #[test]
    fn every_reason_in_words() {
        let cases = [
            (
                WaitingOnView::Scheduled {
                    until: at(NOW + 300),
                },
                "scheduled to start in 5 min",
            ),
            (
                WaitingOnView::RetryBackoff { until: at(NOW + 2) },
                "retries after its backoff, in 2 s",
            ),
            (
                WaitingOnView::Concurrency { limit: 2 },
                "the queue runs its limit of 2 at once",
            ),
            (WaitingOnView::Line, "next in line"),
            (WaitingOnView::Paused, "the queue is paused"),
            (
                WaitingOnView::NoWorker,
                "no worker has asked for work recently",
            ),
        ];
        for (reason, words) in cases {
            let mut j = job(json!({}));
            j.waiting_on = Some(reason.clone());
            assert_eq!(
                summary(&j, now()),
                format!("queued, 0 ahead; {words}; no estimate yet"),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn a_job_that_does_not_wait_is_its_state() {
        let mut j = job(json!({"position": null}));
        j.state = JobState::Running;
        assert_eq!(summary(&j, now()), "running");
    }
}
