//! Scale-out figures: what a hit costs in Redis and in two tiers, how long an
//! invalidation takes to reach another process's tier 1, and what one Redis
//! and one NATS carry.
//!
//! ```text
//! cargo run --release --example scale_out_bench
//! ```
//!
//! Needs Redis at `VANTAGE_LIVE_REDIS_URL` (default `redis://127.0.0.1:6379`)
//! and NATS at `VANTAGE_LIVE_NATS_URL` (default `nats://127.0.0.1:4222`).
//! Everything lives under a key prefix and a subject prefix of its own,
//! cleaned up at the end.
//!
//! What is measured (all on loopback, in this one process):
//!
//! - **hits at 100 rows**, full `LiveTable` stack, owned `list_values`:
//!   `MemCache`, `RedisCache` (one round trip and a CBOR decode), and
//!   `TieredCache` (tier 1 serves it), interleaved as `bench_report` does;
//!   ratios are medians of per-round ratios;
//! - **the fan-out delay over 1,000 writes**: "process" A (its own Redis and
//!   NATS connections, its own tier 1) patches a row 1,000 times in a row;
//!   "process" B (other connections, other tier 1) listens through
//!   `NatsLiveStream`. Per write: from the instant A's write returned to the
//!   instant B's event layer had dropped B's tier 1 (0 when B was done
//!   before A's write returned: the write publishes before it answers);
//! - **throughput**: `RedisCache` hits per second with 32 concurrent readers,
//!   and invalidation messages per second through one NATS (published by
//!   one connection, all received by another).
//!
//! The "64 cold reads over 4 processes" figure is measured with real
//! processes by `tests/8_scale_out.rs` (`cold_reads_over_four_processes…`),
//! which prints it.

#[path = "../benches/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::Value;
use support::{interleave, paired_ratio, time_batch, Master, Variant, CACHE_KEY};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{LiveTable, MemCache, NatsFanout, Publisher, RedisCache, TieredCache};
use vantage_types::Record;

const ROUNDS: usize = 61;
const BATCH: Duration = Duration::from_millis(4);
const WRITES: usize = 1_000;

fn redis_url() -> String {
    std::env::var("VANTAGE_LIVE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn nats_url() -> String {
    std::env::var("VANTAGE_LIVE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("vlive-bench-{tag}-{}-{nanos}", std::process::id())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let prefix = unique("redis");
    let subjects = unique("nats").replace('-', "_");
    let rt = support::runtime();
    let master = rt.block_on(Master::with_rows(100));
    let redis = |rt: &tokio::runtime::Runtime| {
        rt.block_on(
            RedisCache::builder(&redis_url())
                .key_prefix(prefix.clone())
                .ttl(Duration::from_secs(600))
                .connect(),
        )
        .expect("Redis")
    };

    // ── hits at 100 rows ──────────────────────────────────────────────────
    let mem = LiveTable::new(master.table.clone(), CACHE_KEY, Arc::new(MemCache::new()));
    let on_redis = LiveTable::new(master.table.clone(), CACHE_KEY, Arc::new(redis(&rt)));
    let tiered = LiveTable::new(
        master.table.clone(),
        CACHE_KEY,
        Arc::new(TieredCache::new(redis(&rt))),
    );
    rt.block_on(async {
        let rows = master.table.list_values().await.unwrap();
        for live in [&mem, &on_redis, &tiered] {
            assert_eq!(live.list_values().await.unwrap(), rows);
            assert_eq!(live.list_values().await.unwrap(), rows);
        }
        assert!(on_redis.stats().hits >= 1 && tiered.stats().hits >= 1);
    });
    let mut v = vec![
        Variant::new("MemCache hit", |it| {
            time_batch(&rt, it, || mem.list_values())
        }),
        Variant::new("RedisCache hit", |it| {
            time_batch(&rt, it, || on_redis.list_values())
        }),
        Variant::new("TieredCache hit (tier 1)", |it| {
            time_batch(&rt, it, || tiered.list_values())
        }),
    ];
    interleave(&mut v, ROUNDS, BATCH);
    println!("## Hits, 100 rows, full LiveTable stack, owned rows (medians)\n");
    println!("| variant | time |\n|---|---:|");
    for variant in &v {
        println!("| {} | {:.0} ns |", variant.name, variant.median());
    }
    println!(
        "\nRedisCache hit / MemCache hit: {:.2}; TieredCache hit / MemCache hit: {:.3}\n",
        paired_ratio(&v[1], &v[0]),
        paired_ratio(&v[2], &v[0])
    );
    drop(v);

    // ── the fan-out delay ─────────────────────────────────────────────────
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let delays = multi.block_on(async {
        let process = |listen: bool| {
            let (prefix, subjects, table) =
                (prefix.clone(), subjects.clone(), master.table.clone());
            async move {
                let cache = TieredCache::new(
                    RedisCache::builder(&redis_url())
                        .key_prefix(prefix)
                        .connect()
                        .await
                        .unwrap(),
                );
                let bus = NatsFanout::connect_with_prefix(&nats_url(), &subjects)
                    .await
                    .unwrap();
                let live = LiveTable::new(table, "fanout", Arc::new(cache));
                if listen {
                    live.with_live_stream(Arc::new(bus.live_stream("fanout")))
                } else {
                    live.with_publisher(Arc::new(bus.publisher()))
                }
            }
        };
        let a = process(false).await;
        let b = process(true).await;
        let mut status = b.live_stream_status().unwrap();
        b.start_live_stream();
        status
            .wait_for(|s| s.subscribed && s.events >= 1)
            .await
            .unwrap();
        let base = status.current().events;
        let watcher = tokio::spawn(async move {
            let mut handled = Vec::with_capacity(WRITES);
            for n in 1..=WRITES as u64 {
                status.wait_for(|s| s.events >= base + n).await.unwrap();
                handled.push(Instant::now());
            }
            handled
        });
        let id = support::row_id(1);
        let mut acked = Vec::with_capacity(WRITES);
        for i in 0..WRITES {
            let mut patch = Record::new();
            patch.insert("price".to_string(), Value::Integer((i as i64).into()));
            a.patch_value(&id, &patch).await.unwrap();
            acked.push(Instant::now());
        }
        let handled = tokio::time::timeout(Duration::from_secs(30), watcher)
            .await
            .expect("B heard every write")
            .unwrap();
        let before = acked.iter().zip(&handled).filter(|(a, h)| h <= a).count();
        let mut delays: Vec<Duration> = acked
            .iter()
            .zip(&handled)
            .map(|(a, h)| h.saturating_duration_since(*a))
            .collect();
        delays.sort();
        (delays, before)
    });
    let (delays, before) = delays;
    println!("## Cross-process invalidation delay, {WRITES} writes\n");
    println!(
        "From A's write returning to B's tier 1 dropped: p50 {:?}, p99 {:?}, max {:?} \
         ({before} of {WRITES} were done before A's write returned)\n",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );

    // ── throughput ────────────────────────────────────────────────────────
    let (hits_per_sec, messages_per_sec) = multi.block_on(async {
        let cache = RedisCache::builder(&redis_url())
            .key_prefix(prefix.clone())
            .connect()
            .await
            .unwrap();
        let live = LiveTable::new(master.table.clone(), CACHE_KEY, Arc::new(cache));
        live.list_values().await.unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        let readers: Vec<_> = (0..32)
            .map(|_| {
                let live = live.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        live.list_values().await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut hits = 0;
        for reader in readers {
            hits += reader.await.unwrap();
        }
        let hits_per_sec = hits as f64 / 2.0;

        let publisher_bus = NatsFanout::connect_with_prefix(&nats_url(), &subjects)
            .await
            .unwrap();
        let listener_bus = NatsFanout::connect_with_prefix(&nats_url(), &subjects)
            .await
            .unwrap();
        let mut subscriber = listener_bus
            .client()
            .subscribe(listener_bus.subject("throughput"))
            .await
            .unwrap();
        listener_bus.client().flush().await.unwrap();
        let publisher = publisher_bus.publisher();
        const MESSAGES: usize = 50_000;
        let started = Instant::now();
        let receive = tokio::spawn(async move {
            use futures_util::StreamExt;
            for _ in 0..MESSAGES {
                subscriber.next().await.unwrap();
            }
        });
        for i in 0..MESSAGES {
            publisher
                .publish(
                    "throughput",
                    vantage_live::LiveEvent::updated(i.to_string()),
                )
                .await
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(60), receive)
            .await
            .expect("all received")
            .unwrap();
        (
            hits_per_sec,
            MESSAGES as f64 / started.elapsed().as_secs_f64(),
        )
    });
    println!("## Throughput on this machine (2 cores shared by client and servers)\n");
    println!("- RedisCache hits, 100 rows, 32 concurrent readers: {hits_per_sec:.0}/s");
    println!("- invalidation messages through one NATS, one publisher, one listener: {messages_per_sec:.0}/s");

    // Clean up.
    if let Ok(client) = redis::Client::open(redis_url().as_str()) {
        if let Ok(mut conn) = client.get_connection() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}
