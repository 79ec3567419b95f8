//! Shared benchmark fixtures: real `vantage-redb` masters, the cost floor,
//! the stacks under test (ours and the predecessor's), and a small
//! interleaving sampler.
//!
//! Used by the criterion bench (`benches/live_table.rs`) and by the quick
//! report (`examples/bench_report.rs`, which includes this file with
//! `#[path]`), so both measure exactly the same things.
#![allow(dead_code)]

#[path = "../../tests/common/hooked.rs"]
mod hooked;
pub mod per_layer;
mod remote;

pub use self::remote::Remote;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::Value;
use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tower::ServiceBuilder;
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{
    CacheLayer, CachedRows, InvalidateOnEventLayer, ManualLiveStream, TableService,
};
use vantage_redb::Redb;
use vantage_table::any::AnyTable;
use vantage_table::table::Table;
use vantage_types::{EmptyEntity, Record};

/// Rows keyed by id, as every read returns them.
pub type Rows = IndexMap<String, Record<Value>>;

/// The cache_key every stack caches under.
pub const CACHE_KEY: &str = "items";

/// The row counts of the hit and read figures.
pub const SIZES: [usize; 2] = [100, 1_000];

/// A 40-character note.
const NOTE: &str = "a forty character note for every row....";

/// Row `i`: a name, an integer price, a 40-character note and a flag.
pub fn row(i: u64) -> Record<Value> {
    debug_assert_eq!(NOTE.len(), 40);
    let mut record = Record::new();
    record.insert("name".to_string(), Value::Text(format!("item {i:06}")));
    record.insert("price".to_string(), Value::Integer((i * 7 % 1000).into()));
    record.insert("note".to_string(), Value::Text(NOTE.to_string()));
    record.insert("flag".to_string(), Value::Bool(i % 2 == 0));
    record
}

/// The id of row `i` (zero-padded: redb lists in id order).
pub fn row_id(i: u64) -> String {
    format!("i{i:07}")
}

/// `n` rows as a master would return them (for in-memory fixtures).
pub fn rows(n: usize) -> Rows {
    (0..n as u64).map(|i| (row_id(i), row(i))).collect()
}

/// A real master: a `vantage-redb` table in a temp file.
pub struct Master {
    /// The table (`item`: id, name, price, note, flag).
    pub table: AnyTable,
    /// Keeps the file.
    pub dir: TempDir,
    next_id: Arc<AtomicU64>,
}

impl Master {
    /// A fresh master holding rows `0..n`.
    pub async fn with_rows(n: usize) -> Master {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Redb::create(dir.path().join("master.redb")).expect("create redb master");
        let table = Table::<Redb, EmptyEntity>::new("item", db)
            .with_id_column("id")
            .with_column_of::<String>("name")
            .with_column_of::<i64>("price")
            .with_column_of::<String>("note")
            .with_column_of::<bool>("flag");
        let table = AnyTable::from_table(table);
        for i in 0..n as u64 {
            table
                .insert_value(&row_id(i), &row(i))
                .await
                .expect("seed master");
        }
        Master {
            table,
            dir,
            next_id: Arc::new(AtomicU64::new(n as u64)),
        }
    }

    /// A row id not used yet (for inserts; shared by every clone of the
    /// counter, so interleaved variants never collide).
    pub fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A current-thread tokio runtime (timers and I/O on): the harness of every
/// latency figure, ours and the predecessor's alike.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A multi-thread runtime with two workers (the machine has two cores): for
/// the concurrency figure.
pub fn multi_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The floor of an owned-return read: a moka lookup of the slot and a deep
/// clone of its rows, which is what any read returning owned rows out of a
/// shared in-memory cache must pay. [`Floor::shared`] is the same lookup
/// returning the `Arc` (a read API that shares rows instead of cloning).
#[derive(Clone)]
pub struct Floor {
    cache: moka::sync::Cache<String, Arc<CachedRows>>,
    key: String,
}

impl Floor {
    /// A moka cache holding `rows` in one slot.
    pub async fn new(rows: Rows) -> Floor {
        let cache = moka::sync::Cache::new(1_000);
        let key = format!("{CACHE_KEY}/list/-/all");
        cache.insert(key.clone(), Arc::new(CachedRows::new(rows)));
        Floor { cache, key }
    }

    /// Lookup + deep clone: the owned-return floor.
    pub async fn owned(&self) -> Rows {
        let slot = self.cache.get(self.key.as_str()).expect("floor slot");
        slot.rows.clone()
    }

    /// Lookup only: the rows shared behind their `Arc`.
    pub async fn shared(&self) -> Arc<CachedRows> {
        self.cache.get(self.key.as_str()).expect("floor slot")
    }
}

/// Our stacks of growing depth, all over the same `CacheService<TableService>`
/// core (one `CacheLayer`, so they share its slots): the core alone, then with
/// one, two and three `InvalidateOnEventLayer`s (each on its own
/// `ManualLiveStream`) in front.
pub struct Depths {
    /// `CacheService<TableService>`.
    pub core: vantage_live::vantage_live_layers::CacheService<TableService>,
    /// + 1 `InvalidateOnEvent`.
    pub one: Stack1,
    /// + 2.
    pub two: Stack2,
    /// + 3.
    pub three: Stack3,
    /// Keep the streams alive (and so the event tasks subscribed).
    pub streams: Vec<ManualLiveStream>,
    statuses: Vec<vantage_live::EventStatus>,
}

type Core = vantage_live::vantage_live_layers::CacheService<TableService>;
type Event<S> = vantage_live::vantage_live_layers::InvalidateOnEvent<S>;
/// Core + 1 event layer.
pub type Stack1 = Event<Core>;
/// Core + 2 event layers.
pub type Stack2 = Event<Event<Core>>;
/// Core + 3 event layers.
pub type Stack3 = Event<Event<Event<Core>>>;

impl Depths {
    /// Build the stacks over `master` and `cache` (call inside a runtime, so
    /// the event tasks start).
    pub fn new(master: &AnyTable, cache: Arc<dyn vantage_live::Cache>) -> Depths {
        let cache_layer = CacheLayer::new(cache, CACHE_KEY);
        let streams: Vec<ManualLiveStream> = (0..3).map(|_| ManualLiveStream::new()).collect();
        let layers: Vec<InvalidateOnEventLayer> = streams
            .iter()
            .map(|s| InvalidateOnEventLayer::new(Arc::new(s.clone()), cache_layer.invalidator()))
            .collect();
        // Builders start nothing: start the event tasks now.
        for layer in &layers {
            layer.start();
        }
        let statuses = layers.iter().map(|l| l.status()).collect();
        let event = |i: usize| layers[i].clone();
        let core = ServiceBuilder::new()
            .layer(cache_layer.clone())
            .service(TableService::new(master.clone()));
        let one = ServiceBuilder::new()
            .layer(event(0))
            .layer(cache_layer.clone())
            .service(TableService::new(master.clone()));
        let two = ServiceBuilder::new()
            .layer(event(1))
            .layer(event(0))
            .layer(cache_layer.clone())
            .service(TableService::new(master.clone()));
        let three = ServiceBuilder::new()
            .layer(event(2))
            .layer(event(1))
            .layer(event(0))
            .layer(cache_layer.clone())
            .service(TableService::new(master.clone()));
        Depths {
            core,
            one,
            two,
            three,
            streams,
            statuses,
        }
    }

    /// Wait until every event task has subscribed (each subscription drops
    /// the cache_key once: fill the slot after this).
    pub async fn ready(&self) {
        for status in &self.statuses {
            status
                .clone()
                .wait_for(|s| s.subscriptions >= 1)
                .await
                .expect("event task running");
        }
    }
}

/// One read through a stack, as `LiveTable` runs it: clone the stack, then
/// `oneshot` a list of the plain view.
pub async fn list_through<S>(stack: &S) -> Result<Rows, tower::BoxError>
where
    S: tower::Service<vantage_live::Request, Response = vantage_live::Response> + Clone,
    S::Error: Into<tower::BoxError>,
{
    use tower::ServiceExt;
    Ok(stack
        .clone()
        .oneshot(vantage_live::Request::List(vantage_live::View::new()))
        .await
        .map_err(Into::into)?
        .into_rows()?)
}

/// Time `iters` sequential awaits of `f()` inside one `block_on`, in
/// nanoseconds per call. Criterion's `to_async(..).iter(..)` runs its loop
/// the same way, so both harnesses see the same per-call work.
pub fn time_batch<F, Fut>(rt: &Runtime, iters: u64, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f().await);
        }
        start.elapsed()
    });
    elapsed.as_nanos() as f64 / iters as f64
}

/// A variant of an interleaved comparison: a name and a way to time a batch.
pub struct Variant<'a> {
    /// Shown in the medians table.
    pub name: String,
    /// Runs `iters` calls and answers nanoseconds per call.
    pub run: Box<dyn FnMut(u64) -> f64 + 'a>,
    /// Calls per batch, calibrated so one batch lasts about the batch time.
    iters: u64,
    /// Nanoseconds per call, one entry per round.
    pub samples: Vec<f64>,
}

impl<'a> Variant<'a> {
    /// A variant timed by `run(iters) -> ns per call`.
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> f64 + 'a) -> Self {
        Variant {
            name: name.into(),
            run: Box::new(run),
            iters: 1,
            samples: Vec::new(),
        }
    }

    /// The median over the rounds, in nanoseconds per call.
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

/// Run `variants` interleaved: calibrate each so a batch lasts about `batch`,
/// then for `rounds` rounds time one batch of every variant in turn (the
/// order rotating each round), so drift and noise hit all of them alike.
pub fn interleave(variants: &mut [Variant<'_>], rounds: usize, batch: Duration) {
    // Warm up and calibrate.
    for v in variants.iter_mut() {
        let mut iters = 1u64;
        loop {
            let start = Instant::now();
            (v.run)(iters);
            let took = start.elapsed();
            if took >= batch / 4 || iters >= 1 << 24 {
                let per = took.as_secs_f64() / iters as f64;
                v.iters = ((batch.as_secs_f64() / per).round() as u64).max(1);
                break;
            }
            iters *= 4;
        }
    }
    let n = variants.len();
    for round in 0..rounds {
        for k in 0..n {
            let v = &mut variants[(round + k) % n];
            let ns = (v.run)(v.iters);
            v.samples.push(ns);
        }
    }
}

/// Per-round ratios `a[i] / b[i]` of two variants sampled in the same rounds,
/// and their median: drift that hits a round hits both sides of its ratio.
pub fn paired_ratio(a: &Variant<'_>, b: &Variant<'_>) -> f64 {
    let ratios: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| x / y)
        .collect();
    median(&ratios)
}

/// The median of `xs` (NaN if empty).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Resident memory of this process, in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Reads and inserts, whatever the table: the master itself, ours, the
/// predecessor.
pub trait Target: Sync {
    /// Insert `record` under `id`; panics if the table refuses.
    fn insert(&self, id: String, record: Record<Value>) -> BoxFuture<'_, ()>;
    /// Replace row `id` with `record`; panics if the table refuses.
    fn replace(&self, id: String, record: Record<Value>) -> BoxFuture<'_, ()>;
    /// List the rows; answers how many.
    fn list(&self) -> BoxFuture<'_, usize>;
}

/// Every value set with text ids and CBOR values is a [`Target`]: the
/// master itself (`AnyTable`), ours and the predecessor's `LiveTable`.
impl<T> Target for T
where
    T: ReadableValueSet<Id = String, Value = Value>
        + WritableValueSet<Id = String, Value = Value>
        + Sync,
{
    fn insert(&self, id: String, record: Record<Value>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.insert_value(&id, &record).await.expect("insert");
        })
    }
    fn replace(&self, id: String, record: Record<Value>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.replace_value(&id, &record).await.expect("replace");
        })
    }
    fn list(&self) -> BoxFuture<'_, usize> {
        Box::pin(async move { self.list_values().await.expect("list").len() })
    }
}

/// Insert a row with a fresh id into `table` (every variant boxes its future
/// the same way, so the box costs all of them alike).
pub fn insert_one<'t>(master: &Master, table: &'t dyn Target) -> BoxFuture<'t, ()> {
    let i = master.fresh_id();
    table.insert(row_id(i), row(i))
}

/// List, then save an edit of one of the first 100 rows (a screen showing
/// the rows and saving a form; the master keeps its size). Through a cache,
/// each list after a save is a miss that fills, and each save drops a
/// filled slot.
pub fn list_then_update<'t>(master: &Master, table: &'t dyn Target) -> BoxFuture<'t, ()> {
    let i = master.fresh_id();
    Box::pin(async move {
        black_box(table.list().await);
        table.replace(row_id(i % 100), row(i)).await;
    })
}

/// Spawn `n` tasks made by `make`, all released together by a barrier, and
/// wait for them (each must answer a non-empty read).
pub async fn fan_out<F, Fut>(n: usize, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = usize> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let read = make();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                read.await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.expect("read task") > 0);
    }
}
