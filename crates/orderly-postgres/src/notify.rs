//! Wake-ups across nodes, through PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! - The **notifier** ([`Notifier`], [`run_notifier`]): after every
//!   committed write whose changes could wake someone (a job that may now
//!   start, a finished job, a newly scheduled job), the store hands its
//!   [`Wakeups`] to the notifier, which sends `SELECT pg_notify(channel,
//!   payload)` on a connection of its own, outside the write's transaction
//!   (a `NOTIFY` inside it would take PostgreSQL's commit-time notify lock,
//!   serializing every notifying commit). It **coalesces**: while one
//!   `NOTIFY` is in flight, later summaries merge into one pending payload
//!   (counts summed per queue, finished ids joined), sent as soon as the
//!   previous one returns; an idle notifier sends at once, with no timer.
//! - The **listener** ([`run_listener`]): a dedicated connection that
//!   `LISTEN`s on the channel and turns other nodes' payloads into
//!   [`External`] events. Its own payloads (`from` is this store) are
//!   ignored. When its connection drops it reconnects with backoff and then
//!   sends [`External::WakeAll`]: something may have been missed.
//!   A payload with `"unnumbered": true` (the SQL function `orderly.enqueue`,
//!   which inserts unnumbered rows in the application's transaction) kicks
//!   a numbering pass ([`run_numbering`]): one pass in flight, a stored
//!   permit for "again"; its real changes go out as
//!   [`External::Committed`].
//!
//! The channel is the schema's name. The payload is JSON, every field
//! optional, unknown ones ignored, an unparsable payload ignored:
//! `{"from": "<store uuid>", "queues": {"q": n}, "finished": ["id"],
//! "finished_overflow": bool, "scheduled": bool, "unnumbered": bool,
//! "everything": bool}`. It stays under [`MAX_PAYLOAD`] bytes: past that the
//! finished ids are dropped (`finished_overflow`: receivers wake every job
//! waiter), and past that again it says `everything` (wake every waiter).
//!
//! A notification lost (the notifier's connection down, the listener
//! reconnecting) costs a claimer its wait until its next recheck (10 s):
//! nothing is lost in storage, only a wake-up is late.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderly_core::{External, Wakeups};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// A payload stays below this many bytes (PostgreSQL's limit is 8,000).
pub(crate) const MAX_PAYLOAD: usize = 7_900;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The notifier's inbox: one pending summary, merged into while a `NOTIFY`
/// is in flight.
#[derive(Default)]
pub(crate) struct Notifier {
    pending: Mutex<Option<Wakeups>>,
    kick: Notify,
}

impl Notifier {
    /// Queues `w` for the next `NOTIFY` (merged with what waits already).
    pub fn send(&self, w: Wakeups) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.as_mut() {
                Some(p) => p.merge(w),
                None => *pending = Some(w),
            }
        }
        self.kick.notify_one();
    }

    fn take(&self) -> Option<Wakeups> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The payload for `w`, sent by store `from`, below [`MAX_PAYLOAD`] bytes.
pub(crate) fn encode(from: &str, w: &Wakeups) -> String {
    let mut v = json!({
        "from": from,
        "queues": w.queues,
        "finished": w.finished,
        "finished_overflow": w.finished_overflow,
        "scheduled": w.scheduled,
    });
    let s = v.to_string();
    if s.len() < MAX_PAYLOAD {
        return s;
    }
    v["finished"] = json!([]);
    v["finished_overflow"] = json!(true);
    let s = v.to_string();
    if s.len() < MAX_PAYLOAD {
        return s;
    }
    json!({"from": from, "everything": true}).to_string()
}

/// A payload as heard.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Heard {
    /// The sending store, if it said.
    pub from: Option<String>,
    /// Who to wake.
    pub wake: Wakeups,
    /// Unnumbered rows were committed: run a numbering pass.
    pub unnumbered: bool,
    /// Wake every waiter.
    pub everything: bool,
}

/// Reads a payload; `None` if it is not a JSON object.
pub(crate) fn decode(payload: &str) -> Option<Heard> {
    let v: Value = serde_json::from_str(payload).ok()?;
    let o = v.as_object()?;
    let flag = |name: &str| o.get(name).and_then(Value::as_bool).unwrap_or(false);
    let mut wake = Wakeups::default();
    if let Some(queues) = o.get("queues").and_then(Value::as_object) {
        for (q, n) in queues {
            let n = n
                .as_u64()
                .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX));
            wake.queues.insert(q.clone(), n);
        }
    }
    if let Some(ids) = o.get("finished").and_then(Value::as_array) {
        wake.finished = ids
            .iter()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect();
    }
    wake.finished_overflow = flag("finished_overflow");
    wake.scheduled = flag("scheduled");
    Some(Heard {
        from: o.get("from").and_then(Value::as_str).map(str::to_string),
        wake,
        unnumbered: flag("unnumbered"),
        everything: flag("everything"),
    })
}

/// Connects `config` with its connection driven by a task of its own.
async fn connect(config: &Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The next backoff after `d`.
fn longer(d: Duration) -> Duration {
    (d * 2).min(MAX_BACKOFF)
}

/// Sends the notifier's pending summaries on `channel`, one `NOTIFY` at a
/// time (see the module docs). Runs until aborted.
pub(crate) async fn run_notifier(
    notifier: Arc<Notifier>,
    config: Config,
    channel: String,
    from: String,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        notifier.kick.notified().await;
        while let Some(w) = notifier.take() {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = connect(&config).await.ok();
            }
            let payload = encode(&from, &w);
            let sent = match &client {
                Some(c) => c
                    .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                    .await
                    .is_ok(),
                None => false,
            };
            if sent {
                backoff = Duration::from_millis(50);
                continue;
            }
            // Keep it for the next try (merged with what comes meanwhile).
            client = None;
            notifier.send(w);
            tracing::debug!(%channel, "NOTIFY failed; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = longer(backoff);
        }
    }
}

/// Listens on `channel` and turns other stores' payloads into [`External`]
/// events on `out`; kicks `numbering` on `"unnumbered"`. Reconnects with
/// backoff, then sends [`External::WakeAll`]. Returns when `out` is closed.
pub(crate) async fn run_listener(
    config: Config,
    channel: String,
    from: String,
    out: mpsc::UnboundedSender<External>,
    numbering: Arc<Notify>,
) {
    let mut first = true;
    let mut backoff = Duration::from_millis(50);
    while !out.is_closed() {
        let (client, mut conn) = match config.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%channel, "LISTEN connection failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = longer(backoff);
                continue;
            }
        };
        let (heard_tx, mut heard) = mpsc::unbounded_channel::<String>();
        let poller = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if heard_tx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
            tracing::debug!(%channel, "LISTEN failed: {e}; retrying in {backoff:?}");
            poller.abort();
            tokio::time::sleep(backoff).await;
            backoff = longer(backoff);
            continue;
        }
        backoff = Duration::from_millis(50);
        if !first && out.send(External::WakeAll).is_err() {
            return;
        }
        first = false;
        while let Some(payload) = heard.recv().await {
            let Some(h) = decode(&payload) else {
                tracing::debug!(%channel, %payload, "ignored a notification that is not JSON");
                continue;
            };
            if h.from.as_deref() == Some(from.as_str()) {
                continue;
            }
            if h.unnumbered {
                numbering.notify_one();
            }
            let event = if h.everything {
                External::WakeAll
            } else if h.wake.is_empty() {
                continue;
            } else {
                External::Wake(h.wake)
            };
            if out.send(event).is_err() {
                return;
            }
        }
        // The connection ended: reconnect, then wake everything.
        poller.abort();
        drop(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_small() {
        let mut w = Wakeups::default();
        w.queues.insert("q".into(), 3);
        w.finished.push("a".into());
        w.scheduled = true;
        let h = decode(&encode("me", &w)).expect("decodes");
        assert_eq!(h.from.as_deref(), Some("me"));
        assert_eq!(h.wake, w);

        w.finished = (0..1_000).map(|i| format!("job-{i:08}")).collect();
        let p = encode("me", &w);
        assert!(p.len() < MAX_PAYLOAD);
        let h = decode(&p).expect("decodes");
        assert!(h.wake.finished.is_empty() && h.wake.finished_overflow);
        assert_eq!(h.wake.queues.get("q"), Some(&3));

        w.queues = (0..1_000).map(|i| (format!("queue-{i:08}"), 1)).collect();
        let p = encode("me", &w);
        assert!(p.len() < MAX_PAYLOAD);
        assert!(decode(&p).expect("decodes").everything);
    }

    #[test]
    fn foreign_payloads_are_read_leniently() {
        let h = decode(r#"{"queues":{"q":1},"unnumbered":true,"new":[1]}"#).expect("decodes");
        assert!(h.unnumbered && h.from.is_none());
        assert_eq!(h.wake.queues.get("q"), Some(&1));
        assert!(decode("not json").is_none());
        assert!(decode("[1]").is_none());
    }
}
