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
//! Three LiveTables share one backend and cache_key over one master, each
//! through a handle of its own (separate `Arc`s around clones of the
//! backend; for `RedbCache`, one clone with a memory front of its own; for
//! the faulty cache, three wrappers failing independently): writes and
//! reads go through any of them, and one has a `ManualLiveStream`. A third of
//! the reads share the cached rows (`list_shared`, `get_shared`) instead of
//! copying them; the rows they were handed are checked again at the end,
//! after every write of the run: they must not have changed. Tasks draw
//! from: page reads (4 pages at 3 or 5 per page), unpaginated lists, ids (of
//! seeded rows and of rows the test inserts and deletes), counts; inserts,
//! replaces, patches and deletes; bare `Changed` events; and changes made
//! directly on the master followed by an event that the test waits on.
//!
//! Masters: redb and SQLite. Caches: `MemCache`, `RedbCache` (with and
//! without its memory front), and a `MemCache` behind wrappers that fail
//! lookups, fills and invalidations at random; with the Redis at
//! `VANTAGE_LIVE_REDIS_URL` reachable (required under `CI=true`), also
//! `RedisCache`, each of the three LiveTables on a `RedisCache` instance of
//! its own (three connections, three in-process states: what fences them
//! is in Redis), and one `TieredCache` shared by the three.
//!
//! # With an outbox
//!
//! `model_check` runs every master and cache again with the three
//! LiveTables sharing one outbox (`with_outbox_layer`), over a master whose
//! writes fail at random as a dropped connection would: before reaching the
//! master, or after the master applied them (the answer lost), so the drain
//! retries and replays. A write's acknowledgement is then local: version `v`
//! is the state with every write acknowledged so far applied, whether or
//! not the master has it yet. What a read must see: the master after the
//! first `m` outbox writes, with the writes `p + 1..=k` laid over it by the
//! overlay rules (`OutboxLayer`'s docs), where `k` is the number of outbox
//! writes acknowledged by some version `v` in `v_lo..=v_hi`, `p` the number
//! the drain had applied when the read took its snapshot (between the
//! counts before and after the read) and `m` is `p` or `p + 1` (the write in
//! flight may land during the read: the drain starts no other while a read
//! is looking). A read that finds nothing pending goes straight to the
//! master, and answers one of the versions `v_lo..=v_hi` as it is. Counts and rows are then the state at `v`; the order of a
//! list, and which rows a page holds, follow the overlay's placement
//! (pending inserts after the master's last row, removed rows leaving their
//! place empty). A row laid over is the record as written: the SQL masters'
//! id column appears once the write is applied. Changes behind the
//! LiveTables' backs wait for the outbox to drain first (a pending write
//! would otherwise land after them and undo them: offline writes are
//! last-writer-wins). At the end the outbox is drained, no write was
//! rejected, and the master equals the model.
//!
//! # With freshness
//!
//! `model_check_with_freshness` runs both masters over every in-process
//! cache (`MemCache`, `RedbCache`, the faulty one) with a max age and a stale-while-revalidate window on every
//! LiveTable, aged by one `ManualClock` that the tasks move forward at
//! random: slots expire, are served stale and refreshed in the background
//! (single flight with ordinary misses, fenced like any fill) while writes
//! and events race them. Age alone never makes a slot wrong (every change
//! still drops it), so the same model holds: 0 stale reads.
//!
//! # With master pages
//!
//! `model_check_with_master_pages` runs both masters over every in-process
//! cache with `with_master_ipp(4)`: reads of 3 and 5 per page are cut from,
//! or assembled out of, master pages of 4, each cached in its own slot, and
//! checked against the model like any page.
//!
//! # With row invalidation
//!
//! `model_check_with_row_invalidation` runs both masters over every
//! in-process cache with `with_row_invalidation()`: patches and `Updated`
//! events keep the pages that do not hold the row, deletes keep the pages
//! before it, and every kept slot is checked like any other read (the
//! faulty cache fails row-level drops at random too). Both masters list in
//! id order, which no patch changes: the order row invalidation assumes.
//! It runs once more with the outbox of `model_check`'s second round over
//! its flaky master, so the drain's writes and replays drop rows under the
//! overlay. The soak runs both over the Redis kinds too, where they fall
//! back to whole drops.
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
use common::unreachable::Flaky;
use common::{master_rows, product, Delays, Fault, FaultyCache, Latency, Master, Rng, SeedGuard};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::outbox::{OutboxHandle, OutboxLayer};
use vantage_live::{
    Cache, EventStatus, LiveEvent, LiveTable, ManualClock, ManualLiveStream, MemCache, RedbCache,
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

/// With freshness: slots are fresh for this long on the test's clock...
const FRESH_MAX_AGE: Duration = Duration::from_millis(20);
/// ...and served stale (and refreshed) for this long after.
const FRESH_WINDOW: Duration = Duration::from_millis(40);

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
    faulty: Vec<Arc<FaultyCache>>,
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

    /// Three handles on one backend (one per LiveTable: separate `Arc`s
    /// around clones of it; for `RedbCache`, the third with a memory front
    /// of its own; three `RedisCache` instances, sharing only Redis; one
    /// shared `TieredCache`), the faulty wrappers if any, and what keeps it
    /// alive.
    fn build(self, seed: u64) -> Built {
        let (caches, faulty, dir) = match self {
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
                    faulty: Vec::new(),
                    _dir: None,
                    _redis: Some(space),
                };
            }
            CacheKind::Mem => {
                let mem = MemCache::new();
                let handles = (0..3)
                    .map(|_| Arc::new(mem.clone()) as Arc<dyn Cache>)
                    .collect();
                (handles, Vec::new(), None)
            }
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
                let handles: Vec<Arc<dyn Cache>> = vec![
                    Arc::new(cache.clone()),
                    Arc::new(cache.clone()),
                    // A clone with a front of its own (1 MiB: it evicts too).
                    Arc::new(cache.with_memory_front(1 << 20)),
                ];
                (handles, Vec::new(), Some(dir))
            }
            CacheKind::FaultyMem => {
                let mem = MemCache::new();
                let faulty: Vec<Arc<FaultyCache>> = (0..3)
                    .map(|i| {
                        let faulty = FaultyCache::seeded(Arc::new(mem.clone()), seed + i);
                        faulty.get.set(Fault::Rate(50));
                        faulty.put.set(Fault::Rate(50));
                        faulty.invalidate.set(Fault::Rate(150));
                        faulty
                    })
                    .collect();
                let handles = faulty.iter().map(|f| f.clone() as Arc<dyn Cache>).collect();
                (handles, faulty, None)
            }
        };
        Built {
            caches,
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

    /// Run the read through `live`: owned (`list_values`, `get_value`) or
    /// shared (`list_shared`, `get_shared`), which also answers the rows it
    /// handed out, to check later that they never changed.
    async fn run(&self, live: &LiveTable, shared: bool) -> vantage_core::Result<(Answer, Held)> {
        let rows = |rows: &common::Rows| rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(match (self, shared) {
            (ReadOp::Page { page, ipp }, _) => {
                let mut live = live.clone();
                live.set_pagination(Some(Pagination::new(*page, *ipp)));
                if shared {
                    let page = live.list_shared().await?;
                    (Answer::Rows(rows(&page)), Held::Rows(page))
                } else {
                    let page = live.list_values().await?;
                    (Answer::Rows(page.into_iter().collect()), Held::Nothing)
                }
            }
            (ReadOp::All, true) => {
                let all = live.list_shared().await?;
                (Answer::Rows(rows(&all)), Held::Rows(all))
            }
            (ReadOp::All, false) => (
                Answer::Rows(live.list_values().await?.into_iter().collect()),
                Held::Nothing,
            ),
            (ReadOp::Id(id), true) => {
                let row = live.get_shared(id).await?;
                (Answer::Row(row.as_deref().cloned()), Held::Row(row))
            }
            (ReadOp::Id(id), false) => (Answer::Row(live.get_value(id).await?), Held::Nothing),
            (ReadOp::Count, _) => (Answer::Count(live.get_count().await?), Held::Nothing),
        })
    }
}

/// What a shared read handed out, kept to check that it never changed.
enum Held {
    Nothing,
    Rows(Arc<common::Rows>),
    Row(Option<Arc<Record<Value>>>),
}

impl Held {
    /// What the held rows say now, if a shared read handed any out.
    fn now(&self) -> Option<Answer> {
        match self {
            Held::Nothing => None,
            Held::Rows(rows) => Some(Answer::Rows(
                rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )),
            Held::Row(row) => Some(Answer::Row(row.as_deref().cloned())),
        }
    }
}

/// One read, as observed.
struct Observation {
    task: u64,
    table: usize,
    op: ReadOp,
    answer: std::result::Result<Answer, String>,
    held: Held,
    v_lo: usize,
    v_hi: usize,
    /// With an outbox: writes the drain had applied before the read started
    /// and after it ended.
    applied: Option<(usize, usize)>,
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
    /// With an outbox: each write made through it, with its version, in
    /// order.
    live_writes: Mutex<Vec<(usize, WriteOp)>>,
    outbox: Option<OutboxHandle>,
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

// ── the outbox's overlay, as the model sees it ────────────────────────────

/// The master's rows, in order, each `None` if a pending write removed it.
type MasterRows = Vec<(String, Option<Record<Value>>)>;

/// `master` with `pending` laid over it: the master's rows in id order
/// (`None` where a pending write removed one), then the rows pending
/// inserts and replaces add, in the order of their first such write.
fn overlaid(master: &State, pending: &[WriteOp]) -> (MasterRows, Vec<(String, Record<Value>)>) {
    let apply = |id: &str, mut row: Option<Record<Value>>| {
        for op in pending {
            match op {
                WriteOp::Insert(i, r) | WriteOp::Replace(i, r) if i == id => row = Some(r.clone()),
                WriteOp::Patch(i, price) if i == id => {
                    if let Some(row) = row.as_mut() {
                        row.insert("price".to_string(), Value::Integer((*price).into()));
                    }
                }
                WriteOp::Delete(i) if i == id => row = None,
                _ => {}
            }
        }
        row
    };
    let rows = master
        .iter()
        .map(|(id, row)| (id.clone(), apply(id, Some(row.clone()))))
        .collect();
    let mut added: Vec<(String, Record<Value>)> = Vec::new();
    for op in pending {
        if let WriteOp::Insert(id, _) | WriteOp::Replace(id, _) = op {
            if master.contains_key(id) || added.iter().any(|(i, _)| i == id) {
                continue;
            }
            if let Some(row) = apply(id, None) {
                added.push((id.clone(), row));
            }
        }
    }
    // A row added, then deleted, is not there.
    (rows, added)
}

impl ReadOp {
    /// What a read answers over `master` with `pending` laid over it.
    fn expected_overlaid(&self, master: &State, pending: &[WriteOp]) -> Answer {
        let (rows, added) = overlaid(master, pending);
        let listed = || {
            rows.iter()
                .filter_map(|(id, r)| r.clone().map(|r| (id.clone(), r)))
                .chain(added.iter().cloned())
        };
        match self {
            ReadOp::Page { page, ipp } => {
                let skip = ((page - 1) * ipp) as usize;
                let ipp = *ipp as usize;
                let mut out = Vec::new();
                for position in skip..skip + ipp {
                    if let Some((id, row)) = rows.get(position) {
                        if let Some(row) = row {
                            out.push((id.clone(), row.clone()));
                        }
                    } else if let Some(added) = added.get(position - rows.len()) {
                        out.push(added.clone());
                    } else {
                        break;
                    }
                }
                Answer::Rows(out)
            }
            ReadOp::All => Answer::Rows(listed().collect()),
            ReadOp::Id(id) => Answer::Row(listed().find(|(i, _)| i == id).map(|(_, r)| r)),
            ReadOp::Count => Answer::Count(listed().count() as i64),
        }
    }
}

/// Whether `answer` is one a read with an outbox may give (see the module
/// docs): some version `v` in range, some drain point `p` in range, the
/// master at `p` or `p + 1`.
fn outbox_allows(
    obs: &Observation,
    answer: &Answer,
    versions: &[Arc<State>],
    live_writes: &[(usize, WriteOp)],
) -> bool {
    let (a_lo, a_hi) = obs.applied.expect("an outbox read");
    // A read that found nothing pending goes straight to the master, which
    // may meanwhile take writes accepted after the read started: it answers
    // the master at some moment, a version with nothing laid over it.
    if (obs.v_lo..=obs.v_hi).any(|v| obs.op.expected(&versions[v]) == *answer) {
        return true;
    }
    let mut tried = Vec::new();
    for v in obs.v_lo..=obs.v_hi {
        // Outbox writes acknowledged by version v.
        let k = live_writes.iter().filter(|(ver, _)| *ver <= v).count();
        for p in a_lo..=a_hi.min(k) {
            for m in [p, p + 1] {
                if m > k {
                    continue;
                }
                let master: &State = if m < k {
                    &versions[live_writes[m].0 - 1]
                } else {
                    &versions[v]
                };
                let pending: Vec<WriteOp> =
                    live_writes[p..k].iter().map(|(_, op)| op.clone()).collect();
                let expected = obs.op.expected_overlaid(master, &pending);
                if expected == *answer {
                    return true;
                }
                if std::env::var("VLIVE_MODEL_DEBUG").is_ok() {
                    tried.push(format!("DEBUG v={v} k={k} p={p} m={m} pending={pending:?}\n  expected {expected:?}\n  answer   {answer:?}"));
                }
            }
        }
    }
    for t in tried {
        eprintln!("{t}");
    }
    false
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
    /// With an outbox: master writes failed before or after landing.
    master_faults: u64,
    /// With an outbox: replayed inserts recognised as already applied.
    replays: u64,
    /// With master pages: pages that straddled the change in flight.
    straddled: u64,
    /// With freshness: hits served stale, and background refreshes.
    stale_hits: u64,
    refreshes: u64,
    /// With row invalidation: invalidations that named a row.
    row_drops: u64,
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
        self.master_faults += o.master_faults;
        self.replays += o.replays;
        self.stale_hits += o.stale_hits;
        self.straddled += o.straddled;
        self.refreshes += o.refreshes;
        self.row_drops += o.row_drops;
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reads checked ({} answered an older state they overlapped), {} writes \
             through LiveTables, {} changes behind their backs + event, {} bare events, \
             {} master reads, {} injected cache faults, {} injected master write faults \
             ({} replayed inserts recognised), {} stale hits, {} refreshes, {} pages \
             straddling the change in flight, {} row-level invalidations",
            self.reads,
            self.overlapped_old,
            self.writes,
            self.behind_back,
            self.events,
            self.master_reads,
            self.cache_faults,
            self.master_faults,
            self.replays,
            self.stale_hits,
            self.refreshes,
            self.straddled,
            self.row_drops
        )
    }
}

/// What a run adds to the plain LiveTables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extra {
    Plain,
    /// One outbox shared by the three, over a flaky master.
    Outbox,
    /// Max age and stale-while-revalidate on a clock the tasks move.
    Fresh,
    /// `with_master_ipp(MASTER_IPP)`: pages of 3 and 5 assembled from (or cut
    /// out of) master pages of 4.
    MasterPages,
    /// `with_row_invalidation()`: writes and events that name a row drop
    /// only the slots it can change.
    Rows,
    /// `Outbox` and `Rows` together: the drain's writes and replays drop
    /// rows, under the overlay.
    OutboxRows,
}

/// The master's page size in the `MasterPages` runs.
const MASTER_IPP: i64 = 4;

/// For a page at another size than [`MASTER_IPP`]: the version `v` such that
/// the answer is the page cut from master pages each at `v` or `v + 1`
/// (both in `lo..=hi`), if any. That is what `MasterPagesLayer` promises:
/// no acknowledged change falls between its master pages, so they can
/// differ only by the one change in flight (the model makes one at a time).
fn straddles(
    op: &ReadOp,
    answer: &Answer,
    versions: &[Arc<State>],
    lo: usize,
    hi: usize,
) -> Option<usize> {
    let (ReadOp::Page { page, ipp }, Answer::Rows(got)) = (op, answer) else {
        return None;
    };
    if *ipp == MASTER_IPP {
        return None;
    }
    let start = ((page - 1) * ipp) as usize;
    let end = start + *ipp as usize;
    let m = MASTER_IPP as usize;
    let pages: Vec<usize> = (start / m..=(end - 1) / m).collect();
    let master_page = |v: usize, q: usize| -> Vec<(String, Record<Value>)> {
        versions[v]
            .iter()
            .skip(q * m)
            .take(m)
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect()
    };
    for v in lo..hi {
        // Each master page at v or v + 1: 2^pages combinations (pages <= 3).
        for pick in 0..(1u32 << pages.len()) {
            // Rows are keyed by id: a row on both sides of the seam is one.
            let rows: common::Rows = pages
                .iter()
                .enumerate()
                .flat_map(|(i, &q)| master_page(v + ((pick >> i) & 1) as usize, q))
                .skip(start - pages[0] * m)
                .take(*ipp as usize)
                .collect();
            let rows: Vec<(String, Record<Value>)> = rows.into_iter().collect();
            if rows == *got {
                return Some(v);
            }
        }
    }
    None
}

fn replay_hint(seed: u64, master: &str, cache: CacheKind, extra: Extra) -> String {
    let with = match extra {
        Extra::Outbox => ", with an outbox",
        Extra::Fresh => ", with max age and stale-while-revalidate",
        Extra::MasterPages => ", with master pages of 4",
        Extra::Rows => ", with row invalidation",
        Extra::OutboxRows => ", with an outbox and row invalidation",
        Extra::Plain => "",
    };
    format!(
        "seed={seed} (master {master}, cache {cache:?}{with}); replay: \
         {SEED_VAR}={seed} {SECS_VAR}=1 cargo test --test 6_model_concurrency soak -- --ignored --nocapture"
    )
}

async fn run(
    master: &Master,
    cache_kind: CacheKind,
    seed: u64,
    size: Size,
    extra: Extra,
) -> Figures {
    let _guard = SeedGuard::new(replay_hint(seed, master.kind, cache_kind, extra));
    let outbox = matches!(extra, Extra::Outbox | Extra::OutboxRows);
    let fresh = extra == Extra::Fresh;
    let built = cache_kind.build(seed);
    let faulty = built.faulty.clone();
    let cache = |i: usize| built.caches[i % built.caches.len()].clone();
    let delays = Delays::jitter(seed, size.max_delay_us);
    let slow = Latency::wrap(master.table.clone(), delays.clone());

    // With an outbox: one, shared by the three tables, over a master whose
    // writes fail at random before or after they land (8% each).
    let outbox_dir = tempfile::tempdir().expect("temp dir");
    let (slow, flaky) = if outbox {
        let (table, flaky) = Flaky::wrap(slow, seed, 80, 80);
        (table, Some(flaky))
    } else {
        (slow, None)
    };
    let layer = outbox.then(|| {
        OutboxLayer::open(outbox_dir.path())
            .expect("open the outbox")
            .initial_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(10))
    });
    // With freshness: a short max age and window, on a clock the tasks move.
    let clock = fresh.then(ManualClock::starting_now);
    let with_outbox = |table: LiveTable| {
        let table = match &clock {
            Some(clock) => table
                .with_max_age(FRESH_MAX_AGE)
                .with_stale_while_revalidate(FRESH_WINDOW)
                .with_clock(Arc::new(clock.clone())),
            None => table,
        };
        let table = match extra {
            Extra::MasterPages => table.with_master_ipp(MASTER_IPP),
            Extra::Rows | Extra::OutboxRows => table.with_row_invalidation(),
            _ => table,
        };
        match &layer {
            Some(layer) => table.with_outbox_layer(layer.clone()),
            None => table,
        }
    };

    // Three LiveTables, one cache, one cache_key; the second has the stream.
    let key = format!("model-{seed}-{cache_kind:?}-{extra:?}");
    let source = ManualLiveStream::new();
    let tables = vec![
        with_outbox(common::live(slow.clone(), key.clone(), cache(0))),
        with_outbox(
            common::live(slow.clone(), key.clone(), cache(1))
                .with_live_stream(Arc::new(source.clone())),
        ),
        with_outbox(common::live(slow.clone(), key.clone(), cache(2))),
    ];
    let status = tables[1].live_stream_status().expect("a live stream");
    tables[1].start_live_stream();
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
        live_writes: Mutex::new(Vec::new()),
        outbox: layer.as_ref().map(|l| l.handle().clone()),
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
            clock: clock.clone(),
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

    // With an outbox: let it drain (the master comes through every fault in
    // the end), then check.
    if let Some(outbox) = &model.outbox {
        outbox.retry_now();
        tokio::time::timeout(common::PATIENCE, outbox.flush())
            .await
            .expect("the outbox drained");
        assert!(
            outbox.dead_letters().is_empty(),
            "a write was rejected: {:?}",
            outbox.dead_letters()
        );
    }

    // Check every read against the model.
    let versions = model.versions.lock().unwrap().clone();
    let live_writes = model.live_writes.lock().unwrap().clone();
    let mut figures = Figures {
        reads: observations.len() as u64,
        writes: counts[0].load(Ordering::SeqCst),
        behind_back: counts[1].load(Ordering::SeqCst),
        events: counts[2].load(Ordering::SeqCst),
        master_reads: delays.reads.load(Ordering::SeqCst) as u64,
        stale_hits: tables.iter().map(|t| t.stats().stale_hits).sum(),
        refreshes: tables.iter().map(|t| t.stats().refreshes).sum(),
        row_drops: tables.iter().map(|t| t.stats().row_invalidations).sum(),
        ..Figures::default()
    };
    let mut violations = Vec::new();
    for obs in &observations {
        // Rows handed out by a shared read never change under their holder,
        // whatever was written since.
        if let (Ok(answer), Some(now)) = (&obs.answer, obs.held.now()) {
            if *answer != now {
                violations.push(format!(
                    "task {} table {} {:?}: shared rows changed after they were handed out\n  then {answer}\n  now  {now}",
                    obs.task, obs.table, obs.op
                ));
            }
        }
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
        if obs.applied.is_some() {
            if !outbox_allows(obs, answer, &versions, &live_writes) {
                violations.push(format!(
                    "task {} table {} {:?} (versions {}..={}, applied {:?}): no state the outbox \
                     may show\n  answer      {answer}\n  expected v{} {}",
                    obs.task,
                    obs.table,
                    obs.op,
                    obs.v_lo,
                    obs.v_hi,
                    obs.applied,
                    obs.v_hi,
                    obs.op.expected(&versions[obs.v_hi])
                ));
            }
            continue;
        }
        let mut matching: Vec<usize> = (obs.v_lo..=obs.v_hi)
            .filter(|&v| obs.op.expected(&versions[v]) == *answer)
            .collect();
        // A page assembled from master pages may straddle the one change in
        // flight: each master page from one of two adjacent versions.
        if matching.is_empty() && extra == Extra::MasterPages {
            if let Some(v) = straddles(&obs.op, answer, &versions, obs.v_lo, obs.v_hi) {
                figures.straddled += 1;
                matching.push(v);
            }
        }
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
                ));
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
    figures.cache_faults = faulty
        .iter()
        .map(|f| f.calls.faults.load(Ordering::SeqCst) as u64)
        .sum();
    if let (Some(outbox), Some(flaky)) = (&model.outbox, &flaky) {
        let stats = outbox.stats();
        figures.master_faults = (flaky.lost_requests.load(Ordering::SeqCst)
            + flaky.lost_answers.load(Ordering::SeqCst)) as u64;
        figures.replays = stats.replays_recognised;
        assert_eq!(
            stats.applied as usize,
            live_writes.len(),
            "every outbox write applied once"
        );
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
    /// With freshness: the clock the LiveTables age slots by.
    clock: Option<ManualClock>,
}

impl TaskCtx {
    async fn run(mut self, ops: u64) -> Vec<Observation> {
        let mut observations = Vec::new();
        for _ in 0..ops {
            // With freshness, time passes: slots go stale, then expire.
            if let Some(clock) = &self.clock {
                if self.rng.chance(300) {
                    clock.advance(Duration::from_millis(self.rng.below(25)));
                }
            }
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
        // A third of the reads share the cached rows instead of copying them.
        let shared = self.rng.chance(333);
        let applied = || {
            self.model
                .outbox
                .as_ref()
                .map(|o| o.stats().applied as usize)
        };
        let a_lo = applied();
        let v_lo = self.model.acked.load(Ordering::SeqCst);
        let outcome = op.run(&self.tables[table], shared).await;
        let v_hi = self.model.submitted.load(Ordering::SeqCst);
        let (answer, held) = match outcome {
            Ok((answer, held)) => (Ok(answer), held),
            Err(e) => (Err(e.to_string()), Held::Nothing),
        };
        let a_hi = applied();
        Observation {
            task: self.task,
            table,
            op,
            answer,
            held,
            v_lo,
            v_hi,
            applied: a_lo.zip(a_hi),
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
        if behind_back {
            // Offline writes are last-writer-wins: let the outbox drain
            // before changing the master behind its back.
            if let Some(outbox) = &self.model.outbox {
                outbox.retry_now();
                tokio::time::timeout(common::PATIENCE, outbox.flush())
                    .await
                    .expect("the outbox drained");
            }
        }
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
            if self.model.outbox.is_some() {
                self.model
                    .live_writes
                    .lock()
                    .unwrap()
                    .push((version, op.clone()));
            }
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
            for extra in [Extra::Plain, Extra::Outbox] {
                let t = Instant::now();
                let figures = run(master, cache, seed, CI_SIZE, extra).await;
                let with = if extra == Extra::Outbox {
                    " + outbox"
                } else {
                    ""
                };
                eprintln!(
                    "model {} / {cache:?}{with} seed={seed}: {figures} in {:.2}s",
                    master.kind,
                    t.elapsed().as_secs_f64()
                );
                total += figures;
                runs += 1;
            }
        }
    }
    eprintln!(
        "model_check: {runs} runs, {total} in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}

/// Every master over `MemCache` and `RedbCache`, with a max age and a
/// stale-while-revalidate window on a clock the tasks move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check_with_freshness() {
    model_check_extra(Extra::Fresh).await;
}

/// Every master over `MemCache`, `RedbCache` and the faulty cache, with
/// master pages of 4 under reads of 3 and 5 per page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check_with_master_pages() {
    model_check_extra(Extra::MasterPages).await;
}

/// Every master over `MemCache`, `RedbCache` and the faulty cache (whose
/// row-level drops fail at random too), with row-level invalidation: writes
/// and events that name a row keep the slots it cannot change; then again
/// with an outbox over a flaky master (replays drop rows too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check_with_row_invalidation() {
    model_check_extra(Extra::Rows).await;
    model_check_extra(Extra::OutboxRows).await;
}

async fn model_check_extra(extra: Extra) {
    common::init_tracing();
    let started = Instant::now();
    let mut total = Figures::default();
    for (m, master) in masters().await.iter().enumerate() {
        for (c, cache) in CacheKind::ALL.into_iter().enumerate() {
            let seed = CI_SEEDS[(m + c) % CI_SEEDS.len()];
            let figures = run(master, cache, seed, CI_SIZE, extra).await;
            eprintln!(
                "model {} / {cache:?} + {extra:?} seed={seed}: {figures}",
                master.kind
            );
            total += figures;
        }
    }
    eprintln!(
        "model_check {extra:?}: {total} in {:.2}s",
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
                for extra in [
                    Extra::Plain,
                    Extra::Outbox,
                    Extra::Fresh,
                    Extra::MasterPages,
                    Extra::Rows,
                    Extra::OutboxRows,
                ] {
                    total += run(master, cache, seed, SOAK_SIZE, extra).await;
                    runs += 1;
                }
            }
        }
        round += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("soak: {runs} runs over {round} seeds from {seed}: {total}");
}

/// The same tests, over a stack with tower middleware between the cache and
/// the master (see `tests/common/stacks.rs`).
#[test]
fn the_suite_passes_over_a_custom_stack() {
    common::stacks::rerun_over_custom_stack("the_suite_passes_over_a_custom_stack");
}
