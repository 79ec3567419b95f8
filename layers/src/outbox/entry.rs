//! What the outbox stores: one pending write per entry, and the rejected
//! ones, in CBOR.
//!
//! # Format (version 1)
//!
//! The file `outbox.redb` holds three redb tables:
//!
//! - `pending`: `u64` sequence number → one entry, the writes not yet
//!   applied, in the order they were accepted (the key order);
//! - `dead_letters`: `u64` sequence number → a rejected entry, with the
//!   master's error;
//! - `meta`: `format` → 1, and `next_seq` → the next sequence number (kept
//!   so that numbers are never reused, even once every write was applied).
//!
//! An entry is a CBOR array `[1, op, id, record, eq, accepted_at_ms]`:
//! `op` is the operation's name (`insert`, `insert_return_id`, `replace`,
//! `patch`, `delete`, `delete_all`), `id` the row id (text, or null for
//! `delete_all`), `record` the row or the patch (a map, or null), `eq` the
//! equality conditions of a `delete_all` (an array of `[field, value]` text
//! pairs), `accepted_at_ms` the time it was accepted (milliseconds since the
//! Unix epoch). A dead letter is `[1, entry, error, rejected_at_ms,
//! attempts]`. An `insert_return_id` stores the id generated for it: the id
//! is made before the write is acknowledged, so a replay inserts the same
//! row under the same id.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::Value as Cbor;
use vantage_types::Record;

use crate::request::{Request, Response, Value, View, WriteRequest};

/// The entry format this crate writes and reads.
pub(crate) const FORMAT: u64 = 1;

/// A write as the outbox keeps it: everything needed to apply it later, in
/// another process.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum OutboxOp {
    /// Insert `record` under `id`.
    Insert {
        /// The row's id.
        id: String,
        /// The row.
        record: Record<Value>,
    },
    /// An `insert_return_id`: `id` was generated when the write was
    /// accepted, and the caller was answered with it.
    InsertReturnId {
        /// The generated id.
        id: String,
        /// The row.
        record: Record<Value>,
    },
    /// Replace row `id` with `record`.
    Replace {
        /// The row's id.
        id: String,
        /// The new row.
        record: Record<Value>,
    },
    /// Merge `partial` into row `id`.
    Patch {
        /// The row's id.
        id: String,
        /// The fields to change.
        partial: Record<Value>,
    },
    /// Delete row `id`.
    Delete {
        /// The row's id.
        id: String,
    },
    /// Delete every row matching the equality conditions (every row, if
    /// there are none).
    DeleteAll {
        /// `field = value` conditions, as [`View::with_eq`] takes them.
        eq: Vec<(String, String)>,
    },
}

impl OutboxOp {
    /// The operation's name, as logs and the file show it.
    pub fn op(&self) -> &'static str {
        match self {
            OutboxOp::Insert { .. } => "insert",
            OutboxOp::InsertReturnId { .. } => "insert_return_id",
            OutboxOp::Replace { .. } => "replace",
            OutboxOp::Patch { .. } => "patch",
            OutboxOp::Delete { .. } => "delete",
            OutboxOp::DeleteAll { .. } => "delete_all",
        }
    }

    /// The row this write targets (`None` for a delete-all).
    pub fn id(&self) -> Option<&str> {
        match self {
            OutboxOp::Insert { id, .. }
            | OutboxOp::InsertReturnId { id, .. }
            | OutboxOp::Replace { id, .. }
            | OutboxOp::Patch { id, .. }
            | OutboxOp::Delete { id } => Some(id),
            OutboxOp::DeleteAll { .. } => None,
        }
    }

    /// Whether this write may add a row to a view (an insert or a replace).
    pub(crate) fn adds_rows(&self) -> bool {
        matches!(
            self,
            OutboxOp::Insert { .. } | OutboxOp::InsertReturnId { .. } | OutboxOp::Replace { .. }
        )
    }

    /// The request that applies this write to the inner service. An
    /// `insert_return_id` is sent as an insert under its stored id.
    pub(crate) fn request(&self) -> Request {
        let write = match self.clone() {
            OutboxOp::Insert { id, record } | OutboxOp::InsertReturnId { id, record } => {
                WriteRequest::Insert { id, record }
            }
            OutboxOp::Replace { id, record } => WriteRequest::Replace { id, record },
            OutboxOp::Patch { id, partial } => WriteRequest::Patch { id, partial },
            OutboxOp::Delete { id } => WriteRequest::Delete { id },
            OutboxOp::DeleteAll { eq } => {
                let mut view = View::new();
                for (field, value) in eq {
                    view = view.with_eq(field, value);
                }
                WriteRequest::DeleteAll { view }
            }
        };
        Request::Write(write)
    }

    /// What the caller is answered when the write is accepted locally: the
    /// record as written (the partial, for a patch), `Done`, or the id.
    pub(crate) fn local_response(&self) -> Response {
        match self {
            OutboxOp::Insert { record, .. } | OutboxOp::Replace { record, .. } => {
                Response::Record(record.clone())
            }
            OutboxOp::Patch { partial, .. } => Response::Record(partial.clone()),
            OutboxOp::InsertReturnId { id, .. } => Response::Id(id.clone()),
            OutboxOp::Delete { .. } | OutboxOp::DeleteAll { .. } => Response::Done,
        }
    }

    /// The master's answer as the caller of this write expects it (an
    /// `insert_return_id` was sent as an insert, and answers its id).
    pub(crate) fn shape_answer(&self, response: Response) -> Response {
        match self {
            OutboxOp::InsertReturnId { id, .. } => Response::Id(id.clone()),
            _ => response,
        }
    }
}

/// A write accepted into the outbox and not yet applied to the master.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PendingWrite {
    /// Its place in the outbox: sequence numbers grow with every accepted
    /// write and are never reused.
    pub seq: u64,
    /// The write.
    pub op: OutboxOp,
    /// When it was accepted.
    pub accepted_at: SystemTime,
}

/// A write the master rejected, kept until the app clears it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The write as it was pending.
    pub write: PendingWrite,
    /// The master's error, as text.
    pub error: String,
    /// When it was rejected.
    pub rejected_at: SystemTime,
    /// How many times it was sent (more than one if earlier attempts found
    /// the master unreachable).
    pub attempts: u32,
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write #{} ({}", self.write.seq, self.write.op.op())?;
        if let Some(id) = self.write.op.id() {
            write!(f, " '{id}'")?;
        }
        write!(f, ") rejected by the master: {}", self.error)
    }
}

/// Why bytes in the file are not an entry.
#[derive(Debug)]
pub(crate) struct Malformed(pub(crate) String);

fn malformed<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(what.into()))
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn record_value(record: &Record<Value>) -> Cbor {
    Cbor::Map(
        record
            .iter()
            .map(|(k, v)| (Cbor::Text(k.clone()), v.clone()))
            .collect(),
    )
}

fn value_record(value: Cbor, what: &str) -> Result<Record<Value>, Malformed> {
    let Cbor::Map(pairs) = value else {
        return malformed(format!("{what} is not a map"));
    };
    let mut record = Record::new();
    for (key, value) in pairs {
        let Cbor::Text(key) = key else {
            return malformed(format!("{what} has a field name that is not text"));
        };
        record.insert(key, value);
    }
    Ok(record)
}

fn text(value: Cbor, what: &str) -> Result<String, Malformed> {
    match value {
        Cbor::Text(t) => Ok(t),
        _ => malformed(format!("{what} is not text")),
    }
}

fn uint(value: &Cbor, what: &str) -> Result<u64, Malformed> {
    match value {
        Cbor::Integer(i) => u64::try_from(*i).or_else(|_| malformed(format!("{what} is negative"))),
        _ => malformed(format!("{what} is not a number")),
    }
}

fn to_bytes(value: &Cbor) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing CBOR into a Vec cannot fail.
    ciborium::into_writer(value, &mut bytes).expect("CBOR into memory");
    bytes
}

fn from_bytes(bytes: &[u8]) -> Result<Cbor, Malformed> {
    ciborium::from_reader::<Cbor, _>(bytes).map_err(|e| Malformed(format!("not CBOR: {e}")))
}

impl PendingWrite {
    fn to_value(&self) -> Cbor {
        let (id, record, eq) = match &self.op {
            OutboxOp::Insert { id, record }
            | OutboxOp::InsertReturnId { id, record }
            | OutboxOp::Replace { id, record } => {
                (Cbor::Text(id.clone()), record_value(record), Vec::new())
            }
            OutboxOp::Patch { id, partial } => {
                (Cbor::Text(id.clone()), record_value(partial), Vec::new())
            }
            OutboxOp::Delete { id } => (Cbor::Text(id.clone()), Cbor::Null, Vec::new()),
            OutboxOp::DeleteAll { eq } => (
                Cbor::Null,
                Cbor::Null,
                eq.iter()
                    .map(|(f, v)| Cbor::Array(vec![Cbor::Text(f.clone()), Cbor::Text(v.clone())]))
                    .collect(),
            ),
        };
        Cbor::Array(vec![
            Cbor::Integer(FORMAT.into()),
            Cbor::Text(self.op.op().to_string()),
            id,
            record,
            Cbor::Array(eq),
            Cbor::Integer(millis(self.accepted_at).into()),
        ])
    }

    fn from_value(seq: u64, value: Cbor) -> Result<Self, Malformed> {
        let Cbor::Array(items) = value else {
            return malformed("the entry is not an array");
        };
        let Ok::<[Cbor; 6], _>([version, op, id, record, eq, at]) = items.try_into() else {
            return malformed("the entry does not have 6 items");
        };
        let version = uint(&version, "the format version")?;
        if version != FORMAT {
            return malformed(format!(
                "format version {version} (this build reads version {FORMAT})"
            ));
        }
        let op = text(op, "the operation")?;
        let id = || text(id.clone(), "the row id");
        let op = match op.as_str() {
            "insert" => OutboxOp::Insert {
                id: id()?,
                record: value_record(record, "the record")?,
            },
            "insert_return_id" => OutboxOp::InsertReturnId {
                id: id()?,
                record: value_record(record, "the record")?,
            },
            "replace" => OutboxOp::Replace {
                id: id()?,
                record: value_record(record, "the record")?,
            },
            "patch" => OutboxOp::Patch {
                id: id()?,
                partial: value_record(record, "the patch")?,
            },
            "delete" => OutboxOp::Delete { id: id()? },
            "delete_all" => {
                let Cbor::Array(pairs) = eq else {
                    return malformed("the conditions are not an array");
                };
                let mut conditions = Vec::new();
                for pair in pairs {
                    let Cbor::Array(pair) = pair else {
                        return malformed("a condition is not a pair");
                    };
                    let Ok::<[Cbor; 2], _>([field, value]) = pair.try_into() else {
                        return malformed("a condition is not a pair");
                    };
                    conditions.push((
                        text(field, "a condition's field")?,
                        text(value, "a condition's value")?,
                    ));
                }
                OutboxOp::DeleteAll { eq: conditions }
            }
            other => return malformed(format!("unknown operation '{other}'")),
        };
        Ok(PendingWrite {
            seq,
            op,
            accepted_at: from_millis(uint(&at, "the acceptance time")?),
        })
    }

    /// The entry's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        to_bytes(&self.to_value())
    }

    /// The entry stored under `seq`.
    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Self, Malformed> {
        Self::from_value(seq, from_bytes(bytes)?)
    }
}

impl DeadLetter {
    /// The dead letter's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        to_bytes(&Cbor::Array(vec![
            Cbor::Integer(FORMAT.into()),
            self.write.to_value(),
            Cbor::Text(self.error.clone()),
            Cbor::Integer(millis(self.rejected_at).into()),
            Cbor::Integer(self.attempts.into()),
        ]))
    }

    /// The dead letter stored under `seq`.
    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Self, Malformed> {
        let Cbor::Array(items) = from_bytes(bytes)? else {
            return malformed("the dead letter is not an array");
        };
        let Ok::<[Cbor; 5], _>([version, write, error, at, attempts]) = items.try_into() else {
            return malformed("the dead letter does not have 5 items");
        };
        let version = uint(&version, "the format version")?;
        if version != FORMAT {
            return malformed(format!(
                "format version {version} (this build reads version {FORMAT})"
            ));
        }
        Ok(DeadLetter {
            write: PendingWrite::from_value(seq, write)?,
            error: text(error, "the error")?,
            rejected_at: from_millis(uint(&at, "the rejection time")?),
            attempts: u32::try_from(uint(&attempts, "the attempts")?).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record<Value> {
        [
            ("name".to_string(), Cbor::Text("Bun".into())),
            ("price".to_string(), Cbor::Integer(12.into())),
            ("gone".to_string(), Cbor::Bool(false)),
            ("ratio".to_string(), Cbor::Float(0.5)),
            ("blob".to_string(), Cbor::Bytes(vec![0, 1, 255])),
            ("none".to_string(), Cbor::Null),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn every_op_round_trips() {
        let ops = [
            OutboxOp::Insert {
                id: "a".into(),
                record: record(),
            },
            OutboxOp::InsertReturnId {
                id: "b".into(),
                record: record(),
            },
            OutboxOp::Replace {
                id: "c".into(),
                record: record(),
            },
            OutboxOp::Patch {
                id: "d".into(),
                partial: record(),
            },
            OutboxOp::Delete { id: "e".into() },
            OutboxOp::DeleteAll { eq: vec![] },
            OutboxOp::DeleteAll {
                eq: vec![("bakery_id".into(), "rye".into())],
            },
        ];
        for (seq, op) in ops.into_iter().enumerate() {
            let write = PendingWrite {
                seq: seq as u64,
                op,
                accepted_at: from_millis(1_700_000_000_123),
            };
            let back = PendingWrite::decode(write.seq, &write.encode()).unwrap();
            assert_eq!(back, write);
            let dead = DeadLetter {
                write: write.clone(),
                error: "UNIQUE constraint failed".into(),
                rejected_at: from_millis(1_700_000_000_999),
                attempts: 3,
            };
            assert_eq!(DeadLetter::decode(write.seq, &dead.encode()).unwrap(), dead);
        }
    }

    #[test]
    fn junk_is_malformed_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\xff\x00",
            b"\x83\x01\x02\x03",
            &to_bytes(&Cbor::Array(vec![
                Cbor::Integer(2.into()),
                Cbor::Text("insert".into()),
                Cbor::Null,
                Cbor::Null,
                Cbor::Array(vec![]),
                Cbor::Integer(0.into()),
            ])),
            &to_bytes(&Cbor::Array(vec![
                Cbor::Integer(1.into()),
                Cbor::Text("upsert".into()),
                Cbor::Text("x".into()),
                Cbor::Null,
                Cbor::Array(vec![]),
                Cbor::Integer(0.into()),
            ])),
        ] {
            assert!(PendingWrite::decode(1, bytes).is_err());
            assert!(DeadLetter::decode(1, bytes).is_err());
        }
    }
}
