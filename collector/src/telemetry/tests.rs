use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt as _;

use super::SpanJsonFields;

/// Log lines from the JSON layer with [`SpanJsonFields`], as parsed JSON.
fn json_lines(body: impl FnOnce()) -> Vec<serde_json::Value> {
    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = out.clone();
    let writer = move || SharedWriter(sink.clone());
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .fmt_fields(SpanJsonFields)
        .with_writer(writer);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn fields_recorded_later_join_the_span_fields() {
    let lines = json_lines(|| {
        let span = tracing::info_span!(
            "otlp.export",
            signal = "logs",
            records = 3,
            tenant = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let _in = span.enter();
        tracing::info!("before");
        span.record("tenant", "acme \"quoted\"");
        tracing::info!("after tenant");
        span.record("outcome", "stored");
        span.record("records", 4);
        tracing::info!("after outcome");
        let empty = tracing::info_span!("empty", late = tracing::field::Empty);
        let _in = empty.enter();
        empty.record("late", true);
        tracing::info!("in a span that had no fields");
    });
    let span = |i: usize| lines[i]["span"].clone();
    assert_eq!(
        span(0),
        serde_json::json!({"name": "otlp.export", "signal": "logs", "records": 3})
    );
    assert_eq!(
        span(1),
        serde_json::json!({
            "name": "otlp.export", "signal": "logs", "records": 3,
            "tenant": "acme \"quoted\""
        })
    );
    // Recorded again: the last value counts.
    assert_eq!(
        span(2),
        serde_json::json!({
            "name": "otlp.export", "signal": "logs", "records": 4,
            "tenant": "acme \"quoted\"", "outcome": "stored"
        })
    );
    assert_eq!(span(3), serde_json::json!({"name": "empty", "late": true}));
}

#[test]
fn panics_are_logged_with_their_location() {
    super::log_panics();
    let lines = json_lines(|| {
        let result = std::panic::catch_unwind(|| panic!("boom {}", 42));
        assert!(result.is_err());
    });
    let event = lines
        .iter()
        .find(|l| l["message"] == "panicked")
        .expect("a panic event");
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["panic"], "boom 42");
    let location = event["location"].as_str().unwrap();
    assert!(location.contains("telemetry/tests.rs:"), "{location}");
}
