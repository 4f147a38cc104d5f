//! `orderly job ID --follow`: a job's state changes and progress, live,
//! from `GET /v1/events`, until the job finishes.

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use orderly_client::proto::{EventKind, EventView, JobView};
use orderly_client::{Client, EventsQuery, StreamItem};
use serde_json::Value;

/// Longest a stream may send nothing of interest before it is opened again
/// (keep-alive comments do not count, so an idle job reconnects this often).
const SILENCE: Duration = Duration::from_secs(120);

/// Steps of a bar for a fraction in 0..1.
const FRACTION_STEPS: u64 = 1000;

/// A numeric progress: `(done, total)`, from `{"done": n, "total": m}` or a
/// fraction in 0..1 (as `FRACTION_STEPS` steps); `None` for anything else.
pub fn numeric_progress(p: &Value) -> Option<(u64, u64)> {
    if let Some(f) = p.as_f64() {
        return (0.0..=1.0)
            .contains(&f)
            .then(|| ((f * FRACTION_STEPS as f64).round() as u64, FRACTION_STEPS));
    }
    let done = p.get("done")?.as_f64()?;
    let total = p.get("total")?.as_f64()?;
    (done >= 0.0 && total > 0.0 && done.is_finite() && total.is_finite())
        .then(|| (done.min(total) as u64, total as u64))
}

fn finished(state: &str) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&state)
}

/// Follows job `id`: prints each change, draws progress, and when the job
/// finishes prints it and returns (an error unless it succeeded).
pub async fn follow(client: &Client, id: &str) -> anyhow::Result<()> {
    let mut bar: Option<ProgressBar> = None;
    let mut last_event_id = None;
    let mut last_state = String::new();
    loop {
        // Subscribe before reading the job, so no change in between is missed.
        let mut stream = client
            .events(&EventsQuery {
                job: Some(id.to_string()),
                last_event_id,
                ..Default::default()
            })
            .await?;
        let job = client.job(id).await?;
        if job.state.as_str() != last_state {
            say(&bar, &format!("{}: {}", job.id, job.state.as_str()));
            last_state = job.state.as_str().to_string();
        }
        if finished(&last_state) {
            return done(bar, job);
        }
        // The server sends a keep-alive comment every 15 s; a stream silent
        // for much longer than that is gone (a network cut): resume it.
        while let Ok(item) = tokio::time::timeout(SILENCE, stream.next()).await {
            let Some(item) = item? else { break };
            match item {
                StreamItem::Event(e) => {
                    show(&mut bar, &e);
                    if let Some(j) = &e.job {
                        last_state = j.state.as_str().to_string();
                    }
                    if finished(&last_state) {
                        let job = client.job(id).await?;
                        return done(bar, job);
                    }
                }
                StreamItem::Gap(g) => say(
                    &bar,
                    &format!(
                        "(events {}..{} are no longer held by the server; reading the job again)",
                        g.from + 1,
                        g.oldest
                    ),
                ),
                StreamItem::Dropped(d) => say(&bar, &format!("(reconnecting: {})", d.reason)),
            }
        }
        last_event_id = stream.last_event_id;
        // The server ended the stream (a restart, a drop): resume shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn say(bar: &Option<ProgressBar>, line: &str) {
    match bar {
        // `println` on a hidden bar (stderr not a terminal) prints nothing.
        Some(b) => b.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

fn show(bar: &mut Option<ProgressBar>, e: &EventView) {
    let state = e.job.as_ref().map_or("", |j| j.state.as_str());
    if e.kind != EventKind::Progress {
        say(bar, &format!("{} {} ({state})", e.at, e.kind.as_str()));
        return;
    }
    let Some(p) = &e.progress else { return };
    match numeric_progress(p) {
        Some((done, total)) => {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(total);
                b.set_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            b.set_length(total);
            b.set_position(done);
        }
        None => say(bar, &format!("{} progress: {p}", e.at)),
    }
}

fn done(bar: Option<ProgressBar>, job: JobView) -> anyhow::Result<()> {
    if let Some(b) = bar {
        b.finish();
    }
    println!("{}", serde_json::to_string_pretty(&job)?);
    match job.state.as_str() {
        "succeeded" => Ok(()),
        s => bail!("job {} {s}", job.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_progress_reads_counts_and_fractions_only() {
        assert_eq!(
            numeric_progress(&json!({"done": 3, "total": 4})),
            Some((3, 4))
        );
        assert_eq!(
            numeric_progress(&json!({"done": 9, "total": 4})),
            Some((4, 4))
        );
        assert_eq!(numeric_progress(&json!(0.25)), Some((250, 1000)));
        assert_eq!(numeric_progress(&json!(1)), Some((1000, 1000)));
        assert_eq!(numeric_progress(&json!(7)), None);
        assert_eq!(numeric_progress(&json!({"done": 1, "total": 0})), None);
        assert_eq!(numeric_progress(&json!({"done": -1, "total": 2})), None);
        assert_eq!(numeric_progress(&json!("half")), None);
        assert_eq!(numeric_progress(&json!({"step": "upload"})), None);
    }
}
