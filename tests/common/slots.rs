//! Cache slot fixtures: every kind of slot of a cache_key, recognisable
//! contents shaped for each kind, every CBOR value kind, and bit-exact
//! comparisons.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::value::Integer;
use ciborium::Value;
use vantage_live::{CachedRows, CachedSlot, SlotKind, SlotValue};
use vantage_live_layers::{SlotKeys, View};
use vantage_table::pagination::Pagination;
use vantage_types::Record;

/// Every kind of slot of one cache_key.
pub fn slots(keys: &SlotKeys) -> Vec<String> {
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
pub fn rows(tag: &str) -> CachedRows {
    let mut rows = super::Rows::new();
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

/// Contents of the kind `key` holds, recognisable by `tag`, fetched at a
/// fixed time: three rows for a list, one row for an id, a number for a
/// count.
pub fn slot_for(key: &str, tag: &str) -> CachedSlot {
    let fetched_at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let value = match SlotKind::of_key(key) {
        SlotKind::Rows => SlotValue::Rows(Arc::new(rows(tag).rows)),
        SlotKind::Row => SlotValue::Row(Some(Arc::new(rows(tag).rows[0].clone()))),
        SlotKind::Count => SlotValue::Count(tag.bytes().map(i64::from).sum()),
    };
    CachedSlot { value, fetched_at }
}

/// A slot of `key`'s kind holding every CBOR value kind.
pub fn every_kind_slot(key: &str) -> CachedSlot {
    let value = match SlotKind::of_key(key) {
        SlotKind::Rows => SlotValue::Rows(Arc::new(every_kind_rows().rows)),
        SlotKind::Row => SlotValue::Row(Some(Arc::new(every_kind()))),
        SlotKind::Count => SlotValue::Count(i64::MIN),
    };
    CachedSlot {
        value,
        fetched_at: SystemTime::now(),
    }
}

/// Bit-exact equality of CBOR values: floats by their bits (any NaN matches
/// any NaN), maps and arrays in order.
pub fn same_value(a: &Value, b: &Value) -> bool {
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
pub fn assert_identical(expected: &CachedRows, got: &CachedRows, what: &str) {
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

/// `got` is `expected`, bit for bit (see [`assert_identical`]).
pub fn assert_same_slot(expected: &CachedSlot, got: &CachedSlot, what: &str) {
    assert_eq!(got.fetched_at, expected.fetched_at, "{what}: fetched_at");
    match (&expected.value, &got.value) {
        (SlotValue::Rows(a), SlotValue::Rows(b)) => assert_identical(
            &CachedRows {
                rows: (**a).clone(),
                fetched_at: expected.fetched_at,
            },
            &CachedRows {
                rows: (**b).clone(),
                fetched_at: got.fetched_at,
            },
            what,
        ),
        (SlotValue::Row(a), SlotValue::Row(b)) => {
            let one = |r: &Option<Arc<Record<Value>>>| {
                let mut rows = super::Rows::new();
                if let Some(r) = r {
                    rows.insert(String::new(), (**r).clone());
                }
                CachedRows {
                    rows,
                    fetched_at: UNIX_EPOCH,
                }
            };
            assert_identical(&one(a), &one(b), what)
        }
        (SlotValue::Count(a), SlotValue::Count(b)) => assert_eq!(a, b, "{what}: count"),
        (a, b) => panic!("{what}: expected {a:?}, got {b:?}"),
    }
}

/// One record holding every CBOR value kind, fields deliberately unsorted.
pub fn every_kind() -> Record<Value> {
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
pub fn every_kind_rows() -> CachedRows {
    let mut rows = super::Rows::new();
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

/// Guard the fixture itself, so that round-trip tests cannot pass vacuously.
pub fn check_every_kind_fixture() {
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
