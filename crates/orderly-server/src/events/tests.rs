use orderly_core::{Changes, JobState, StateChange};
use orderly_proto::{EventKind, EventView};
use serde_json::json;

use super::*;

fn change(id: &str, from: Option<JobState>, to: JobState) -> StateChange {
    StateChange {
        id: id.into(),
        queue: "q".into(),
        key: None,
        seq: 1,
        from,
        to,
        at: 1_700_000_000_000,
        enqueued_at: 1_700_000_000_000,
        started_at: None,
        lease_lost: false,
    }
}

fn enqueue(hub: &EventHub, n: usize) {
    let jobs = (0..n)
        .map(|i| change(&format!("j{i}"), None, JobState::Queued))
        .collect();
    hub.publish(&Changes { jobs });
}

fn ids(events: &[Arc<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

fn hub(ring: usize) -> EventHub {
    EventHub::new(Config { ring, buffer: 16 })
}

#[test]
fn ids_count_up_from_one_and_the_json_says_what_happened() {
    let hub = hub(10);
    hub.publish(&Changes {
        jobs: vec![
            change("a", None, JobState::Queued),
            change("a", Some(JobState::Queued), JobState::Running),
        ],
    });
    let s = hub.subscribe(Some(0));
    assert_eq!(ids(&s.replay), [1, 2]);
    assert!(s.gap.is_none());
    let second: EventView = serde_json::from_str(s.replay[1].json()).unwrap();
    assert_eq!(second.id, 2);
    assert_eq!(second.kind, EventKind::Started);
    assert_eq!(second.queue, "q");
    assert_eq!(second.at, "2023-11-14T22:13:20.000Z");
    let job = second.job.unwrap();
    assert_eq!(
        (job.id.as_str(), job.state),
        ("a", orderly_proto::JobState::Running)
    );
    assert_eq!(hub.last_id(), 2);
}

#[test]
fn replay_after_an_id_gives_exactly_the_later_events() {
    let hub = hub(10);
    enqueue(&hub, 6);
    let s = hub.subscribe(Some(4));
    assert_eq!(ids(&s.replay), [5, 6]);
    assert!(s.gap.is_none());
    assert_eq!(s.horizon, 6);
    assert!(hub.subscribe(Some(6)).replay.is_empty());
    assert!(hub.subscribe(None).replay.is_empty());
}

#[test]
fn an_id_older_than_the_ring_says_gap_and_replays_what_is_held() {
    let hub = hub(3);
    enqueue(&hub, 7); // holds 5, 6, 7
    let s = hub.subscribe(Some(2));
    let gap = s.gap.expect("a gap");
    assert_eq!(
        (gap.from, gap.oldest, gap.reason.as_str()),
        (2, 5, "too_old")
    );
    assert_eq!(ids(&s.replay), [5, 6, 7]);
    // Right at the edge: 4 is the last one lost, so after 4 there is no gap.
    let s = hub.subscribe(Some(4));
    assert!(s.gap.is_none());
    assert_eq!(ids(&s.replay), [5, 6, 7]);
}

#[test]
fn an_id_from_before_a_restart_says_gap_unknown() {
    let hub = hub(10);
    enqueue(&hub, 2);
    let s = hub.subscribe(Some(900));
    let gap = s.gap.expect("a gap");
    assert_eq!(
        (gap.from, gap.oldest, gap.reason.as_str()),
        (900, 1, "unknown")
    );
    assert_eq!(ids(&s.replay), [1, 2]);
}

#[tokio::test]
async fn live_events_follow_the_replay_without_overlap() {
    let hub = hub(10);
    enqueue(&hub, 3);
    let mut s = hub.subscribe(Some(1));
    enqueue(&hub, 2);
    assert_eq!(ids(&s.replay), [2, 3]);
    assert_eq!(s.horizon, 3);
    assert_eq!(s.live.recv().await.unwrap().id, 4);
    assert_eq!(s.live.recv().await.unwrap().id, 5);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_the_buffer_is_told() {
    let hub = EventHub::new(Config {
        ring: 100,
        buffer: 4,
    });
    let mut s = hub.subscribe(None);
    enqueue(&hub, 10);
    assert!(matches!(
        s.live.recv().await,
        Err(broadcast::error::RecvError::Lagged(6))
    ));
}

#[test]
fn progress_is_published_only_for_jobs_seen_running() {
    let hub = hub(10);
    assert!(!hub.progress("a", &json!(0.5), 1));
    hub.publish(&Changes {
        jobs: vec![change("a", Some(JobState::Queued), JobState::Running)],
    });
    assert!(hub.progress("a", &json!({"done": 1, "total": 2}), 1));
    hub.publish(&Changes {
        jobs: vec![change("a", Some(JobState::Running), JobState::Succeeded)],
    });
    assert!(!hub.progress("a", &json!(1), 1));
    let s = hub.subscribe(Some(0));
    let kinds: Vec<_> = s.replay.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Started,
            EventKind::Progress,
            EventKind::Succeeded
        ]
    );
    let p: EventView = serde_json::from_str(s.replay[1].json()).unwrap();
    assert_eq!(p.progress, Some(json!({"done": 1, "total": 2})));
}

#[test]
fn filters_match_queue_and_job() {
    let e = Event {
        id: 1,
        kind: EventKind::Enqueued,
        queue: "q".into(),
        job: Some("a".into()),
        at: 0,
        detail: None,
        progress: None,
        json: OnceLock::new(),
    };
    let f = |queue: Option<&str>, job: Option<&str>| Filter {
        queue: queue.map(Into::into),
        job: job.map(Into::into),
    };
    assert!(f(None, None).matches(&e));
    assert!(f(Some("q"), Some("a")).matches(&e));
    assert!(!f(Some("other"), None).matches(&e));
    assert!(!f(None, Some("b")).matches(&e));
    let queue_event = Event {
        job: None,
        json: OnceLock::new(),
        ..e
    };
    assert!(f(Some("q"), None).matches(&queue_event));
    assert!(!f(None, Some("a")).matches(&queue_event));
}

/// Publishing makes no JSON: an event's JSON is made when it is first
/// asked for (a server nobody watches serializes nothing), once, and every
/// later call (another subscriber, a replay) gets the same text.
#[test]
fn an_events_json_is_made_on_first_use_and_kept() {
    let hub = hub(10);
    enqueue(&hub, 2);
    hub.queue_configured("q", 1_700_000_000_000);
    let s = hub.subscribe(Some(0));
    assert_eq!(ids(&s.replay), [1, 2, 3]);
    assert!(
        s.replay.iter().all(|e| e.json.get().is_none()),
        "no event was serialized when it was published"
    );
    let first = s.replay[0].json();
    let view: EventView = serde_json::from_str(first).unwrap();
    assert_eq!((view.id, view.kind), (1, EventKind::Enqueued));
    assert_eq!(view.job.map(|j| j.id), Some("j0".to_string()));
    assert!(
        std::ptr::eq(first, s.replay[0].json()),
        "made once, then kept"
    );
    assert!(s.replay[1].json.get().is_none(), "only the event asked for");
    let queue: EventView = serde_json::from_str(s.replay[2].json()).unwrap();
    assert_eq!((queue.id, queue.kind), (3, EventKind::QueueConfigured));
    assert!(queue.job.is_none() && queue.progress.is_none());
}
