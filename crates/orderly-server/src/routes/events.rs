//! `GET /v1/events`: the event hub as server-sent events.
//!
//! A subscriber gets, in order: a `gap` message when its `Last-Event-ID`
//! is older than the ring holds (or from an earlier server process), the
//! held events after that id, then live events; each job or queue event as
//! `id: N` / `event: KIND` / `data: {json}`, filtered by `queue` and `job`.
//! One that falls more than the hub's buffer behind gets `event: dropped`
//! and the stream ends. One that stops reading altogether fills its socket:
//! hyper then stops polling the stream, so nothing here sees it; the
//! connection's write timeout (`crate::serve`) cuts it off, which drops the
//! stream and its receiver. Open streams are the `orderly_events_subscribers`
//! gauge. The stream also ends when the server shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use orderly_core::validate::{self, ValidationError};
use orderly_proto::{DroppedView, ErrorBody};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::error::ApiError;
use crate::events::{Event, Filter};
use crate::extract::ApiQuery;
use crate::AppState;

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this queue's events.
    #[param(nullable = false, pattern = r"^[A-Za-z0-9._-]{1,100}$")]
    pub queue: Option<String>,
    /// Only this job's events.
    #[param(nullable = false, pattern = r"^[A-Za-z0-9._:-]{1,200}$")]
    pub job: Option<String>,
    /// Resume after this id, for clients that cannot set `Last-Event-ID`
    /// (the header wins when both are given).
    #[param(nullable = false, pattern = r"^[0-9]{1,19}$")]
    pub last_event_id: Option<String>,
}

/// One message of the stream, for the OpenAPI document: its `data` is the
/// JSON of an [`orderly_proto::EventView`], a [`GapView`] or a
/// [`DroppedView`], as its `event` names.
///
/// [`GapView`]: orderly_proto::GapView
pub struct StreamMessage;

impl PartialSchema for StreamMessage {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .property(
                "id",
                text("The event id (absent on `gap` and `dropped`).").pattern(Some("^[0-9]+$")),
            )
            .property(
                "event",
                text("The event's kind, or `gap` or `dropped`."),
            )
            .property(
                "data",
                text("JSON: an `EventView`, or a `GapView` for `gap`, or a `DroppedView` for `dropped`.")
                    .content_media_type("application/json"),
            )
            .required("event")
            .required("data")
            .into()
    }
}

impl ToSchema for StreamMessage {}

/// `GET /v1/events?queue=&job=&last_event_id=`.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "stream_events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Resume after this event id (wins over `last_event_id`).", pattern = r"^[0-9]{1,19}$"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events that stays open: each message's `data:` is an `EventView` named by its `event:` line (the event's `kind`), or a `GapView` (`event: gap`) or `DroppedView` (`event: dropped`).", content_type = "text/event-stream", body = StreamMessage),
        (status = 400, description = "A filter or event id is malformed.", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    if let Some(queue) = &q.queue {
        validate::queue_name(queue)?;
    }
    if let Some(job) = &q.job {
        validate::job_id(job)?;
    }
    // The query's id is checked even when the header wins: a malformed
    // parameter is refused, never silently ignored.
    let from_query = q
        .last_event_id
        .as_deref()
        .map(|s| parse_id("last_event_id", s))
        .transpose()?;
    let after = match headers.get("last-event-id") {
        Some(h) => Some(parse_id(
            "Last-Event-ID",
            h.to_str().map_err(|_| {
                ValidationError::value("Last-Event-ID", "is not text: give an event id")
            })?,
        )?),
        None => from_query,
    };
    let filter = Filter {
        queue: q.queue,
        job: q.job,
    };
    let hub = state.service.events();
    let sub = hub.subscribe(after);
    let mut first: VecDeque<SseEvent> = VecDeque::new();
    if let Some(gap) = &sub.gap {
        first.push_back(
            SseEvent::default()
                .event("gap")
                .data(serde_json::to_string(gap).unwrap_or_default()),
        );
    }
    let mut last_id = after.filter(|_| sub.gap.is_none());
    for e in sub.replay.iter().filter(|e| filter.matches(e)) {
        first.push_back(sse(e));
        last_id = Some(e.id);
    }
    let st = Stream_ {
        first,
        live: sub.live,
        horizon: sub.horizon,
        filter,
        last_id,
        buffer: hub.config().buffer,
        done: false,
        _counted: state.service.metrics().events_subscriber(),
        state: state.clone(),
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        let ev = st.next().await?;
        Some((Ok(ev), st))
    });
    let shutdown = state.service.shutdown_token();
    let stream = futures::StreamExt::take_until(stream, shutdown.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn parse_id(field: &str, s: &str) -> Result<u64, ValidationError> {
    s.trim().parse().map_err(|_| {
        ValidationError::value(
            field,
            format!("is {s:?}: give the id of an event (a whole number)"),
        )
    })
}

fn sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind.as_str())
        .data(e.json())
}

/// One subscriber's state between messages.
struct Stream_ {
    first: VecDeque<SseEvent>,
    live: tokio::sync::broadcast::Receiver<Arc<Event>>,
    horizon: u64,
    filter: Filter,
    last_id: Option<u64>,
    buffer: usize,
    done: bool,
    /// Counts this stream as a subscriber while it lives.
    _counted: crate::metrics::SubscriberGuard,
    /// For counting a drop.
    state: AppState,
}

impl Stream_ {
    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(e) = self.first.pop_front() {
            return Some(e);
        }
        if self.done {
            return None;
        }
        loop {
            match self.live.recv().await {
                Ok(e) if e.id <= self.horizon || !self.filter.matches(&e) => continue,
                Ok(e) => {
                    self.last_id = Some(e.id);
                    return Some(sse(&e));
                }
                Err(RecvError::Lagged(n)) => {
                    self.done = true;
                    self.state.service.metrics().events_lagged();
                    tracing::info!(
                        "dropped an events subscriber: {n} events behind, more than --events-buffer ({})",
                        self.buffer
                    );
                    let body = DroppedView {
                        reason: format!(
                            "this subscriber fell behind: {n} events were published while it read none of them, more than the server keeps per subscriber ({}, server flag --events-buffer); reconnect with Last-Event-ID to resume from the recent events",
                            self.buffer
                        ),
                        last_id: self.last_id,
                    };
                    return Some(
                        SseEvent::default()
                            .event("dropped")
                            .data(serde_json::to_string(&body).unwrap_or_default()),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
