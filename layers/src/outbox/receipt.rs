//! The receipt of an accepted write: what it is, what the caller was
//! answered, and the master's verdict when it comes.

use std::fmt;
use std::sync::Arc;

use super::entry::PendingWrite;
use super::handle::OutboxHandle;
use super::status::{Verdict, WriteStatus};
use crate::request::Response;

/// The receipt of a write accepted into the outbox: it is on disk, and
/// [`Receipt::verdict`] waits for the master's answer.
#[derive(Clone)]
pub struct Receipt {
    write: Arc<PendingWrite>,
    handle: OutboxHandle,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("seq", &self.write.seq)
            .field("op", &self.write.op.op())
            .field("id", &self.write.op.id())
            .finish()
    }
}

impl Receipt {
    pub(crate) fn new(write: Arc<PendingWrite>, handle: OutboxHandle) -> Self {
        Self { write, handle }
    }

    /// The write's sequence number.
    ///
    /// Numbers grow with each accepted write and are never reused.
    pub fn seq(&self) -> u64 {
        self.write.seq
    }

    /// The write as stored (an `insert_return_id` with its generated id).
    pub fn write(&self) -> &PendingWrite {
        &self.write
    }

    /// What the caller was answered locally: the record as written (the
    /// partial, for a patch), `Done`, or the generated id.
    pub fn local_response(&self) -> Response {
        self.write.op.local_response()
    }

    /// Where the write stands now.
    pub fn status(&self) -> WriteStatus {
        self.handle.status(self.write.seq)
    }

    /// Wait for the master's verdict. While the master is unreachable this
    /// waits (the write is retried in the background); wrap it in a timeout
    /// to stop waiting.
    pub async fn verdict(&self) -> Verdict {
        self.handle.verdict(self.write.seq).await
    }
}
