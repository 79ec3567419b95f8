//! The bytes a disk (or network) backend stores: `CachedRows` and typed
//! `CachedSlot`s round-trip bit for bit through CBOR, and bytes of any other
//! shape are an error naming what was wrong, never a panic.

mod common;

use std::sync::Arc;

use ciborium::Value;
use common::slots::{assert_identical, assert_same_slot, every_kind_rows, every_kind_slot, rows};
use vantage_live::cache::SlotKeys;
use vantage_live::{CachedRows, CachedSlot, SlotValue};

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

#[test]
fn typed_slots_round_trip_bit_exact() {
    common::slots::check_every_kind_fixture();
    let k = SlotKeys::new("codec");
    for key in common::slots::slots(&k) {
        let expected = every_kind_slot(&key);
        let bytes = expected.to_cbor().unwrap();
        let got = CachedSlot::from_cbor(&bytes).unwrap();
        assert_same_slot(&expected, &got, &key);
    }
    let absent = CachedSlot::new(SlotValue::Row(None));
    let got = CachedSlot::from_cbor(&absent.to_cbor().unwrap()).unwrap();
    assert_same_slot(&absent, &got, "an absent row");
    for n in [0, -1, 1, i64::MIN, i64::MAX] {
        let count = CachedSlot::new(SlotValue::Count(n));
        let got = CachedSlot::from_cbor(&count.to_cbor().unwrap()).unwrap();
        assert_same_slot(&count, &got, "a count");
    }
}

#[test]
fn the_rows_format_decodes_as_a_slot_of_rows() {
    let rows = every_kind_rows();
    let got = CachedSlot::from_cbor(&rows.to_cbor().unwrap()).unwrap();
    let expected = CachedSlot {
        value: SlotValue::Rows(Arc::new(rows.rows.clone())),
        fetched_at: rows.fetched_at,
    };
    assert_same_slot(&expected, &got, "rows as a slot");
}

#[test]
fn slot_codec_rejects_garbage_without_panicking() {
    let encode = |v: &Value| {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    };
    let int = |i: i64| Value::Integer(i.into());
    let valid = CachedSlot::new(SlotValue::Rows(Arc::new(rows("x").rows)))
        .to_cbor()
        .unwrap();
    let mut trailing = valid.clone();
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", valid[..valid.len() - 3].to_vec()),
        ("trailing bytes", trailing),
        (
            "unknown format",
            encode(&Value::Array(vec![
                int(9),
                int(0),
                int(0),
                int(0),
                Value::Null,
            ])),
        ),
        (
            "unknown kind",
            encode(&Value::Array(vec![
                int(2),
                int(7),
                int(0),
                int(0),
                Value::Null,
            ])),
        ),
        (
            "count not an integer",
            encode(&Value::Array(vec![
                int(2),
                int(2),
                int(0),
                int(0),
                Value::Text("12".into()),
            ])),
        ),
        (
            "count out of range",
            encode(&Value::Array(vec![
                int(2),
                int(2),
                int(0),
                int(0),
                Value::Integer(u64::MAX.into()),
            ])),
        ),
        (
            "row not a map",
            encode(&Value::Array(vec![int(2), int(1), int(0), int(0), int(5)])),
        ),
        (
            "nanos too big",
            encode(&Value::Array(vec![
                int(2),
                int(2),
                int(0),
                int(1_000_000_000),
                int(5),
            ])),
        ),
        ("deep nesting", {
            let mut deep = Value::Null;
            for _ in 0..10_000 {
                deep = Value::Array(vec![deep]);
            }
            let mut record = vantage_types::Record::new();
            record.insert("deep".to_string(), deep);
            let mut out = Vec::new();
            // Encoded by hand: ciborium's own writer recurses too.
            out.extend([0x85, 0x02, 0x01, 0x00, 0x00, 0xa1, 0x64]);
            out.extend(b"deep");
            out.extend(std::iter::repeat_n(0x81, 10_000));
            out.push(0xf6);
            let _ = record;
            out
        }),
    ];
    for (what, bytes) in cases {
        let outcome = std::panic::catch_unwind(|| CachedSlot::from_cbor(&bytes));
        match outcome {
            Ok(Err(_)) => {}
            Ok(Ok(slot)) => panic!("{what}: decoded as {slot:?}"),
            Err(_) => panic!("{what}: panicked"),
        }
    }
}
