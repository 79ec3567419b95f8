//! Observability: the spans and events a LiveTable emits, the levels they
//! are emitted at, and `LiveTable::stats()`.
//!
//! Each test installs a capturing subscriber for its own thread
//! (`tracing::subscriber::set_default`) and runs on tokio's current-thread
//! runtime, so the tasks the stack spawns (the single-flight read, the write
//! queue, the event task) log into the same capture and tests running in
//! parallel never see each other's events. `RUST_LOG=vantage_live=debug
//! cargo test --test 6_tracing -- --nocapture` also prints them.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use ciborium::Value;
use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing::{span, Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{LiveEvent, LiveTable, ManualLiveStream, MemCache, StatsSnapshot};
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

use common::{product, Instrumented, Recording, DOWN, PATIENCE};

// ---------------------------------------------------------------------------
// A capturing subscriber.

/// Field values as text: strings as they are, everything else `Debug`.
#[derive(Clone, Debug, Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// One event, with the fields of every span it was in (outermost first).
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
    spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Captured {
    /// The event's own field.
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The fields of the innermost span called `name` around the event.
    fn span(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.spans
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, fields)| fields)
    }

    /// A span field of the innermost span called `span` around the event.
    fn span_field(&self, span: &str, field: &str) -> Option<&str> {
        self.span(span)?.get(field).map(String::as_str)
    }

    fn outcome(&self) -> Option<&str> {
        self.field("outcome")
    }

    fn message(&self) -> &str {
        self.field("message").unwrap_or("")
    }

    /// Whether `text` appears in any field of the event or of its spans.
    fn mentions(&self, text: &str) -> bool {
        self.fields.values().any(|v| v.contains(text))
            || self
                .spans
                .iter()
                .any(|(_, fields)| fields.values().any(|v| v.contains(text)))
    }
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Captured>>>);

impl Log {
    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// The events that carry an `outcome`, in order.
    fn outcomes(&self) -> Vec<Captured> {
        self.events()
            .into_iter()
            .filter(|e| e.outcome().is_some())
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

struct Capture(Log);

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| {
                        let fields = span
                            .extensions()
                            .get::<Fields>()
                            .map(|f| f.0.clone())
                            .unwrap_or_default();
                        (span.name().to_string(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0 .0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields: fields.0,
            spans,
        });
    }
}

/// Capture every event and span of this crate and its layers (targets
/// starting with `vantage_live`) at `level` and above, on this thread, while
/// the guard lives. `RUST_LOG` also prints them, as `init_tracing` does.
fn capture_at(level: Level) -> (Log, DefaultGuard) {
    let log = Log::default();
    let subscriber = tracing_subscriber::registry()
        .with(Capture(log.clone()).with_filter(Targets::new().with_target("vantage_live", level)))
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::from_default_env()),
        );
    (log, tracing::subscriber::set_default(subscriber))
}

fn capture() -> (Log, DefaultGuard) {
    capture_at(Level::TRACE)
}

fn names(events: &[Captured]) -> Vec<&str> {
    events.iter().filter_map(Captured::outcome).collect()
}

/// Await `future`, or fail the test after [`PATIENCE`].
async fn patiently<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Yield to the runtime's other tasks until `condition` holds.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    patiently(what, async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

fn record_with(name: &str) -> Record<Value> {
    let mut record = product(name, 250);
    record.insert("name".to_string(), Value::Text(name.to_string()));
    record
}

// ---------------------------------------------------------------------------
// Reads.

#[tokio::test]
async fn a_miss_then_a_hit_carry_cache_key_and_page() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let mut live = LiveTable::new(
        master.table.clone(),
        "trace/read",
        Arc::new(MemCache::new()),
    );
    live.set_pagination(Some(Pagination::new(2, 5)));

    let first = live.list_values().await.unwrap();
    let second = live.list_values().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.len(), 5);

    let outcomes = log.outcomes();
    assert_eq!(
        names(&outcomes),
        ["miss", "populated", "hit"],
        "{outcomes:#?}"
    );
    for event in &outcomes {
        assert_eq!(event.level, Level::DEBUG, "{event:?}");
        assert_eq!(event.field("cache_key"), Some("trace/read"), "{event:?}");
        assert!(
            event.field("slot").unwrap().ends_with("list/-/p2x5"),
            "{event:?}"
        );
        // The request's span, around the events of every layer below it
        // (`populated` is logged by the single-flight task).
        let read = event.span("read").unwrap_or_else(|| panic!("{event:?}"));
        assert_eq!(read["cache_key"], "trace/read");
        assert_eq!(read["op"], "list");
        assert_eq!(read["page"], "2");
        assert_eq!(read["ipp"], "5");
    }

    assert!(
        log.events().iter().all(|e| e.level > Level::WARN),
        "a clean read logs nothing at WARN or ERROR"
    );
}

#[tokio::test]
async fn cache_backend_calls_have_their_own_spans() {
    // A backend that logs inside its calls shows which call it was in.
    struct Chatty(MemCache);

    #[async_trait::async_trait]
    impl vantage_live::Cache for Chatty {
        async fn get(&self, key: &str) -> vantage_core::Result<Option<vantage_live::CachedRows>> {
            tracing::debug!(target: "vantage_live::test_backend", "get");
            self.0.get(key).await
        }
        async fn put(&self, key: &str, rows: vantage_live::CachedRows) -> vantage_core::Result<()> {
            tracing::debug!(target: "vantage_live::test_backend", "put");
            self.0.put(key, rows).await
        }
        async fn invalidate_prefix(&self, prefix: &str) -> vantage_core::Result<()> {
            tracing::debug!(target: "vantage_live::test_backend", "invalidate_prefix");
            self.0.invalidate_prefix(prefix).await
        }
        fn generations(&self) -> Option<&vantage_live::cache::Generations> {
            self.0.generations()
        }
        // Not from memory: every read makes a `lookup`.
        fn peek(
            &self,
            _: &str,
            _: &Arc<vantage_live::cache::Namespace>,
        ) -> vantage_live::cache::Peek {
            vantage_live::cache::Peek::Unknown
        }
        async fn lookup(
            &self,
            key: &str,
            namespace: &Arc<vantage_live::cache::Namespace>,
            ticket: &mut vantage_live::cache::Ticket,
        ) -> vantage_core::Result<Option<vantage_live::CachedSlot>> {
            tracing::debug!(target: "vantage_live::test_backend", "lookup");
            self.0.lookup(key, namespace, ticket).await
        }
        async fn fill(
            &self,
            key: &str,
            namespace: &Arc<vantage_live::cache::Namespace>,
            ticket: vantage_live::cache::Ticket,
            slot: vantage_live::CachedSlot,
        ) -> vantage_core::Result<bool> {
            tracing::debug!(target: "vantage_live::test_backend", "fill");
            self.0.fill(key, namespace, ticket, slot).await
        }
    }

    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let live = LiveTable::new(
        master.table.clone(),
        "trace-backend",
        Arc::new(Chatty(MemCache::new())),
    );
    live.list_values().await.unwrap();
    live.insert_value(&"b1".to_string(), &product("B", 1))
        .await
        .unwrap();

    let backend: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.target == "vantage_live::test_backend")
        .map(|e| {
            let (span, fields) = e.spans.last().cloned().unwrap();
            let key = fields
                .get("slot")
                .or_else(|| fields.get("prefix"))
                .cloned()
                .unwrap_or_default();
            let request = if e.span("read").is_some() {
                "read"
            } else if e.span("write").is_some() {
                "write"
            } else {
                "-"
            };
            (e.message().to_string(), span, key, request)
        })
        .collect();
    let slot = live.page_cache_key(None);
    let prefix = "trace-backend/".to_string();
    let expected: Vec<(String, String, String, &str)> = vec![
        ("lookup".into(), "cache.lookup".into(), slot.clone(), "read"),
        ("fill".into(), "cache.fill".into(), slot, "read"),
        (
            "invalidate_prefix".into(),
            "cache.invalidate_prefix".into(),
            prefix,
            "write",
        ),
    ];
    assert_eq!(backend, expected);
}

// ---------------------------------------------------------------------------
// Writes.

#[tokio::test]
async fn a_write_is_traced_from_entry_through_the_queue_to_its_invalidation() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let live = LiveTable::new(
        master.table.clone(),
        "trace-write",
        Arc::new(MemCache::new()),
    );
    live.list_values().await.unwrap();
    log.clear();

    live.insert_value(&"w1".to_string(), &product("Waffle", 3))
        .await
        .unwrap();

    let events = log.events();
    let in_write = |e: &Captured| {
        e.span_field("write", "cache_key") == Some("trace-write")
            && e.span_field("write", "op") == Some("insert")
            && e.span_field("write", "id") == Some("w1")
    };
    // Entry: the queue logs the write entering it, in the caller's span.
    let queued = events
        .iter()
        .find(|e| e.message() == "write queued")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(queued.level, Level::DEBUG);
    assert!(in_write(queued), "{queued:?}");
    assert_eq!(
        (queued.field("op"), queued.field("id")),
        (Some("insert"), Some("w1"))
    );

    // Worker: the write is applied in a queue_worker span, child of the
    // caller's span, and its invalidation is logged there.
    let outcomes = log.outcomes();
    assert_eq!(names(&outcomes), ["invalidated"], "{outcomes:#?}");
    let invalidated = &outcomes[0];
    assert_eq!(invalidated.level, Level::DEBUG);
    assert_eq!(invalidated.field("cache_key"), Some("trace-write"));
    assert!(in_write(invalidated), "{invalidated:?}");
    assert_eq!(invalidated.span_field("queue_worker", "op"), Some("insert"));
    assert_eq!(invalidated.span_field("queue_worker", "id"), Some("w1"));
    let names: Vec<_> = invalidated.spans.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["write", "queue_worker"]);

    // Drain: after the invalidation, in the same spans.
    let drained = events
        .iter()
        .position(|e| e.message() == "queued write drained and applied")
        .expect("drained");
    assert!(in_write(&events[drained]));
    assert_eq!(events[drained].field("id"), Some("w1"));
    assert!(
        events
            .iter()
            .position(|e| e.outcome() == Some("invalidated"))
            < Some(drained)
    );
}

#[tokio::test]
async fn insert_return_id_records_the_generated_id() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let live = LiveTable::new(master.table.clone(), "trace-id", Arc::new(MemCache::new()))
        .with_id_generator(|| "gen-1".to_string());
    use vantage_dataset::traits::InsertableValueSet;
    let id = live
        .insert_return_id_value(&product("Generated", 1))
        .await
        .unwrap();
    assert_eq!(id, "gen-1");
    let events = log.events();
    let drained = events
        .iter()
        .find(|e| e.message() == "queued write drained and applied")
        .unwrap();
    assert_eq!(drained.field("op"), Some("insert_return_id"));
    assert_eq!(drained.field("id"), Some("gen-1"));
    // The write span learns the id when the write answers.
    let stored = events
        .iter()
        .find(|e| e.level == Level::TRACE && e.message() == "record stored")
        .unwrap();
    assert_eq!(stored.span_field("write", "id"), Some("gen-1"));
}

#[tokio::test]
async fn a_rejected_write_is_one_error_in_the_callers_trace() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let (table, probe) = Instrumented::wrap(master.table.clone());
    let live = LiveTable::new(table, "trace-fail", Arc::new(MemCache::new()));
    probe.set_down(true);

    let error = live
        .replace_value(&"p01_baguette".to_string(), &product("Nope", 1))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(DOWN), "{error}");

    let errors: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.level == Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "exactly one ERROR: {errors:#?}");
    let error_event = &errors[0];
    assert_eq!(error_event.outcome(), Some("failed"));
    assert!(error_event.field("error").unwrap().contains(DOWN));
    // It reads on its own...
    assert_eq!(error_event.field("cache_key"), Some("trace-fail"));
    assert_eq!(error_event.field("op"), Some("replace"));
    assert_eq!(error_event.field("id"), Some("p01_baguette"));
    // ... and sits in the span of the request that made the write.
    assert_eq!(
        error_event.span_field("write", "cache_key"),
        Some("trace-fail")
    );
    assert_eq!(error_event.span_field("write", "op"), Some("replace"));
    assert_eq!(error_event.span_field("write", "id"), Some("p01_baguette"));

    // The queue's own report of the rejection is DEBUG, in the caller's
    // trace too; nothing was invalidated.
    let outcomes = log.outcomes();
    assert_eq!(names(&outcomes), ["failed", "failed"], "{outcomes:#?}");
    assert_eq!(outcomes[0].level, Level::DEBUG);
    assert_eq!(outcomes[0].span_field("write", "id"), Some("p01_baguette"));
    assert_eq!(
        outcomes[0].span_field("queue_worker", "op"),
        Some("replace")
    );

    // A failed read is its caller's `Err` too: one ERROR, in the read span.
    log.clear();
    assert!(live.get_value(&"p02".to_string()).await.is_err());
    let errors: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.level == Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].span_field("read", "op"), Some("get"));
    assert_eq!(errors[0].span_field("read", "id"), Some("p02"));
    assert_eq!(errors[0].outcome(), Some("failed"));
}

#[tokio::test]
async fn a_panicking_write_is_one_error_and_a_warning() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let (table, _recorder) = Recording::around(master.table.clone())
        .panic_on_insert("boom")
        .build();
    let live = LiveTable::new(table, "trace-panic", Arc::new(MemCache::new()));
    assert!(live
        .insert_value(&"boom".to_string(), &product("Boom", 1))
        .await
        .is_err());

    let loud: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.level <= Level::WARN)
        .collect();
    let levels: Vec<_> = loud.iter().map(|e| e.level).collect();
    // The queue recovers (WARN), the cache layer notes the unsettled write
    // (WARN), and the caller's Err is the one ERROR.
    assert_eq!(
        levels.iter().filter(|l| **l == Level::ERROR).count(),
        1,
        "{loud:#?}"
    );
    for event in &loud {
        assert_eq!(event.span_field("write", "id"), Some("boom"), "{event:?}");
    }
    assert_eq!(live.stats().writes_failed, 1);
}

#[tokio::test]
async fn record_bodies_appear_only_at_trace() {
    const MARKER: &str = "Zanzibar-Marker-7";
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let live = LiveTable::new(
        master.table.clone(),
        "trace-bodies",
        Arc::new(MemCache::new()),
    );

    live.insert_value(&"z1".to_string(), &record_with(MARKER))
        .await
        .unwrap();
    let mut partial = Record::new();
    partial.insert("name".to_string(), Value::Text(format!("{MARKER}-patched")));
    live.patch_value(&"z1".to_string(), &partial).await.unwrap();
    live.replace_value(&"z1".to_string(), &record_with(MARKER))
        .await
        .unwrap();
    // Reads of the rows holding the marker log counts, never bodies.
    let rows = live.list_values().await.unwrap();
    assert!(rows.contains_key("z1"));
    assert!(live.get_value(&"z1".to_string()).await.unwrap().is_some());
    live.delete(&"z1".to_string()).await.unwrap();

    let events = log.events();
    let with_body: Vec<_> = events.iter().filter(|e| e.mentions(MARKER)).collect();
    // Each insert, patch and replace: the body going in and the stored record.
    assert_eq!(with_body.len(), 6, "{with_body:#?}");
    for event in &with_body {
        assert_eq!(event.level, Level::TRACE, "a body above TRACE: {event:?}");
        assert!(event.field("record").unwrap().contains(MARKER));
    }
    // Row counts on reads, at TRACE.
    let counts: Vec<_> = events
        .iter()
        .filter(|e| e.message() == "rows read" || e.message() == "row read")
        .collect();
    assert_eq!(counts.len(), 2, "{counts:#?}");
    assert!(counts.iter().all(|e| e.level == Level::TRACE));
    assert_eq!(
        counts[0].field("rows"),
        Some(rows.len().to_string().as_str())
    );
    assert_eq!(counts[1].field("rows"), Some("1"));

    // At DEBUG nothing of the body is captured at all.
    drop(_guard);
    let (debug_log, _guard) = capture_at(Level::DEBUG);
    live.insert_value(&"z2".to_string(), &record_with(MARKER))
        .await
        .unwrap();
    live.list_values().await.unwrap();
    let debug_events = debug_log.events();
    assert!(!debug_events.is_empty());
    assert!(
        debug_events.iter().all(|e| !e.mentions(MARKER)),
        "{debug_events:#?}"
    );
}

// ---------------------------------------------------------------------------
// Live events.

#[tokio::test]
async fn an_event_invalidates_in_its_own_span() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let events = ManualLiveStream::new();
    let live = LiveTable::new(
        master.table.clone(),
        "trace-event",
        Arc::new(MemCache::new()),
    )
    .with_live_stream(Arc::new(events.clone()));
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();
    patiently("subscribed", status.wait_for(|s| s.subscribed)).await;
    live.list_values().await.unwrap();
    log.clear();

    assert_eq!(events.push(LiveEvent::updated("p03")), 1);
    patiently("event handled", status.wait_for(|s| s.events >= 1)).await;

    let outcomes = log.outcomes();
    assert_eq!(names(&outcomes), ["invalidated"], "{outcomes:#?}");
    let event = &outcomes[0];
    assert_eq!(event.level, Level::DEBUG);
    assert_eq!(event.field("cache_key"), Some("trace-event"));
    assert_eq!(event.field("event_kind"), Some("updated"));
    assert_eq!(event.field("id"), Some("p03"));
    assert_eq!(
        event.span_field("live_event", "event_kind"),
        Some("updated")
    );
    assert_eq!(event.span_field("live_event", "id"), Some("p03"));
    assert_eq!(
        event.span_field("live_stream", "cache_key"),
        Some("trace-event")
    );

    // The next read misses: the event dropped the slot.
    live.list_values().await.unwrap();
    assert_eq!(names(&log.outcomes()), ["invalidated", "miss", "populated"]);
    assert_eq!(live.stats().events_received, 1);
}

#[tokio::test]
async fn an_event_task_started_by_a_request_is_not_in_that_requests_span() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let events = ManualLiveStream::new();
    // Built outside a runtime: the first request starts the event task.
    let live = {
        let (table, events) = (master.table.clone(), events.clone());
        std::thread::spawn(move || {
            LiveTable::new(table, "trace-lazy", Arc::new(MemCache::new()))
                .with_live_stream(Arc::new(events))
        })
        .join()
        .unwrap()
    };
    let mut status = live.live_stream_status().unwrap();
    live.list_values().await.unwrap();
    patiently("subscribed", status.wait_for(|s| s.subscribed)).await;
    events.push(LiveEvent::Changed);
    patiently("event handled", status.wait_for(|s| s.events >= 1)).await;

    let from_task: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.target.contains("invalidate_on_event"))
        .collect();
    assert!(!from_task.is_empty());
    for event in &from_task {
        assert_eq!(
            event.spans.first().map(|(name, _)| name.as_str()),
            Some("live_stream"),
            "the task's own root span: {event:?}"
        );
        assert!(event.span("read").is_none(), "{event:?}");
    }
}

#[tokio::test]
async fn connected_is_info_and_reconnecting_is_a_warning() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    let events = ManualLiveStream::new();
    let live = LiveTable::new(
        master.table.clone(),
        "trace-reconnect",
        Arc::new(MemCache::new()),
    )
    .with_live_stream(Arc::new(events.clone()));
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();
    patiently("subscribed", status.wait_for(|s| s.subscribed)).await;
    assert_eq!(events.disconnect(), 1);
    patiently(
        "subscribed again",
        status.wait_for(|s| s.subscriptions >= 2 && s.subscribed),
    )
    .await;

    let lifecycle: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.message().starts_with("live stream"))
        .map(|e| (e.level, e.message().to_string()))
        .collect();
    assert_eq!(
        lifecycle,
        [
            (Level::INFO, "live stream connected".to_string()),
            (Level::INFO, "live stream disconnected".to_string()),
            (Level::WARN, "live stream reconnecting".to_string()),
            (Level::INFO, "live stream connected".to_string()),
        ]
    );
}

// ---------------------------------------------------------------------------
// Filtering.

#[tokio::test]
async fn rust_log_vantage_live_debug_shows_the_layers() {
    // What `RUST_LOG=vantage_live=debug` selects: EnvFilter matches target
    // prefixes, so `vantage_live` covers `vantage_live_layers` too.
    let log = Log::default();
    let subscriber = tracing_subscriber::registry()
        .with(Capture(log.clone()).with_filter(EnvFilter::new("vantage_live=debug")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let master = common::redb_master("product").await;
    let live = LiveTable::new(master.table.clone(), "trace-env", Arc::new(MemCache::new()));
    live.list_values().await.unwrap();
    live.list_values().await.unwrap();
    live.insert_value(&"e1".to_string(), &product("Env", 1))
        .await
        .unwrap();

    let events = log.events();
    assert!(events.iter().all(|e| e.level != Level::TRACE));
    let from_layers: Vec<_> = events
        .iter()
        .filter(|e| e.target.starts_with("vantage_live_layers::"))
        .filter_map(|e| e.outcome().or(Some(e.message())))
        .collect();
    for expected in ["miss", "populated", "hit", "write queued", "invalidated"] {
        assert!(
            from_layers.contains(&expected),
            "{expected}: {from_layers:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e.target.starts_with("vantage_live::") && e.message() == "LiveTable constructed"));
}

// ---------------------------------------------------------------------------
// Counters.

#[tokio::test]
async fn stats_count_a_scripted_sequence_exactly() {
    let (_log, _guard) = capture_at(Level::INFO);
    let master = common::redb_master("product").await;
    let (table, probe) = Instrumented::wrap(master.table.clone());
    let events = ManualLiveStream::new();
    let live = LiveTable::new(table, "trace-stats", Arc::new(MemCache::new()))
        .with_live_stream(Arc::new(events.clone()));
    assert_eq!(live.stats(), StatsSnapshot::default());
    let mut status = live.live_stream_status().unwrap();
    // Subscribing drops the cache_key: one invalidation.
    live.start_live_stream();
    patiently("subscribed", status.wait_for(|s| s.subscribed)).await;

    // A miss, then two hits.
    live.list_values().await.unwrap();
    live.list_values().await.unwrap();
    live.clone().list_values().await.unwrap();

    // Three concurrent cold reads of one slot: one master read, two
    // coalesced. The master read waits at a gate for a second master read,
    // which the test sends (a count: a miss of its own) once the other two
    // reads have joined the first.
    let before = probe.reads();
    probe.gate_reads(2);
    let cold: Vec<_> = (0..3)
        .map(|_| {
            let live = live.clone();
            tokio::spawn(async move { live.get_value(&"p02_brioche".to_string()).await })
        })
        .collect();
    until("two reads coalesced", || {
        live.stats().coalesced == 2 && probe.reads() == before + 1
    })
    .await;
    let count = patiently("count", live.get_count()).await.unwrap();
    assert_eq!(count, 12);
    for read in cold {
        let row = patiently("cold read", read).await.unwrap().unwrap();
        assert!(row.is_some());
    }
    probe.ungate();

    // Two writes succeed, one is rejected.
    live.insert_value(&"s1".to_string(), &product("S1", 1))
        .await
        .unwrap();
    live.clone()
        .insert_value(&"s2".to_string(), &product("S2", 2))
        .await
        .unwrap();
    probe.set_down(true);
    assert!(live
        .insert_value(&"s3".to_string(), &product("S3", 3))
        .await
        .is_err());
    probe.set_down(false);

    // One event.
    events.push(LiveEvent::inserted("s4"));
    patiently("event handled", status.wait_for(|s| s.events >= 1)).await;

    let mut expected = StatsSnapshot::default();
    expected.hits = 2;
    expected.misses = 1 + 3 + 1; // the first list, the cold reads, the count
    expected.coalesced = 2;
    expected.master_reads = 1 + 1 + 1; // the first list, the cold flight, the count
    expected.writes_ok = 2;
    expected.writes_failed = 1;
    expected.invalidations = 1 + 2 + 1; // subscription, writes, event
    expected.events_received = 1;
    assert_eq!(live.stats(), expected);
    // Shared by clones; and the master saw exactly the reads counted.
    assert_eq!(live.clone().stats(), expected);
    assert_eq!(probe.reads() as u64, expected.master_reads);

    // Uncached reads count as master reads, not as misses.
    live.get_some_value().await.unwrap();
    let after = live.stats();
    assert_eq!(after.master_reads, expected.master_reads + 1);
    assert_eq!(after.misses, expected.misses);
}

#[tokio::test]
async fn stats_are_per_stack() {
    let master = common::redb_master("product").await;
    let cache = Arc::new(MemCache::new());
    let a = LiveTable::new(master.table.clone(), "stats-a", cache.clone());
    let b = LiveTable::new(master.table.clone(), "stats-b", cache);
    a.list_values().await.unwrap();
    a.list_values().await.unwrap();
    assert_eq!((a.stats().misses, a.stats().hits), (1, 1));
    assert_eq!(b.stats(), StatsSnapshot::default());
}

// ---------------------------------------------------------------------------
// Credentials.

#[tokio::test]
async fn a_failing_postgres_listener_never_logs_its_url() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    const URL: &str = "postgres://someone:hunter2@127.0.0.1:1/test";
    // Nothing listens on port 1. One source fails on a connection refused
    // (through a pool that gives up quickly), the other on a bad URL option
    // (at once, before connecting).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(200))
        .connect_lazy(URL)
        .unwrap();
    let sources = [
        vantage_live::PgNotifyLiveStream::from_pool(pool, "trace_changes"),
        vantage_live::PgNotifyLiveStream::new(format!("{URL}?sslmode=bogus"), "trace_changes"),
    ];
    for (n, stream) in sources.into_iter().enumerate() {
        let live = LiveTable::new(
            master.table.clone(),
            format!("trace-pg-{n}"),
            Arc::new(MemCache::new()),
        )
        .with_live_stream(Arc::new(stream));
        let mut status = live.live_stream_status().unwrap();
        live.start_live_stream();
        patiently(
            "two failed subscriptions",
            status.wait_for(|s| s.subscriptions >= 2),
        )
        .await;
    }

    let events = log.events();
    let failures = events
        .iter()
        .filter(|e| e.message() == "PostgreSQL LISTEN could not connect")
        .filter(|e| e.level == Level::WARN)
        .count();
    assert!(failures >= 2, "{events:#?}");
    for secret in ["hunter2", "someone", "postgres://"] {
        assert!(
            events.iter().all(|e| !e.mentions(secret)),
            "{secret} logged: {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_failing_surreal_live_stream_never_logs_its_credentials() {
    let (log, _guard) = capture();
    let master = common::redb_master("product").await;
    // Nothing listens on port 1: a connection refused. The test server (when
    // it runs) refuses the sign-in: a wrong user and password.
    let server = common::surreal::surreal_addr();
    let urls = [
        "ws://someone:hunter2@127.0.0.1:1/vlive_test/trace".to_string(),
        format!("ws://someone:hunter2@{server}/vlive_test/trace"),
    ];
    for (n, url) in urls.iter().enumerate() {
        let stream = vantage_live::SurrealLiveStream::new(url, "product").unwrap();
        assert!(!format!("{stream:?}").contains("hunter2"));
        let live = LiveTable::new(
            master.table.clone(),
            format!("trace-surreal-{n}"),
            Arc::new(MemCache::new()),
        )
        .with_live_stream(Arc::new(stream));
        let mut status = live.live_stream_status().unwrap();
        live.start_live_stream();
        patiently(
            "two failed subscriptions",
            status.wait_for(|s| s.subscriptions >= 2),
        )
        .await;
    }
    let bad = vantage_live::SurrealLiveStream::new("wss://someone:hunter2@h:1/a/b", "product");
    assert!(!bad.unwrap_err().to_string().contains("hunter2"));

    let events = log.events();
    let failures = events
        .iter()
        .filter(|e| e.message() == "SurrealDB LIVE query could not start")
        .filter(|e| e.level == Level::WARN)
        .count();
    // The first subscription of each has failed once the second started.
    assert!(failures >= urls.len(), "{events:#?}");
    for secret in ["hunter2", "someone", "ws://"] {
        assert!(
            events.iter().all(|e| !e.mentions(secret)),
            "{secret} logged: {events:#?}"
        );
    }
}
