//! `GET /v1/events` for clients: the request, and a small reader of the
//! server-sent-events format (`event:`, `id:`, `data:` lines; a blank line
//! ends a message; `:` lines are keep-alive comments).

use orderly_proto::{DroppedView, EventView, GapView};

use crate::ClientError;

/// Which events to ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// Only this queue's.
    pub queue: Option<String>,
    /// Only this job's.
    pub job: Option<String>,
    /// Resume after this event id (sent as `Last-Event-ID`).
    pub last_event_id: Option<u64>,
}

/// One message of the stream, as the server named it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A job or queue event.
    Event(EventView),
    /// The events after the given id could not all be replayed.
    Gap(GapView),
    /// The server dropped this subscriber; the stream ends after it.
    Dropped(DroppedView),
}

/// One raw message: its `event:`, `id:` and `data:` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` line (`message` when absent, as the format says).
    pub event: String,
    /// The `id:` line, if it had one.
    pub id: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// Splits a byte stream into [`SseMessage`]s; feed it chunks as they come.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    /// Adds `chunk` and returns the messages it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let m = std::mem::take(&mut self.current);
                if std::mem::take(&mut self.has_data) {
                    out.push(SseMessage {
                        event: if m.event.is_empty() {
                            "message".into()
                        } else {
                            m.event
                        },
                        ..m
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// An open `GET /v1/events` stream.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) resp: reqwest::Response,
    pub(crate) parser: SseParser,
    pub(crate) ready: std::collections::VecDeque<SseMessage>,
    /// The id of the last event read, to resume with.
    pub last_event_id: Option<u64>,
}

impl EventStream {
    /// The next raw message; `None` when the server ended the stream.
    pub async fn next_message(&mut self) -> Result<Option<SseMessage>, ClientError> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                if let Some(id) = m.id.as_deref().and_then(|i| i.parse().ok()) {
                    self.last_event_id = Some(id);
                }
                return Ok(Some(m));
            }
            match self.resp.chunk().await? {
                Some(chunk) => self.ready.extend(self.parser.feed(&chunk)),
                None => return Ok(None),
            }
        }
    }

    /// The next message, decoded; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ClientError> {
        let Some(m) = self.next_message().await? else {
            return Ok(None);
        };
        let decode = |e: serde_json::Error| ClientError::Decode {
            status: 200,
            detail: format!("event {:?}: {e}: {}", m.event, m.data),
        };
        Ok(Some(match m.event.as_str() {
            "gap" => StreamItem::Gap(serde_json::from_str(&m.data).map_err(decode)?),
            "dropped" => StreamItem::Dropped(serde_json::from_str(&m.data).map_err(decode)?),
            _ => StreamItem::Event(serde_json::from_str(&m.data).map_err(decode)?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_at_blank_lines_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\nid: 7\nevent: sta").is_empty());
        let got = p.feed(b"rted\r\ndata: {\"a\":\ndata: 1}\n\ndata: x\n\n");
        assert_eq!(
            got,
            [
                SseMessage {
                    event: "started".into(),
                    id: Some("7".into()),
                    data: "{\"a\":\n1}".into()
                },
                SseMessage {
                    event: "message".into(),
                    id: None,
                    data: "x".into()
                }
            ]
        );
    }
}
