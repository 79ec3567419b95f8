//! The `Cache` contract, run against every backend: `MemCache`, `RedbCache`
//! (with and without its memory front, in temp folders) and `NoCache`
//! (which must keep the no-op contract: every lookup misses).
//!
//! Typed slots go in with `fill` (fenced by a ticket) or the seed's `put`,
//! and come back with `lookup` (one trip), `peek` (from memory, if the
//! backend can) and the seed's `get`. Invalidation state is the backend's:
//! clones of a backend, through any number of `Arc`s, share it.
//!
//! `RedisCache` and `TieredCache` run it too, against the Redis at
//! `VANTAGE_LIVE_REDIS_URL` (default `redis://127.0.0.1:6379`), each test in
//! a key prefix of its own; they skip with a printed reason when it is
//! unreachable (and fail under `CI=true`).
//!
//! What only one backend promises lives in `1_cache_redb.rs` (persistence,
//! durability, open errors), `1_cache_mem.rs` (moka's bounds) and
//! `1_cache_codec.rs` (the bytes on disk).

mod common;

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use common::redis::RedisSpace;
use common::slots::{assert_identical, assert_same_slot, every_kind_slot, rows, slot_for, slots};
use tempfile::TempDir;
use vantage_live::cache::{split_key, Generations, Namespace, Peek, SlotKeys, Ticket};
use vantage_live::{
    Cache, CachedRows, CachedSlot, MemCache, NoCache, RedbCache, SlotValue, TieredCache,
};
use vantage_live_layers::View;

// ── backends ──────────────────────────────────────────────────────────────

/// One backend under test, what keeps it alive, and how to make another
/// handle on the same backend (a clone, behind an `Arc` of its own).
struct Backend {
    name: &'static str,
    cache: Arc<dyn Cache>,
    /// `false` for `NoCache`: the contract is then "stores nothing".
    stores: bool,
    clone: Box<dyn Fn() -> Arc<dyn Cache> + Send + Sync>,
    _dir: Option<TempDir>,
    _redis: Option<RedisSpace>,
}

fn mem() -> Backend {
    let cache = MemCache::new();
    Backend {
        name: "MemCache",
        cache: Arc::new(cache.clone()),
        stores: true,
        clone: Box::new(move || Arc::new(cache.clone())),
        _dir: None,
        _redis: None,
    }
}

fn redb() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = RedbCache::open(dir.path()).expect("open redb cache");
    Backend {
        name: "RedbCache",
        cache: Arc::new(cache.clone()),
        stores: true,
        // A clone with a memory front of its own.
        clone: Box::new(move || Arc::new(cache.clone().with_memory_front(1 << 20))),
        _dir: Some(dir),
        _redis: None,
    }
}

/// A `RedbCache` without its memory front: every call reaches the file.
fn redb_disk() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = RedbCache::open(dir.path())
        .expect("open redb cache")
        .with_memory_front(0);
    Backend {
        name: "RedbCache (disk only)",
        cache: Arc::new(cache.clone()),
        stores: true,
        clone: Box::new(move || Arc::new(cache.clone())),
        _dir: Some(dir),
        _redis: None,
    }
}

fn none() -> Backend {
    Backend {
        name: "NoCache",
        cache: Arc::new(NoCache),
        stores: false,
        clone: Box::new(|| Arc::new(NoCache)),
        _dir: None,
        _redis: None,
    }
}

/// A `RedisCache` in a key prefix of its own, or `None` (skipped).
async fn redis_backend(test: &str) -> Option<Backend> {
    let space = RedisSpace::new(test, "contract").await?;
    let cache = space.cache().await;
    Some(Backend {
        name: "RedisCache",
        cache: Arc::new(cache.clone()),
        stores: true,
        clone: Box::new(move || Arc::new(cache.clone())),
        _dir: None,
        _redis: Some(space),
    })
}

/// A `TieredCache` over a `RedisCache` in a key prefix of its own; its
/// "clone" is a second tier 1 over the same `RedisCache`.
async fn tiered_backend(test: &str) -> Option<Backend> {
    let space = RedisSpace::new(test, "contract-tiered").await?;
    let back = space.cache().await;
    Some(Backend {
        name: "TieredCache",
        cache: Arc::new(TieredCache::new(back.clone())),
        stores: true,
        clone: Box::new(move || Arc::new(TieredCache::new(back.clone()))),
        _dir: None,
        _redis: Some(space),
    })
}

/// Each contract test below, once per backend (`mem_cache::round_trip`, ...).
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod mem_cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::mem()).await
                }
            )*
        }
        mod redb_cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::redb()).await
                }
            )*
        }
        mod redb_cache_disk_only {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::redb_disk()).await
                }
            )*
        }
        mod no_cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::none()).await
                }
            )*
        }
        mod redis_cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let name = concat!("redis_cache::", stringify!($test));
                    if let Some(b) = super::redis_backend(name).await {
                        super::$test(b).await
                    }
                }
            )*
        }
        mod tiered_cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let name = concat!("tiered_cache::", stringify!($test));
                    if let Some(b) = super::tiered_backend(name).await {
                        super::$test(b).await
                    }
                }
            )*
        }
    };
}

contract!(
    round_trip,
    absent_rows_and_counts_are_slots_too,
    prefix_invalidation,
    isolation_between_cache_keys,
    awkward_keys,
    every_cbor_value_kind_round_trips,
    tickets_fence_stale_fills,
    raw_prefixes_cover_their_cache_key,
    concurrent_use_keeps_slots_apart,
    fill_racing_an_invalidation_never_survives,
    clones_share_slots_and_invalidation_state,
    the_seed_shape_of_each_slot,
    says_whether_it_stores,
    cache_key_groups_drop_together,
);

// ── helpers ───────────────────────────────────────────────────────────────

/// The invalidation state of `key`'s cache_key in `cache` (a private one for
/// a backend that owns none, as the cache layer would make).
fn namespace(cache: &dyn Cache, key: &str) -> Arc<Namespace> {
    let name = split_key(key).0;
    match cache.generations() {
        Some(generations) => generations.namespace(name),
        None => Generations::new().namespace(name),
    }
}

/// A ticket for a fill of `key`, taken as the cache layer takes it: before
/// the lookup, which may record backend state in it (`RedisCache` records the
/// generation it saw; a ticket that never went through a lookup fills
/// nothing there).
async fn ticket_for(cache: &dyn Cache, ns: &Arc<Namespace>, key: &str) -> Ticket {
    let mut ticket = ns.ticket();
    let _ = cache.lookup(key, ns, &mut ticket).await;
    ticket
}

/// One typed lookup, through `peek` when the backend answers from memory
/// (checking that `peek` and `lookup` agree), else `lookup`.
async fn lookup_in(cache: &dyn Cache, name: &str, key: &str) -> Option<CachedSlot> {
    let ns = namespace(cache, key);
    let looked = cache
        .lookup(key, &ns, &mut ns.ticket())
        .await
        .unwrap_or_else(|e| panic!("{name}: lookup {key:?}: {e}"));
    match cache.peek(key, &ns) {
        Peek::Hit(slot) => {
            let looked = looked
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: {key:?}: peek hit, lookup missed"));
            assert_same_slot(looked, &slot, &format!("{name}: peek of {key:?}"));
        }
        Peek::Miss => assert!(looked.is_none(), "{name}: {key:?}: peek missed, lookup hit"),
        Peek::Unknown => {}
    }
    looked
}

/// Check that `key` holds `expected` (or, for `NoCache`, nothing), typed and
/// in the seed's shape.
async fn expect_slot_in(
    cache: &dyn Cache,
    name: &str,
    stores: bool,
    key: &str,
    expected: Option<&CachedSlot>,
) {
    let got = lookup_in(cache, name, key).await;
    match (stores, expected, &got) {
        (false, _, None) | (true, None, None) => {}
        (false, _, Some(_)) => panic!("{name}: stores nothing, but {key:?} hit"),
        (true, None, Some(got)) => panic!("{name}: {key:?} should be empty, holds {got:?}"),
        (true, Some(_), None) => panic!("{name}: {key:?} should hold a slot, missed"),
        (true, Some(expected), Some(got)) => {
            assert_same_slot(expected, got, &format!("{name}: {key:?}"))
        }
    }
    let seed = cache
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("{name}: get {key:?}: {e}"));
    let expected_seed = got.as_ref().and_then(|slot| slot.to_rows(key));
    let what = format!("{name}: the seed's view of {key:?}");
    match (&seed, &expected_seed) {
        (Some(seed), Some(expected)) => assert_identical(expected, seed, &what),
        (seed, expected) => assert_eq!(seed, expected, "{what}"),
    }
}

async fn expect_slot(b: &Backend, key: &str, expected: Option<&CachedSlot>) {
    expect_slot_in(&*b.cache, b.name, b.stores, key, expected).await
}

/// Fill `key` with `slot` at a fresh ticket: lands in a backend that stores.
async fn fill(b: &Backend, key: &str, slot: &CachedSlot) {
    let ns = namespace(&*b.cache, key);
    let stored = b
        .cache
        .fill(
            key,
            &ns,
            ticket_for(&*b.cache, &ns, key).await,
            slot.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: fill {key:?}: {e}", b.name));
    assert_eq!(
        stored, b.stores,
        "{}: fill of {key:?} at a fresh ticket",
        b.name
    );
}

async fn invalidate(b: &Backend, keys: &SlotKeys) {
    b.cache
        .invalidate_prefix(keys.prefix())
        .await
        .unwrap_or_else(|e| panic!("{}: invalidate {:?}: {e}", b.name, keys.prefix()));
}

// ── the contract ──────────────────────────────────────────────────────────

async fn round_trip(b: Backend) {
    let k = SlotKeys::new("products");
    for key in slots(&k) {
        expect_slot(&b, &key, None).await;
        let first = slot_for(&key, "first");
        fill(&b, &key, &first).await;
        expect_slot(&b, &key, Some(&first)).await;
        // Reading does not consume.
        expect_slot(&b, &key, Some(&first)).await;
        // A fill replaces.
        let second = slot_for(&key, "second");
        fill(&b, &key, &second).await;
        expect_slot(&b, &key, Some(&second)).await;
    }
    // A slot of a page never filled is still empty.
    let other_page = k.list(
        &View::new().with_pagination(Some(vantage_table::pagination::Pagination::new(9, 10))),
    );
    expect_slot(&b, &other_page, None).await;

    // Empty rows are rows, not a miss.
    let empty = CachedSlot {
        value: SlotValue::Rows(Arc::new(common::Rows::new())),
        fetched_at: UNIX_EPOCH,
    };
    fill(&b, &other_page, &empty).await;
    expect_slot(&b, &other_page, Some(&empty)).await;
}

/// A row's absence and a count are slots like any other.
async fn absent_rows_and_counts_are_slots_too(b: Backend) {
    let k = SlotKeys::new("typed");
    let id = k.id(&View::new(), "p99_missing");
    let absent = CachedSlot::new(SlotValue::Row(None));
    fill(&b, &id, &absent).await;
    expect_slot(&b, &id, Some(&absent)).await;
    let count = k.count(&View::new().with_eq("bakery_id", "rye"));
    for n in [0, -1, i64::MAX, i64::MIN] {
        let slot = CachedSlot::new(SlotValue::Count(n));
        fill(&b, &count, &slot).await;
        expect_slot(&b, &count, Some(&slot)).await;
    }
    invalidate(&b, &k).await;
    expect_slot(&b, &id, None).await;
    expect_slot(&b, &count, None).await;
}

async fn prefix_invalidation(b: Backend) {
    let k = SlotKeys::new("k");
    let other = SlotKeys::new("other");
    for (i, key) in slots(&k).iter().enumerate() {
        fill(&b, key, &slot_for(key, &format!("k{i}"))).await;
    }
    for (i, key) in slots(&other).iter().enumerate() {
        fill(&b, key, &slot_for(key, &format!("other{i}"))).await;
    }

    invalidate(&b, &k).await;
    for key in slots(&k) {
        expect_slot(&b, &key, None).await;
    }
    for (i, key) in slots(&other).iter().enumerate() {
        expect_slot(&b, key, Some(&slot_for(key, &format!("other{i}")))).await;
    }

    // The cache_key is usable again after the invalidation.
    let first = &slots(&k)[0];
    let again = slot_for(first, "again");
    fill(&b, first, &again).await;
    expect_slot(&b, first, Some(&again)).await;

    // Invalidating twice, or a cache_key that never had slots, is fine.
    invalidate(&b, &k).await;
    invalidate(&b, &k).await;
    invalidate(&b, &SlotKeys::new("never used")).await;
    expect_slot(&b, first, None).await;
}

async fn isolation_between_cache_keys(b: Backend) {
    // Pairs whose raw text is a prefix of the other's, or that escape alike.
    let pairs = [
        ("shop", "shopping"),
        ("a", "a/b"),
        ("a/b", "a%2Fb"),
        ("", "x"),
        ("k", "k/"),
    ];
    for (x, y) in pairs {
        let (kx, ky) = (SlotKeys::new(x), SlotKeys::new(y));
        let sx_of = |key: &str| slot_for(key, &format!("x:{x}"));
        let sy_of = |key: &str| slot_for(key, &format!("y:{y}"));
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            assert_ne!(sx, &sy, "{x:?} and {y:?} share a slot key");
            fill(&b, sx, &sx_of(sx)).await;
            fill(&b, &sy, &sy_of(&sy)).await;
        }
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            expect_slot(&b, sx, Some(&sx_of(sx))).await;
            expect_slot(&b, &sy, Some(&sy_of(&sy))).await;
        }

        // Dropping one leaves the other, both ways round.
        invalidate(&b, &kx).await;
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            expect_slot(&b, sx, None).await;
            expect_slot(&b, &sy, Some(&sy_of(&sy))).await;
        }
        for sx in slots(&kx) {
            fill(&b, &sx, &sx_of(&sx)).await;
        }
        invalidate(&b, &ky).await;
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            expect_slot(&b, sx, Some(&sx_of(sx))).await;
            expect_slot(&b, &sy, None).await;
        }
        invalidate(&b, &kx).await;
    }
}

async fn awkward_keys(b: Backend) {
    let cache_keys = [
        "with/slashes/".to_string(),
        "/".to_string(),
        "with spaces".to_string(),
        "tab\tand\nnewline".to_string(),
        "ünïcødé 🥐 キャッシュ".to_string(),
        String::new(),
        "%".to_string(),
        "a=b&c=d".to_string(),
        "k".repeat(1024),
        "é".repeat(512), // 1 KB of two-byte characters
    ];
    let keys: Vec<SlotKeys> = cache_keys.iter().map(SlotKeys::new).collect();
    for (i, k) in keys.iter().enumerate() {
        for key in slots(k) {
            fill(&b, &key, &slot_for(&key, &format!("key{i}"))).await;
        }
    }
    for (i, k) in keys.iter().enumerate() {
        for key in slots(k) {
            expect_slot(&b, &key, Some(&slot_for(&key, &format!("key{i}")))).await;
        }
    }
    // Each invalidation drops exactly its own cache_key.
    for (i, k) in keys.iter().enumerate() {
        invalidate(&b, k).await;
        for (j, other) in keys.iter().enumerate() {
            for key in slots(other) {
                let expected = (j > i).then(|| slot_for(&key, &format!("key{j}")));
                expect_slot(&b, &key, expected.as_ref()).await;
            }
        }
    }
}

async fn every_cbor_value_kind_round_trips(b: Backend) {
    common::slots::check_every_kind_fixture();
    let k = SlotKeys::new("kinds");
    for key in slots(&k) {
        let expected = every_kind_slot(&key);
        fill(&b, &key, &expected).await;
        expect_slot(&b, &key, Some(&expected)).await;
    }
}

async fn tickets_fence_stale_fills(b: Backend) {
    let k = SlotKeys::new("fenced");
    let other = SlotKeys::new("fenced-other");
    let key = k.list(&View::new());
    let id_key = k.id(&View::new(), "p01_baguette");
    let other_key = other.list(&View::new());
    let ns = namespace(&*b.cache, &key);
    let other_ns = namespace(&*b.cache, &other_key);

    // Tickets taken, then `k` is invalidated.
    let ticket = ticket_for(&*b.cache, &ns, &key).await;
    let id_ticket = ticket_for(&*b.cache, &ns, &id_key).await;
    let other_ticket = ticket_for(&*b.cache, &other_ns, &other_key).await;
    invalidate(&b, &k).await;
    if b.cache.generations().is_some() {
        assert!(
            !ticket.is_current(&ns),
            "{}: an invalidation must move the generation",
            b.name
        );
    }

    // A stale fill is refused and not readable, for every slot kind of `k`.
    for (slot, ticket) in [(&key, ticket), (&id_key, id_ticket)] {
        let stored = b
            .cache
            .fill(slot, &ns, ticket, slot_for(slot, "stale"))
            .await
            .unwrap();
        assert!(!stored, "{}: stale fill of {slot:?} accepted", b.name);
        expect_slot(&b, slot, None).await;
    }

    // Another cache_key's fill is not fenced by `k`'s invalidation.
    let stored = b
        .cache
        .fill(
            &other_key,
            &other_ns,
            other_ticket,
            slot_for(&other_key, "other"),
        )
        .await
        .unwrap();
    assert_eq!(stored, b.stores, "{}: unrelated fill", b.name);
    expect_slot(&b, &other_key, Some(&slot_for(&other_key, "other"))).await;

    // A fill at a new ticket lands again.
    fill(&b, &key, &slot_for(&key, "fresh")).await;
    expect_slot(&b, &key, Some(&slot_for(&key, "fresh"))).await;

    // A ticket taken before the cache_key ever held a slot is fenced too.
    let never = SlotKeys::new("never filled");
    let never_key = never.list(&View::new());
    let never_ns = namespace(&*b.cache, &never_key);
    let ticket = ticket_for(&*b.cache, &never_ns, &never_key).await;
    invalidate(&b, &never).await;
    let stored = b
        .cache
        .fill(&never_key, &never_ns, ticket, slot_for(&never_key, "late"))
        .await
        .unwrap();
    assert!(!stored, "{}: fill from before an invalidation", b.name);
    expect_slot(&b, &never_key, None).await;
}

/// What a raw prefix covers: a bare cache_key is that cache_key and no
/// other; a prefix ending inside a cache_key drops at least the slots it
/// names (a backend may drop more, never less); `""` drops everything.
/// Fills of what was dropped are fenced.
async fn raw_prefixes_cover_their_cache_key(b: Backend) {
    let keys = ["shop/a", "shopping/a", "sho/a", "other/a", "other/b"];
    for key in keys {
        fill(&b, key, &slot_for(key, key)).await;
    }
    let shop_ns = namespace(&*b.cache, "shop/a");
    let shopping_ns = namespace(&*b.cache, "shopping/a");
    let shop_ticket = ticket_for(&*b.cache, &shop_ns, "shop/a").await;
    let shopping_ticket = ticket_for(&*b.cache, &shopping_ns, "shopping/a").await;

    // A bare cache_key: `shop` goes, `shopping` and `sho` stay.
    b.cache.invalidate_prefix("shop").await.unwrap();
    expect_slot(&b, "shop/a", None).await;
    expect_slot(
        &b,
        "shopping/a",
        Some(&slot_for("shopping/a", "shopping/a")),
    )
    .await;
    expect_slot(&b, "sho/a", Some(&slot_for("sho/a", "sho/a"))).await;
    let stored = b
        .cache
        .fill("shop/a", &shop_ns, shop_ticket, slot_for("shop/a", "stale"))
        .await
        .unwrap();
    assert!(!stored, "{}: stale fill after a bare-key drop", b.name);
    let stored = b
        .cache
        .fill(
            "shopping/a",
            &shopping_ns,
            shopping_ticket,
            slot_for("shopping/a", "shopping again"),
        )
        .await
        .unwrap();
    assert_eq!(stored, b.stores, "{}: `shopping` was not touched", b.name);

    // A bare cache_key that needs escaping covers the cache_key as
    // `SlotKeys` writes it.
    let odd = SlotKeys::new("50%/off");
    let odd_key = odd.list(&View::new());
    fill(&b, &odd_key, &slot_for(&odd_key, "odd")).await;
    b.cache.invalidate_prefix("50%/off").await.unwrap();
    // ("50%/off" has a `/`: it is a prefix within the namespace "50%"; the
    // cache_key's own namespace is "50%25%2Foff".)
    expect_slot(&b, &odd_key, Some(&slot_for(&odd_key, "odd"))).await;
    let bare = SlotKeys::new("50% off");
    let bare_key = bare.list(&View::new());
    fill(&b, &bare_key, &slot_for(&bare_key, "bare")).await;
    b.cache.invalidate_prefix("50% off").await.unwrap();
    expect_slot(&b, &bare_key, None).await;

    // Ends inside a slot: at least that slot goes; other namespaces stay.
    b.cache.invalidate_prefix("sho/").await.unwrap();
    expect_slot(&b, "sho/a", None).await;
    b.cache.invalidate_prefix("other/a").await.unwrap();
    expect_slot(&b, "other/a", None).await;

    // The empty prefix drops everything.
    fill(&b, "shop/a", &slot_for("shop/a", "again")).await;
    b.cache.invalidate_prefix("").await.unwrap();
    for key in keys.iter().chain([&odd_key.as_str()]) {
        expect_slot(&b, key, None).await;
    }
}

/// Many tasks at once, each on its own slots: everyone reads back their own.
async fn concurrent_use_keeps_slots_apart(b: Backend) {
    let b = Arc::new(b);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let b = b.clone();
            tokio::spawn(async move {
                let k = SlotKeys::new(format!("task {}", t % 4));
                for round in 0..5 {
                    let key = k.list(&View::new().with_eq("task", format!("{t}-{round}")));
                    let mine = slot_for(&key, &format!("{t}/{round}"));
                    fill(&b, &key, &mine).await;
                    expect_slot(&b, &key, Some(&mine)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked");
    }
    for t in 0..16 {
        let k = SlotKeys::new(format!("task {}", t % 4));
        for round in 0..5 {
            let key = k.list(&View::new().with_eq("task", format!("{t}-{round}")));
            expect_slot(&b, &key, Some(&slot_for(&key, &format!("{t}/{round}")))).await;
        }
    }
}

/// A fenced fill and an invalidation race; whichever wins, once both are
/// done the slot is empty: either the fill came first and was dropped, or it
/// came second and was refused. (Check-and-store must be atomic with respect
/// to `invalidate_prefix`.)
async fn fill_racing_an_invalidation_never_survives(b: Backend) {
    let b = Arc::new(b);
    let k = SlotKeys::new("raced");
    let key = k.list(&View::new());
    let ns = namespace(&*b.cache, &key);
    for round in 0..100 {
        let ticket = ticket_for(&*b.cache, &ns, &key).await;
        let fill = {
            let (b, key, ns) = (b.clone(), key.clone(), ns.clone());
            tokio::spawn(async move {
                let slot = slot_for(&key, &format!("fill {round}"));
                b.cache.fill(&key, &ns, ticket, slot).await.unwrap()
            })
        };
        let drop = {
            let (b, prefix) = (b.clone(), k.prefix().to_string());
            tokio::spawn(async move { b.cache.invalidate_prefix(&prefix).await.unwrap() })
        };
        let (stored, dropped) = tokio::join!(fill, drop);
        dropped.unwrap();
        if !b.stores {
            assert!(!stored.unwrap(), "{}: stores nothing", b.name);
        }
        expect_slot(&b, &key, None).await;
    }
}

/// Clones of a backend, each behind an `Arc` of its own (a `RedbCache`
/// clone with a memory front of its own), share slots and invalidation
/// state: what one fills the other reads, what one drops the other never
/// serves, and a ticket taken through one is fenced by the other's drop.
async fn clones_share_slots_and_invalidation_state(b: Backend) {
    let other = (b.clone)();
    let k = SlotKeys::new("cloned");
    let key = k.list(&View::new());

    // Filled through the clone (into its front, if it has one), read
    // through both.
    let ns = namespace(&*other, &key);
    let slot = slot_for(&key, "through the clone");
    let stored = other
        .fill(
            &key,
            &ns,
            ticket_for(&*other, &ns, &key).await,
            slot.clone(),
        )
        .await
        .unwrap();
    assert_eq!(stored, b.stores, "{}", b.name);
    expect_slot_in(&*other, b.name, b.stores, &key, Some(&slot)).await;
    expect_slot(&b, &key, Some(&slot)).await;

    // Dropped through the original: the clone never serves it again.
    let ticket = ticket_for(&*other, &namespace(&*other, &key), &key).await;
    invalidate(&b, &k).await;
    expect_slot_in(&*other, b.name, b.stores, &key, None).await;
    expect_slot(&b, &key, None).await;

    // A fill through the clone with a ticket from before the drop is
    // refused.
    let stored = other
        .fill(&key, &ns, ticket, slot_for(&key, "stale"))
        .await
        .unwrap();
    assert!(!stored, "{}: the clone's stale fill landed", b.name);
    expect_slot(&b, &key, None).await;
    if let (Some(a), Some(c)) = (b.cache.generations(), other.generations()) {
        assert!(
            std::ptr::eq(a, c),
            "{}: clones share one invalidation state",
            b.name
        );
    }
}

/// The seed's `get` and `put` see typed slots in the seed's shape: a row
/// under its id, an absent row as nothing, a count as one `count` row; a
/// `put` of a shape its key cannot hold is refused with an error naming the
/// key.
async fn the_seed_shape_of_each_slot(b: Backend) {
    let k = SlotKeys::new("seed shape");
    for key in slots(&k) {
        let slot = slot_for(&key, "seed");
        let seed = slot.to_rows(&key).expect("a present slot has a seed shape");
        b.cache.put(&key, seed.clone()).await.unwrap();
        expect_slot(&b, &key, Some(&slot)).await;
        if b.stores {
            assert_eq!(b.cache.get(&key).await.unwrap(), Some(seed), "{}", b.name);
        }
    }
    // A raw key of the predecessor's shape holds rows.
    b.cache.put("clients/page_1", rows("raw")).await.unwrap();
    if b.stores {
        assert_eq!(
            b.cache.get("clients/page_1").await.unwrap(),
            Some(rows("raw")),
            "{}",
            b.name
        );
    }
    if b.stores {
        let id_key = k.id(&View::new(), "x");
        let err = b
            .cache
            .put(&id_key, rows("three rows"))
            .await
            .expect_err("three rows are not one row");
        assert!(err.to_string().contains("shape"), "{}: {err}", b.name);
        let count_key = k.count(&View::new());
        let err = b
            .cache
            .put(&count_key, CachedRows::new(common::Rows::new()))
            .await
            .expect_err("no rows are not a count");
        assert!(err.to_string().contains("count"), "{}: {err}", b.name);
    }
}

/// `Cache::stores` tells the truth: the cache layer skips every fill of a
/// backend that answers `false`.
async fn says_whether_it_stores(b: Backend) {
    assert_eq!(b.cache.stores(), b.stores, "{}: Cache::stores", b.name);
}

/// `invalidate_cache_keys_starting_with` drops every cache_key starting with
/// the prefix (as given, before escaping), whole, and no other; fills of
/// what it dropped that started before it are fenced, through a clone too.
async fn cache_key_groups_drop_together(b: Backend) {
    let members = ["grp?a=1", "grp?@x>y&b=/2", "grp?"];
    let others = ["grp", "grpX", "gr", "other?grp?"];
    let view = View::new();
    for key in members.iter().chain(&others) {
        let slot = SlotKeys::new(*key).list(&view);
        fill(&b, &slot, &slot_for(&slot, key)).await;
    }
    // A read of a member that missed before the group drop, fetching now.
    let late = SlotKeys::new("grp?late").id(&view, "1");
    let late_ns = namespace(&*b.cache, &late);
    let ticket = ticket_for(&*b.cache, &late_ns, &late).await;

    let clone = (b.clone)();
    clone
        .invalidate_cache_keys_starting_with("grp?")
        .await
        .unwrap_or_else(|e| panic!("{}: group drop: {e}", b.name));

    for key in members {
        expect_slot(&b, &SlotKeys::new(key).list(&view), None).await;
    }
    for key in others {
        let slot = SlotKeys::new(key).list(&view);
        let kept = slot_for(&slot, key);
        expect_slot(&b, &slot, Some(&kept)).await;
    }
    let stored = b
        .cache
        .fill(&late, &late_ns, ticket, slot_for(&late, "stale"))
        .await
        .unwrap();
    assert!(
        !stored,
        "{}: a fill from before the group drop landed",
        b.name
    );
    expect_slot(&b, &late, None).await;

    // `""` drops every cache_key.
    b.cache
        .invalidate_cache_keys_starting_with("")
        .await
        .unwrap();
    for key in others {
        expect_slot(&b, &SlotKeys::new(key).list(&view), None).await;
    }
}
