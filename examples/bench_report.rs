//! The quick performance report: every published figure, measured in one
//! process in well under two minutes, printed as markdown tables.
//!
//! ```text
//! cargo run --release --example bench_report
//! ```
//!
//! Each comparison runs its variants interleaved (one batch of each in turn,
//! for many rounds; see `benches/support/mod.rs`), so drift on a shared
//! machine hits both sides of a ratio alike. Times are medians over the
//! rounds; ratios are medians of the per-round ratios. The memory figure runs
//! in child processes of this same binary (`--memory ours|predecessor`), so
//! nothing else measured here inflates its resident memory.
//!
//! `--profile <scenario>` runs one variant alone for a few seconds, for a
//! profiler (`perf record`, `valgrind --tool=callgrind`); see [`profile`].
//!
//! `--only hits,layers,per-layer,slots,inserts,freshness,concurrent,memory`
//! runs some sections.
//!
//! `--plot FILE.svg` also draws the per-layer table as a stacked bar chart.
//!
//! `predecessor` is `vantage-live` 0.4.8, the crate this one replaces, run on
//! the same masters in the same rounds.

#[path = "../benches/support/plot.rs"]
mod plot;
#[path = "../benches/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::per_layer;
use support::{
    insert_one, interleave, list_then_update, list_through, median, paired_ratio, row_id,
    rss_bytes, time_batch, Depths, Floor, Master, Remote, Variant, CACHE_KEY, SIZES,
};
use vantage_dataset::prelude::ReadableValueSet;
use vantage_live::{
    Cache, CachedRows, CachedSlot, LiveTable, ManualLiveStream, MemCache, NoCache, RedbCache,
    SlotValue,
};

/// Rounds of every interleaved comparison.
const ROUNDS: usize = 101;
/// How long one batch of one variant lasts.
const BATCH: Duration = Duration::from_millis(4);
/// Inserts wait for the disk, whose latency swings with every other process
/// writing: short batches (a couple of inserts), many rounds.
const INSERT_ROUNDS: usize = 301;
const INSERT_BATCH: Duration = Duration::from_millis(2);
/// The memory figure: the cap, and how much row weight is offered to it.
const MEMORY_CAP: u64 = 64 * 1024 * 1024;
const MEMORY_OFFERED: u64 = 1024 * 1024 * 1024;
/// Slots of the "many slots" figure.
const MANY_SLOTS: usize = 100_000;
/// Concurrent cold reads, and how many times the trial is repeated.
const CONCURRENT: usize = 64;
const CONCURRENT_TRIALS: usize = 9;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory") {
        memory_phase(args.get(i + 1).map(String::as_str).unwrap_or("ours"));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        profile(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    let started = Instant::now();
    let mut report = Report {
        load_at_start: load(),
        ..Report::default()
    };

    // `--only hits,layers,per-layer,slots,inserts,freshness,concurrent,memory`
    // runs a subset.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>());
    let run = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    if run("hits") {
        hits_and_reads(&mut report);
    }
    if run("layers") {
        layers(&mut report);
    }
    if run("per-layer") {
        let plot = args
            .iter()
            .position(|a| a == "--plot")
            .and_then(|i| args.get(i + 1));
        per_layer(&mut report, plot.map(String::as_str));
    }
    if run("slots") {
        many_slots(&mut report);
    }
    if run("inserts") {
        inserts(&mut report);
    }
    if run("freshness") {
        scroll_and_edit(&mut report);
        stale_hits(&mut report);
    }
    if run("concurrent") {
        concurrent_cold_reads(&mut report);
    }
    if run("memory") {
        memory(&mut report);
    }

    println!("{}", report.render(started.elapsed()));
}

// ---------------------------------------------------------------- the report

#[derive(Default)]
struct Report {
    /// The 1-, 5- and 15-minute load averages when the report started.
    load_at_start: String,
    /// (group, variant, median ns per call)
    medians: Vec<(String, String, f64)>,
    figures: Vec<Figure>,
    /// Whole markdown tables (the per-layer table), printed after the
    /// figures.
    tables: Vec<String>,
}

struct Figure {
    name: String,
    ours: String,
    predecessor: String,
    target: String,
    /// ours / predecessor, same scenario.
    ratio: String,
}

impl Report {
    fn medians(&mut self, group: &str, variants: &[Variant<'_>]) {
        for v in variants {
            self.medians
                .push((group.to_string(), v.name.clone(), v.median()));
            eprintln!("  {group:<28} {:<34} {}", v.name, fmt_ns(v.median()));
        }
    }

    fn figure(&mut self, name: &str, ours: String, pred: String, target: &str, ratio: String) {
        eprintln!(
            "  => {name}: ours {ours}, predecessor {pred}, target {target}, ours/pred {ratio}"
        );
        self.figures.push(Figure {
            name: name.to_string(),
            ours,
            predecessor: pred,
            target: target.to_string(),
            ratio,
        });
    }

    fn render(&self, took: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n## Figures\n");
        let _ = writeln!(
            out,
            "| figure | ours | predecessor | target | ratio (ours / predecessor) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---|---:|");
        for f in &self.figures {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                f.name, f.ours, f.predecessor, f.target, f.ratio
            );
        }
        for table in &self.tables {
            out.push_str(table);
        }
        let _ = writeln!(out, "\n## Medians (per call)\n");
        let _ = writeln!(out, "| scenario | variant | median |");
        let _ = writeln!(out, "|---|---|---:|");
        for (group, variant, ns) in &self.medians {
            let _ = writeln!(out, "| {group} | {variant} | {} |", fmt_ns(*ns));
        }
        let _ = writeln!(
            out,
            "\n{} cores; load average {} at the start, {} at the end; the report took {:.0} s.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.load_at_start,
            load(),
            took.as_secs_f64()
        );
        out
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r < 0.1 {
        format!("{r:.4}")
    } else {
        format!("{r:.2}")
    }
}

/// `value` against an upper bound, marked met or missed.
fn target(bound: &str, value: f64, max: f64) -> String {
    if value <= max {
        format!("{bound} (met)")
    } else {
        format!("{bound} (**missed**)")
    }
}

fn find<'v, 'a>(variants: &'v [Variant<'a>], name: &str) -> &'v Variant<'a> {
    variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no variant {name}"))
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------- hits and plain reads

fn hits_and_reads(report: &mut Report) {
    let rt = support::runtime();
    eprintln!("load average at start: {}", load());
    for n in SIZES {
        eprintln!("[{n} rows] seeding a redb master…");
        let master = rt.block_on(Master::with_rows(n));
        let rows = rt
            .block_on(master.table.list_values())
            .expect("master read");
        assert_eq!(rows.len(), n);
        let floor = rt.block_on(Floor::new(rows.clone()));
        // What a RedbCache slot holds: decoding it is the least a disk hit pays.
        let cbor = CachedSlot::new(SlotValue::Rows(Arc::new(rows.clone())))
            .to_cbor()
            .expect("encode");

        let ours_dir = tempfile::tempdir().expect("temp dir");
        let disk_dir = tempfile::tempdir().expect("temp dir");
        let pred_dir = tempfile::tempdir().expect("temp dir");
        let ours_disk = rt.block_on(async {
            LiveTable::new(
                master.table.clone(),
                CACHE_KEY,
                Arc::new(
                    RedbCache::open(disk_dir.path())
                        .expect("redb cache")
                        .with_memory_front(0),
                ),
            )
        });
        let (ours_mem, ours_redb, ours_none, pred_mem, pred_redb, pred_none) = rt.block_on(async {
            let t = master.table.clone();
            (
                LiveTable::new(t.clone(), CACHE_KEY, Arc::new(MemCache::new())),
                LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(RedbCache::open(ours_dir.path()).expect("redb cache")),
                ),
                LiveTable::new(t.clone(), CACHE_KEY, Arc::new(NoCache)),
                predecessor::LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(predecessor::cache::MemCache::new()),
                ),
                predecessor::LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(predecessor::cache::RedbCache::open(pred_dir.path()).expect("redb")),
                ),
                predecessor::LiveTable::new(t, CACHE_KEY, Arc::new(predecessor::cache::NoCache)),
            )
        });
        // Fill the caches, and check every variant answers the master's rows.
        rt.block_on(async {
            for live in [&ours_mem, &ours_redb, &ours_disk, &ours_none] {
                assert_eq!(live.list_values().await.unwrap(), rows);
            }
            assert_eq!(*ours_mem.list_shared().await.unwrap(), rows);
            for live in [&pred_mem, &pred_redb, &pred_none] {
                assert_eq!(live.list_values().await.unwrap(), rows);
            }
            let key = ours_mem.page_cache_key(None);
            assert!(ours_mem.cache().get(&key).await.unwrap().is_some());
            assert!(ours_redb.cache().get(&key).await.unwrap().is_some());
            assert_eq!(floor.owned().await, rows);
        });

        // Hits.
        let mut v = vec![
            Variant::new("floor: moka get + deep clone", |it| {
                time_batch(&rt, it, || floor.owned())
            }),
            Variant::new("shared rows: moka get (Arc)", |it| {
                time_batch(&rt, it, || floor.shared())
            }),
            Variant::new("CBOR decode of the slot alone", |it| {
                time_batch(&rt, it, || async { CachedSlot::from_cbor(&cbor).unwrap() })
            }),
            Variant::new("ours MemCache hit", |it| {
                time_batch(&rt, it, || ours_mem.list_values())
            }),
            Variant::new("ours MemCache hit, shared (list_shared)", |it| {
                time_batch(&rt, it, || ours_mem.list_shared())
            }),
            Variant::new("ours RedbCache hit (front)", |it| {
                time_batch(&rt, it, || ours_redb.list_values())
            }),
            Variant::new("ours RedbCache hit (file, front off)", |it| {
                time_batch(&rt, it, || ours_disk.list_values())
            }),
            Variant::new("predecessor MemCache hit", |it| {
                time_batch(&rt, it, || pred_mem.list_values())
            }),
            Variant::new("predecessor RedbCache hit", |it| {
                time_batch(&rt, it, || pred_redb.list_values())
            }),
        ];
        eprintln!("[{n} rows] hits (load {})", load());
        interleave(&mut v, ROUNDS, BATCH);
        report.medians(&format!("hit, {n} rows"), &v);
        let floor_v = find(&v, "floor: moka get + deep clone");
        let shared = find(&v, "shared rows: moka get (Arc)");
        let om = find(&v, "ours MemCache hit");
        let os = find(&v, "ours MemCache hit, shared (list_shared)");
        let or = find(&v, "ours RedbCache hit (front)");
        let od = find(&v, "ours RedbCache hit (file, front off)");
        let pm = find(&v, "predecessor MemCache hit");
        let pr = find(&v, "predecessor RedbCache hit");
        report.figure(
            &format!(
                "shared read (`list_shared`), full `LiveTable` stack, `MemCache` hit, {n} rows (time)"
            ),
            fmt_ns(os.median()),
            "—".into(),
            &target("≤ 1 µs", os.median(), 1_000.0),
            "—".into(),
        );
        let r = paired_ratio(om, floor_v);
        report.figure(
            &format!("owned hit (`list_values`), full stack, `MemCache` / floor, {n} rows"),
            fmt_ratio(r),
            fmt_ratio(paired_ratio(pm, floor_v)),
            &target("≤ 1.02", r, 1.02),
            fmt_ratio(paired_ratio(om, pm)),
        );
        let r = paired_ratio(or, om);
        report.figure(
            &format!(
                "`RedbCache` hit served by its memory front / `MemCache` hit, {n} rows (predecessor: its file)"
            ),
            fmt_ratio(r),
            fmt_ratio(paired_ratio(pr, pm)),
            &target("≤ 1.2", r, 1.2),
            fmt_ratio(paired_ratio(or, pr)),
        );
        let r = paired_ratio(od, floor_v);
        report.figure(
            &format!(
                "`RedbCache` hit served by the file (front off) / floor, {n} rows (predecessor: its file)"
            ),
            fmt_ratio(r),
            fmt_ratio(paired_ratio(pr, floor_v)),
            &target("≤ 2.0", r, 2.0),
            fmt_ratio(paired_ratio(od, pr)),
        );
        report.figure(
            &format!("CBOR decode of a `RedbCache` slot alone / floor, {n} rows"),
            fmt_ratio(paired_ratio(
                find(&v, "CBOR decode of the slot alone"),
                floor_v,
            )),
            "—".into(),
            "reported",
            "—".into(),
        );
        report.figure(
            &format!("shared-rows read (moka get, `Arc`) / floor, {n} rows"),
            fmt_ratio(paired_ratio(shared, floor_v)),
            "—".into(),
            "reported",
            "—".into(),
        );
        drop(v);

        // Reads that miss every time: NoCache against the master itself.
        let mut v = vec![
            Variant::new("direct master read", |it| {
                time_batch(&rt, it, || master.table.list_values())
            }),
            Variant::new("ours NoCache read", |it| {
                time_batch(&rt, it, || ours_none.list_values())
            }),
            Variant::new("predecessor NoCache read", |it| {
                time_batch(&rt, it, || pred_none.list_values())
            }),
        ];
        eprintln!("[{n} rows] NoCache reads (load {})", load());
        interleave(&mut v, ROUNDS, BATCH * 2);
        report.medians(&format!("read, {n} rows"), &v);
        let direct = find(&v, "direct master read");
        let on = find(&v, "ours NoCache read");
        let pn = find(&v, "predecessor NoCache read");
        let r = paired_ratio(on, direct);
        report.figure(
            &format!("`NoCache` read / direct master read, {n} rows"),
            fmt_ratio(r),
            fmt_ratio(paired_ratio(pn, direct)),
            &target("≤ 1.03", r, 1.03),
            fmt_ratio(paired_ratio(on, pn)),
        );
    }
}

// ------------------------------------------------------------- layer costs

fn layers(report: &mut Report) {
    let rt = support::runtime();
    eprintln!("[layers, 1 row] (load {})", load());
    let master = rt.block_on(Master::with_rows(1));
    let cache: Arc<dyn Cache> = Arc::new(MemCache::new());
    let depths = rt.block_on(async { Depths::new(&master.table, cache.clone()) });
    let (live, live_events, pred) = rt.block_on(async {
        let live = LiveTable::new(master.table.clone(), CACHE_KEY, cache.clone());
        let live_events = LiveTable::new(master.table.clone(), CACHE_KEY, cache.clone())
            .with_live_stream(Arc::new(ManualLiveStream::new()));
        let pred = predecessor::LiveTable::new(
            master.table.clone(),
            CACHE_KEY,
            Arc::new(predecessor::cache::MemCache::new()),
        );
        (live, live_events, pred)
    });
    let key = live.page_cache_key(None);
    rt.block_on(async {
        // Each event task drops the cache_key once it subscribes: wait for
        // them, then fill the shared slot once; every stack below reads it.
        depths.ready().await;
        live_events.start_live_stream();
        let mut status = live_events.live_stream_status().expect("live stream");
        status.wait_for(|s| s.subscriptions >= 1).await.unwrap();
        list_through(&depths.core).await.unwrap();
        assert!(cache.get(&key).await.unwrap().is_some());
        assert_eq!(list_through(&depths.three).await.unwrap().len(), 1);
        assert_eq!(live_events.list_values().await.unwrap().len(), 1);
        assert_eq!(pred.list_values().await.unwrap().len(), 1);
    });
    let mut v = vec![
        Variant::new("backend alone: Cache::get", |it| {
            time_batch(&rt, it, || cache.get(&key))
        }),
        Variant::new("core: CacheService<TableService>", |it| {
            time_batch(&rt, it, || list_through(&depths.core))
        }),
        Variant::new("core + 1 InvalidateOnEvent", |it| {
            time_batch(&rt, it, || list_through(&depths.one))
        }),
        Variant::new("core + 2 InvalidateOnEvent", |it| {
            time_batch(&rt, it, || list_through(&depths.two))
        }),
        Variant::new("core + 3 InvalidateOnEvent", |it| {
            time_batch(&rt, it, || list_through(&depths.three))
        }),
        Variant::new("LiveTable::list_values", |it| {
            time_batch(&rt, it, || live.list_values())
        }),
        Variant::new("LiveTable + live stream", |it| {
            time_batch(&rt, it, || live_events.list_values())
        }),
        Variant::new("predecessor LiveTable::list_values", |it| {
            time_batch(&rt, it, || pred.list_values())
        }),
    ];
    interleave(&mut v, ROUNDS, BATCH);
    report.medians("hit, 1 row", &v);
    let backend = find(&v, "backend alone: Cache::get");
    let core = find(&v, "core: CacheService<TableService>");
    let d: Vec<&Variant<'_>> = [
        "core: CacheService<TableService>",
        "core + 1 InvalidateOnEvent",
        "core + 2 InvalidateOnEvent",
        "core + 3 InvalidateOnEvent",
    ]
    .iter()
    .map(|n| find(&v, n))
    .collect();
    let lt = find(&v, "LiveTable::list_values");
    let lte = find(&v, "LiveTable + live stream");
    let pred_v = find(&v, "predecessor LiveTable::list_values");

    // Per-round differences, then their medians (same rounds, same drift).
    let diff = |a: &Variant<'_>, b: &Variant<'_>| {
        let xs: Vec<f64> = a
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| x - y)
            .collect();
        median(&xs)
    };
    // The event layer's cost: the least-squares slope over depth 0..=3.
    let slope = {
        let per_round: Vec<f64> = (0..d[0].samples.len())
            .map(|i| {
                let ys: Vec<f64> = d.iter().map(|v| v.samples[i]).collect();
                // x = 0,1,2,3: mean 1.5, sum of squares 5.
                ys.iter()
                    .enumerate()
                    .map(|(x, y)| (x as f64 - 1.5) * y)
                    .sum::<f64>()
                    / 5.0
            })
            .collect();
        median(&per_round)
    };
    let cache_cost = diff(core, backend);
    report.figure(
        "`CacheLayer` own cost on a hit (core stack − `Cache::get` alone), 1 row",
        fmt_ns(cache_cost),
        "—".into(),
        &target("≤ 200 ns", cache_cost, 200.0),
        "—".into(),
    );
    report.figure(
        "`InvalidateOnEventLayer` own cost on a hit (slope over 0–3 layers), 1 row",
        fmt_ns(slope),
        "—".into(),
        &target("≤ 200 ns", slope, 200.0),
        "—".into(),
    );
    let wrapper = diff(lt, core);
    report.figure(
        "`LiveTable` wrapper own cost on a hit (`list_values` − core stack), 1 row",
        fmt_ns(wrapper),
        "—".into(),
        &target("≤ 200 ns", wrapper, 200.0),
        "—".into(),
    );
    let with_stream = diff(lte, lt);
    report.figure(
        "`LiveTable` with a live stream − without, 1 row",
        fmt_ns(with_stream),
        "—".into(),
        &target("≤ 200 ns", with_stream, 200.0),
        "—".into(),
    );
    let r = paired_ratio(lt, pred_v);
    report.figure(
        "1-row owned hit (`list_values`), full stack, `MemCache`: time, and time / predecessor's",
        fmt_ns(lt.median()),
        fmt_ns(pred_v.median()),
        &target("≤ 1.0 × predecessor", r, 1.0),
        fmt_ratio(r),
    );
}

// ------------------------------------------------------- per-layer overhead

/// Row counts of the per-layer table.
const PER_LAYER_ROWS: [usize; 3] = [1, 100, 1_000];

/// Time `iters` calls through `service` (ready, call, await), in ns per call.
fn time_service<S>(
    rt: &tokio::runtime::Runtime,
    service: &mut S,
    iters: u64,
    request: fn() -> vantage_live::Request,
) -> f64
where
    S: tower::Service<vantage_live::Request>,
    S::Error: std::fmt::Debug,
{
    let took = rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            per_layer::call(service, request()).await;
        }
        start.elapsed()
    });
    took.as_nanos() as f64 / iters as f64
}

/// Each layer alone over the instant service, their sum, the assembled stack
/// and a `LiveTable` over it, on a hit and on a write, at 1, 100 and 1,000
/// rows. Own cost = the stack's time − the instant service's time, per
/// round (same rounds, same drift), median over the rounds.
fn per_layer(report: &mut Report, plot: Option<&str>) {
    use per_layer::{read, write, PerLayer, LAYERS};
    let rt = support::runtime();
    let metadata = rt.block_on(Master::with_rows(1));
    let mut measured: Vec<LayerRow> = Vec::new();
    for path in ["hit", "write"] {
        for rows in PER_LAYER_ROWS {
            eprintln!("[per-layer, {path}, {rows} rows] (load {})", load());
            let mut st = rt.block_on(PerLayer::new(rows, &metadata.table));
            let request: fn() -> vantage_live::Request = if path == "hit" { read } else { write };
            let live = st.live.clone();
            let mut v = vec![
                Variant::new("instant service alone", |it| {
                    time_service(&rt, &mut st.instant, it, request)
                }),
                Variant::new(LAYERS[0], |it| {
                    time_service(&rt, &mut st.cache, it, request)
                }),
                Variant::new(LAYERS[1], |it| {
                    time_service(&rt, &mut st.queue, it, request)
                }),
                Variant::new(LAYERS[2], |it| {
                    time_service(&rt, &mut st.events, it, request)
                }),
                Variant::new(LAYERS[3], |it| {
                    time_service(&rt, &mut st.tracing, it, request)
                }),
                Variant::new("assembled (all four)", |it| {
                    time_service(&rt, &mut st.assembled, it, request)
                }),
                Variant::new(
                    if path == "hit" {
                        "LiveTable::list_shared over the assembly"
                    } else {
                        "LiveTable::insert_value over the assembly"
                    },
                    |it| {
                        if path == "hit" {
                            time_batch(&rt, it, || live.list_shared())
                        } else {
                            time_batch(&rt, it, || per_layer::live_write(&live))
                        }
                    },
                ),
            ];
            interleave(&mut v, ROUNDS, BATCH);
            report.medians(&format!("per-layer {path}, {rows} rows"), &v);
            // Own cost: per round, the variant − the instant service; then
            // the median over the rounds.
            let own_in = |round: usize, i: usize| v[i].samples[round] - v[0].samples[round];
            let rounds = v[0].samples.len();
            let own = |i: usize| median(&(0..rounds).map(|r| own_in(r, i)).collect::<Vec<_>>());
            let sum = median(
                &(0..rounds)
                    .map(|r| (1..=4).map(|i| own_in(r, i)).sum())
                    .collect::<Vec<f64>>(),
            );
            measured.push(LayerRow {
                path,
                rows,
                instant: v[0].median(),
                parts: [own(1), own(2), own(3), own(4)],
                sum,
                assembled: own(5),
                live: own(6),
            });
        }
    }

    // The table: one column per (path, rows).
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n## Per-layer overhead (own cost per call over `InstantService`)\n"
    );
    let _ = write!(t, "| |");
    for m in &measured {
        let _ = write!(
            t,
            " {} {} row{} |",
            m.path,
            m.rows,
            if m.rows == 1 { "" } else { "s" }
        );
    }
    let _ = write!(t, "\n|---|");
    for _ in &measured {
        let _ = write!(t, "---:|");
    }
    let line = |t: &mut String, name: &str, f: &dyn Fn(&LayerRow) -> f64| {
        let _ = write!(t, "\n| {name} |");
        for m in &measured {
            let _ = write!(t, " {} |", fmt_ns(f(m)));
        }
    };
    line(&mut t, "`InstantService` alone (time per call)", &|m| {
        m.instant
    });
    for (i, name) in LAYERS.iter().enumerate() {
        line(&mut t, &format!("`{name}` alone"), &|m| m.parts[i]);
    }
    line(&mut t, "sum of the four", &|m| m.sum);
    line(&mut t, "assembled stack (all four)", &|m| m.assembled);
    line(&mut t, "`LiveTable` over the assembly", &|m| m.live);
    let _ = writeln!(
        t,
        "\n\nA hit reads the plain view's page from `MemCache` (the cache layer \
         answers; the instant service is not called); a write is one insert, \
         which the cache layer turns into an invalidation of the cache_key and \
         the write queue hands to its worker task. No tracing subscriber is \
         installed. The `LiveTable` line is `list_shared` (a hit) or \
         `insert_value` (a write) on a `LiveTable::from_service` over the \
         assembly, minus the instant service."
    );
    report.tables.push(t);

    // The targets.
    let worst_hit_layer = measured
        .iter()
        .filter(|m| m.path == "hit")
        .flat_map(|m| m.parts)
        .fold(f64::MIN, f64::max);
    report.figure(
        "Each layer's own cost on a hit over `InstantService`, worst of the four at 1/100/1,000 rows",
        fmt_ns(worst_hit_layer),
        "—".into(),
        &target("≤ 100 ns", worst_hit_layer, 100.0),
        "—".into(),
    );
    let worst_queue_write = measured
        .iter()
        .filter(|m| m.path == "write")
        .map(|m| m.parts[1])
        .fold(f64::MIN, f64::max);
    report.figure(
        "`WriteQueueLayer` own cost per write over `InstantService`, worst at 1/100/1,000 rows",
        fmt_ns(worst_queue_write),
        "—".into(),
        &target("≤ 2 µs", worst_queue_write, 2_000.0),
        "—".into(),
    );
    let worst_gap = measured
        .iter()
        .map(|m| (m.sum - m.assembled).abs() / m.assembled.abs().max(1.0))
        .fold(f64::MIN, f64::max);
    report.figure(
        "|sum of the four layers alone − assembled stack| / assembled, worst of hit and write at 1/100/1,000 rows",
        format!("{:.1} %", worst_gap * 100.0),
        "—".into(),
        &target("≤ 10 %", worst_gap, 0.10),
        "—".into(),
    );

    if let Some(path) = plot {
        let panels: Vec<plot::Panel> = ["hit", "write"]
            .iter()
            .map(|p| plot::Panel {
                title: (*p).to_string(),
                groups: measured
                    .iter()
                    .filter(|m| m.path == *p)
                    .map(|m| (m.rows, m.parts, m.assembled))
                    .collect(),
            })
            .collect();
        match plot::stacked_bars(path, &LAYERS, &panels) {
            Ok(()) => eprintln!("  => the per-layer chart is in {path}"),
            Err(e) => eprintln!("  => could not draw {path}: {e}"),
        }
    }
}

/// One column of the per-layer table.
struct LayerRow {
    path: &'static str,
    rows: usize,
    /// The instant service's own time per call.
    instant: f64,
    /// Each layer's own cost, alone over the instant service.
    parts: [f64; 4],
    sum: f64,
    assembled: f64,
    live: f64,
}

// ----------------------------------------------------------- many slots

fn many_slots(report: &mut Report) {
    let rt = support::runtime();
    eprintln!("[{MANY_SLOTS} slots] filling (load {})", load());
    let master = rt.block_on(Master::with_rows(1));
    let big_weight = 1024 * 1024 * 1024;
    let (one, many, pred_one, pred_many) = rt.block_on(async {
        let one = LiveTable::new(master.table.clone(), CACHE_KEY, Arc::new(MemCache::new()));
        let many_cache = MemCache::builder().max_weight(big_weight).build();
        let many = LiveTable::new(
            master.table.clone(),
            CACHE_KEY,
            Arc::new(many_cache.clone()),
        );
        let pred_one = predecessor::LiveTable::new(
            master.table.clone(),
            CACHE_KEY,
            Arc::new(predecessor::cache::MemCache::new()),
        );
        let pred_cache = predecessor::cache::MemCache::new();
        let pred_many = predecessor::LiveTable::new(
            master.table.clone(),
            CACHE_KEY,
            Arc::new(pred_cache.clone()),
        );
        let small = support::rows(1);
        for i in 0..MANY_SLOTS as u64 {
            let id = row_id(i);
            many_cache
                .put(&many.id_cache_key(&id), CachedRows::new(small.clone()))
                .await
                .unwrap();
            predecessor::Cache::put(
                &pred_cache,
                &pred_many.id_cache_key(&id),
                predecessor::CachedRows::new(small.clone()),
            )
            .await
            .unwrap();
        }
        for t in [&one, &many] {
            t.list_values().await.unwrap();
        }
        for t in [&pred_one, &pred_many] {
            t.list_values().await.unwrap();
        }
        many_cache.run_pending_tasks().await;
        assert!(many_cache.entry_count() > MANY_SLOTS as u64);
        (one, many, pred_one, pred_many)
    });
    let mut v = vec![
        Variant::new("ours, 1 slot", |it| {
            time_batch(&rt, it, || one.list_values())
        }),
        Variant::new("ours, 100,000 slots", |it| {
            time_batch(&rt, it, || many.list_values())
        }),
        Variant::new("predecessor, 1 slot", |it| {
            time_batch(&rt, it, || pred_one.list_values())
        }),
        Variant::new("predecessor, 100,000 slots", |it| {
            time_batch(&rt, it, || pred_many.list_values())
        }),
    ];
    interleave(&mut v, ROUNDS, BATCH);
    report.medians("hit, 1 row, cache size", &v);
    let r = paired_ratio(find(&v, "ours, 100,000 slots"), find(&v, "ours, 1 slot"));
    report.figure(
        "hit with 100,000 cached slots / with 1 slot",
        fmt_ratio(r),
        fmt_ratio(paired_ratio(
            find(&v, "predecessor, 100,000 slots"),
            find(&v, "predecessor, 1 slot"),
        )),
        &target("≤ 1.1", r, 1.1),
        fmt_ratio(paired_ratio(
            find(&v, "ours, 100,000 slots"),
            find(&v, "predecessor, 100,000 slots"),
        )),
    );
}

// ---------------------------------------------------------------- inserts

fn inserts(report: &mut Report) {
    let rt = support::runtime();
    eprintln!("[inserts] (load {})", load());
    type Op =
        for<'t> fn(&Master, &'t dyn support::Target) -> futures_util::future::BoxFuture<'t, ()>;
    let scenarios: [(&str, Op); 2] = [
        ("insert", insert_one),
        ("list then update", list_then_update),
    ];
    for (scenario, op) in scenarios {
        // A fresh master per scenario: inserts grow it, and the list of the
        // second scenario must stay at 100 rows.
        let master = rt.block_on(Master::with_rows(100));
        let dirs: Vec<_> = (0..2)
            .map(|_| tempfile::tempdir().expect("temp dir"))
            .collect();
        let (ours_mem, ours_redb, pred_mem, pred_redb) = rt.block_on(async {
            let t = master.table.clone();
            (
                LiveTable::new(t.clone(), CACHE_KEY, Arc::new(MemCache::new())),
                LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(RedbCache::open(dirs[0].path()).expect("redb cache")),
                ),
                predecessor::LiveTable::new(
                    t.clone(),
                    CACHE_KEY,
                    Arc::new(predecessor::cache::MemCache::new()),
                ),
                predecessor::LiveTable::new(
                    t,
                    CACHE_KEY,
                    Arc::new(predecessor::cache::RedbCache::open(dirs[1].path()).expect("redb")),
                ),
            )
        });
        let direct = master.table.clone();
        let op = |table| op(&master, table);
        let mut v = vec![
            Variant::new("direct (AnyTable)", |it| {
                time_batch(&rt, it, || op(&direct))
            }),
            Variant::new("ours MemCache", |it| time_batch(&rt, it, || op(&ours_mem))),
            Variant::new("ours RedbCache", |it| {
                time_batch(&rt, it, || op(&ours_redb))
            }),
            Variant::new("predecessor MemCache", |it| {
                time_batch(&rt, it, || op(&pred_mem))
            }),
            Variant::new("predecessor RedbCache", |it| {
                time_batch(&rt, it, || op(&pred_redb))
            }),
        ];
        eprintln!("[{scenario}] (load {})", load());
        interleave(&mut v, INSERT_ROUNDS, INSERT_BATCH);
        report.medians(scenario, &v);
        let d = find(&v, "direct (AnyTable)");
        for backend in ["MemCache", "RedbCache"] {
            let ours = find(&v, &format!("ours {backend}"));
            let pred = find(&v, &format!("predecessor {backend}"));
            let r = paired_ratio(ours, d);
            let (name, bound, max) = match (scenario, backend) {
                ("insert", "MemCache") => (
                    format!("insert through the stack / direct insert, `{backend}`"),
                    "≤ 1.03",
                    1.03,
                ),
                ("insert", _) => (
                    format!("insert through the stack / direct insert, `{backend}`"),
                    "≤ 1.15",
                    1.15,
                ),
                (_, "RedbCache") => (
                    format!(
                        "list then update (each update drops a filled slot) / the same on the master, `{backend}`"
                    ),
                    "≤ 1.5",
                    1.5,
                ),
                _ => (
                    format!(
                        "list then update (each update drops a filled slot) / the same on the master, `{backend}`"
                    ),
                    "reported",
                    f64::INFINITY,
                ),
            };
            let target = if max.is_finite() {
                target(bound, r, max)
            } else {
                bound.to_string()
            };
            report.figure(
                &name,
                fmt_ratio(r),
                fmt_ratio(paired_ratio(pred, d)),
                &target,
                fmt_ratio(paired_ratio(ours, pred)),
            );
        }
    }
}

// ------------------------------------------------ freshness and precision

/// Pages of the scroll-and-edit workload, and rows per page.
const SCROLL_PAGES: i64 = 20;
const SCROLL_IPP: i64 = 10;

/// Scroll 20 pages of 10, patch one row on page 3, scroll the 20 pages
/// again: how many master reads the second pass makes, with and without row
/// invalidation (and for the predecessor), over a redb master of 200 rows.
fn scroll_and_edit(report: &mut Report) {
    use vantage_dataset::prelude::WritableValueSet;
    use vantage_table::any::AnyTable;
    use vantage_table::pagination::Pagination;
    use vantage_table::traits::table_like::TableLike;

    let rt = support::runtime();
    eprintln!("[scroll and edit] (load {})", load());
    let master = rt.block_on(Master::with_rows((SCROLL_PAGES * SCROLL_IPP) as usize));
    let dir = tempfile::tempdir().expect("temp dir");
    let redb = RedbCache::open(dir.path()).expect("redb cache");
    let edited = row_id((2 * SCROLL_IPP) as u64); // the first row of page 3
    let mut price = 0i64;
    let mut patch = move || {
        price += 1;
        let mut record = vantage_types::Record::new();
        record.insert("price".to_string(), ciborium::Value::Integer(price.into()));
        record
    };
    let variants: [(&str, &str); 4] = [
        ("ours, row invalidation, `MemCache`", "mem-rows"),
        ("ours, row invalidation, `RedbCache`", "redb-rows"),
        ("ours, default (whole cache_key), `MemCache`", "mem"),
        ("predecessor, `MemCache`", "pred"),
    ];
    for (name, which) in variants {
        let (table, probe) = Remote::wrap(master.table.clone(), Duration::ZERO);
        let key = format!("{CACHE_KEY}-scroll-{which}");
        let second_pass = rt.block_on(async {
            // Either LiveTable, as the `AnyTable` UI code holds.
            let live = match which {
                "pred" => AnyTable::from_table_like(predecessor::LiveTable::new(
                    table,
                    key,
                    Arc::new(predecessor::cache::MemCache::new()),
                )),
                _ => {
                    let cache: Arc<dyn Cache> = match which {
                        "redb-rows" => Arc::new(redb.clone()),
                        _ => Arc::new(MemCache::new()),
                    };
                    let live = LiveTable::new(table, key, cache);
                    AnyTable::from_table_like(if which.ends_with("rows") {
                        live.with_row_invalidation()
                    } else {
                        live
                    })
                }
            };
            let scroll = || async {
                for page in 1..=SCROLL_PAGES {
                    let mut ui = live.clone();
                    ui.set_pagination(Some(Pagination::new(page, SCROLL_IPP)));
                    ui.list_values().await.expect("page");
                }
            };
            scroll().await;
            live.patch_value(&edited, &patch()).await.expect("patch");
            let before = probe.reads();
            scroll().await;
            probe.reads() - before
        });
        eprintln!("  scroll and edit              {name:<44} {second_pass} master reads");
        let (target_text, bound) = match which {
            "mem-rows" | "redb-rows" => ("1", 1.0),
            _ => ("reported", f64::INFINITY),
        };
        let target = if bound.is_finite() {
            target(target_text, second_pass as f64, bound)
        } else {
            target_text.to_string()
        };
        report.figure(
            &format!(
                "master reads in the second pass of scroll-and-edit (20 pages of 10 read, \
                 one row on page 3 patched, the 20 pages read again), {name}"
            ),
            second_pass.to_string(),
            "—".to_string(),
            &target,
            "—".to_string(),
        );
    }
}

/// A stale hit (past the max age, within the stale-while-revalidate window,
/// its refresh in flight against a slow master) against a fresh hit of the
/// same 100-row slot, full `LiveTable` stack over `MemCache`.
fn stale_hits(report: &mut Report) {
    use vantage_live::ManualClock;

    let rt = support::runtime();
    eprintln!("[stale-while-revalidate] (load {})", load());
    let master = rt.block_on(Master::with_rows(100));
    let max_age = Duration::from_secs(60);
    let window = Duration::from_secs(24 * 3600);
    let policy = |live: LiveTable, clock: &ManualClock| {
        live.with_max_age(max_age)
            .with_stale_while_revalidate(window)
            .with_clock(Arc::new(clock.clone()))
    };
    // Both slots are filled from the fast master; the stale one is then read
    // through a LiveTable (same cache and cache_key) whose master answers
    // after an hour, so its one refresh stays in flight throughout, as it
    // would while a slow master answers.
    let (fresh, stale) = rt.block_on(async {
        let fresh_clock = ManualClock::starting_now();
        let fresh = policy(
            LiveTable::new(
                master.table.clone(),
                format!("{CACHE_KEY}-fresh"),
                Arc::new(MemCache::new()),
            ),
            &fresh_clock,
        );
        fresh.list_values().await.expect("fill");

        let stale_clock = ManualClock::starting_now();
        let cache: Arc<dyn Cache> = Arc::new(MemCache::new());
        let key = format!("{CACHE_KEY}-stale");
        let filler = policy(
            LiveTable::new(master.table.clone(), key.clone(), cache.clone()),
            &stale_clock,
        );
        filler.list_values().await.expect("fill");
        stale_clock.advance(max_age + Duration::from_secs(1));
        let (slow, _) = Remote::wrap(master.table.clone(), Duration::from_secs(3600));
        let stale = policy(LiveTable::new(slow, key, cache), &stale_clock);
        stale.list_values().await.expect("stale hit");
        assert_eq!(stale.stats().stale_hits, 1);
        assert_eq!(stale.stats().refreshes, 1);
        (fresh, stale)
    });
    let mut v = vec![
        Variant::new("fresh hit (list_values)", |it| {
            time_batch(&rt, it, || fresh.list_values())
        }),
        Variant::new("stale hit (list_values)", |it| {
            time_batch(&rt, it, || stale.list_values())
        }),
        Variant::new("fresh hit (list_shared)", |it| {
            time_batch(&rt, it, || fresh.list_shared())
        }),
        Variant::new("stale hit (list_shared)", |it| {
            time_batch(&rt, it, || stale.list_shared())
        }),
    ];
    interleave(&mut v, ROUNDS, BATCH);
    report.medians("hit, 100 rows, max age + window", &v);
    assert_eq!(
        stale.stats().refreshes,
        1,
        "one refresh, in flight throughout"
    );
    for (how, what) in [("list_values", "owned"), ("list_shared", "shared")] {
        let r = paired_ratio(
            find(&v, &format!("stale hit ({how})")),
            find(&v, &format!("fresh hit ({how})")),
        );
        report.figure(
            &format!(
                "stale hit (within the stale-while-revalidate window, its refresh in flight) / \
                 fresh hit, {what} (`{how}`), full `LiveTable` stack, `MemCache`, 100 rows"
            ),
            fmt_ratio(r),
            "—".to_string(),
            &target("≤ 1.05", r, 1.05),
            "—".to_string(),
        );
    }
}

// ------------------------------------------------- concurrent cold reads

/// The cache variants of the concurrency figure.
const COLD: [&str; 4] = [
    "ours MemCache",
    "ours RedbCache",
    "predecessor MemCache",
    "predecessor RedbCache",
];

fn concurrent_cold_reads(report: &mut Report) {
    let rt = support::multi_thread_runtime();
    eprintln!("[{CONCURRENT} concurrent cold reads] (load {})", load());
    let master = rt.block_on(Master::with_rows(100));
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let ours_redb = RedbCache::open(dirs[0].path()).expect("redb cache");
    let pred_redb = rt.block_on(async {
        predecessor::cache::RedbCache::open(dirs[1].path()).expect("redb cache")
    });
    for (latency, label) in [
        (Duration::from_millis(2), "master with 2 ms latency"),
        (Duration::ZERO, "local redb master"),
    ] {
        let mut reads: Vec<Vec<f64>> = vec![Vec::new(); COLD.len()];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); COLD.len()];
        for trial in 0..CONCURRENT_TRIALS {
            // Rotate the order of the variants from trial to trial.
            for k in 0..COLD.len() {
                let which = (trial + k) % COLD.len();
                let (n, took) = rt.block_on(async {
                    let (table, probe) = Remote::wrap(master.table.clone(), latency);
                    // A fresh cache_key per trial: cold even in a shared file.
                    let key = format!("{CACHE_KEY}-{}-{trial}", latency.as_millis());
                    let start = Instant::now();
                    match which {
                        0 => {
                            let live = LiveTable::new(table, key, Arc::new(MemCache::new()));
                            support::fan_out(CONCURRENT, move || {
                                let live = live.clone();
                                async move { live.list_values().await.unwrap().len() }
                            })
                            .await
                        }
                        1 => {
                            let live = LiveTable::new(table, key, Arc::new(ours_redb.clone()));
                            support::fan_out(CONCURRENT, move || {
                                let live = live.clone();
                                async move { live.list_values().await.unwrap().len() }
                            })
                            .await
                        }
                        2 => {
                            let live = predecessor::LiveTable::new(
                                table,
                                key,
                                Arc::new(predecessor::cache::MemCache::new()),
                            );
                            support::fan_out(CONCURRENT, move || {
                                let live = live.clone();
                                async move { live.list_values().await.unwrap().len() }
                            })
                            .await
                        }
                        _ => {
                            let live = predecessor::LiveTable::new(
                                table,
                                key,
                                Arc::new(pred_redb.clone()),
                            );
                            support::fan_out(CONCURRENT, move || {
                                let live = live.clone();
                                async move { live.list_values().await.unwrap().len() }
                            })
                            .await
                        }
                    }
                    (probe.reads(), start.elapsed())
                });
                reads[which].push(n as f64);
                times[which].push(took.as_nanos() as f64);
            }
        }
        let show = |xs: &[f64]| {
            let max = xs.iter().cloned().fold(0.0, f64::max);
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            if min == max {
                format!("{max}")
            } else {
                format!("{} (range {min}–{max})", median(xs))
            }
        };
        for (name, t) in COLD.iter().zip(&times) {
            report.medians.push((
                format!("{CONCURRENT} concurrent cold reads, {label} (wall)"),
                name.to_string(),
                median(t),
            ));
        }
        for (i, backend) in ["MemCache", "RedbCache"].iter().enumerate() {
            let (ours, pred) = (&reads[i], &reads[i + 2]);
            let worst = ours.iter().cloned().fold(0.0, f64::max);
            report.figure(
                &format!(
                    "master reads for {CONCURRENT} concurrent cold reads, `{backend}`, {label}"
                ),
                show(ours),
                show(pred),
                &target("1", worst, 1.0),
                fmt_ratio(median(ours) / median(pred)),
            );
        }
    }
}

// ----------------------------------------------------------------- memory

fn memory(report: &mut Report) {
    eprintln!("[memory] (load {})", load());
    let exe = std::env::current_exe().expect("own path");
    let mut growth = Vec::new();
    for which in ["ours", "predecessor"] {
        let out = std::process::Command::new(&exe)
            .args(["--memory", which])
            .output()
            .expect("memory phase");
        assert!(out.status.success(), "memory phase {which} failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let field = |name: &str| -> f64 {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        growth.push((field("growth="), field("peak="), field("offered=")));
    }
    let cap = MEMORY_CAP as f64;
    let (ours, pred) = (growth[0], growth[1]);
    let r = ours.0 / cap;
    report.figure(
        "resident memory growth after offering 1 GiB of rows to a 64 MiB `MemCache` / 64 MiB",
        format!("{r:.2} (peak {:.2})", ours.1 / cap),
        format!("{:.2} (unbounded)", pred.0 / cap),
        &target("≤ 1.3", r, 1.3),
        fmt_ratio(ours.0 / pred.0),
    );
}

/// Child process: offer about 1 GiB of row weight to a cache capped at 64 MiB
/// (the predecessor's `MemCache` has no cap) and print the resident growth.
fn memory_phase(which: &str) {
    let rt = support::runtime();
    rt.block_on(async {
        // Slots of about 64 KiB of estimated weight: measure one slot's weight.
        let probe = MemCache::new();
        let probe_rows = support::rows(100);
        probe
            .put("probe/slot", CachedRows::new(probe_rows))
            .await
            .unwrap();
        probe.run_pending_tasks().await;
        let per_row = probe.weighted_size() as f64 / 100.0;
        let rows_per_slot = ((64.0 * 1024.0) / per_row).round() as usize;
        let template = support::rows(rows_per_slot);
        drop(probe);
        let slot_weight = rows_per_slot as f64 * per_row;
        let slots = (MEMORY_OFFERED as f64 / slot_weight).ceil() as u64;

        let ours = MemCache::builder().max_weight(MEMORY_CAP).build();
        let pred = predecessor::cache::MemCache::new();
        let before = rss_bytes();
        let mut peak = before;
        for i in 0..slots {
            let key = format!("{CACHE_KEY}/list/-/p{i}x{rows_per_slot}");
            if which == "ours" {
                ours.put(&key, CachedRows::new(template.clone()))
                    .await
                    .unwrap();
                if i % 16 == 15 {
                    ours.run_pending_tasks().await;
                }
            } else {
                predecessor::Cache::put(
                    &pred,
                    &key,
                    predecessor::CachedRows::new(template.clone()),
                )
                .await
                .unwrap();
            }
            if i % 256 == 0 {
                peak = peak.max(rss_bytes());
            }
        }
        ours.run_pending_tasks().await;
        let after = rss_bytes();
        peak = peak.max(after);
        eprintln!(
            "  memory {which}: {slots} slots of {rows_per_slot} rows (~{:.0} KiB each), \
             held weight {:.1} MiB, entries {}, RSS {:.1} → {:.1} MiB (peak {:.1})",
            slot_weight / 1024.0,
            ours.weighted_size() as f64 / 1048576.0,
            ours.entry_count(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            peak as f64 / 1048576.0,
        );
        println!(
            "growth={} peak={} offered={}",
            after.saturating_sub(before),
            peak.saturating_sub(before),
            (slots as f64 * slot_weight) as u64
        );
    });
}

// ---------------------------------------------------------------- profiling

/// Run one variant alone in a loop for about five seconds (under
/// `valgrind --tool=callgrind`, set `PROFILE_ITERS` instead). Scenarios:
/// `floor-100`, `mem-hit-100`, `redb-hit-100`, `pred-redb-hit-100`,
/// `direct-read-100`, `nocache-read-100`, `insert-direct`, `insert-mem`,
/// `insert-redb`, `pred-insert-redb`, `list-update-redb`,
/// `pred-list-update-redb`, `mem-hit-1`, `shared-hit-100`, `shared-hit-1`,
/// `disk-hit-100`.
fn profile(scenario: &str) {
    let rt = support::runtime();
    let rows = if scenario.ends_with("-1") { 1 } else { 100 };
    let master = rt.block_on(Master::with_rows(rows));
    let dir = tempfile::tempdir().expect("temp dir");
    let t = master.table.clone();
    let live =
        |cache: Arc<dyn Cache>| rt.block_on(async { LiveTable::new(t.clone(), CACHE_KEY, cache) });
    let iters: Option<u64> = std::env::var("PROFILE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let run = |f: &mut dyn FnMut(u64) -> f64| {
        let start = Instant::now();
        let mut calls = 0u64;
        let mut ns = Vec::new();
        while match iters {
            Some(n) => calls < n,
            None => start.elapsed() < Duration::from_secs(5),
        } {
            ns.push(f(100));
            calls += 100;
        }
        eprintln!(
            "{scenario}: {} per call over {calls} calls",
            fmt_ns(median(&ns))
        );
    };
    match scenario {
        "floor-100" => {
            let rows = rt.block_on(t.list_values()).unwrap();
            let floor = rt.block_on(Floor::new(rows));
            run(&mut |it| time_batch(&rt, it, || floor.owned()));
        }
        "mem-hit-100" | "mem-hit-1" => {
            let l = live(Arc::new(MemCache::new()));
            rt.block_on(l.list_values()).unwrap();
            run(&mut |it| time_batch(&rt, it, || l.list_values()));
        }
        "shared-hit-100" | "shared-hit-1" => {
            let l = live(Arc::new(MemCache::new()));
            rt.block_on(l.list_values()).unwrap();
            run(&mut |it| time_batch(&rt, it, || l.list_shared()));
        }
        "disk-hit-100" => {
            let l = live(Arc::new(
                RedbCache::open(dir.path())
                    .expect("redb cache")
                    .with_memory_front(0),
            ));
            rt.block_on(l.list_values()).unwrap();
            run(&mut |it| time_batch(&rt, it, || l.list_values()));
        }
        "redb-hit-100" => {
            let l = live(Arc::new(RedbCache::open(dir.path()).expect("redb cache")));
            rt.block_on(l.list_values()).unwrap();
            run(&mut |it| time_batch(&rt, it, || l.list_values()));
        }
        "pred-redb-hit-100" => {
            let cache = predecessor::cache::RedbCache::open(dir.path()).expect("redb");
            let l = rt.block_on(async {
                predecessor::LiveTable::new(t.clone(), CACHE_KEY, Arc::new(cache))
            });
            rt.block_on(l.list_values()).unwrap();
            run(&mut |it| time_batch(&rt, it, || l.list_values()));
        }
        "direct-read-100" => run(&mut |it| time_batch(&rt, it, || t.list_values())),
        "nocache-read-100" => {
            let l = live(Arc::new(NoCache));
            run(&mut |it| time_batch(&rt, it, || l.list_values()));
        }
        "insert-direct" => {
            let d = t.clone();
            run(&mut |it| time_batch(&rt, it, || insert_one(&master, &d)));
        }
        "insert-mem" => {
            let l = live(Arc::new(MemCache::new()));
            run(&mut |it| time_batch(&rt, it, || insert_one(&master, &l)));
        }
        "insert-redb" => {
            let l = live(Arc::new(RedbCache::open(dir.path()).expect("redb cache")));
            run(&mut |it| time_batch(&rt, it, || insert_one(&master, &l)));
        }
        "list-update-redb" => {
            let l = live(Arc::new(RedbCache::open(dir.path()).expect("redb cache")));
            run(&mut |it| time_batch(&rt, it, || list_then_update(&master, &l)));
        }
        "pred-list-update-redb" => {
            let cache = predecessor::cache::RedbCache::open(dir.path()).expect("redb");
            let l = rt.block_on(async {
                predecessor::LiveTable::new(t.clone(), CACHE_KEY, Arc::new(cache))
            });
            run(&mut |it| time_batch(&rt, it, || list_then_update(&master, &l)));
        }
        "pred-insert-redb" => {
            let cache = predecessor::cache::RedbCache::open(dir.path()).expect("redb");
            let l = rt.block_on(async {
                predecessor::LiveTable::new(t.clone(), CACHE_KEY, Arc::new(cache))
            });
            run(&mut |it| time_batch(&rt, it, || insert_one(&master, &l)));
        }
        other => panic!("unknown scenario {other:?}; see `profile` in examples/bench_report.rs"),
    }
}
