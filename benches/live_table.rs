//! Criterion benchmarks: hits against the floor, plain reads against the
//! master, each layer's cost (in depth, and alone over the instant service
//! of `vantage_live_layers::bench`), cache size, inserts (and a list-then-save
//! loop), and concurrent cold reads, for this crate and for its predecessor (`vantage-live` 0.4.8).
//!
//! ```text
//! cargo bench --bench live_table            # everything (a few minutes)
//! cargo bench --bench live_table -- hit/    # one group
//! ```
//!
//! Criterion times each benchmark on its own; for ratios taken within one
//! run (interleaved, so drift hits both sides alike) use the quick report,
//! `cargo run --release --example bench_report`. Both use the fixtures in
//! `benches/support/mod.rs` and the same harness: a current-thread tokio
//! runtime, the calls awaited in a loop inside one `block_on`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::per_layer;
use support::{
    insert_one, list_then_update, list_through, row_id, Depths, Floor, Master, Remote, Target,
    CACHE_KEY, SIZES,
};
use vantage_dataset::prelude::ReadableValueSet;
use vantage_live::{Cache, CachedRows, LiveTable, ManualLiveStream, MemCache, NoCache, RedbCache};

fn pred_mem() -> Arc<predecessor::cache::MemCache> {
    Arc::new(predecessor::cache::MemCache::new())
}

/// Hits of `n` rows: the floor, the shared-rows read, ours and the
/// predecessor's with both stores.
fn hits(c: &mut Criterion) {
    let rt = support::runtime();
    for n in SIZES {
        let master = rt.block_on(Master::with_rows(n));
        let rows = rt.block_on(master.table.list_values()).unwrap();
        let cbor = CachedRows::new(rows.clone()).to_cbor().unwrap();
        let floor = rt.block_on(Floor::new(rows));
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let t = &master.table;
        let (om, or, pm, pr) = rt.block_on(async {
            (
                LiveTable::new(t.clone(), CACHE_KEY, Arc::new(MemCache::new())),
                LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(RedbCache::open(dirs[0].path()).unwrap()),
                ),
                predecessor::LiveTable::new(t.clone(), CACHE_KEY, pred_mem()),
                predecessor::LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(predecessor::cache::RedbCache::open(dirs[1].path()).unwrap()),
                ),
            )
        });
        rt.block_on(async {
            om.list_values().await.unwrap();
            or.list_values().await.unwrap();
            pm.list_values().await.unwrap();
            pr.list_values().await.unwrap();
        });
        let mut g = c.benchmark_group(format!("hit/{n}"));
        // Millisecond calls at 1,000 rows: fewer samples fit the time.
        g.sample_size(if n > 100 { 40 } else { 100 });
        g.bench_function("floor_owned", |b| b.to_async(&rt).iter(|| floor.owned()));
        g.bench_function("floor_shared", |b| b.to_async(&rt).iter(|| floor.shared()));
        g.bench_function("cbor_decode", |b| {
            b.to_async(&rt)
                .iter(|| async { CachedRows::from_cbor(&cbor).unwrap() })
        });
        g.bench_function("ours_mem", |b| b.to_async(&rt).iter(|| om.list_values()));
        g.bench_function("ours_redb", |b| b.to_async(&rt).iter(|| or.list_values()));
        g.bench_function("pred_mem", |b| b.to_async(&rt).iter(|| pm.list_values()));
        g.bench_function("pred_redb", |b| b.to_async(&rt).iter(|| pr.list_values()));
        g.finish();

        // Reads with `NoCache`, against the master itself.
        let (on, pn) = rt.block_on(async {
            (
                LiveTable::new(t.clone(), CACHE_KEY, Arc::new(NoCache)),
                predecessor::LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(predecessor::cache::NoCache),
                ),
            )
        });
        let mut g = c.benchmark_group(format!("read_nocache/{n}"));
        g.sample_size(if n > 100 { 40 } else { 100 });
        g.bench_function("direct", |b| b.to_async(&rt).iter(|| t.list_values()));
        g.bench_function("ours", |b| b.to_async(&rt).iter(|| on.list_values()));
        g.bench_function("pred", |b| b.to_async(&rt).iter(|| pn.list_values()));
        g.finish();
    }
}

/// Each layer's own cost on a hit: stacks of growing depth over one core, on
/// a 1-row slot so the clone does not drown the layers.
fn layers(c: &mut Criterion) {
    let rt = support::runtime();
    let master = rt.block_on(Master::with_rows(1));
    let cache: Arc<dyn Cache> = Arc::new(MemCache::new());
    let depths = rt.block_on(async { Depths::new(&master.table, cache.clone()) });
    let (live, live_events, pred) = rt.block_on(async {
        (
            LiveTable::new(master.table.clone(), CACHE_KEY, cache.clone()),
            LiveTable::new(master.table.clone(), CACHE_KEY, cache.clone())
                .with_live_stream(Arc::new(ManualLiveStream::new())),
            predecessor::LiveTable::new(master.table.clone(), CACHE_KEY, pred_mem()),
        )
    });
    let key = live.page_cache_key(None);
    rt.block_on(async {
        depths.ready().await;
        live_events.start_live_stream();
        let mut status = live_events.live_stream_status().unwrap();
        status.wait_for(|s| s.subscriptions >= 1).await.unwrap();
        list_through(&depths.core).await.unwrap();
        assert!(cache.get(&key).await.unwrap().is_some());
        pred.list_values().await.unwrap();
    });
    let mut g = c.benchmark_group("layers");
    g.bench_function("backend_get", |b| b.to_async(&rt).iter(|| cache.get(&key)));
    g.bench_function("depth/0_core", |b| {
        b.to_async(&rt).iter(|| list_through(&depths.core))
    });
    g.bench_function("depth/1", |b| {
        b.to_async(&rt).iter(|| list_through(&depths.one))
    });
    g.bench_function("depth/2", |b| {
        b.to_async(&rt).iter(|| list_through(&depths.two))
    });
    g.bench_function("depth/3", |b| {
        b.to_async(&rt).iter(|| list_through(&depths.three))
    });
    g.bench_function("live_table", |b| {
        b.to_async(&rt).iter(|| live.list_values())
    });
    g.bench_function("live_table_stream", |b| {
        b.to_async(&rt).iter(|| live_events.list_values())
    });
    g.bench_function("pred_live_table", |b| {
        b.to_async(&rt).iter(|| pred.list_values())
    });
    g.finish();
}

/// Time `iters` calls through `service` as tower's callers make them.
fn time_calls<S>(
    rt: &tokio::runtime::Runtime,
    service: &mut S,
    iters: u64,
    request: fn() -> vantage_live::Request,
) -> Duration
where
    S: tower::Service<vantage_live::Request>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            per_layer::call(service, request()).await;
        }
        start.elapsed()
    })
}

/// The per-layer table: each layer alone over the instant service, the
/// assembled stack and a `LiveTable` over it, on a hit and on a write, at
/// 1, 100 and 1,000 rows (`per_layer/{hit,write}/{rows}/{stack}`).
fn per_layer(c: &mut Criterion) {
    use per_layer::{read, write, PerLayer};
    let rt = support::runtime();
    let metadata = rt.block_on(Master::with_rows(1));
    for (path, request) in [("hit", read as fn() -> _), ("write", write as fn() -> _)] {
        for rows in [1, 100, 1_000] {
            let mut st = rt.block_on(PerLayer::new(rows, &metadata.table));
            let mut g = c.benchmark_group(format!("per_layer/{path}/{rows}"));
            g.bench_function("instant", |b| {
                b.iter_custom(|n| time_calls(&rt, &mut st.instant, n, request))
            });
            g.bench_function("cache", |b| {
                b.iter_custom(|n| time_calls(&rt, &mut st.cache, n, request))
            });
            g.bench_function("write_queue", |b| {
                b.iter_custom(|n| time_calls(&rt, &mut st.queue, n, request))
            });
            g.bench_function("invalidate_on_event", |b| {
                b.iter_custom(|n| time_calls(&rt, &mut st.events, n, request))
            });
            g.bench_function("tracing", |b| {
                b.iter_custom(|n| time_calls(&rt, &mut st.tracing, n, request))
            });
            g.bench_function("assembled", |b| {
                b.iter_custom(|n| time_calls(&rt, &mut st.assembled, n, request))
            });
            let live = st.live.clone();
            if path == "hit" {
                g.bench_function("live_table", |b| {
                    b.to_async(&rt).iter(|| live.list_shared())
                });
            } else {
                g.bench_function("live_table", |b| {
                    b.to_async(&rt).iter(|| per_layer::live_write(&live))
                });
            }
            g.finish();
        }
    }
}

/// A 1-row hit in a cache holding 1 slot and 100,000 slots.
fn slots(c: &mut Criterion) {
    const MANY: u64 = 100_000;
    let rt = support::runtime();
    let master = rt.block_on(Master::with_rows(1));
    let t = &master.table;
    let mut g = c.benchmark_group("slots");
    for slots in [1, MANY] {
        let (ours, pred) = rt.block_on(async {
            let cache = MemCache::builder().max_weight(1 << 30).build();
            let ours = LiveTable::new(t.clone(), CACHE_KEY, Arc::new(cache.clone()));
            let pred_cache = predecessor::cache::MemCache::new();
            let pred =
                predecessor::LiveTable::new(t.clone(), CACHE_KEY, Arc::new(pred_cache.clone()));
            let small = support::rows(1);
            for i in 1..slots {
                let id = row_id(i);
                cache
                    .put(&ours.id_cache_key(&id), CachedRows::new(small.clone()))
                    .await
                    .unwrap();
                predecessor::Cache::put(
                    &pred_cache,
                    &pred.id_cache_key(&id),
                    predecessor::CachedRows::new(small.clone()),
                )
                .await
                .unwrap();
            }
            ours.list_values().await.unwrap();
            pred.list_values().await.unwrap();
            cache.run_pending_tasks().await;
            (ours, pred)
        });
        g.bench_function(BenchmarkId::new("ours", slots), |b| {
            b.to_async(&rt).iter(|| ours.list_values())
        });
        g.bench_function(BenchmarkId::new("pred", slots), |b| {
            b.to_async(&rt).iter(|| pred.list_values())
        });
    }
    g.finish();
}

/// Inserts of unique rows: straight into the master, and through ours and
/// the predecessor's stacks with both stores.
fn inserts(c: &mut Criterion) {
    let rt = support::runtime();
    type Op = for<'t> fn(&Master, &'t dyn Target) -> futures_util::future::BoxFuture<'t, ()>;
    let groups: [(&str, Op); 2] = [
        ("insert", insert_one),
        // A screen that lists and saves: each save drops a filled slot.
        ("list_then_update", list_then_update),
    ];
    for (group, op) in groups {
        // A fresh master per group: inserts grow it.
        let master = rt.block_on(Master::with_rows(100));
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let t = &master.table;
        let direct = t.clone();
        let (om, or, pm, pr) = rt.block_on(async {
            (
                LiveTable::new(t.clone(), CACHE_KEY, Arc::new(MemCache::new())),
                LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(RedbCache::open(dirs[0].path()).unwrap()),
                ),
                predecessor::LiveTable::new(t.clone(), CACHE_KEY, pred_mem()),
                predecessor::LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(predecessor::cache::RedbCache::open(dirs[1].path()).unwrap()),
                ),
            )
        });
        let targets: [(&str, &dyn Target); 5] = [
            ("direct", &direct),
            ("ours_mem", &om),
            ("ours_redb", &or),
            ("pred_mem", &pm),
            ("pred_redb", &pr),
        ];
        let mut g = c.benchmark_group(group);
        g.sample_size(40);
        for (name, target) in targets {
            g.bench_function(name, |b| b.to_async(&rt).iter(|| op(&master, target)));
        }
        g.finish();
    }
}

/// 64 concurrent cold reads of a master with 2 ms of latency, each iteration
/// on a fresh cache (wall time; the report counts the master reads).
fn cold_reads(c: &mut Criterion) {
    let rt = support::multi_thread_runtime();
    let master = rt.block_on(Master::with_rows(100));
    let mut g = c.benchmark_group("cold_reads_64");
    g.sample_size(10);
    g.bench_function("ours_mem", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (table, _) = Remote::wrap(master.table.clone(), Duration::from_millis(2));
                    let live = LiveTable::new(table, CACHE_KEY, Arc::new(MemCache::new()));
                    let start = Instant::now();
                    support::fan_out(64, || {
                        let live = live.clone();
                        async move { live.list_values().await.unwrap().len() }
                    })
                    .await;
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.bench_function("pred_mem", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (table, _) = Remote::wrap(master.table.clone(), Duration::from_millis(2));
                    let live = predecessor::LiveTable::new(table, CACHE_KEY, pred_mem());
                    let start = Instant::now();
                    support::fan_out(64, || {
                        let live = live.clone();
                        async move { live.list_values().await.unwrap().len() }
                    })
                    .await;
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = hits, layers, per_layer, slots, inserts, cold_reads
}
criterion_main!(benches);
