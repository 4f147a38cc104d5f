//! A child's pipes: read to the end, kept within a bound, turned into a
//! result or an error text.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long to wait for the pipes after the program exits (something it left
/// behind may hold them open).
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// A pipe's bytes, bounded.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) bytes: Vec<u8>,
    /// More arrived than the bound.
    pub(crate) overflowed: bool,
}

/// Waits (bounded) for a pipe reader.
pub(crate) async fn collect(reader: tokio::task::JoinHandle<Captured>) -> Captured {
    tokio::time::timeout(PIPE_DRAIN, reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Reads a pipe to the end, keeping at most `max` bytes (the head, or the
/// tail with `tail`).
pub(crate) async fn read_bounded<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    max: usize,
    tail: bool,
) -> Captured {
    let mut c = Captured::default();
    let Some(mut pipe) = pipe else {
        return c;
    };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                c.bytes.extend_from_slice(&buf[..n]);
                if c.bytes.len() > max {
                    c.overflowed = true;
                    if tail {
                        let cut = c.bytes.len() - max;
                        c.bytes.drain(..cut);
                    } else {
                        c.bytes.truncate(max);
                    }
                }
            }
        }
    }
    c
}

/// stdout as a result: JSON if it parses, else the (trimmed) text; nothing → null.
pub(crate) fn output_value(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(trimmed.to_string()))
}

/// stderr's tail as text.
pub(crate) fn tail_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head is kept for stdout, the tail for stderr; both say they
    /// overflowed.
    #[tokio::test]
    async fn bounded_head_and_tail() {
        let data: &[u8] = b"0123456789";
        let head = read_bounded(Some(data), 4, false).await;
        assert_eq!(
            (head.bytes.as_slice(), head.overflowed),
            (&b"0123"[..], true)
        );
        let tail = read_bounded(Some(data), 4, true).await;
        assert_eq!(
            (tail.bytes.as_slice(), tail.overflowed),
            (&b"6789"[..], true)
        );
        let all = read_bounded(Some(data), 10, false).await;
        assert_eq!((all.bytes.as_slice(), all.overflowed), (data, false));
    }

    /// JSON when it parses, text otherwise, null when empty.
    #[test]
    fn output_values() {
        assert_eq!(output_value(b" {\"a\":1}\n"), serde_json::json!({"a": 1}));
        assert_eq!(
            output_value(b"hi there\n"),
            Value::String("hi there".into())
        );
        assert_eq!(output_value(b"  \n"), Value::Null);
    }
}
