//! What llama.cpp says when it refuses a file. Its load functions return only "null"; the
//! reason ("missing tensor 'blk.0.attn_q.bias'", "unknown model architecture") goes to its
//! log, which the binding turns into `tracing` events of target `llama-cpp-2`. While a model
//! loads, a subscriber on the loading thread records those at error level and passes every
//! event on to the subscriber in place, so the logs stay where they were.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// The binding's target for llama.cpp's and ggml's log lines.
const TARGET: &str = "llama-cpp-2";

/// Runs `f` on this thread and returns, beside its result, the error lines llama.cpp logged
/// meanwhile (trimmed, in order).
pub(super) fn recording_errors<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        inner: tracing::dispatcher::get_default(Dispatch::clone),
        errors: errors.clone(),
    };
    let result = tracing::subscriber::with_default(recorder, f);
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    (result, errors)
}

struct Recorder {
    inner: Dispatch,
    errors: Arc<Mutex<Vec<String>>>,
}

fn recorded(metadata: &Metadata<'_>) -> bool {
    metadata.target() == TARGET && *metadata.level() == Level::ERROR
}

impl Subscriber for Recorder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if recorded(metadata) {
            Interest::always()
        } else {
            self.inner.register_callsite(metadata)
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        recorded(metadata) || self.inner.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows)
    }

    fn event(&self, event: &Event<'_>) {
        if recorded(event.metadata()) {
            let mut message = Message(String::new());
            event.record(&mut message);
            let line = message.0.trim();
            if !line.is_empty() {
                let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                errors.push(line.to_string());
            }
        }
        if self.inner.enabled(event.metadata()) {
            self.inner.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span)
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span)
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }
}

/// The `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
