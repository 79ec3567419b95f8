//! `TracingLayer` around a hand-played inner service: the span each request
//! runs in, the one ERROR of a failed request, and what is logged at TRACE.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tower::{Layer, Service, ServiceExt};
use tower_test::mock;
use tracing::field::{Field, Visit};
use tracing::{span, Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use vantage_live_layers::{Request, Response, TracingLayer, Value, View, WriteRequest};
use vantage_table::pagination::Pagination;
use vantage_types::Record;

#[derive(Clone, Debug, Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

/// An event: its level, own fields, and its spans (name, fields), outermost
/// first.
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    fields: BTreeMap<String, String>,
    spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
    fn span_field(&self, span: &str, field: &str) -> Option<&str> {
        let (_, fields) = self.spans.iter().rev().find(|(n, _)| n == span)?;
        fields.get(field).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|s| {
                        let f = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name().to_string(), f.0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            fields: fields.0,
            spans,
        });
    }
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    (capture, guard)
}

fn record(name: &str) -> Record<Value> {
    [("name".to_string(), Value::Text(name.to_string()))]
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_read_runs_in_its_span_down_to_the_inner_future() {
    let (log, _guard) = capture();
    // The inner service logs from its call and from its future.
    let inner = tower::service_fn(|request: Request| {
        tracing::debug!(stage = "call");
        async move {
            tracing::debug!(stage = "future", op = request.op());
            Ok::<_, vantage_core::VantageError>(Response::Rows(Default::default()))
        }
    });
    let view = View::new().with_pagination(Some(Pagination::new(3, 20)));
    let response = TracingLayer::new("clients")
        .layer(inner)
        .oneshot(Request::List(view))
        .await
        .unwrap();
    assert_eq!(response, Response::Rows(Default::default()));

    let events = log.events();
    let stages: Vec<_> = events.iter().filter_map(|e| e.field("stage")).collect();
    assert_eq!(stages, ["call", "future"]);
    for event in events.iter().filter(|e| e.field("stage").is_some()) {
        assert_eq!(event.span_field("read", "cache_key"), Some("clients"));
        assert_eq!(event.span_field("read", "op"), Some("list"));
        assert_eq!(event.span_field("read", "page"), Some("3"));
        assert_eq!(event.span_field("read", "ipp"), Some("20"));
        assert_eq!(event.span_field("read", "id"), None);
    }
    // A successful read: its row count at TRACE, nothing louder.
    let rows = events.iter().find(|e| e.field("rows").is_some()).unwrap();
    assert_eq!((rows.level, rows.field("rows")), (Level::TRACE, Some("0")));
    assert!(events.iter().all(|e| e.level > Level::WARN));
}

#[tokio::test]
async fn a_failed_write_is_one_error_with_its_fields() {
    let (log, _guard) = capture();
    let (mock, mut handle) = mock::pair::<Request, Response>();
    let mut service = TracingLayer::new("clients").layer(mock);
    let write = WriteRequest::Replace {
        id: "ada".into(),
        record: record("Secret Ada"),
    };
    service.ready().await.unwrap();
    let call = service.call(write.into());
    let (request, reply) = handle.next_request().await.unwrap();
    assert_eq!(request.op(), "replace");
    reply.send_error(vantage_core::VantageError::other("rejected by the master"));
    let error = call.await.unwrap_err();
    assert!(error.to_string().contains("rejected by the master"));

    let events = log.events();
    let errors: Vec<_> = events.iter().filter(|e| e.level == Level::ERROR).collect();
    assert_eq!(errors.len(), 1, "{events:#?}");
    let e = errors[0];
    assert_eq!(e.field("outcome"), Some("failed"));
    assert_eq!(e.field("cache_key"), Some("clients"));
    assert_eq!(e.field("op"), Some("replace"));
    assert_eq!(e.field("id"), Some("ada"));
    assert!(e.field("error").unwrap().contains("rejected by the master"));
    assert_eq!(e.span_field("write", "op"), Some("replace"));
    assert_eq!(e.span_field("write", "id"), Some("ada"));
    // The body went in at TRACE, and only there.
    let with_body: Vec<_> = events
        .iter()
        .filter(|e| e.fields.values().any(|v| v.contains("Secret Ada")))
        .collect();
    assert_eq!(with_body.len(), 1);
    assert_eq!(with_body[0].level, Level::TRACE);
}

#[tokio::test]
async fn insert_return_id_records_the_id_it_got() {
    let (log, _guard) = capture();
    let (mock, mut handle) = mock::pair::<Request, Response>();
    let mut service = TracingLayer::new("clients").layer(mock);
    service.ready().await.unwrap();
    let call = service.call(
        WriteRequest::InsertReturnId {
            record: record("Bea"),
        }
        .into(),
    );
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response(Response::Id("id-7".into()));
    assert_eq!(call.await.unwrap(), Response::Id("id-7".into()));

    let events = log.events();
    let last = events.last().unwrap();
    assert_eq!(last.level, Level::TRACE);
    assert_eq!(last.span_field("write", "op"), Some("insert_return_id"));
    assert_eq!(last.span_field("write", "id"), Some("id-7"));
    assert!(events.iter().all(|e| e.level != Level::ERROR));
}
