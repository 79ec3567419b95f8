//! Scale-out across real OS processes: several children of this test (the
//! test binary re-invoked, `scale_out_child`) share one Redis, one SQLite
//! master file and one cache_key; with `TieredCache`, one NATS for the
//! invalidation fan-out. Also the fan-out's faults (a lost NATS connection,
//! garbage on the bus) and wildcard subjects, in one process with separate
//! connections.
//!
//! Needs the Redis at `VANTAGE_LIVE_REDIS_URL` and the NATS at
//! `VANTAGE_LIVE_NATS_URL` (defaults on 127.0.0.1); each test skips with a
//! printed reason where one is unreachable, and fails under `CI=true`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ciborium::Value;
use common::nats::{nats_addr, nats_available, nats_url, unique_subject_prefix};
use common::proxy::{Mode, Proxy};
use common::redis::{redis_url, RedisSpace};
use common::{extra_product, int_field, Delays, Latency};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::cache::{Cache, SlotKeys};
use vantage_live::{LiveTable, NatsFanout, RedisCache, TieredCache};
use vantage_live_layers::View;
use vantage_types::Record;

const CACHE_KEY: &str = "products";
const MODEL_ROW: &str = "p_model";

/// How late, after a write's acknowledgement, another process's two-tier
/// read may still miss it (the fan-out delay) before the model test calls
/// it stale. Measured p99 on loopback is a few milliseconds (see the
/// README); this bound leaves room for 2 loaded CI cores.
const TIERED_BOUND: Duration = Duration::from_millis(250);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

// ── the child ─────────────────────────────────────────────────────────────

/// What a child is told, through its environment.
struct Job {
    role: String,
    db: PathBuf,
    redis_prefix: String,
    /// Empty: `RedisCache` alone; else `TieredCache` with NATS under it.
    nats_prefix: String,
    start_ns: u128,
    until_ns: u128,
    writes: u64,
    lease_ms: u64,
}

impl Job {
    fn from_env() -> Option<Job> {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let role = std::env::var("VLIVE_CHILD_ROLE").ok()?;
        Some(Job {
            role,
            db: PathBuf::from(var("VLIVE_CHILD_DB")),
            redis_prefix: var("VLIVE_CHILD_REDIS"),
            nats_prefix: var("VLIVE_CHILD_NATS"),
            start_ns: var("VLIVE_CHILD_START_NS").parse().unwrap_or(0),
            until_ns: var("VLIVE_CHILD_UNTIL_NS").parse().unwrap_or(0),
            writes: var("VLIVE_CHILD_WRITES").parse().unwrap_or(0),
            lease_ms: var("VLIVE_CHILD_LEASE_MS").parse().unwrap_or(1000),
        })
    }
}

fn say(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "VLIVE {line}");
    let _ = out.flush();
}

/// The child process's entry point: does nothing unless run by a test below
/// with `VLIVE_CHILD_ROLE` set.
#[test]
#[ignore = "run as a child process by the scale-out tests"]
fn scale_out_child() {
    let Some(job) = Job::from_env() else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(job));
}

async fn cache_for(job: &Job) -> (Arc<dyn Cache>, RedisCache, Option<NatsFanout>) {
    let redis = RedisCache::builder(&redis_url())
        .key_prefix(job.redis_prefix.clone())
        .ttl(Duration::from_secs(600))
        .lease_ttl(Duration::from_millis(job.lease_ms))
        .lease_wait(Duration::from_secs(5))
        .connect()
        .await
        .expect("child: connect to Redis");
    if job.nats_prefix.is_empty() {
        return (Arc::new(redis.clone()), redis, None);
    }
    let bus = NatsFanout::connect_with_prefix(&nats_url(), &job.nats_prefix)
        .await
        .expect("child: connect to NATS");
    (Arc::new(TieredCache::new(redis.clone())), redis, Some(bus))
}

async fn child(job: Job) {
    let master = common::masters::sqlite_master_at(&job.db, "product", false).await;
    let (cache, redis, bus) = cache_for(&job).await;
    match job.role.as_str() {
        "cold" => {
            let delays = Delays::jitter(u64::from(std::process::id()), 150_000);
            let slow = Latency::wrap(master, delays);
            let live = LiveTable::new(slow, CACHE_KEY, cache);
            while now_ns() < job.start_ns {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let reads: Vec<_> = (0..16)
                .map(|_| {
                    let live = live.clone();
                    tokio::spawn(async move { live.list_values().await.unwrap().len() })
                })
                .collect();
            let mut rows = 0;
            for read in reads {
                rows = read.await.unwrap();
            }
            say(format!(
                "cold master_reads={} lease_waits={} rows={rows}",
                live.stats().master_reads,
                redis.lease_waits()
            ));
        }
        "holder" => {
            let keys = SlotKeys::new(CACHE_KEY);
            let ns = redis.generations().unwrap().namespace(keys.namespace());
            let mut ticket = ns.ticket();
            let found = redis
                .lookup(&keys.list(&View::new()), &ns, &mut ticket)
                .await
                .unwrap();
            assert!(found.is_none());
            say("leased".into());
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        "writer" => {
            let mut live = LiveTable::new(master, CACHE_KEY, cache);
            if let Some(bus) = &bus {
                live = live.with_publisher(Arc::new(bus.publisher()));
            }
            for v in 1..=job.writes {
                let mut patch = Record::new();
                patch.insert("price".to_string(), Value::Integer(v.into()));
                live.patch_value(&MODEL_ROW.to_string(), &patch)
                    .await
                    .unwrap();
                say(format!("ack {v} {}", now_ns()));
                tokio::time::sleep(Duration::from_micros(500 + (v % 5) * 700)).await;
            }
        }
        "reader" => {
            let mut live = LiveTable::new(master, CACHE_KEY, cache);
            if let Some(bus) = &bus {
                live = live.with_live_stream(Arc::new(bus.live_stream(CACHE_KEY)));
                let mut status = live.live_stream_status().unwrap();
                live.start_live_stream();
                status.wait_for(|s| s.subscribed && s.events >= 1).await;
            }
            say("ready".into());
            let mut n = 0u64;
            while now_ns() < job.until_ns {
                let t0 = now_ns();
                let (kind, v) = if n % 2 == 0 {
                    let row = live.get_value(&MODEL_ROW.to_string()).await.unwrap();
                    ("get", row.and_then(|r| int_field(&r, "price")).unwrap())
                } else {
                    let rows = live.list_values().await.unwrap();
                    ("list", int_field(&rows[MODEL_ROW], "price").unwrap())
                };
                say(format!("read {kind} {t0} {v} {}", now_ns()));
                n += 1;
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            let stats = live.stats();
            say(format!(
                "stats hits={} master_reads={}",
                stats.hits, stats.master_reads
            ));
        }
        other => panic!("unknown role {other}"),
    }
}

// ── the parent's side ─────────────────────────────────────────────────────

/// A child process and the `VLIVE` lines it prints.
struct Kid {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Kid {
    fn spawn(role: &str, env: &[(&str, String)]) -> Kid {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--ignored", "--exact", "scale_out_child", "--nocapture"])
            .env("VLIVE_CHILD_ROLE", role)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(line) = line.strip_prefix("VLIVE ") {
                    if tx.send(line.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Kid { child, lines }
    }

    /// The next line, within `patience`.
    fn next(&self, patience: Duration) -> String {
        self.lines
            .recv_timeout(patience)
            .expect("child said nothing in time")
    }

    /// Every remaining line, once the child exits successfully.
    fn finish(mut self) -> Vec<String> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
        self.rest()
    }

    /// Every line until the child's output ends.
    fn rest(&mut self) -> Vec<String> {
        self.lines.iter().collect()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A seeded SQLite master file with the model row at price 0.
async fn shared_master(dir: &Path) -> PathBuf {
    let path = dir.join("master.sqlite");
    let table = common::masters::sqlite_master_at(&path, "product", true).await;
    let mut row = extra_product("model");
    row.insert("price".to_string(), Value::Integer(0.into()));
    table
        .insert_value(&MODEL_ROW.to_string(), &row)
        .await
        .unwrap();
    path
}

fn base_env(db: &Path, space: &RedisSpace, nats: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VLIVE_CHILD_DB", db.display().to_string()),
        ("VLIVE_CHILD_REDIS", space.prefix.clone()),
        ("VLIVE_CHILD_NATS", nats.to_string()),
    ]
}

/// 64 concurrent cold reads spread over 4 processes (16 each), against a
/// master with up to 300 ms of latency per read: one master read in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_reads_over_four_processes_make_one_master_read() {
    let Some(space) = RedisSpace::new("cold_reads", "cold").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = shared_master(dir.path()).await;
    let start = now_ns() + 2_000_000_000;
    let kids: Vec<Kid> = (0..4)
        .map(|_| {
            let mut env = base_env(&db, &space, "");
            env.push(("VLIVE_CHILD_START_NS", start.to_string()));
            env.push(("VLIVE_CHILD_LEASE_MS", "5000".into()));
            Kid::spawn("cold", &env)
        })
        .collect();
    let mut master_reads = 0;
    let mut lease_waits = 0;
    for kid in kids {
        let lines = kid.finish();
        let line = lines
            .iter()
            .find(|l| l.starts_with("cold "))
            .expect("result");
        let field = |name: &str| -> u64 {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        master_reads += field("master_reads=");
        lease_waits += field("lease_waits=");
        assert_eq!(field("rows=") as usize, common::seed_len("product") + 1);
    }
    println!(
        "64 cold reads over 4 processes: {master_reads} master read(s), {lease_waits} lease waits"
    );
    assert_eq!(master_reads, 1, "64 cold reads over 4 processes");
    assert!(lease_waits >= 1);
}

/// A process holding a lease is killed before it fills: the next read
/// elsewhere waits for the lease to expire, then reads the master once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_never_sticks_the_slot() {
    let Some(space) = RedisSpace::new("killed_holder", "killed").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = shared_master(dir.path()).await;
    let lease = Duration::from_millis(600);
    let mut env = base_env(&db, &space, "");
    env.push(("VLIVE_CHILD_LEASE_MS", lease.as_millis().to_string()));
    let mut holder = Kid::spawn("holder", &env);
    assert_eq!(holder.next(Duration::from_secs(30)), "leased");
    let leased_at = Instant::now();
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();

    let master = common::masters::sqlite_master_at(&db, "product", false).await;
    let cache = space
        .builder()
        .lease_wait(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let live = LiveTable::new(master, CACHE_KEY, Arc::new(cache.clone()));
    let rows = live.list_values().await.unwrap();
    let waited = leased_at.elapsed();
    assert_eq!(rows.len(), common::seed_len("product") + 1);
    // The lease's life, plus this process opening the master and Redis on a
    // loaded machine.
    assert!(
        waited < lease + Duration::from_secs(3),
        "waited {waited:?} for a dead holder's {lease:?} lease"
    );
    assert_eq!(cache.lease_waits(), 1, "it found the dead holder's lease");
    assert_eq!(live.stats().master_reads, 1);
    live.list_values().await.unwrap();
    assert_eq!(live.stats().master_reads, 1, "filled");
}

/// What the model run saw.
struct Run {
    acks: BTreeMap<i64, u128>,
    reads: Vec<(String, u128, i64, u128)>,
}

/// One writer process and two reader processes on one cache_key; readers
/// check every answer against what had been acknowledged when they asked.
async fn model(space: &RedisSpace, nats: &str, writes: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let db = shared_master(dir.path()).await;
    let until = now_ns() + 60_000_000_000;
    let readers: Vec<Kid> = (0..2)
        .map(|_| {
            let mut env = base_env(&db, space, nats);
            env.push(("VLIVE_CHILD_UNTIL_NS", until.to_string()));
            Kid::spawn("reader", &env)
        })
        .collect();
    for reader in &readers {
        assert_eq!(reader.next(Duration::from_secs(30)), "ready");
    }
    let mut env = base_env(&db, space, nats);
    env.push(("VLIVE_CHILD_WRITES", writes.to_string()));
    let writer = Kid::spawn("writer", &env);
    let mut acks = BTreeMap::new();
    for line in writer.finish() {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] == "ack" {
            acks.insert(parts[1].parse().unwrap(), parts[2].parse().unwrap());
        }
    }
    assert_eq!(acks.len() as u64, writes);
    // Let the readers see the end, then stop them.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut reads = Vec::new();
    for mut reader in readers {
        let _ = reader.child.kill();
        let _ = reader.child.wait();
        for line in reader.rest() {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts[0] == "read" {
                reads.push((
                    parts[1].to_string(),
                    parts[2].parse().unwrap(),
                    parts[3].parse().unwrap(),
                    parts[4].parse().unwrap(),
                ));
            }
        }
    }
    Run { acks, reads }
}

impl Run {
    /// Reads that answered a version older than one acknowledged more than
    /// `bound` before they started, with how late they were.
    fn stale(&self, bound: Duration) -> (usize, Duration) {
        let mut stale = 0;
        let mut worst = Duration::ZERO;
        for (_, t0, v, _) in &self.reads {
            // The first write this read missed, and when it was acked.
            if let Some((_, acked)) = self.acks.range(v + 1..).next() {
                if *acked < *t0 {
                    let late = Duration::from_nanos((t0 - acked) as u64);
                    worst = worst.max(late);
                    if late > bound {
                        stale += 1;
                    }
                }
            }
        }
        (stale, worst)
    }

    fn check_no_phantoms(&self) {
        let max = *self.acks.keys().last().unwrap();
        for (kind, _, v, _) in &self.reads {
            assert!((0..=max).contains(v), "{kind} read answered {v}");
        }
    }
}

/// RedisCache alone, shared by three processes: no read that started after
/// a write's acknowledgement misses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_across_processes_redis_cache() {
    let Some(space) = RedisSpace::new("model_redis", "model").await else {
        return;
    };
    let run = model(&space, "", 120).await;
    run.check_no_phantoms();
    let (stale, worst) = run.stale(Duration::ZERO);
    println!(
        "RedisCache, 3 processes: {} reads checked, {} writes, {stale} stale (latest seen {:?} after an ack)",
        run.reads.len(),
        run.acks.len(),
        worst
    );
    assert!(run.reads.len() > 100, "too few reads: {}", run.reads.len());
    assert_eq!(stale, 0, "stale reads with RedisCache alone");
}

/// TieredCache in three processes, kept coherent through NATS: no read that
/// started later than a write's acknowledgement plus the fan-out bound
/// misses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_across_processes_tiered_cache() {
    let Some(space) = RedisSpace::new("model_tiered", "model-t").await else {
        return;
    };
    if !nats_available("model_across_processes_tiered_cache").await {
        return;
    }
    let run = model(&space, &unique_subject_prefix("model"), 120).await;
    run.check_no_phantoms();
    let (stale, worst) = run.stale(TIERED_BOUND);
    let (within, _) = run.stale(Duration::ZERO);
    println!(
        "TieredCache + NATS, 3 processes: {} reads checked, {} writes, {within} read(s) behind \
         within the fan-out delay (latest {:?} after an ack), {stale} stale beyond {:?}",
        run.reads.len(),
        run.acks.len(),
        worst,
        TIERED_BOUND
    );
    assert!(run.reads.len() > 100, "too few reads: {}", run.reads.len());
    assert_eq!(stale, 0, "stale reads beyond the fan-out bound");
}

// ── the fan-out's faults, in one process ──────────────────────────────────

/// A "process": its own Redis connection (own in-process state), its own
/// tier 1, its own NATS connection.
async fn process(
    space: &RedisSpace,
    nats: &str,
    master: &vantage_table::any::AnyTable,
    via: Option<&Proxy>,
) -> (LiveTable, TieredCache) {
    let cache = TieredCache::new(space.cache().await);
    let url = match via {
        Some(proxy) => format!("nats://{}", proxy.addr()),
        None => nats_url(),
    };
    let bus = NatsFanout::connect_with_prefix(&url, nats).await.unwrap();
    let live = LiveTable::new(master.clone(), CACHE_KEY, Arc::new(cache.clone()))
        .with_publisher(Arc::new(bus.publisher()))
        .with_live_stream(Arc::new(bus.live_stream(CACHE_KEY).skip_own_messages()));
    let mut status = live.live_stream_status().unwrap();
    live.start_live_stream();
    status.wait_for(|s| s.subscribed && s.events >= 1).await;
    (live, cache)
}

macro_rules! servers {
    ($tag:expr) => {{
        let Some(space) = RedisSpace::new($tag, $tag).await else {
            return;
        };
        if !nats_available($tag).await {
            return;
        }
        (space, unique_subject_prefix($tag))
    }};
}

/// A write in one process drops the other's tier 1 through the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_drops_other_processes_tier_one() {
    let (space, nats) = servers!("fanout");
    let master = common::sqlite_master("product").await;
    let (a, _) = process(&space, &nats, &master.table, None).await;
    let (b, _) = process(&space, &nats, &master.table, None).await;
    let before = b.list_values().await.unwrap();
    b.list_values().await.unwrap();
    let hits = b.stats().hits;
    assert!(hits >= 1, "tier 1 serves b");
    let events = b.live_stream_status().unwrap().current().events;
    a.insert_value(&"p_fan".to_string(), &extra_product("fan"))
        .await
        .unwrap();
    let mut status = b.live_stream_status().unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.events > events),
    )
    .await
    .expect("b heard a's write")
    .unwrap();
    let after = b.list_values().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains_key("p_fan"));
}

/// The NATS connection is cut: the subscription ends, comes back with
/// backoff, and the tier 1 is dropped, so a write published while the
/// listener was away is seen after all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nats_connection_drops_tier_one() {
    let (space, nats) = servers!("lostnats");
    let proxy = Proxy::start(nats_addr()).await;
    let master = common::sqlite_master("product").await;
    let (a, _) = process(&space, &nats, &master.table, None).await;
    let (b, b_cache) = process(&space, &nats, &master.table, Some(&proxy)).await;
    let before = b.list_values().await.unwrap();
    let key = b.page_cache_key(None);
    let ns = b_cache
        .generations()
        .unwrap()
        .namespace(SlotKeys::new(CACHE_KEY).namespace());
    assert!(matches!(
        b_cache.peek(&key, &ns),
        vantage_live::cache::Peek::Hit(_)
    ));
    let subscriptions = b.live_stream_status().unwrap().current().subscriptions;

    proxy.set(Mode::Refuse);
    let mut status = b.live_stream_status().unwrap();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| !s.subscribed))
        .await
        .expect("b noticed the lost connection")
        .unwrap();
    // Published while b is away: b never gets this message.
    a.insert_value(&"p_missed".to_string(), &extra_product("missed"))
        .await
        .unwrap();
    proxy.set(Mode::Forward);
    tokio::time::timeout(
        Duration::from_secs(15),
        status.wait_for(|s| s.subscriptions > subscriptions && s.subscribed && s.events >= 2),
    )
    .await
    .expect("b subscribed again")
    .unwrap();
    assert!(
        !matches!(b_cache.peek(&key, &ns), vantage_live::cache::Peek::Hit(_)),
        "tier 1 dropped on reconnect"
    );
    let after = b.list_values().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains_key("p_missed"));
}

/// A message that is not an invalidation still invalidates (a `Changed`,
/// with a `warn!`): the listener drops its tier 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_bus_is_a_change() {
    let (space, nats) = servers!("garbage");
    let master = common::sqlite_master("product").await;
    let (b, b_cache) = process(&space, &nats, &master.table, None).await;
    b.list_values().await.unwrap();
    let key = b.page_cache_key(None);
    let ns = b_cache
        .generations()
        .unwrap()
        .namespace(SlotKeys::new(CACHE_KEY).namespace());
    assert!(matches!(
        b_cache.peek(&key, &ns),
        vantage_live::cache::Peek::Hit(_)
    ));
    let invalidations = b.stats().invalidations;

    let raw = NatsFanout::connect_with_prefix(&nats_url(), &nats)
        .await
        .unwrap();
    let subject = raw.subject(CACHE_KEY);
    for garbage in [&b"\xff\xfe not json"[..], b"{}", br#"{"op":"inserted"}"#] {
        raw.client()
            .publish(subject.clone(), garbage.to_vec().into())
            .await
            .unwrap();
    }
    raw.client().flush().await.unwrap();
    let mut status = b.live_stream_status().unwrap();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.events >= 4))
        .await
        .expect("three garbage messages became events")
        .unwrap();
    assert!(b.stats().invalidations >= invalidations + 3);
    assert!(!matches!(
        b_cache.peek(&key, &ns),
        vantage_live::cache::Peek::Hit(_)
    ));
}

/// A wildcard subscription hears every cache_key under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subjects_group_cache_keys() {
    let (_space, nats) = servers!("wildcard");
    let bus = NatsFanout::connect_with_prefix(&nats_url(), &nats)
        .await
        .unwrap();
    let events = bus.live_stream_for_subject(format!("{nats}.clients.>"));
    use futures_util::StreamExt;
    use vantage_live::{LiveEvent, LiveStream, Publisher};
    let mut stream = events.subscribe();
    assert_eq!(stream.next().await, Some(LiveEvent::Changed), "listening");
    let publisher = bus.publisher();
    publisher
        .publish("clients/eu", LiveEvent::updated("c1"))
        .await
        .unwrap();
    publisher
        .publish("other", LiveEvent::updated("x"))
        .await
        .unwrap();
    publisher
        .publish("clients/us/west", LiveEvent::deleted("c2"))
        .await
        .unwrap();
    let got: Vec<_> = tokio::time::timeout(Duration::from_secs(5), stream.take(2).collect())
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![LiveEvent::updated("c1"), LiveEvent::deleted("c2")]
    );
}

/// With JetStream behind the subjects, a listener that loses its connection
/// keeps its tier 1: after an outage with no writes nothing is dropped; after
/// one with a write, the missed invalidation is replayed (and the write is
/// seen), without a new subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_jetstream_listener_replays_and_keeps_tier_one() {
    let (space, nats) = servers!("jetstream");
    let stream_name = nats.replace(['.', '-'], "_");
    let setup = NatsFanout::connect_with_prefix(&nats_url(), &nats)
        .await
        .unwrap();
    setup
        .ensure_stream(&stream_name, Duration::from_secs(120))
        .await
        .unwrap();
    let proxy = Proxy::start(nats_addr()).await;
    let master = common::sqlite_master("product").await;
    let (a, _) = process(&space, &nats, &master.table, None).await;

    let b_cache = TieredCache::new(space.cache().await);
    let b_bus = NatsFanout::connect_with_prefix(&format!("nats://{}", proxy.addr()), &nats)
        .await
        .unwrap();
    let listener = b_bus
        .live_stream(CACHE_KEY)
        .replay_from(stream_name.clone());
    let b = LiveTable::new(master.table.clone(), CACHE_KEY, Arc::new(b_cache.clone()))
        .with_live_stream(Arc::new(listener.clone()));
    let mut status = b.live_stream_status().unwrap();
    b.start_live_stream();
    status
        .wait_for(|s| s.subscribed && s.events >= 1)
        .await
        .unwrap();
    let before = b.list_values().await.unwrap();
    let key = b.page_cache_key(None);
    let ns = b_cache
        .generations()
        .unwrap()
        .namespace(SlotKeys::new(CACHE_KEY).namespace());
    let warm = |c: &TieredCache| matches!(c.peek(&key, &ns), vantage_live::cache::Peek::Hit(_));
    assert!(warm(&b_cache));

    let cut = |round: u64| {
        proxy.set(Mode::Refuse);
        let bus = b_bus.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while bus.connection_losses() < round {
                assert!(Instant::now() < deadline, "the cut was not noticed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let resumed = |n: u64| {
        let listener = listener.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while listener.resumes() < n {
                assert!(Instant::now() < deadline, "no resume");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    // An outage with nothing published: tier 1 is kept.
    cut(1).await;
    proxy.set(Mode::Forward);
    resumed(1).await;
    assert!(warm(&b_cache), "tier 1 kept after a quiet outage");
    assert_eq!(status.current().subscriptions, 1, "no new subscription");

    // An outage with a write: the missed invalidation is replayed.
    let events = status.current().events;
    cut(2).await;
    a.insert_value(&"p_replayed".to_string(), &extra_product("replayed"))
        .await
        .unwrap();
    proxy.set(Mode::Forward);
    resumed(2).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.events > events),
    )
    .await
    .expect("the missed invalidation was replayed")
    .unwrap();
    assert_eq!(status.current().subscriptions, 1, "no new subscription");
    let after = b.list_values().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains_key("p_replayed"));

    // Clean up the stream.
    let js = async_nats::jetstream::new(setup.client().clone());
    let _ = js.delete_stream(&stream_name).await;
}
