//! CBOR encodings of [`CachedRows`] and [`CachedSlot`], for backends that
//! store bytes (on disk, in Redis).
//!
//! Both are written header by header with `ciborium-ll` and read header by
//! header straight from the byte slice, from and into the rows: no
//! intermediate document tree is built, so a decode allocates what the rows
//! own and nothing else. Every CBOR value
//! comes back equal (integers over the whole CBOR range, floats at full
//! width, bytes, text, tags, nested arrays and maps), row and field order
//! are kept, and bytes of any other shape are an error naming what was
//! wrong, never a panic.
//!
//! Formats:
//!
//! - [`CachedRows`]: `[seconds, nanos, [[id, {field: value, ..}], ..]]`;
//! - [`CachedSlot`]: `[2, kind, seconds, nanos, payload]`, where kind 0 is
//!   rows (payload as above), 1 a row (payload `null` for an absent row, or
//!   `{field: value, ..}`), 2 a count (payload an integer). The rows format
//!   also decodes as a slot of rows.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::value::Integer;
use ciborium_ll::{simple, Encoder, Header};
use vantage_core::{error, Result, VantageError};
use vantage_types::Record;

use super::cached::{CachedRows, CachedSlot, SlotValue};
use crate::request::{Rows, Value};

/// Deeper nesting than this is refused (a guard against a stack overflow
/// on hostile bytes).
const MAX_DEPTH: usize = 256;

const SLOT_FORMAT: u64 = 2;
const KIND_ROWS: u64 = 0;
const KIND_ROW: u64 = 1;
const KIND_COUNT: u64 = 2;

impl CachedRows {
    /// Encode as CBOR: `[seconds, nanos, [[id, {field: value, ..}], ..]]`.
    pub fn to_cbor(&self) -> Result<Vec<u8>> {
        let mut out = Out::with_rows_capacity(self.rows.len());
        out.array(3);
        out.time(self.fetched_at);
        out.rows(&self.rows);
        Ok(out.into_bytes())
    }

    /// Decode what [`CachedRows::to_cbor`] wrote. Bytes of any other shape
    /// are an error naming what was wrong, never a panic.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut input = In::new(bytes);
        let parts = input.array_len("expected [seconds, nanos, rows]")?;
        if parts != 3 {
            return Err(bad("expected [seconds, nanos, rows]"));
        }
        let fetched_at = input.time()?;
        let rows = input.rows()?;
        input.end()?;
        Ok(Self { rows, fetched_at })
    }
}

impl CachedSlot {
    /// Encode as CBOR: `[2, kind, seconds, nanos, payload]`, where kind 0 is
    /// rows (payload `[[id, {field: value, ..}], ..]`), 1 a row (payload
    /// `null` for an absent row, or `{field: value, ..}`), 2 a count (payload
    /// an integer).
    pub fn to_cbor(&self) -> Result<Vec<u8>> {
        let capacity = match &self.value {
            SlotValue::Rows(rows) => rows.len(),
            _ => 1,
        };
        let mut out = Out::with_rows_capacity(capacity);
        out.array(5);
        out.uint(SLOT_FORMAT);
        match &self.value {
            SlotValue::Rows(rows) => {
                out.uint(KIND_ROWS);
                out.time(self.fetched_at);
                out.rows(rows);
            }
            SlotValue::Row(row) => {
                out.uint(KIND_ROW);
                out.time(self.fetched_at);
                match row {
                    Some(record) => out.record(record),
                    None => out.push(Header::Simple(simple::NULL)),
                }
            }
            SlotValue::Count(n) => {
                out.uint(KIND_COUNT);
                out.time(self.fetched_at);
                out.value(&Value::Integer((*n).into()));
            }
        }
        Ok(out.into_bytes())
    }

    /// Decode what [`CachedSlot::to_cbor`] (or [`CachedRows::to_cbor`])
    /// wrote. Bytes of any other shape are an error naming what was wrong,
    /// never a panic.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut input = In::new(bytes);
        let parts = input.array_len("expected a cached slot")?;
        if parts == 3 {
            // The rows format.
            let fetched_at = input.time()?;
            let rows = input.rows()?;
            input.end()?;
            return Ok(Self {
                value: SlotValue::Rows(Arc::new(rows)),
                fetched_at,
            });
        }
        if parts != 5 {
            return Err(bad("expected [format, kind, seconds, nanos, payload]"));
        }
        let format = input.uint("the format is not an integer")?;
        if format != SLOT_FORMAT {
            return Err(bad("unknown slot format"));
        }
        let kind = input.uint("the kind is not an integer")?;
        let fetched_at = input.time()?;
        let value = match kind {
            KIND_ROWS => SlotValue::Rows(Arc::new(input.rows()?)),
            KIND_ROW => match input.pull()? {
                Head::Simple(simple::NULL) => SlotValue::Row(None),
                Head::Map(Some(len)) => SlotValue::Row(Some(Arc::new(input.record(len)?))),
                _ => return Err(bad("a row slot holds null or a map of fields")),
            },
            KIND_COUNT => {
                let n = input.uint_or_negative("a count slot holds an integer")?;
                SlotValue::Count(n)
            }
            _ => return Err(bad("unknown slot kind")),
        };
        input.end()?;
        Ok(Self { value, fetched_at })
    }
}

fn bad(what: &str) -> VantageError {
    error!("cached slot has the wrong shape", details = what)
}

/// Bytes being written.
struct Out(Vec<u8>);

impl Out {
    fn with_rows_capacity(rows: usize) -> Self {
        Out(Vec::with_capacity(32 + rows * 64))
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// An encoder appending to the buffer (a plain wrapper: free to make).
    fn encoder(&mut self) -> Encoder<&mut Vec<u8>> {
        Encoder::from(&mut self.0)
    }

    fn push(&mut self, header: Header) {
        // Writing into a `Vec` cannot fail.
        let _ = self.encoder().push(header);
    }

    fn array(&mut self, len: usize) {
        self.push(Header::Array(Some(len)));
    }

    fn uint(&mut self, n: u64) {
        self.push(Header::Positive(n));
    }

    fn text(&mut self, text: &str) {
        let _ = self.encoder().text(text, None);
    }

    fn time(&mut self, at: SystemTime) {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        self.uint(since.as_secs());
        self.uint(since.subsec_nanos().into());
    }

    fn rows(&mut self, rows: &Rows) {
        self.array(rows.len());
        for (id, record) in rows {
            self.array(2);
            self.text(id);
            self.record(record);
        }
    }

    fn record(&mut self, record: &Record<Value>) {
        self.push(Header::Map(Some(record.len())));
        for (field, value) in record.iter() {
            self.text(field);
            self.value(value);
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Integer(n) => {
                let n = i128::from(*n);
                if n >= 0 {
                    // CBOR integers span [-2^64, 2^64 - 1]: always a u64 here.
                    self.push(Header::Positive(n as u64));
                } else {
                    self.push(Header::Negative((n ^ !0) as u64));
                }
            }
            Value::Bytes(bytes) => {
                let _ = self.encoder().bytes(bytes, None);
            }
            Value::Float(f) => self.push(Header::Float(*f)),
            Value::Text(text) => self.text(text),
            Value::Bool(b) => self.push(Header::Simple(if *b {
                simple::TRUE
            } else {
                simple::FALSE
            })),
            Value::Null => self.push(Header::Simple(simple::NULL)),
            Value::Tag(tag, inner) => {
                self.push(Header::Tag(*tag));
                self.value(inner);
            }
            Value::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Map(pairs) => {
                self.push(Header::Map(Some(pairs.len())));
                for (k, v) in pairs {
                    self.value(k);
                    self.value(v);
                }
            }
            // `Value` is non-exhaustive; every variant of ciborium 0.2 is
            // handled above.
            _ => self.push(Header::Simple(simple::NULL)),
        }
    }
}

/// One CBOR header, read straight from the bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Head {
    Positive(u64),
    Negative(u64),
    Bytes(Option<usize>),
    Text(Option<usize>),
    Array(Option<usize>),
    Map(Option<usize>),
    Tag(u64),
    Simple(u8),
    Float(f64),
    Break,
}

/// Bytes being read: headers are parsed straight from the slice (a
/// generic reader would pull them a byte at a time), and text and bytes are
/// copied out of it once.
struct In<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> In<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            depth: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(bad("truncated"));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn pull(&mut self) -> Result<Head> {
        let start = self.at;
        let [first] = <[u8; 1]>::try_from(self.take(1)?).map_err(|_| bad("truncated"))?;
        let (major, info) = (first >> 5, first & 0x1f);
        let argument = match info {
            0..=23 => Some(u64::from(info)),
            24 => Some(u64::from(self.take(1)?[0])),
            25 => Some(u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().map_err(|_| bad("truncated"))?,
            ))),
            26 => Some(u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().map_err(|_| bad("truncated"))?,
            ))),
            27 => Some(u64::from_be_bytes(
                self.take(8)?.try_into().map_err(|_| bad("truncated"))?,
            )),
            31 => None,
            _ => return Err(error!("cached slot is not valid CBOR", offset = start)),
        };
        let len = |n: Option<u64>| -> Result<Option<usize>> {
            n.map(|n| usize::try_from(n).map_err(|_| bad("length out of range")))
                .transpose()
        };
        let definite =
            |n: Option<u64>| n.ok_or_else(|| bad("indefinite length where a value belongs"));
        Ok(match major {
            0 => Head::Positive(definite(argument)?),
            1 => Head::Negative(definite(argument)?),
            2 => Head::Bytes(len(argument)?),
            3 => Head::Text(len(argument)?),
            4 => Head::Array(len(argument)?),
            5 => Head::Map(len(argument)?),
            6 => Head::Tag(definite(argument)?),
            _ => match (info, argument) {
                (31, None) => Head::Break,
                (25, Some(bits)) => Head::Float(f64::from(half::f16::from_bits(bits as u16))),
                (26, Some(bits)) => Head::Float(f64::from(f32::from_bits(bits as u32))),
                (27, Some(bits)) => Head::Float(f64::from_bits(bits)),
                (0..=24, Some(simple)) => Head::Simple(simple as u8),
                _ => return Err(error!("cached slot is not valid CBOR", offset = start)),
            },
        })
    }

    fn end(&mut self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(bad("trailing bytes"))
        }
    }

    fn array_len(&mut self, what: &str) -> Result<usize> {
        match self.pull()? {
            Head::Array(Some(len)) => Ok(len),
            _ => Err(bad(what)),
        }
    }

    fn uint(&mut self, what: &str) -> Result<u64> {
        match self.pull()? {
            Head::Positive(n) => Ok(n),
            _ => Err(bad(what)),
        }
    }

    fn uint_or_negative(&mut self, what: &str) -> Result<i64> {
        match self.pull()? {
            Head::Positive(n) => i64::try_from(n).map_err(|_| bad(what)),
            Head::Negative(n) => i64::try_from(n).map(|n| n ^ !0).map_err(|_| bad(what)),
            _ => Err(bad(what)),
        }
    }

    fn time(&mut self) -> Result<SystemTime> {
        let secs = self.uint("expected seconds")?;
        let nanos = self.uint("expected nanos")?;
        let nanos = u32::try_from(nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(|| bad("nanos out of range"))?;
        UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .ok_or_else(|| bad("fetched_at out of range"))
    }

    /// Room for `len` items, but never more than the bytes left could hold
    /// (a header may promise more than is there).
    fn capacity(&self, len: usize) -> usize {
        len.min(self.remaining())
    }

    fn rows(&mut self) -> Result<Rows> {
        let count = self.array_len("rows are not an array")?;
        let mut rows = Rows::with_capacity(self.capacity(count));
        for _ in 0..count {
            if self.array_len("row is not an [id, fields] pair")? != 2 {
                return Err(bad("row is not an [id, fields] pair"));
            }
            let id = match self.pull()? {
                Head::Text(len) => self.text(len)?,
                _ => return Err(bad("row is not an [id, fields] pair")),
            };
            let record = match self.pull()? {
                Head::Map(Some(len)) => self.record(len)?,
                _ => return Err(bad("row is not an [id, fields] pair")),
            };
            rows.insert(id, record);
        }
        Ok(rows)
    }

    fn record(&mut self, len: usize) -> Result<Record<Value>> {
        let mut record = Record::with_capacity(self.capacity(len));
        for _ in 0..len {
            let field = match self.pull()? {
                Head::Text(len) => self.text(len)?,
                _ => return Err(bad("field name is not text")),
            };
            let value = self.value()?;
            record.insert(field, value);
        }
        Ok(record)
    }

    /// Definite-length bytes are one slice; indefinite ones are definite
    /// chunks of the same major type, ended by a break.
    fn chunks(&mut self, len: Option<usize>, text: bool) -> Result<Vec<u8>> {
        if let Some(len) = len {
            return Ok(self.take(len)?.to_vec());
        }
        let mut out = Vec::new();
        loop {
            match (self.pull()?, text) {
                (Head::Break, _) => return Ok(out),
                (Head::Bytes(Some(len)), false) | (Head::Text(Some(len)), true) => {
                    out.extend_from_slice(self.take(len)?)
                }
                _ => return Err(bad("bad chunk in indefinite-length bytes or text")),
            }
        }
    }

    fn text(&mut self, len: Option<usize>) -> Result<String> {
        if let Some(len) = len {
            let bytes = self.take(len)?;
            return std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| bad("text is not UTF-8"));
        }
        String::from_utf8(self.chunks(None, true)?).map_err(|_| bad("text is not UTF-8"))
    }

    fn value(&mut self) -> Result<Value> {
        let head = self.pull()?;
        self.value_from(head)
    }

    fn value_from(&mut self, head: Head) -> Result<Value> {
        Ok(match head {
            Head::Positive(n) => Value::Integer(n.into()),
            Head::Negative(n) => {
                let n = -1 - i128::from(n);
                Value::Integer(Integer::try_from(n).map_err(|_| bad("integer out of range"))?)
            }
            Head::Float(f) => Value::Float(f),
            Head::Simple(simple::FALSE) => Value::Bool(false),
            Head::Simple(simple::TRUE) => Value::Bool(true),
            Head::Simple(simple::NULL) | Head::Simple(simple::UNDEFINED) => Value::Null,
            Head::Simple(_) => return Err(bad("unknown simple value")),
            Head::Bytes(len) => Value::Bytes(self.chunks(len, false)?),
            Head::Text(len) => Value::Text(self.text(len)?),
            Head::Tag(tag) => {
                let inner = self.nested(|me| me.value())?;
                Value::Tag(tag, Box::new(inner))
            }
            Head::Array(len) => self.nested(|me| {
                let mut items = Vec::with_capacity(me.capacity(len.unwrap_or(0)));
                match len {
                    Some(len) => {
                        for _ in 0..len {
                            items.push(me.value()?);
                        }
                    }
                    None => loop {
                        match me.pull()? {
                            Head::Break => break,
                            head => items.push(me.value_from(head)?),
                        }
                    },
                }
                Ok(Value::Array(items))
            })?,
            Head::Map(len) => self.nested(|me| {
                let mut pairs = Vec::with_capacity(me.capacity(len.unwrap_or(0)));
                match len {
                    Some(len) => {
                        for _ in 0..len {
                            let k = me.value()?;
                            let v = me.value()?;
                            pairs.push((k, v));
                        }
                    }
                    None => loop {
                        match me.pull()? {
                            Head::Break => break,
                            head => {
                                let k = me.value_from(head)?;
                                let v = me.value()?;
                                pairs.push((k, v));
                            }
                        }
                    },
                }
                Ok(Value::Map(pairs))
            })?,
            Head::Break => return Err(bad("unexpected break")),
        })
    }

    fn nested<T>(&mut self, work: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(bad("nested too deeply"));
        }
        self.depth += 1;
        let result = work(self);
        self.depth -= 1;
        result
    }
}
