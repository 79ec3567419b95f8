//! The `Cache` contract, run against every backend: `MemCache`, `RedbCache`
//! (in a temp folder) and `NoCache` (which must keep the no-op contract:
//! every `get` misses). Then what only one backend promises: redb's
//! persistence and open errors, the CBOR codec, moka's weight cap and time to
//! live.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ciborium::value::Integer;
use ciborium::Value;
use tempfile::TempDir;
use vantage_live::cache::{OpenCacheError, SlotKeys, REDB_FILE_NAME};
use vantage_live::{Cache, CachedRows, MemCache, NoCache, RedbCache};
use vantage_live_layers::View;
use vantage_table::pagination::Pagination;
use vantage_types::Record;

// ── backends ──────────────────────────────────────────────────────────────

/// One backend under test, and what keeps it alive.
struct Backend {
    name: &'static str,
    cache: Arc<dyn Cache>,
    /// `false` for `NoCache`: the contract is then "stores nothing".
    stores: bool,
    _dir: Option<TempDir>,
}

fn mem() -> Backend {
    Backend {
        name: "MemCache",
        cache: Arc::new(MemCache::new()),
        stores: true,
        _dir: None,
    }
}

fn redb() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = RedbCache::open(dir.path()).expect("open redb cache");
    Backend {
        name: "RedbCache",
        cache: Arc::new(cache),
        stores: true,
        _dir: Some(dir),
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
        cache: Arc::new(cache),
        stores: true,
        _dir: Some(dir),
    }
}

fn none() -> Backend {
    Backend {
        name: "NoCache",
        cache: Arc::new(NoCache),
        stores: false,
        _dir: None,
    }
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
    };
}

contract!(
    round_trip,
    prefix_invalidation,
    isolation_between_cache_keys,
    awkward_keys,
    every_cbor_value_kind_round_trips,
    generation_fences_stale_fills,
    raw_prefixes_have_string_semantics,
    concurrent_use_keeps_slots_apart,
    fill_racing_an_invalidation_never_survives,
    says_whether_it_stores,
);

// ── helpers ───────────────────────────────────────────────────────────────

/// Every kind of slot of one cache_key.
fn slots(keys: &SlotKeys) -> Vec<String> {
    let all = View::new();
    vec![
        keys.list(&all),
        keys.list(&all.clone().with_pagination(Some(Pagination::new(1, 10)))),
        keys.list(&all.clone().with_pagination(Some(Pagination::new(2, 10)))),
        keys.count(&all),
        keys.id(&all, "p01_baguette"),
        keys.id(&all, "id/with slash ü"),
    ]
}

/// Distinct rows, recognisable by `tag`, with a fixed fetch time.
fn rows(tag: &str) -> CachedRows {
    let mut rows = common::Rows::new();
    for i in 0..3 {
        let mut record = Record::new();
        record.insert("tag".to_string(), Value::Text(tag.to_string()));
        record.insert("i".to_string(), Value::Integer(i.into()));
        rows.insert(format!("{tag}-{i}"), record);
    }
    CachedRows {
        rows,
        fetched_at: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
    }
}

/// Bit-exact equality of CBOR values: floats by their bits (any NaN matches
/// any NaN), maps and arrays in order.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same_value(ka, kb) && same_value(va, vb))
        }
        (Value::Tag(t, x), Value::Tag(u, y)) => t == u && same_value(x, y),
        (Value::Integer(x), Value::Integer(y)) => i128::from(*x) == i128::from(*y),
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// `got` is `expected`, bit for bit: same rows in the same order, same fields
/// in the same order, same values, same fetch time. (`IndexMap`'s own `==`
/// ignores order, so it is not enough.)
fn assert_identical(expected: &CachedRows, got: &CachedRows, what: &str) {
    let ids: Vec<_> = expected.rows.keys().collect();
    let got_ids: Vec<_> = got.rows.keys().collect();
    assert_eq!(got_ids, ids, "{what}: row ids and their order");
    for (id, record) in &expected.rows {
        let got_record = &got.rows[id];
        let fields: Vec<_> = record.keys().collect();
        let got_fields: Vec<_> = got_record.keys().collect();
        assert_eq!(got_fields, fields, "{what}: fields of row {id:?} and order");
        for (field, value) in record.iter() {
            assert!(
                same_value(value, &got_record[field]),
                "{what}: row {id:?} field {field:?}: expected {value:?}, got {:?}",
                got_record[field]
            );
        }
    }
    assert_eq!(got.fetched_at, expected.fetched_at, "{what}: fetched_at");
}

/// Read `key` and check it holds `expected` (or, for `NoCache`, nothing).
async fn expect_slot(b: &Backend, key: &str, expected: Option<&CachedRows>) {
    let got = b
        .cache
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("{}: get {key:?}: {e}", b.name));
    match (b.stores, expected, got) {
        (false, _, None) | (true, None, None) => {}
        (false, _, Some(_)) => panic!("{}: stores nothing, but {key:?} hit", b.name),
        (true, None, Some(got)) => {
            panic!("{}: {key:?} should be empty, holds {:?}", b.name, got.rows)
        }
        (true, Some(_), None) => panic!("{}: {key:?} should hold rows, missed", b.name),
        (true, Some(expected), Some(got)) => {
            assert_identical(expected, &got, &format!("{}: {key:?}", b.name))
        }
    }
}

async fn put(b: &Backend, key: &str, rows: &CachedRows) {
    b.cache
        .put(key, rows.clone())
        .await
        .unwrap_or_else(|e| panic!("{}: put {key:?}: {e}", b.name));
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
    let [list, page, ..] = &slots(&k)[..] else {
        unreachable!()
    };
    expect_slot(&b, list, None).await;

    let first = rows("first");
    put(&b, list, &first).await;
    expect_slot(&b, list, Some(&first)).await;
    // Reading does not consume.
    expect_slot(&b, list, Some(&first)).await;
    // Another slot of the same cache_key is still empty.
    expect_slot(&b, page, None).await;

    // A put replaces.
    let second = rows("second");
    put(&b, list, &second).await;
    expect_slot(&b, list, Some(&second)).await;

    // Empty rows are rows, not a miss.
    let empty = CachedRows {
        rows: common::Rows::new(),
        fetched_at: UNIX_EPOCH,
    };
    put(&b, page, &empty).await;
    expect_slot(&b, page, Some(&empty)).await;
}

async fn prefix_invalidation(b: Backend) {
    let k = SlotKeys::new("k");
    let other = SlotKeys::new("other");
    for (i, key) in slots(&k).iter().enumerate() {
        put(&b, key, &rows(&format!("k{i}"))).await;
    }
    for (i, key) in slots(&other).iter().enumerate() {
        put(&b, key, &rows(&format!("other{i}"))).await;
    }

    invalidate(&b, &k).await;
    for key in slots(&k) {
        expect_slot(&b, &key, None).await;
    }
    for (i, key) in slots(&other).iter().enumerate() {
        expect_slot(&b, key, Some(&rows(&format!("other{i}")))).await;
    }

    // The cache_key is usable again after the invalidation.
    let again = rows("again");
    put(&b, &slots(&k)[0], &again).await;
    expect_slot(&b, &slots(&k)[0], Some(&again)).await;

    // Invalidating twice, or a cache_key that never had slots, is fine.
    invalidate(&b, &k).await;
    invalidate(&b, &k).await;
    invalidate(&b, &SlotKeys::new("never used")).await;
    expect_slot(&b, &slots(&k)[0], None).await;
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
        let (rx, ry) = (rows(&format!("x:{x}")), rows(&format!("y:{y}")));
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            assert_ne!(sx, &sy, "{x:?} and {y:?} share a slot key");
            put(&b, sx, &rx).await;
            put(&b, &sy, &ry).await;
        }
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            expect_slot(&b, sx, Some(&rx)).await;
            expect_slot(&b, &sy, Some(&ry)).await;
        }

        // Dropping one leaves the other, both ways round.
        invalidate(&b, &kx).await;
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            expect_slot(&b, sx, None).await;
            expect_slot(&b, &sy, Some(&ry)).await;
        }
        for sx in slots(&kx) {
            put(&b, &sx, &rx).await;
        }
        invalidate(&b, &ky).await;
        for (sx, sy) in slots(&kx).iter().zip(slots(&ky)) {
            expect_slot(&b, sx, Some(&rx)).await;
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
            put(&b, &key, &rows(&format!("key{i}"))).await;
        }
    }
    for (i, k) in keys.iter().enumerate() {
        for key in slots(k) {
            expect_slot(&b, &key, Some(&rows(&format!("key{i}")))).await;
        }
    }
    // Each invalidation drops exactly its own cache_key.
    for (i, k) in keys.iter().enumerate() {
        invalidate(&b, k).await;
        for (j, other) in keys.iter().enumerate() {
            let expected = (j > i).then(|| rows(&format!("key{j}")));
            for key in slots(other) {
                expect_slot(&b, &key, expected.as_ref()).await;
            }
        }
    }
}

/// One record holding every CBOR value kind, fields deliberately unsorted.
fn every_kind() -> Record<Value> {
    let neg_2_64 = Integer::try_from(-18446744073709551616i128).expect("-(2^64) is CBOR");
    let fields: Vec<(&str, Value)> = vec![
        ("z_u64_max", Value::Integer(u64::MAX.into())),
        ("neg_2_64", Value::Integer(neg_2_64)),
        ("i64_min", Value::Integer(i64::MIN.into())),
        ("i64_max", Value::Integer(i64::MAX.into())),
        ("zero", Value::Integer(0.into())),
        ("minus_one", Value::Integer((-1).into())),
        ("f_neg_zero", Value::Float(-0.0)),
        ("f_pos_zero", Value::Float(0.0)),
        ("f_inf", Value::Float(f64::INFINITY)),
        ("f_neg_inf", Value::Float(f64::NEG_INFINITY)),
        ("f_nan", Value::Float(f64::NAN)),
        ("f_half", Value::Float(0.5)),
        ("f_f32_max", Value::Float(f32::MAX as f64)),
        // Not representable as f32: must not be narrowed.
        ("f_tenth", Value::Float(0.1)),
        ("f_one_plus_eps", Value::Float(1.0 + f64::EPSILON)),
        ("f_big", Value::Float(1e300)),
        ("f_subnormal", Value::Float(5e-324)),
        ("f_min_positive", Value::Float(f64::MIN_POSITIVE)),
        ("f_pi", Value::Float(std::f64::consts::PI)),
        ("bytes", Value::Bytes((0..=255u8).collect())),
        ("bytes_empty", Value::Bytes(Vec::new())),
        ("text", Value::Text("crème brûlée 🥐 \u{0} nul".to_string())),
        ("text_empty", Value::Text(String::new())),
        ("bool_true", Value::Bool(true)),
        ("bool_false", Value::Bool(false)),
        ("null", Value::Null),
        (
            "tag_epoch",
            Value::Tag(1, Box::new(Value::Integer(1_700_000_000.into()))),
        ),
        (
            "tag_big",
            Value::Tag(u64::MAX, Box::new(Value::Text("x".to_string()))),
        ),
        (
            "nested",
            Value::Array(vec![
                Value::Integer(1.into()),
                Value::Array(vec![Value::Map(vec![(
                    Value::Text("k".to_string()),
                    Value::Array(vec![Value::Null, Value::Float(-0.0)]),
                )])]),
                Value::Map(Vec::new()),
                Value::Array(Vec::new()),
            ]),
        ),
        (
            "map_non_text_keys",
            Value::Map(vec![
                (Value::Integer(2.into()), Value::Text("two".to_string())),
                (Value::Integer(1.into()), Value::Text("one".to_string())),
                (Value::Bool(true), Value::Null),
                (Value::Bytes(vec![1, 2]), Value::Float(f64::NAN)),
                (Value::Text("z".to_string()), Value::Float(-0.0)),
                (Value::Text("a".to_string()), Value::Float(0.1)),
            ]),
        ),
        (
            "a_last",
            Value::Text("inserted last, sorts first".to_string()),
        ),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Rows in unsorted id order, each with every value kind.
fn every_kind_rows() -> CachedRows {
    let mut rows = common::Rows::new();
    for id in ["z-first", "a", "m", "", "ü/slash id"] {
        rows.insert(id.to_string(), every_kind());
    }
    // Field order differs between rows too.
    let mut reversed: Vec<_> = every_kind().into_iter().collect();
    reversed.reverse();
    rows.insert("reversed".to_string(), reversed.into_iter().collect());
    CachedRows {
        rows,
        fetched_at: SystemTime::now(),
    }
}

#[test]
fn every_kind_fixture_is_what_it_claims() {
    // Guard the fixture itself, so the round-trip test cannot pass vacuously.
    let record = every_kind();
    let Value::Float(neg_zero) = record["f_neg_zero"] else {
        panic!()
    };
    assert!(neg_zero.is_sign_negative() && neg_zero == 0.0);
    let Value::Float(tenth) = record["f_tenth"] else {
        panic!()
    };
    assert_ne!((tenth as f32) as f64, tenth, "0.1 is not f32-representable");
    assert!(!same_value(&Value::Float(-0.0), &Value::Float(0.0)));
    assert!(same_value(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
    assert_eq!(
        i128::from(match record["neg_2_64"] {
            Value::Integer(i) => i,
            _ => panic!(),
        }),
        -18446744073709551616i128
    );
}

async fn every_cbor_value_kind_round_trips(b: Backend) {
    let k = SlotKeys::new("kinds");
    let expected = every_kind_rows();
    for key in slots(&k) {
        put(&b, &key, &expected).await;
    }
    for key in slots(&k) {
        expect_slot(&b, &key, Some(&expected)).await;
    }
    if let Some(got) = b.cache.get(&slots(&k)[0]).await.unwrap() {
        let Value::Float(neg_zero) = got.rows["a"]["f_neg_zero"] else {
            panic!("{}: -0.0 came back as another kind", b.name)
        };
        assert!(
            neg_zero.is_sign_negative(),
            "{}: -0.0 lost its sign",
            b.name
        );
        let Value::Float(nan) = got.rows["a"]["f_nan"] else {
            panic!("{}: NaN came back as another kind", b.name)
        };
        assert!(nan.is_nan(), "{}: NaN", b.name);
    }
}

async fn generation_fences_stale_fills(b: Backend) {
    let k = SlotKeys::new("fenced");
    let other = SlotKeys::new("fenced-other");
    let key = k.list(&View::new());
    let id_key = k.id(&View::new(), "p01_baguette");
    let other_key = other.list(&View::new());

    // A fill at the current generation lands.
    let g0 = b.cache.generation(&key).await.unwrap();
    let first = rows("first");
    let stored = b
        .cache
        .put_if_generation(&key, first.clone(), g0)
        .await
        .unwrap();
    assert_eq!(
        stored, b.stores,
        "{}: fill at the current generation",
        b.name
    );
    expect_slot(&b, &key, Some(&first)).await;

    // Generations taken, then `k` is invalidated.
    let g1 = b.cache.generation(&key).await.unwrap();
    let g_other = b.cache.generation(&other_key).await.unwrap();
    invalidate(&b, &k).await;
    if b.stores {
        assert_ne!(
            b.cache.generation(&key).await.unwrap(),
            g1,
            "{}: invalidation must move the generation",
            b.name
        );
    }

    // A stale fill is refused and not readable, for every slot of `k`.
    let stale = rows("stale");
    for slot in [&key, &id_key] {
        let stored = b
            .cache
            .put_if_generation(slot, stale.clone(), g1)
            .await
            .unwrap();
        assert!(!stored, "{}: stale fill of {slot:?} accepted", b.name);
        expect_slot(&b, slot, None).await;
    }

    // Another cache_key's fill is not fenced by `k`'s invalidation.
    let other_rows = rows("other");
    let stored = b
        .cache
        .put_if_generation(&other_key, other_rows.clone(), g_other)
        .await
        .unwrap();
    assert_eq!(stored, b.stores, "{}: unrelated fill", b.name);
    expect_slot(&b, &other_key, Some(&other_rows)).await;

    // A fill at the new generation lands again.
    let g2 = b.cache.generation(&key).await.unwrap();
    let fresh = rows("fresh");
    let stored = b
        .cache
        .put_if_generation(&key, fresh.clone(), g2)
        .await
        .unwrap();
    assert_eq!(stored, b.stores, "{}: fill at the new generation", b.name);
    expect_slot(&b, &key, Some(&fresh)).await;

    // A generation taken before the cache_key ever held a slot is fenced too.
    let never = SlotKeys::new("never filled");
    let never_key = never.list(&View::new());
    let g = b.cache.generation(&never_key).await.unwrap();
    invalidate(&b, &never).await;
    let stored = b
        .cache
        .put_if_generation(&never_key, rows("late"), g)
        .await
        .unwrap();
    assert!(!stored, "{}: fill from before an invalidation", b.name);
    expect_slot(&b, &never_key, None).await;
}

/// The trait speaks plain strings: a prefix that is not a whole
/// `SlotKeys::prefix` still drops every key starting with it (a backend may
/// drop more, never less) and fences fills of what it dropped.
async fn raw_prefixes_have_string_semantics(b: Backend) {
    let keys = ["shop/a", "shopping/a", "sho/a", "other/a", "other/b"];
    for key in keys {
        put(&b, key, &rows(key)).await;
    }
    let g_shopping = b.cache.generation("shopping/a").await.unwrap();

    // Ends inside a namespace: `shop` and `shopping` go, `sho` stays.
    b.cache.invalidate_prefix("shop").await.unwrap();
    expect_slot(&b, "shop/a", None).await;
    expect_slot(&b, "shopping/a", None).await;
    expect_slot(&b, "sho/a", Some(&rows("sho/a"))).await;
    expect_slot(&b, "other/a", Some(&rows("other/a"))).await;
    let stored = b
        .cache
        .put_if_generation("shopping/a", rows("stale"), g_shopping)
        .await
        .unwrap();
    assert!(!stored, "{}: stale fill after a raw-prefix drop", b.name);
    expect_slot(&b, "shopping/a", None).await;

    // Ends inside a slot: at least that slot goes; other namespaces stay.
    b.cache.invalidate_prefix("sho/").await.unwrap();
    expect_slot(&b, "sho/a", None).await;
    b.cache.invalidate_prefix("other/a").await.unwrap();
    expect_slot(&b, "other/a", None).await;

    // The empty prefix drops everything.
    put(&b, "shop/a", &rows("again")).await;
    b.cache.invalidate_prefix("").await.unwrap();
    for key in keys {
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
                    let key = k.id(&View::new(), &format!("{t}-{round}"));
                    let mine = rows(&format!("{t}/{round}"));
                    put(&b, &key, &mine).await;
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
            let key = k.id(&View::new(), &format!("{t}-{round}"));
            expect_slot(&b, &key, Some(&rows(&format!("{t}/{round}")))).await;
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
    let mut stored_before_drop = 0;
    for round in 0..100 {
        let generation = b.cache.generation(&key).await.unwrap();
        let fill = {
            let (b, key) = (b.clone(), key.clone());
            tokio::spawn(async move {
                b.cache
                    .put_if_generation(&key, rows(&format!("fill {round}")), generation)
                    .await
                    .unwrap()
            })
        };
        let drop = {
            let (b, prefix) = (b.clone(), k.prefix().to_string());
            tokio::spawn(async move { b.cache.invalidate_prefix(&prefix).await.unwrap() })
        };
        let (stored, dropped) = tokio::join!(fill, drop);
        dropped.unwrap();
        if stored.unwrap() {
            stored_before_drop += 1;
        }
        expect_slot(&b, &key, None).await;
    }
    if !b.stores {
        assert_eq!(stored_before_drop, 0, "{}: stores nothing", b.name);
    }
}

// ── RedbCache only ────────────────────────────────────────────────────────

fn redb_file(folder: &Path) -> std::path::PathBuf {
    folder.join(REDB_FILE_NAME)
}

/// `err` names the cache folder or its file, and says how to reset.
fn assert_names_folder_and_reset(err: &OpenCacheError, folder: &Path) {
    let message = err.to_string();
    assert_eq!(err.folder(), folder, "folder(): {message}");
    assert!(
        message.contains(&folder.display().to_string()),
        "message does not name {}: {message}",
        folder.display()
    );
    assert!(
        message.contains("reset") || message.contains("delete"),
        "message does not say how to reset: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_persists_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kept = SlotKeys::new("kept");
    let dropped = SlotKeys::new("dropped");
    let expected = every_kind_rows();
    let stale_generation;
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        assert_eq!(cache.folder(), dir.path());
        for key in slots(&kept).into_iter().chain(slots(&dropped)) {
            cache.put(&key, expected.clone()).await.unwrap();
        }
        stale_generation = cache.generation(&slots(&dropped)[0]).await.unwrap();
        cache.invalidate_prefix(dropped.prefix()).await.unwrap();
        // A fill after the last invalidation must survive too.
        cache
            .put(&slots(&kept)[0], rows("last fill"))
            .await
            .unwrap();
    }
    assert!(
        redb_file(dir.path()).is_file(),
        "one vlive.redb in the folder"
    );

    let cache = RedbCache::open(dir.path()).expect("reopen after close");
    let got = cache.get(&slots(&kept)[0]).await.unwrap().expect("kept");
    assert_identical(&rows("last fill"), &got, "last fill after reopen");
    for key in &slots(&kept)[1..] {
        let got = cache.get(key).await.unwrap().expect("kept slot");
        assert_identical(&expected, &got, key);
    }
    for key in slots(&dropped) {
        assert!(cache.get(&key).await.unwrap().is_none(), "{key} came back");
    }
    // The fence survives the restart: a fill from before the invalidation
    // is still refused.
    let stored = cache
        .put_if_generation(&slots(&dropped)[0], rows("stale"), stale_generation)
        .await
        .unwrap();
    assert!(!stored, "stale fill accepted after reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_garbage_file_is_corrupt_and_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(redb_file(dir.path()), &garbage).unwrap();
    let err = RedbCache::open(dir.path()).expect_err("garbage must not open");
    assert!(
        matches!(err, OpenCacheError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_names_folder_and_reset(&err, dir.path());
    // The file is left alone: the cache never deletes on its own.
    assert_eq!(std::fs::read(redb_file(dir.path())).unwrap(), garbage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_short_garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(redb_file(dir.path()), b"this is not a redb file").unwrap();
    let err = RedbCache::open(dir.path()).expect_err("garbage must not open");
    assert!(
        matches!(err, OpenCacheError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_names_folder_and_reset(&err, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        for key in slots(&SlotKeys::new("k")) {
            cache.put(&key, every_kind_rows()).await.unwrap();
        }
    }
    let full = std::fs::read(redb_file(dir.path())).unwrap();
    assert!(full.len() > 512, "a redb file with data");
    std::fs::write(redb_file(dir.path()), &full[..full.len().min(300)]).unwrap();
    let err = RedbCache::open(dir.path()).expect_err("a truncated file must not open");
    assert!(
        matches!(err, OpenCacheError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_names_folder_and_reset(&err, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_zero_length_file_opens_empty() {
    // A zero-length file (e.g. created, then the process died) holds no
    // cache at all; redb initialises it like a new file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(redb_file(dir.path()), b"").unwrap();
    let cache = RedbCache::open(dir.path()).expect("an empty file opens as an empty cache");
    let key = &slots(&SlotKeys::new("k"))[0];
    assert!(cache.get(key).await.unwrap().is_none());
    cache.put(key, rows("a")).await.unwrap();
    assert_identical(&rows("a"), &cache.get(key).await.unwrap().unwrap(), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_double_open_is_already_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = RedbCache::open(dir.path()).unwrap();
    let err = RedbCache::open(dir.path()).expect_err("second open while the first is alive");
    assert!(
        matches!(err, OpenCacheError::AlreadyOpen { .. }),
        "expected AlreadyOpen, got {err:?}"
    );
    assert_eq!(err.folder(), dir.path());
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "message does not name the folder: {err}"
    );
    // A clone is the same cache, not a second open.
    let clone = first.clone();
    clone.put("k/x", rows("x")).await.unwrap();
    assert!(first.get("k/x").await.unwrap().is_some());
    drop(first);
    // Still open through the clone.
    assert!(matches!(
        RedbCache::open(dir.path()),
        Err(OpenCacheError::AlreadyOpen { .. })
    ));
    drop(clone);
    let reopened = RedbCache::open(dir.path()).expect("open once every handle is gone");
    assert!(reopened.get("k/x").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reset_then_open_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    // Resetting a folder without a cache file is not an error.
    RedbCache::reset(dir.path()).expect("reset of a missing file");

    let neighbour = dir.path().join("keep-me.txt");
    std::fs::write(&neighbour, b"not the cache's").unwrap();
    std::fs::write(redb_file(dir.path()), b"garbage garbage garbage").unwrap();
    assert!(RedbCache::open(dir.path()).is_err());

    RedbCache::reset(dir.path()).expect("reset");
    assert!(!redb_file(dir.path()).exists());
    assert_eq!(std::fs::read(&neighbour).unwrap(), b"not the cache's");

    let cache = RedbCache::open(dir.path()).expect("open after reset");
    let key = &slots(&SlotKeys::new("k"))[0];
    assert!(cache.get(key).await.unwrap().is_none());
    cache.put(key, rows("a")).await.unwrap();
    assert!(cache.get(key).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reset_of_a_healthy_cache_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = slots(&SlotKeys::new("k"))[0].clone();
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        cache.put(&key, rows("a")).await.unwrap();
    }
    RedbCache::reset(dir.path()).unwrap();
    let cache = RedbCache::open(dir.path()).unwrap();
    assert!(cache.get(&key).await.unwrap().is_none());
}

#[test]
fn redb_open_on_a_file_is_a_folder_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("plain-file");
    std::fs::write(&not_a_folder, b"x").unwrap();
    let err = RedbCache::open(&not_a_folder).expect_err("a file is not a folder");
    assert!(
        matches!(err, OpenCacheError::Folder { .. }),
        "expected Folder, got {err:?}"
    );
    assert_eq!(err.folder(), not_a_folder);
    assert!(err
        .to_string()
        .contains(&not_a_folder.display().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_creates_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let cache = RedbCache::open(&nested).expect("creates the folder");
    assert!(redb_file(&nested).is_file());
    cache.put("k/x", rows("x")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_undecodable_slot_is_an_error_not_a_panic() {
    // Plant bytes that are not CachedRows where a slot lives, with redb itself.
    let dir = tempfile::tempdir().unwrap();
    let k = SlotKeys::new("k");
    let key = k.list(&View::new());
    let (namespace, slot) = vantage_live_layers::cache::split_key(&key);
    {
        let db = redb::Database::create(redb_file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let name = format!("__vlive__{namespace}");
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new(&name);
            let mut table = txn.open_table(def).unwrap();
            table.insert(slot, &b"\xff\x00garbage"[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let cache = RedbCache::open(dir.path()).unwrap();
    assert!(
        cache.get(&key).await.is_err(),
        "undecodable slot must be an error"
    );
    // Overwriting and invalidating still work.
    cache.put(&key, rows("a")).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    cache.invalidate_prefix(k.prefix()).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_none());
}

/// Set by `redb_acknowledged_invalidation_survives_a_crash` for its child.
const CRASH_DIR_VAR: &str = "VLIVE_TEST_CRASH_DIR";

/// The child process of `redb_acknowledged_invalidation_survives_a_crash`:
/// opens the cache, invalidates cache_keys (some twice in a row, the second
/// time with nothing stored), and aborts without closing.
/// Does nothing unless that test spawned it.
#[test]
#[ignore = "helper: the child process of redb_acknowledged_invalidation_survives_a_crash"]
fn redb_crash_child() {
    let Ok(folder) = std::env::var(CRASH_DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cache = RedbCache::open(&folder).unwrap();
        let dropped = SlotKeys::new("dropped");
        cache.invalidate_prefix(dropped.prefix()).await.unwrap();
        // Writes in a row: the later invalidations find nothing stored and
        // commit without a sync; a crash must still not bring anything back.
        cache.invalidate_prefix(dropped.prefix()).await.unwrap();
        let refilled = SlotKeys::new("refilled");
        for key in slots(&refilled) {
            cache.put(&key, rows(&key)).await.unwrap();
        }
        cache.invalidate_prefix(refilled.prefix()).await.unwrap();
        cache.invalidate_prefix(refilled.prefix()).await.unwrap();
    });
    println!("invalidation acknowledged; aborting");
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_acknowledged_invalidation_survives_a_crash() {
    // "After a crash, a slot dropped by an acknowledged write never comes
    // back": the process dies right after the invalidation returns.
    let dir = tempfile::tempdir().unwrap();
    let dropped = slots(&SlotKeys::new("dropped"));
    let kept = slots(&SlotKeys::new("kept"));
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        for key in dropped.iter().chain(&kept) {
            cache.put(key, rows(key)).await.unwrap();
        }
    } // closed cleanly: everything so far is durable

    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "redb_crash_child", "--nocapture"])
        .env(CRASH_DIR_VAR, dir.path())
        .output()
        .expect("spawn the crashing child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("invalidation acknowledged; aborting"),
        "the child did not get to its invalidation: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the child was meant to abort");

    let cache = RedbCache::open(dir.path()).expect("open after a crash");
    for key in dropped.iter().chain(&slots(&SlotKeys::new("refilled"))) {
        assert!(
            cache.get(key).await.unwrap().is_none(),
            "{key}: an acknowledged invalidation was lost in the crash"
        );
    }
    for key in &kept {
        let got = cache.get(key).await.unwrap().expect("durable slot kept");
        assert_identical(&rows(key), &got, key);
    }
}

/// Set by `redb_open_in_another_process_is_already_open` for its child.
const HOLD_DIR_VAR: &str = "VLIVE_TEST_HOLD_DIR";

/// The child process of `redb_open_in_another_process_is_already_open`:
/// holds the cache open until its stdin closes. Does nothing unless that
/// test spawned it.
#[test]
#[ignore = "helper: the child process of redb_open_in_another_process_is_already_open"]
fn redb_hold_open_child() {
    use std::io::{Read, Write};
    let Ok(folder) = std::env::var(HOLD_DIR_VAR) else {
        return;
    };
    let cache = RedbCache::open(&folder).unwrap();
    println!("cache open");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(cache);
}

#[test]
fn redb_open_in_another_process_is_already_open() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "redb_hold_open_child",
            "--nocapture",
        ])
        .env(HOLD_DIR_VAR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child holding the cache");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let opened = lines.any(|line| line.map(|l| l.contains("cache open")).unwrap_or(false));
    assert!(opened, "the child did not open the cache");

    let err = RedbCache::open(dir.path()).expect_err("open while another process holds it");
    assert!(
        matches!(err, OpenCacheError::AlreadyOpen { .. }),
        "expected AlreadyOpen, got {err:?}"
    );
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    drop(child.stdin.take()); // let the child close the cache and exit
    assert!(child.wait().unwrap().success());
    RedbCache::open(dir.path()).expect("open once the other process is gone");
}

// ── the CBOR codec ────────────────────────────────────────────────────────

#[test]
fn cbor_codec_round_trips_bit_exact() {
    let expected = every_kind_rows();
    let bytes = expected.to_cbor().unwrap();
    let got = CachedRows::from_cbor(&bytes).unwrap();
    assert_identical(&expected, &got, "to_cbor/from_cbor");
    // Floats keep their width: 0.1 takes a full f64 in the encoding.
    let tenth = {
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Float(0.1), &mut out).unwrap();
        out
    };
    assert_eq!(tenth.len(), 9, "0.1 is encoded as a 64-bit float");
}

#[test]
fn cbor_codec_rejects_garbage_without_panicking() {
    let encode = |v: &Value| {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    };
    let int = |i: i64| Value::Integer(i.into());
    let text = |s: &str| Value::Text(s.to_string());
    let valid = rows("x").to_cbor().unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random bytes", vec![0xff, 0x00, 0x13, 0x37, 0xfe, 0xed]),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("a bare integer", encode(&int(5))),
        ("too few parts", encode(&Value::Array(vec![int(1), int(2)]))),
        (
            "negative seconds",
            encode(&Value::Array(vec![int(-1), int(0), Value::Array(vec![])])),
        ),
        (
            "nanos out of range",
            encode(&Value::Array(vec![
                int(0),
                Value::Integer(u64::MAX.into()),
                Value::Array(vec![]),
            ])),
        ),
        (
            "row is not a pair",
            encode(&Value::Array(vec![
                int(0),
                int(0),
                Value::Array(vec![int(5)]),
            ])),
        ),
        (
            "fields are not a map",
            encode(&Value::Array(vec![
                int(0),
                int(0),
                Value::Array(vec![Value::Array(vec![text("id"), int(5)])]),
            ])),
        ),
        (
            "field name is not text",
            encode(&Value::Array(vec![
                int(0),
                int(0),
                Value::Array(vec![Value::Array(vec![
                    text("id"),
                    Value::Map(vec![(int(1), int(2))]),
                ])]),
            ])),
        ),
        (
            "id is not text",
            encode(&Value::Array(vec![
                int(0),
                int(0),
                Value::Array(vec![Value::Array(vec![int(1), Value::Map(vec![])])]),
            ])),
        ),
    ];
    // A header promising a huge array that is not there.
    cases.push((
        "huge length",
        vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    for (what, bytes) in cases {
        let outcome = std::panic::catch_unwind(|| CachedRows::from_cbor(&bytes));
        match outcome {
            Ok(Err(_)) => {}
            Ok(Ok(rows)) => panic!("{what}: decoded as {rows:?}"),
            Err(_) => panic!("{what}: panicked"),
        }
    }
}

// ── MemCache only ─────────────────────────────────────────────────────────

/// Rows weighing roughly `n` kilobytes.
fn heavy_rows(n: usize) -> CachedRows {
    let mut rows = common::Rows::new();
    for i in 0..n {
        let mut record = Record::new();
        record.insert("blob".to_string(), Value::Text("x".repeat(1000)));
        rows.insert(format!("r{i}"), record);
    }
    CachedRows::new(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_weight_cap_is_honoured() {
    const CAP: u64 = 32 * 1024;
    let cache = MemCache::builder().max_weight(CAP).build();
    let keys: Vec<String> = (0..100)
        .map(|i| SlotKeys::new(format!("k{i}")).list(&View::new()))
        .collect();
    for key in &keys {
        cache.put(key, heavy_rows(2)).await.unwrap();
    }
    cache.run_pending_tasks().await;
    let size = cache.weighted_size();
    assert!(size <= CAP, "weighted size {size} over the cap {CAP}");
    assert!(size > 0, "the cache kept nothing");
    let held = cache.entry_count();
    assert!(held < 100, "every slot was kept ({held})");

    let mut present = 0;
    for key in &keys {
        if cache.get(key).await.unwrap().is_some() {
            present += 1;
        }
    }
    assert!(
        present > 0 && present < 100,
        "{present} of 100 slots present"
    );
    // Least recently used goes first: the last slot stored is still there.
    assert!(cache.get(keys.last().unwrap()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_slot_heavier_than_the_cap_is_not_kept() {
    const CAP: u64 = 4 * 1024;
    let cache = MemCache::builder().max_weight(CAP).build();
    let key = SlotKeys::new("k").list(&View::new());
    cache.put(&key, heavy_rows(10)).await.unwrap();
    cache.run_pending_tasks().await;
    assert!(cache.weighted_size() <= CAP);
    assert!(cache.get(&key).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_time_to_live_expires_slots() {
    // moka keeps its own clock, so this one test waits in real time (bounded).
    const TTL: Duration = Duration::from_millis(100);
    let cache = MemCache::builder().time_to_live(TTL).build();
    let key = SlotKeys::new("k").list(&View::new());
    let start = Instant::now();
    cache.put(&key, rows("a")).await.unwrap();
    let fresh = cache.get(&key).await.unwrap();
    if fresh.is_none() {
        assert!(start.elapsed() >= TTL, "expired before its time to live");
    }
    let deadline = start + Duration::from_secs(5);
    loop {
        if cache.get(&key).await.unwrap().is_none() {
            assert!(start.elapsed() >= TTL, "expired before its time to live");
            break;
        }
        assert!(Instant::now() < deadline, "slot never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Storing again after expiry works.
    cache.put(&key, rows("b")).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_clones_share_one_store() {
    let cache = MemCache::new();
    let clone = cache.clone();
    let k = SlotKeys::new("k");
    let key = k.list(&View::new());
    cache.put(&key, rows("a")).await.unwrap();
    assert!(clone.get(&key).await.unwrap().is_some());
    clone.invalidate_prefix(k.prefix()).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_none());
}

/// `Cache::stores` tells the truth: the cache layer skips every fill of a
/// backend that answers `false`.
async fn says_whether_it_stores(b: Backend) {
    assert_eq!(b.cache.stores(), b.stores, "{}: Cache::stores", b.name);
}
