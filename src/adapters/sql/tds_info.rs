//! Catches the informational messages (INFO tokens) tiberius decodes while one statement runs.
//! tiberius 0.13 hands them to no caller: it emits each as a DEBUG tracing event (target
//! `tiberius::tds::stream::token`, from `get_info`) the moment the token is decoded. `Collector`
//! is the subscriber a statement's future runs under (`WithSubscriber`): it takes exactly those
//! events, in order, as they come, and passes every other event and span on to the subscriber
//! that was in place, so the library's other logs stay behind `-v`/`RUST_LOG` as before.

use tokio::sync::mpsc::UnboundedSender;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// Where tiberius emits the event of an INFO token: its module ...
const TARGET: &str = "tiberius::tds::stream::token";
/// ... and the line of `event!(Level::DEBUG, "{}", info.message)` in `get_info`, in tiberius
/// 0.13.0's `src/tds/stream/token.rs` (the version Cargo.lock pins). The same module emits other
/// DEBUG events of the same shape (ENVCHANGE, LOGINACK), so the line tells them apart. A tiberius
/// that moves or drops it fails `tests/adapters_sql.rs` (a backup's messages against the lab).
const INFO_EVENT_LINE: u32 = 405;

/// Whether `meta` is the event tiberius emits for an INFO token.
fn is_info(meta: &Metadata<'_>) -> bool {
    meta.is_event()
        && meta.target() == TARGET
        && *meta.level() == Level::DEBUG
        && meta.line() == Some(INFO_EVENT_LINE)
}

/// A subscriber for one statement: INFO events go to `messages`, the rest to `inner`.
pub(super) struct Collector {
    inner: Dispatch,
    messages: UnboundedSender<String>,
}

impl Collector {
    /// Collects into `messages`, forwarding everything else to the current default subscriber.
    pub(super) fn new(messages: UnboundedSender<String>) -> Collector {
        Collector {
            inner: tracing::dispatcher::get_default(Dispatch::clone),
            messages,
        }
    }
}

/// The text of an event's `message` field.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            // `format_args!` (what `event!(.., "{}", x)` records) prints as its text, unquoted.
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Collector {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_info(meta) {
            Interest::always()
        } else {
            self.inner.register_callsite(meta)
        }
    }

    /// INFO events are DEBUG events: this subscriber needs them whatever the logs' level is.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        is_info(meta) || self.inner.enabled(meta)
    }

    fn event(&self, event: &Event<'_>) {
        if is_info(event.metadata()) {
            let mut text = Text::default();
            event.record(&mut text);
            // The statement's reader is gone only once the statement ended: nothing to tell then.
            let _ = self.messages.send(text.0);
        } else if self.inner.enabled(event.metadata()) {
            self.inner.event(event);
        }
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.inner.current_span()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::instrument::WithSubscriber;

    #[tokio::test]
    async fn only_the_statements_own_info_events_are_collected_the_rest_pass_on() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        async {
            tracing::debug!(target: "tiberius::tds::stream::token", "not at the INFO line");
            tracing::info!("an event of upgrade's own");
        }
        .with_subscriber(Collector::new(tx))
        .await;
        assert!(rx.try_recv().is_err(), "no INFO event was emitted");
    }
}
