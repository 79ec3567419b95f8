//! Model-based concurrency test: many tasks issue random reads, writes and
//! events against LiveTables sharing one cache and cache_key over a real
//! master with injected latency and jitter, and every read is checked
//! against a model of what the master held.
//!
//! # The model
//!
//! Writes are made one at a time (a test-side lock; the reads stay
//! concurrent with them), so the master goes through a linear sequence of
//! states, version 0 (the seed) to version n. The model keeps each version
//! as a `BTreeMap` of id → row, built by applying each write to the previous
//! version in acknowledgement order. Two counters say where the writes stand:
//! `submitted` (the version a write in progress is making) and `acked` (the
//! last version whose write was acknowledged: the LiveTable's write returned,
//! or, for a change made behind the LiveTables' backs, its event was
//! processed).
//!
//! A read notes `acked` before it starts (v_lo) and `submitted` after it
//! ends (v_hi). Its answer must be what the master held at one of the
//! versions v_lo..=v_hi: never older than the last acknowledged write before
//! it started, never from the future. Lists and pages are checked against
//! the model's id-ordered rows (both embedded masters list in id order), ids
//! against the row, counts against the size.
//!
//! # What runs
//!
//! Three LiveTables share one cache and cache_key over one master: writes and
//! reads go through any of them, and one has a `ManualLiveStream`. Tasks draw
//! from: page reads (4 pages at 3 or 5 per page), unpaginated lists, ids (of
//! seeded rows and of rows the test inserts and deletes), counts; inserts,
//! replaces, patches and deletes; bare `Changed` events; and changes made
//! directly on the master followed by an event that the test waits on.
//!
//! Masters: redb and SQLite. Caches: `MemCache`, `RedbCache`, and a
//! `MemCache` behind a wrapper that fails `get`, `put`, `generation` and
//! `invalidate_prefix` at random; with the Redis at
//! `VANTAGE_LIVE_REDIS_URL` reachable (required under `CI=true`), also
//! `RedisCache`, each of the three LiveTables on a `RedisCache` instance of
//! its own (three connections, three in-process states: what fences them
//! is in Redis), and one `TieredCache` shared by the three.
//!
//! # Seeds
//!
//! `model_check` runs fixed seeds (a few seconds). `soak` (`--ignored`) runs
//! rounds for `VANTAGE_LIVE_SOAK_SECS` seconds (default 60) from
//! `VANTAGE_LIVE_SOAK_SEED` (default: the clock), seed + 1 per round. A
//! failing run prints its seed and the command that replays it. Seeds fix
//! the operations and delays each task draws; the interleaving is the
//! runtime's, so a replay exercises the same schedule of operations, not
//! necessarily the same race.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ciborium::Value;
use common::{master_rows, product, Delays, Fault, FaultyCache, Latency, Master, Rng, SeedGuard};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{
    Cache, EventStatus, LiveEvent, LiveTable, ManualLiveStream, MemCache, RedbCache,
};
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

const SEED_VAR: &str = "VANTAGE_LIVE_SOAK_SEED";
const SECS_VAR: &str = "VANTAGE_LIVE_SOAK_SECS";

/// The seeds `model_check` runs, one per master and cache.
const CI_SEEDS: [u64; 3] = [0x5EED_0001, 0x5EED_0002, 0x5EED_0003];

/// How big one run is.
#[derive(Clone, Copy, Debug)]
struct Size {
    tasks: u64,
    ops_per_task: u64,
    /// Upper bound of each injected master delay, in microseconds.
    max_delay_us: u64,
}

const CI_SIZE: Size = Size {
    tasks: 6,
    ops_per_task: 60,
    max_delay_us: 1_500,
};

const SOAK_SIZE: Size = Size {
    tasks: 8,
    ops_per_task: 150,
    max_delay_us: 2_000,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CacheKind {
    Mem,
    Redb,
    /// `MemCache` behind a wrapper failing every kind of call at random.
    FaultyMem,
    /// A `RedisCache` instance per LiveTable, one key prefix.
    Redis,
    /// One `TieredCache` over a `RedisCache`.
    Tiered,
}

/// The caches of one run (one per LiveTable, or one shared) and what keeps
/// them alive.
struct Built {
    caches: Vec<Arc<dyn Cache>>,
    faulty: Option<Arc<FaultyCache>>,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<common::redis::RedisSpace>,
}

impl CacheKind {
    const ALL: [CacheKind; 3] = [CacheKind::Mem, CacheKind::Redb, CacheKind::FaultyMem];
    const REDIS: [CacheKind; 2] = [CacheKind::Redis, CacheKind::Tiered];

    /// Every kind, the Redis ones if Redis is reachable (or under CI, where
    /// it must be).
    async fn all() -> Vec<CacheKind> {
        let mut kinds = CacheKind::ALL.to_vec();
        if common::redis::redis_available("6_model_concurrency (RedisCache, TieredCache)").await {
            kinds.extend(CacheKind::REDIS);
        }
        kinds
    }

    fn build(self, seed: u64) -> Built {
        let (cache, faulty, dir) = match self {
            CacheKind::Redis | CacheKind::Tiered => {
                let space = common::redis::RedisSpace::unchecked("model");
                let redis = || {
                    space
                        .builder()
                        .connect_lazy()
                        .expect("a RedisCache for the model")
                };
                let caches: Vec<Arc<dyn Cache>> = if self == CacheKind::Redis {
                    (0..3)
                        .map(|_| Arc::new(redis()) as Arc<dyn Cache>)
                        .collect()
                } else {
                    vec![Arc::new(vantage_live::TieredCache::new(redis()))]
                };
                return Built {
                    caches,
                    faulty: None,
                    _dir: None,
                    _redis: Some(space),
                };
            }
            CacheKind::Mem => (Arc::new(MemCache::new()) as Arc<dyn Cache>, None, None),
            CacheKind::Redb => {
                let dir = tempfile::tempdir().expect("temp dir");
                // Odd seeds run the file alone, even ones with the memory
                // front in front of it.
                let front = if seed % 2 == 0 {
                    vantage_live::cache::DEFAULT_FRONT_WEIGHT
                } else {
                    0
                };
                let cache = RedbCache::open(dir.path())
                    .expect("open redb cache")
                    .with_memory_front(front);
                (Arc::new(cache) as Arc<dyn Cache>, None, Some(dir))
            }
            CacheKind::FaultyMem => {
                let faulty = FaultyCache::seeded(Arc::new(MemCache::new()), seed);
                faulty.get.set(Fault::Rate(50));
                faulty.put.set(Fault::Rate(50));
                faulty.invalidate.set(Fault::Rate(150));
                (faulty.clone() as Arc<dyn Cache>, Some(faulty), None)
            }
        };
        Built {
            caches: vec![cache],
            faulty,
            _dir: dir,
            _redis: None,
        }
    }
}

// ── the model ─────────────────────────────────────────────────────────────

type State = BTreeMap<String, Record<Value>>;

/// What a read asked.
#[derive(Clone, Debug)]
enum ReadOp {
    Page { page: i64, ipp: i64 },
    All,
    Id(String),
    Count,
}

/// What a read answered.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Rows(Vec<(String, Record<Value>)>),
    Row(Option<Record<Value>>),
    Count(i64),
}

impl fmt::Display for Answer {
    /// Short: ids with their prices (every write changes a price or a row's
    /// presence).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let price = |r: &Record<Value>| {
            common::int_field(r, "price").map_or("?".to_string(), |p| p.to_string())
        };
        match self {
            Answer::Rows(rows) => {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|(id, r)| format!("{id}:{}", price(r)))
                    .collect();
                write!(f, "[{}]", rows.join(" "))
            }
            Answer::Row(Some(r)) => write!(f, "row price {}", price(r)),
            Answer::Row(None) => write!(f, "no row"),
            Answer::Count(n) => write!(f, "count {n}"),
        }
    }
}

impl ReadOp {
    /// What the master answers at `state`.
    fn expected(&self, state: &State) -> Answer {
        let rows = || state.iter().map(|(id, r)| (id.clone(), r.clone()));
        match self {
            ReadOp::Page { page, ipp } => Answer::Rows(
                rows()
                    .skip(((page - 1) * ipp) as usize)
                    .take(*ipp as usize)
                    .collect(),
            ),
            ReadOp::All => Answer::Rows(rows().collect()),
            ReadOp::Id(id) => Answer::Row(state.get(id).cloned()),
            ReadOp::Count => Answer::Count(state.len() as i64),
        }
    }

    async fn run(&self, live: &LiveTable) -> vantage_core::Result<Answer> {
        Ok(match self {
            ReadOp::Page { page, ipp } => {
                let mut live = live.clone();
                live.set_pagination(Some(Pagination::new(*page, *ipp)));
                Answer::Rows(live.list_values().await?.into_iter().collect())
            }
            ReadOp::All => Answer::Rows(live.list_values().await?.into_iter().collect()),
            ReadOp::Id(id) => Answer::Row(live.get_value(id).await?),
            ReadOp::Count => Answer::Count(live.get_count().await?),
        })
    }
}

/// One read, as observed.
struct Observation {
    task: u64,
    table: usize,
    op: ReadOp,
    answer: std::result::Result<Answer, String>,
    v_lo: usize,
    v_hi: usize,
}

/// One write of the model.
#[derive(Clone, Debug)]
enum WriteOp {
    Insert(String, Record<Value>),
    Replace(String, Record<Value>),
    Patch(String, i64),
    Delete(String),
}

impl WriteOp {
    /// The state after this write. `id_field`: the master lists the id
    /// column among a row's fields (the SQL masters do).
    fn apply(&self, state: &State, id_field: bool) -> State {
        let mut next = state.clone();
        match self {
            WriteOp::Insert(id, record) | WriteOp::Replace(id, record) => {
                let mut record = record.clone();
                if id_field {
                    record.insert("id".to_string(), Value::Text(id.clone()));
                }
                next.insert(id.clone(), record);
            }
            WriteOp::Patch(id, price) => {
                let row = next.get_mut(id).expect("patch of a present row");
                row.insert("price".to_string(), Value::Integer((*price).into()));
            }
            WriteOp::Delete(id) => {
                next.remove(id);
            }
        }
        next
    }

    async fn run_on_live(&self, live: &LiveTable) -> vantage_core::Result<()> {
        match self {
            WriteOp::Insert(id, record) => live.insert_value(id, record).await.map(drop),
            WriteOp::Replace(id, record) => live.replace_value(id, record).await.map(drop),
            WriteOp::Patch(id, price) => {
                let partial: Record<Value> =
                    [("price".to_string(), Value::Integer((*price).into()))]
                        .into_iter()
                        .collect();
                live.patch_value(id, &partial).await.map(drop)
            }
            WriteOp::Delete(id) => live.delete(id).await,
        }
    }

    async fn run_on_master(
        &self,
        master: &vantage_table::any::AnyTable,
    ) -> vantage_core::Result<()> {
        match self {
            WriteOp::Insert(id, record) => master.insert_value(id, record).await.map(drop),
            WriteOp::Replace(id, record) => master.replace_value(id, record).await.map(drop),
            WriteOp::Patch(id, price) => {
                let partial: Record<Value> =
                    [("price".to_string(), Value::Integer((*price).into()))]
                        .into_iter()
                        .collect();
                master.patch_value(id, &partial).await.map(drop)
            }
            WriteOp::Delete(id) => master.delete(id).await,
        }
    }

    fn event(&self) -> LiveEvent {
        match self {
            WriteOp::Insert(id, _) => LiveEvent::inserted(id.clone()),
            WriteOp::Replace(id, _) | WriteOp::Patch(id, _) => LiveEvent::updated(id.clone()),
            WriteOp::Delete(id) => LiveEvent::deleted(id.clone()),
        }
    }
}

/// The versions and where the writes stand. Versions are appended under the
/// write lock; reads never take it.
struct Model {
    versions: Mutex<Vec<Arc<State>>>,
    submitted: AtomicUsize,
    acked: AtomicUsize,
    /// Held by the one write in progress.
    write_lock: tokio::sync::Mutex<()>,
    /// Events pushed so far (the live-stream task handles them in order).
    pushed: Mutex<u64>,
    /// The master lists the id column among a row's fields.
    id_field: bool,
}

impl Model {
    fn latest(&self) -> Arc<State> {
        self.versions.lock().unwrap().last().unwrap().clone()
    }
}

/// The ids the test draws from: the seeded ones and some it inserts,
/// interleaved with them in id order.
fn id_universe(seeded: &State) -> Vec<String> {
    let mut ids: Vec<String> = seeded.keys().cloned().collect();
    for n in [0, 3, 5, 8, 11, 13, 15] {
        ids.push(format!("p{n:02}_model"));
    }
    ids
}

// ── one run ───────────────────────────────────────────────────────────────

/// What one run did.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    reads: u64,
    writes: u64,
    behind_back: u64,
    events: u64,
    master_reads: u64,
    /// Reads that answered with a state older than the newest one possible
    /// when they ended (allowed: they overlapped a write).
    overlapped_old: u64,
    cache_faults: u64,
}

impl std::ops::AddAssign for Figures {
    fn add_assign(&mut self, o: Self) {
        self.reads += o.reads;
        self.writes += o.writes;
        self.behind_back += o.behind_back;
        self.events += o.events;
        self.master_reads += o.master_reads;
        self.overlapped_old += o.overlapped_old;
        self.cache_faults += o.cache_faults;
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reads checked ({} answered an older state they overlapped), {} writes \
             through LiveTables, {} changes behind their backs + event, {} bare events, \
             {} master reads, {} injected cache faults",
            self.reads,
            self.overlapped_old,
            self.writes,
            self.behind_back,
            self.events,
            self.master_reads,
            self.cache_faults
        )
    }
}

fn replay_hint(seed: u64, master: &str, cache: CacheKind) -> String {
    format!(
        "seed={seed} (master {master}, cache {cache:?}); replay: \
         {SEED_VAR}={seed} {SECS_VAR}=1 cargo test --test 6_model_concurrency soak -- --ignored --nocapture"
    )
}

async fn run(master: &Master, cache_kind: CacheKind, seed: u64, size: Size) -> Figures {
    let _guard = SeedGuard::new(replay_hint(seed, master.kind, cache_kind));
    let built = cache_kind.build(seed);
    let faulty = built.faulty.clone();
    let cache = |i: usize| built.caches[i % built.caches.len()].clone();
    let delays = Delays::jitter(seed, size.max_delay_us);
    let slow = Latency::wrap(master.table.clone(), delays.clone());

    // Three LiveTables, one cache, one cache_key; the second has the stream.
    let key = format!("model-{seed}-{cache_kind:?}");
    let source = ManualLiveStream::new();
    let tables = vec![
        LiveTable::new(slow.clone(), key.clone(), cache(0)),
        LiveTable::new(slow.clone(), key.clone(), cache(1))
            .with_live_stream(Arc::new(source.clone())),
        LiveTable::new(slow.clone(), key.clone(), cache(2)),
    ];
    let status = tables[1].live_stream_status().expect("a live stream");
    {
        let mut status = status.clone();
        tokio::time::timeout(common::PATIENCE, status.wait_for(|s| s.subscribed))
            .await
            .expect("subscribed")
            .expect("task alive");
    }

    let start: State = master_rows(&master.table, None).await.into_iter().collect();
    let ids = id_universe(&start);
    let id_field = start.values().all(|row| row.contains_key("id"));
    let model = Arc::new(Model {
        versions: Mutex::new(vec![Arc::new(start)]),
        submitted: AtomicUsize::new(0),
        acked: AtomicUsize::new(0),
        write_lock: tokio::sync::Mutex::new(()),
        pushed: Mutex::new(0),
        id_field,
    });
    let counts = Arc::new([
        AtomicU64::new(0), // writes
        AtomicU64::new(0), // behind the back
        AtomicU64::new(0), // events
    ]);

    let mut handles = Vec::new();
    for task in 0..size.tasks {
        let ctx = TaskCtx {
            task,
            rng: Rng::new(seed, task + 1),
            tables: tables.clone(),
            master: master.table.clone(),
            model: model.clone(),
            source: source.clone(),
            status: status.clone(),
            ids: ids.clone(),
            counts: counts.clone(),
        };
        handles.push(tokio::spawn(ctx.run(size.ops_per_task)));
    }
    let mut observations = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(obs) => observations.extend(obs),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task failed: {e}"),
        }
    }

    // Check every read against the model.
    let versions = model.versions.lock().unwrap().clone();
    let mut figures = Figures {
        reads: observations.len() as u64,
        writes: counts[0].load(Ordering::SeqCst),
        behind_back: counts[1].load(Ordering::SeqCst),
        events: counts[2].load(Ordering::SeqCst),
        master_reads: delays.reads.load(Ordering::SeqCst) as u64,
        ..Figures::default()
    };
    let mut violations = Vec::new();
    for obs in &observations {
        let Ok(answer) = &obs.answer else {
            violations.push(format!(
                "task {} table {} {:?} (versions {}..={}): error {}",
                obs.task,
                obs.table,
                obs.op,
                obs.v_lo,
                obs.v_hi,
                obs.answer.as_ref().unwrap_err()
            ));
            continue;
        };
        let matching: Vec<usize> = (obs.v_lo..=obs.v_hi)
            .filter(|&v| obs.op.expected(&versions[v]) == *answer)
            .collect();
        match matching.last() {
            None => {
                let older = (0..obs.v_lo)
                    .rev()
                    .find(|&v| obs.op.expected(&versions[v]) == *answer);
                violations.push(format!(
                    "task {} table {} {:?}: answered a state that is none of versions {}..={} \
                     (it matches version {older:?})\n  answer      {answer}\n  expected v{} {}",
                    obs.task,
                    obs.table,
                    obs.op,
                    obs.v_lo,
                    obs.v_hi,
                    obs.v_lo,
                    obs.op.expected(&versions[obs.v_lo])
                ))
            }
            Some(&v) => {
                if obs.op.expected(&versions[obs.v_hi]) != *answer && v < obs.v_hi {
                    figures.overlapped_old += 1;
                }
            }
        }
    }
    // The model is the master: the final state, read directly, agrees.
    let last: State = master_rows(&master.table, None).await.into_iter().collect();
    assert_eq!(
        &last,
        &**versions.last().unwrap(),
        "the model drifted from the master (a test bug)"
    );
    if let Some(faulty) = &faulty {
        figures.cache_faults = faulty.calls.faults.load(Ordering::SeqCst) as u64;
    }
    assert!(
        violations.is_empty(),
        "{} of {} reads broke the model; first ones:\n{}",
        violations.len(),
        observations.len(),
        violations
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Put the master back as it was for the next run.
    reset_master(master, &versions[0]).await;
    drop(tables);
    figures
}

/// Make the master hold `state` again (directly, no LiveTable).
async fn reset_master(master: &Master, state: &State) {
    let now: State = master_rows(&master.table, None).await.into_iter().collect();
    for id in now.keys() {
        if !state.contains_key(id) {
            master.table.delete(id).await.unwrap();
        }
    }
    for (id, row) in state {
        if now.get(id) != Some(row) {
            if now.contains_key(id) {
                master.table.replace_value(id, row).await.unwrap();
            } else {
                master.table.insert_value(id, row).await.unwrap();
            }
        }
    }
}

struct TaskCtx {
    task: u64,
    rng: Rng,
    tables: Vec<LiveTable>,
    master: vantage_table::any::AnyTable,
    model: Arc<Model>,
    source: ManualLiveStream,
    status: EventStatus,
    ids: Vec<String>,
    counts: Arc<[AtomicU64; 3]>,
}

impl TaskCtx {
    async fn run(mut self, ops: u64) -> Vec<Observation> {
        let mut observations = Vec::new();
        for _ in 0..ops {
            let roll = self.rng.below(100);
            let table = self.rng.below(self.tables.len() as u64) as usize;
            match roll {
                0..=89 => observations.push(self.read(table).await),
                90..=94 => self.write(table, false).await,
                95..=96 => self.write(table, true).await,
                _ => {
                    self.push(LiveEvent::Changed);
                    self.counts[2].fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        observations
    }

    /// A read, skewed towards a few hot slots (page 1 at 5 per page, the
    /// first ids) so that reads hit, share flights and race fills on the
    /// same slots, with a tail over every page size, page and id.
    fn draw_read(&mut self) -> ReadOp {
        let hot = self.rng.chance(600);
        match self.rng.below(10) {
            0..=4 if hot => ReadOp::Page { page: 1, ipp: 5 },
            0..=4 => ReadOp::Page {
                page: self.rng.range(1, 4) as i64,
                ipp: *self.rng.pick(&[3, 5]),
            },
            5 => ReadOp::All,
            6..=8 if hot => ReadOp::Id(self.ids[self.rng.below(3) as usize].clone()),
            6..=8 => ReadOp::Id(self.rng.pick(&self.ids).clone()),
            _ => ReadOp::Count,
        }
    }

    async fn read(&mut self, table: usize) -> Observation {
        let op = self.draw_read();
        let v_lo = self.model.acked.load(Ordering::SeqCst);
        let answer = op.run(&self.tables[table]).await;
        let v_hi = self.model.submitted.load(Ordering::SeqCst);
        Observation {
            task: self.task,
            table,
            op,
            answer: answer.map_err(|e| e.to_string()),
            v_lo,
            v_hi,
        }
    }

    /// Push an event; returns its number (the task handles them in order).
    fn push(&self, event: LiveEvent) -> u64 {
        let mut pushed = self.model.pushed.lock().unwrap();
        assert_eq!(self.source.push(event), 1, "the live stream is subscribed");
        *pushed += 1;
        *pushed
    }

    fn draw_write(&mut self, state: &State) -> WriteOp {
        let id = self.rng.pick(&self.ids).clone();
        let price = self.rng.range(1, 999) as i64;
        if !state.contains_key(&id) {
            return WriteOp::Insert(id, product("Model bun", price));
        }
        match self.rng.below(3) {
            0 => WriteOp::Patch(id, price),
            1 => WriteOp::Replace(id, product("Model loaf", price)),
            _ => WriteOp::Delete(id),
        }
    }

    /// One write, alone: through a LiveTable, or (`behind_back`) directly on
    /// the master followed by an event that is waited on.
    async fn write(&mut self, table: usize, behind_back: bool) {
        let model = self.model.clone();
        let _one_at_a_time = model.write_lock.lock().await;
        let state = self.model.latest();
        let op = self.draw_write(&state);
        let next = Arc::new(op.apply(&state, model.id_field));
        let version = {
            let versions = self.model.versions.lock().unwrap();
            versions.len()
        };
        self.model.submitted.store(version, Ordering::SeqCst);
        if behind_back {
            op.run_on_master(&self.master)
                .await
                .unwrap_or_else(|e| panic!("direct write {op:?}: {e}"));
            let n = self.push(op.event());
            let mut status = self.status.clone();
            tokio::time::timeout(common::PATIENCE, status.wait_for(|s| s.events >= n))
                .await
                .expect("event handled in time")
                .expect("event task alive");
            self.counts[1].fetch_add(1, Ordering::SeqCst);
        } else {
            op.run_on_live(&self.tables[table])
                .await
                .unwrap_or_else(|e| panic!("write {op:?} through table {table}: {e}"));
            self.counts[0].fetch_add(1, Ordering::SeqCst);
        }
        self.model.versions.lock().unwrap().push(next);
        self.model.acked.store(version, Ordering::SeqCst);
    }
}

// ── the tests ─────────────────────────────────────────────────────────────

async fn masters() -> Vec<Master> {
    common::embedded_masters("product").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check() {
    common::init_tracing();
    let started = Instant::now();
    let mut total = Figures::default();
    let mut runs = 0;
    for (m, master) in masters().await.iter().enumerate() {
        for (c, cache) in CacheKind::all().await.into_iter().enumerate() {
            let seed = CI_SEEDS[(m + c) % CI_SEEDS.len()];
            let t = Instant::now();
            let figures = run(master, cache, seed, CI_SIZE).await;
            eprintln!(
                "model {} / {cache:?} seed={seed}: {figures} in {:.2}s",
                master.kind,
                t.elapsed().as_secs_f64()
            );
            total += figures;
            runs += 1;
        }
    }
    eprintln!(
        "model_check: {runs} runs, {total} in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: VANTAGE_LIVE_SOAK_SECS (default 60), VANTAGE_LIVE_SOAK_SEED"]
async fn soak() {
    common::init_tracing();
    let seed = common::rng::seed_from_env(SEED_VAR);
    let secs: u64 = std::env::var(SECS_VAR)
        .ok()
        .map(|s| {
            s.parse()
                .expect("VANTAGE_LIVE_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(60);
    eprintln!("soak: {SEED_VAR}={seed} for {secs}s");
    let masters = masters().await;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut total = Figures::default();
    let mut runs = 0;
    let mut round = 0;
    loop {
        let seed = seed.wrapping_add(round);
        for master in &masters {
            for cache in CacheKind::all().await {
                total += run(master, cache, seed, SOAK_SIZE).await;
                runs += 1;
            }
        }
        round += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("soak: {runs} runs over {round} seeds from {seed}: {total}");
}
