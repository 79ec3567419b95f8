//! What only `RedisCache` (and `TieredCache` over it) promises, against the
//! real Redis at `VANTAGE_LIVE_REDIS_URL` (default `redis://127.0.0.1:6379`;
//! skipped with a printed reason when unreachable, failing under `CI=true`).
//!
//! Two `RedisCache` instances connected separately stand for two processes:
//! each has its own connection and its own in-process invalidation state,
//! so whatever fences one against the other goes through Redis. (The suites
//! with real OS processes are in `8_scale_out.rs`.) Faults go through a TCP
//! proxy in front of the shared server: the client sees its connection cut,
//! refused or hanging, and runs its real code path.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{Mode, Proxy};
use common::redis::{redis_url, RedisSpace};
use common::slots::slot_for;
use common::{extra_product, sqlite_master, Delays, Latency};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::cache::{Namespace, SlotKeys, Ticket};
use vantage_live::{Cache, LiveTable, RedisCache, TieredCache};
use vantage_live_layers::View;

macro_rules! space {
    ($tag:expr) => {
        match RedisSpace::new(concat!(module_path!(), "::", $tag), $tag).await {
            Some(space) => space,
            None => return,
        }
    };
}

fn ns(cache: &dyn Cache, keys: &SlotKeys) -> Arc<Namespace> {
    cache
        .generations()
        .expect("owns its state")
        .namespace(keys.namespace())
}

async fn looked_up(cache: &dyn Cache, ns: &Arc<Namespace>, key: &str) -> Ticket {
    let mut ticket = ns.ticket();
    let found = cache.lookup(key, ns, &mut ticket).await.expect("lookup");
    assert!(found.is_none(), "expected a miss for {key}");
    assert!(ticket.token().is_some(), "a miss records the generation");
    ticket
}

/// A fill that overlapped an invalidation made through another instance
/// (another process) is refused by Redis, although nothing changed in the
/// filling instance's own memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_are_fenced_across_instances() {
    let space = space!("fence");
    let (a, b) = (space.cache().await, space.cache().await);
    let keys = SlotKeys::new("clients");
    let key = keys.list(&View::new());
    let ns_a = ns(&a, &keys);

    let ticket = looked_up(&a, &ns_a, &key).await;
    b.invalidate_prefix(keys.prefix()).await.unwrap();
    assert!(ticket.is_current(&ns_a), "A's own state did not move");
    let stored = a
        .fill(&key, &ns_a, ticket, slot_for(&key, "stale"))
        .await
        .unwrap();
    assert!(!stored, "a fill from before B's invalidation landed");
    assert_eq!(a.get(&key).await.unwrap(), None);

    // A fresh lookup after the invalidation fills, and B reads it.
    let ticket = looked_up(&a, &ns_a, &key).await;
    assert!(a
        .fill(&key, &ns_a, ticket, slot_for(&key, "fresh"))
        .await
        .unwrap());
    let ns_b = ns(&b, &keys);
    let got = b
        .lookup(&key, &ns_b, &mut ns_b.ticket())
        .await
        .unwrap()
        .expect("B sees A's fill");
    assert_eq!(got.value, slot_for(&key, "fresh").value);

    // B's invalidation drops it for A at once (no tier 1 here).
    b.invalidate_prefix(keys.prefix()).await.unwrap();
    assert_eq!(a.get(&key).await.unwrap(), None);
}

/// A group drop in one "process" drops the cache_keys only another process
/// used (found in Redis), and fences that process's fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_drop_reaches_cache_keys_only_another_instance_used() {
    let space = space!("group");
    let (a, b) = (space.cache().await, space.cache().await);
    let member = SlotKeys::new("clients?@bakery>clients");
    let other = SlotKeys::new("clients");
    let (member_key, other_key) = (member.list(&View::new()), other.list(&View::new()));
    let (ns_member, ns_other) = (ns(&a, &member), ns(&a, &other));
    let mut stale = None;
    for (key, ns) in [(&member_key, &ns_member), (&other_key, &ns_other)] {
        let ticket = looked_up(&a, ns, key).await;
        assert!(a.fill(key, ns, ticket, slot_for(key, "a")).await.unwrap());
        stale.get_or_insert(ticket);
    }
    // The member's ticket, from before the group drop.
    let stale = stale.expect("taken");

    b.invalidate_cache_keys_starting_with("clients?")
        .await
        .unwrap();
    assert_eq!(a.get(&member_key).await.unwrap(), None, "the member stayed");
    assert!(
        a.get(&other_key).await.unwrap().is_some(),
        "a non-member went"
    );
    let stored = a
        .fill(
            &member_key,
            &ns_member,
            stale,
            slot_for(&member_key, "stale"),
        )
        .await
        .unwrap();
    assert!(!stored, "a fill from before B's group drop landed");
}

/// Writes through one LiveTable are seen by the next read of a LiveTable in
/// another "process" (RedisCache alone: no fan-out needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_seen_by_other_instances_at_once() {
    let space = space!("writes");
    let master = sqlite_master("product").await;
    let one = LiveTable::new(
        master.table.clone(),
        "products",
        Arc::new(space.cache().await),
    );
    let two = LiveTable::new(
        master.table.clone(),
        "products",
        Arc::new(space.cache().await),
    );
    let before = one.list_values().await.unwrap();
    assert_eq!(two.list_values().await.unwrap(), before);
    assert_eq!(two.stats().master_reads, 0, "two shares one's fill");
    for n in 0..5 {
        let id = format!("p_new_{n}");
        one.insert_value(&id, &extra_product(&id)).await.unwrap();
        let rows = two.list_values().await.unwrap();
        assert!(rows.contains_key(&id), "write {n} not seen by the other");
        assert_eq!(rows.len(), before.len() + n + 1);
    }
}

/// A restart (or a flush, an eviction) loses the generation: a fill whose
/// ticket predates the loss is refused, and the new generation is past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_generation_refuses_old_tickets() {
    let space = space!("lost");
    let cache = space.cache().await;
    let keys = SlotKeys::new("k");
    let key = keys.list(&View::new());
    let ns = ns(&cache, &keys);
    let old = looked_up(&cache, &ns, &key).await;

    // Everything of the space is gone, as after a restart.
    drop(RedisSpace::shared(space.prefix.clone()));
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys_now = space.keys();
    assert!(!keys_now.is_empty());
    let _: i64 = redis::cmd("DEL")
        .arg(&keys_now)
        .query_async(&mut conn)
        .await
        .unwrap();

    let stored = cache
        .fill(&key, &ns, old, slot_for(&key, "from before the restart"))
        .await
        .unwrap();
    assert!(!stored, "a fill from before the loss landed");
    let new = {
        let mut ticket = ns.ticket();
        cache.lookup(&key, &ns, &mut ticket).await.unwrap();
        ticket
    };
    assert!(new.token() > old.token(), "{new:?} vs {old:?}");
    assert!(cache
        .fill(&key, &ns, new, slot_for(&key, "after"))
        .await
        .unwrap());
}

/// Every key the cache writes has a time to live, and a namespace's
/// generation outlives its slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires() {
    let space = space!("ttl");
    let ttl = Duration::from_secs(120);
    let cache = space.builder().ttl(ttl).connect().await.unwrap();
    let keys = SlotKeys::new("expiring");
    let ns = ns(&cache, &keys);
    let filled = keys.list(&View::new());
    let ticket = looked_up(&cache, &ns, &filled).await;
    assert!(cache
        .fill(&filled, &ns, ticket, slot_for(&filled, "x"))
        .await
        .unwrap());
    // A lease left behind (a lookup that never filled).
    looked_up(&cache, &ns, &keys.id(&View::new(), "p1")).await;
    cache
        .put("raw/page_1", common::slots::rows("raw"))
        .await
        .unwrap();

    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let all = space.keys();
    assert!(all.len() >= 5, "{all:?}");
    let mut generation_ttl = 0;
    let mut slot_ttl = i64::MAX;
    for key in &all {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            pttl > 0 && pttl <= ttl.as_millis() as i64,
            "{key}: PTTL {pttl}"
        );
        if key.ends_with("expiring}:g") {
            generation_ttl = pttl;
        } else if key.contains("expiring}:s:") {
            slot_ttl = slot_ttl.min(pttl);
        }
    }
    assert!(
        generation_ttl >= slot_ttl - 50,
        "{generation_ttl} < {slot_ttl}"
    );
}

/// Concurrent cold reads in two instances make one master read: the first
/// miss takes the lease, the other instance waits for its fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_reads_across_instances_make_one_master_read() {
    let space = space!("herd");
    let master = sqlite_master("product").await;
    let delays = Delays::jitter(7, 60_000);
    let slow = Latency::wrap(master.table.clone(), delays.clone());
    let (a, b) = (space.cache().await, space.cache().await);
    let one = LiveTable::new(slow.clone(), "products", Arc::new(a.clone()));
    let two = LiveTable::new(slow, "products", Arc::new(b.clone()));
    let reads: Vec<_> = (0..16)
        .map(|i| {
            let live = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move { live.list_values().await.unwrap().len() })
        })
        .collect();
    let expected = common::seed_len("product");
    for read in reads {
        assert_eq!(read.await.unwrap(), expected);
    }
    assert_eq!(
        one.stats().master_reads + two.stats().master_reads,
        1,
        "16 cold reads in two instances"
    );
    assert!(a.lease_waits() + b.lease_waits() >= 1);
}

/// A lease whose holder went away (it never fills) expires: another
/// instance's read waits at most the lease's remaining life, then reads the
/// master once and fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holder_vanished_expires() {
    let space = space!("vanished");
    let lease_ttl = Duration::from_millis(400);
    let holder = space
        .builder()
        .lease_ttl(lease_ttl)
        .connect()
        .await
        .unwrap();
    let reader = space
        .builder()
        .lease_ttl(lease_ttl)
        .lease_wait(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let master = sqlite_master("product").await;
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(reader.clone()));
    let keys = SlotKeys::new("products");
    let taken = Instant::now();
    looked_up(&holder, &ns(&holder, &keys), &live.page_cache_key(None)).await;
    drop(holder);

    let rows = live.list_values().await.unwrap();
    let waited = taken.elapsed();
    assert_eq!(rows.len(), common::seed_len("product"));
    assert!(
        waited >= lease_ttl - Duration::from_millis(50) && waited < lease_ttl * 4,
        "waited {waited:?} for a {lease_ttl:?} lease"
    );
    assert_eq!(reader.lease_waits(), 1);
    assert_eq!(live.stats().master_reads, 1);
    live.list_values().await.unwrap();
    assert_eq!(
        live.stats().master_reads,
        1,
        "the fill serves the next read"
    );
}

/// Redis refusing connections, then hanging, mid-run: every read still
/// answers, from the master, within the operation timeout; writes succeed
/// and are seen; when Redis is back the cache is used again, and the slot
/// from before the write made while it was down is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_hanging_mid_run() {
    let space = space!("down");
    let target = redis_url()
        .trim_start_matches("redis://")
        .parse()
        .expect("test URL is redis://host:port");
    let proxy = Proxy::start(target).await;
    let op_timeout = Duration::from_millis(150);
    let cache = RedisCache::builder(&format!("redis://{}", proxy.addr()))
        .key_prefix(space.prefix.clone())
        .ttl(Duration::from_secs(600))
        .op_timeout(op_timeout)
        .connect()
        .await
        .unwrap();
    let master = sqlite_master("product").await;
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(cache));
    let seeded = live.list_values().await.unwrap();
    live.list_values().await.unwrap();
    assert_eq!(live.stats().master_reads, 1, "warm");

    for (n, mode) in [Mode::Refuse, Mode::Hang].into_iter().enumerate() {
        proxy.set(mode);
        for _ in 0..3 {
            let started = Instant::now();
            let rows = live.list_values().await.unwrap();
            assert!(rows.len() >= seeded.len());
            let took = started.elapsed();
            assert!(
                took < op_timeout * 3 + Duration::from_millis(500),
                "{mode:?}: a read took {took:?}"
            );
        }
        // A write succeeds while Redis is unreachable, and is seen.
        let id = format!("p_while_down_{n}");
        let started = Instant::now();
        live.insert_value(&id, &extra_product(&id)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{mode:?}: write"
        );
        assert!(live.list_values().await.unwrap().contains_key(&id));

        // Back: the pre-write slot in Redis is never served; the cache works
        // again.
        proxy.set(Mode::Forward);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = live.list_values().await.unwrap();
            assert!(rows.contains_key(&id), "{mode:?}: a pre-write slot served");
            let before = live.stats().hits;
            live.list_values().await.unwrap();
            if live.stats().hits > before {
                break;
            }
            assert!(Instant::now() < deadline, "{mode:?}: cache not used again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Connection strings never appear in errors, `Debug` or logs.
#[tokio::test]
async fn connection_strings_never_appear() {
    let secret = "hunter2-secret";
    let url = format!("redis://user:{secret}@127.0.0.1:1/0");
    let err = RedisCache::builder(&url)
        .op_timeout(Duration::from_millis(100))
        .connect()
        .await
        .expect_err("nothing listens on port 1");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("127.0.0.1:1"), "names the server: {text}");
    let err = RedisCache::connect(&format!("rediss-nope://u:{secret}@x"))
        .await
        .expect_err("bad scheme");
    assert!(!format!("{err} {err:?}").contains(secret), "{err:?}");

    // A cache that cannot reach Redis, used by a LiveTable, with logs
    // captured: reads answer from the master and nothing logged names the
    // password.
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || Writer(sink.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let cache = RedisCache::builder(&url)
        .op_timeout(Duration::from_millis(100))
        .connect_lazy()
        .unwrap();
    assert!(!format!("{cache:?}").contains(secret));
    let tiered = TieredCache::new(cache);
    assert!(!format!("{tiered:?}").contains(secret));
    let master = sqlite_master("product").await;
    let live = LiveTable::new(master.table.clone(), "products", Arc::new(tiered));
    assert_eq!(
        live.list_values().await.unwrap().len(),
        common::seed_len("product")
    );
    live.insert_value(&"p_x".to_string(), &extra_product("x"))
        .await
        .unwrap();
    live.list_values().await.unwrap();
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("redis cache operation failed"), "{logs}");
    assert!(!logs.contains(secret), "{logs}");
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
