//! What the server recorded of the starts it made: `orderly starts QUEUE`
//! prints a queue's start log (every start in `start_no` order, paged
//! through to the end or to `--limit`), and `orderly job ID` prints the
//! job's attempts in plain words under the job.

use std::time::Duration;

use orderly_client::proto::{AttemptView, StartView};
use orderly_client::Client;

use crate::ServerArgs;

/// Most starts asked for in one request (the server's largest page).
const PAGE: u32 = 1_000;

/// `orderly starts` flags.
#[derive(Debug, clap::Args)]
pub struct StartsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Queue name.
    pub queue: String,
    /// Only starts after this start number.
    #[arg(long)]
    pub after: Option<i64>,
    /// Most starts to show (default: the whole log).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// A table row: `START_NO SEQ ATTEMPT KEY WORKER STARTED_AT JOB`.
fn row(s: &StartView) -> String {
    format!(
        "{:>8} {:>8} {:>7}  {:<16} {:<24} {:<24}  {}",
        s.start_no,
        s.seq,
        s.attempt,
        s.key.as_deref().unwrap_or("-"),
        s.worker,
        s.started_at,
        s.job_id
    )
}

pub async fn starts(a: StartsArgs) -> anyhow::Result<()> {
    let client = a.server.client();
    println!(
        "{:>8} {:>8} {:>7}  {:<16} {:<24} {:<24}  JOB",
        "START_NO", "SEQ", "ATTEMPT", "KEY", "WORKER", "STARTED_AT"
    );
    let mut after = a.after;
    let mut shown: u64 = 0;
    loop {
        let want = a
            .limit
            .map_or(u64::from(PAGE), |l| (l - shown).min(u64::from(PAGE)));
        // `want` is at most PAGE, so it fits.
        let page = client.starts(&a.queue, after, want as u32).await?;
        for s in &page.starts {
            println!("{}", row(s));
        }
        shown += page.starts.len() as u64;
        match page.next_after {
            Some(n) if a.limit.is_none_or(|l| shown < l) => after = Some(n),
            Some(n) => {
                eprintln!("more: orderly starts {} --after {n}", a.queue);
                break;
            }
            None => break,
        }
    }
    if shown == 0 {
        eprintln!("(no starts recorded in {})", a.queue);
    }
    Ok(())
}

/// An error as words: a JSON string as it is, anything else as compact JSON.
fn error_words(e: &serde_json::Value) -> String {
    match e {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How long from `start` to `end` (RFC 3339), as `1.2s`; `None` if either
/// does not parse or time ran backwards.
fn took(start: &str, end: &str) -> Option<String> {
    let start = humantime::parse_rfc3339(start).ok()?;
    let end = humantime::parse_rfc3339(end).ok()?;
    let d = end.duration_since(start).ok()?;
    Some(if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    })
}

/// One attempt in plain words.
fn attempt_words(a: &AttemptView) -> String {
    let mut out = format!(
        "attempt {} (start {}) by {}: started {}",
        a.attempt, a.start_no, a.worker, a.started_at
    );
    match (&a.ended_at, a.outcome) {
        (Some(end), Some(outcome)) => {
            out.push_str(&format!(", {outcome} {end}"));
            if let Some(t) = took(&a.started_at, end) {
                out.push_str(&format!(" after {t}"));
            }
        }
        (Some(end), None) => out.push_str(&format!(", ended {end}")),
        (None, _) => out.push_str(", still running"),
    }
    if let Some(e) = &a.error {
        out.push_str(&format!(": {}", error_words(e)));
    }
    out
}

/// Prints job `id`'s attempts under what `orderly job` printed of it.
pub async fn print_attempts(client: &Client, id: &str) -> anyhow::Result<()> {
    let attempts = client.attempts(id).await?.attempts;
    println!();
    if attempts.is_empty() {
        println!("no attempts yet");
    } else {
        println!("attempts:");
        for a in &attempts {
            println!("  {}", attempt_words(a));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use orderly_client::proto::{AttemptOutcome, AttemptView};
    use serde_json::json;

    use super::attempt_words;

    fn attempt(ended: Option<&str>, outcome: Option<AttemptOutcome>) -> AttemptView {
        AttemptView {
            attempt: 2,
            start_no: 7,
            worker: "w1".into(),
            started_at: "2026-01-02T03:04:05.000Z".into(),
            ended_at: ended.map(Into::into),
            outcome,
            error: None,
        }
    }

    /// Every shape of an attempt reads as a sentence with what is known of it.
    #[test]
    fn attempts_read_as_plain_words() {
        assert_eq!(
            attempt_words(&attempt(None, None)),
            "attempt 2 (start 7) by w1: started 2026-01-02T03:04:05.000Z, still running"
        );
        let mut failed = attempt(
            Some("2026-01-02T03:04:06.500Z"),
            Some(AttemptOutcome::Failed),
        );
        failed.error = Some(json!("exit status 3"));
        assert_eq!(
            attempt_words(&failed),
            "attempt 2 (start 7) by w1: started 2026-01-02T03:04:05.000Z, \
             failed 2026-01-02T03:04:06.500Z after 1.5s: exit status 3"
        );
        failed.error = Some(json!({"reason": "lease_expired"}));
        assert!(attempt_words(&failed).ends_with(r#": {"reason":"lease_expired"}"#));
        let ok = attempt(
            Some("2026-01-02T03:04:05.250Z"),
            Some(AttemptOutcome::Succeeded),
        );
        assert!(attempt_words(&ok).ends_with("succeeded 2026-01-02T03:04:05.250Z after 250ms"));
    }
}
