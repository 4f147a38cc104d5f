//! What a webhook's answer means for the job: the one place that maps HTTP
//! statuses and transport errors to a result or a [`Failure`].
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | success; the body (at most `max_response_bytes`) is the result: JSON if it parses, else the text, nothing → `null`; a larger body fails the attempt |
//! | 429, 503 | retried after `Retry-After` (delta-seconds or an HTTP-date); without a usable one, a plain retryable failure |
//! | 410 | fails the job, no retry |
//! | anything else (3xx included) | a retryable failure naming the status, with the body's tail |
//! | connection error | a retryable failure saying so |
//!
//! Every error is a JSON object with a `message` and a `kind` (`status`,
//! `response_too_large`, `connect`, `transport`, `timeout`, `cancelled`).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::handler::Failure;

/// Bytes of an error response's tail kept in the failure.
pub const ERROR_BODY_TAIL_BYTES: usize = 4 * 1024;
/// The longest `Retry-After` honoured (longer ones are cut to it): the
/// longest delay an Orderly server accepts on a report.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(365 * 86_400);

/// The outcome of a received answer; reads at most `max` bytes of its body.
pub async fn outcome(mut answer: Response, max: usize) -> Result<Value, Failure> {
    let status = answer.status();
    if status.is_success() {
        return match read_head(&mut answer, max).await {
            Ok(Some(body)) => Ok(result_value(&body)),
            Ok(None) => Err(Failure::retryable(json!({
                "message": format!(
                    "the webhook's response body is larger than the {max}-byte bound \
                     (max_response_bytes)"
                ),
                "kind": "response_too_large",
                "status": status.as_u16(),
                "max_response_bytes": max,
            }))),
            Err(e) => Err(Failure::retryable(json!({
                "message": format!(
                    "cannot read the webhook's response body (status {status}): {}",
                    error_chain(e)
                ),
                "kind": "transport",
                "status": status.as_u16(),
            }))),
        };
    }
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            retry_after(answer.headers(), SystemTime::now())
        }
        _ => None,
    };
    let location = status
        .is_redirection()
        .then(|| answer.headers().get(LOCATION))
        .flatten()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (tail, truncated) = read_tail(&mut answer, max, ERROR_BODY_TAIL_BYTES).await;

    let mut error = Map::new();
    error.insert("kind".into(), json!("status"));
    error.insert("status".into(), json!(status.as_u16()));
    error.insert("body".into(), json!(tail));
    if truncated {
        error.insert("body_truncated".into(), json!(true));
    }
    let answered = format!("the webhook answered {status}");
    let message = match (status, &retry_after, &location) {
        (StatusCode::GONE, _, _) => format!("{answered}: the job is not retried"),
        (_, Some(RetryAfter::Delay(d)), _) => {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            error.insert("retry_after_ms".into(), json!(ms));
            format!("{answered}; retrying after {ms} ms (Retry-After)")
        }
        (_, Some(RetryAfter::Unusable(raw)), _) => {
            error.insert("retry_after".into(), json!(raw));
            format!("{answered} with an unusable Retry-After {raw:?}")
        }
        (_, _, Some(to)) => {
            error.insert("location".into(), json!(to));
            format!("{answered} (redirects are not followed)")
        }
        _ => answered,
    };
    error.insert("message".into(), json!(message));
    let error = Value::Object(error);
    Err(match (status, retry_after) {
        (StatusCode::GONE, _) => Failure::fatal(error),
        (_, Some(RetryAfter::Delay(d))) => Failure::retry_after(error, d),
        _ => Failure::retryable(error),
    })
}

/// A request that got no answer: a connection error or another transport
/// failure.
pub fn transport_failure(e: reqwest::Error) -> Failure {
    let (kind, what) = if e.is_connect() {
        ("connect", "cannot connect to the webhook")
    } else {
        ("transport", "the webhook request failed")
    };
    Failure::retryable(json!({
        "message": format!("{what}: {}", error_chain(e)),
        "kind": kind,
    }))
}

/// An error and its sources, `: `-separated, without the URL (which may hold
/// a credential).
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut next = std::error::Error::source(&e);
    while let Some(err) = next {
        text.push_str(": ");
        text.push_str(&err.to_string());
        next = err.source();
    }
    text
}

/// A `Retry-After` header's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAfter {
    /// Retry after this long (capped at [`MAX_RETRY_AFTER`]; a date already
    /// past is zero).
    Delay(Duration),
    /// Present but neither delta-seconds nor an HTTP-date.
    Unusable(String),
}

/// Reads `Retry-After` at `now`: `None` when there is none.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<RetryAfter> {
    let raw = headers.get(RETRY_AFTER)?;
    let text = String::from_utf8_lossy(raw.as_bytes());
    let text = text.trim();
    Some(parse_retry_after(text, now).unwrap_or_else(|| RetryAfter::Unusable(text.to_string())))
}

/// `Retry-After`'s value: delta-seconds (digits only) or an HTTP-date.
pub fn parse_retry_after(text: &str, now: SystemTime) -> Option<RetryAfter> {
    let delay = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "later than the cap".
        text.parse::<u64>()
            .map_or(MAX_RETRY_AFTER, Duration::from_secs)
    } else {
        let at = httpdate::parse_http_date(text).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(RetryAfter::Delay(delay.min(MAX_RETRY_AFTER)))
}

/// Reads the whole body if it is at most `max` bytes (`None` if larger,
/// stopping at the bound).
async fn read_head(answer: &mut Response, max: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if answer
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if chunk.len() > max - body.len() {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Reads at most `max` bytes of the body, keeping the last `keep` as text;
/// `true` when some was left out (more than `keep`, or unread past `max`).
/// A read error ends the reading with what arrived.
async fn read_tail(answer: &mut Response, max: usize, keep: usize) -> (String, bool) {
    let mut tail = Vec::new();
    let mut read = 0usize;
    let mut truncated = false;
    while let Ok(Some(chunk)) = answer.chunk().await {
        let room = max.saturating_sub(read);
        let chunk = &chunk[..chunk.len().min(room)];
        read += chunk.len();
        tail.extend_from_slice(chunk);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
            truncated = true;
        }
        if read >= max {
            truncated = true;
            break;
        }
    }
    if truncated {
        // Start on a character, not inside one.
        let cut = tail
            .iter()
            .take(3)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count();
        tail.drain(..cut);
    }
    (String::from_utf8_lossy(&tail).trim().to_string(), truncated)
}

/// A 2xx body as the result: JSON if it parses, else the (trimmed) text;
/// nothing but whitespace → `null`.
fn result_value(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms of `Retry-After`, capped, a past date as zero, and junk.
    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = |s| parse_retry_after(s, now);
        assert_eq!(d("7"), Some(RetryAfter::Delay(Duration::from_secs(7))));
        assert_eq!(d("0"), Some(RetryAfter::Delay(Duration::ZERO)));
        assert_eq!(
            d("99999999999999999999999"),
            Some(RetryAfter::Delay(MAX_RETRY_AFTER))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(d(&later), Some(RetryAfter::Delay(Duration::from_secs(90))));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(d(&past), Some(RetryAfter::Delay(Duration::ZERO)));
        assert_eq!(d("+7"), None);
        assert_eq!(d("-1"), None);
        assert_eq!(d("soon"), None);
        assert_eq!(d(""), None);
    }

    /// JSON, text and nothing.
    #[test]
    fn result_values() {
        assert_eq!(result_value(br#" {"a": 1} "#), json!({"a": 1}));
        assert_eq!(result_value(b"done\n"), json!("done"));
        assert_eq!(result_value(b""), Value::Null);
        assert_eq!(result_value(b" \r\n"), Value::Null);
    }
}
