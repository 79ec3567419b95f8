//! Accepting a write: the request turned into what the outbox stores, then
//! appended to the file (synced) and queued for the drain, one at a time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tower::BoxError;

use super::core::{lock, Core};
use super::entry::{OutboxOp, PendingWrite};
use super::error::{OutboxClosed, OutboxFull, OutboxStoreFailed};
use crate::request::WriteRequest;

impl Core {
    /// Turn a write request into what the outbox stores: an
    /// `insert_return_id` gets its id now.
    pub(crate) fn op(&self, write: WriteRequest) -> Result<OutboxOp, BoxError> {
        Ok(match write {
            WriteRequest::Insert { id, record } => OutboxOp::Insert { id, record },
            WriteRequest::Replace { id, record } => OutboxOp::Replace { id, record },
            WriteRequest::Patch { id, partial } => OutboxOp::Patch { id, partial },
            WriteRequest::Delete { id } => OutboxOp::Delete { id },
            WriteRequest::DeleteAll { view } => {
                if !view.is_cacheable() {
                    return Err(Box::new(super::error::NotStorable::new()));
                }
                OutboxOp::DeleteAll {
                    eq: view.eq_conditions().to_vec(),
                }
            }
            WriteRequest::InsertReturnId { record } => {
                let ids = lock(&self.settings).ids.clone();
                OutboxOp::InsertReturnId { id: ids(), record }
            }
        })
    }

    /// Store `op` durably and queue it; the answer is the stored write.
    pub(crate) async fn accept(
        self: &Arc<Self>,
        op: OutboxOp,
    ) -> Result<Arc<PendingWrite>, BoxError> {
        let max_pending = lock(&self.settings).max_pending;
        let core = self.clone();
        // On a task of its own: once started, the write is stored and queued
        // even if the caller drops its future.
        let task = tokio::spawn(async move {
            let _turn = core.accept_lock.lock().await;
            let store = core.store()?;
            let write = {
                let state = lock(&core.state);
                if state.pending.len() >= max_pending {
                    return Err(Box::new(OutboxFull::new(max_pending)) as BoxError);
                }
                PendingWrite {
                    seq: state.next_seq,
                    op,
                    accepted_at: SystemTime::now(),
                }
            };
            let write = Arc::new(write);
            let stored = write.clone();
            let appended = tokio::task::spawn_blocking(move || store.append(&stored)).await;
            match appended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Box::new(OutboxStoreFailed::new(core.file(), e)) as BoxError)
                }
                Err(e) => return Err(Box::new(OutboxStoreFailed::new(core.file(), e)) as BoxError),
            }
            {
                let mut state = lock(&core.state);
                state.next_seq = write.seq + 1;
                state.pending.push_back(write.clone());
                state.accepted += 1;
                core.pending_len
                    .store(state.pending.len(), Ordering::Release);
            }
            tracing::debug!(
                seq = write.seq,
                op = write.op.op(),
                id = write.op.id(),
                "write accepted into the outbox"
            );
            core.wake.notify_one();
            Ok(write)
        });
        match task.await {
            Ok(result) => result,
            Err(_) => Err(Box::new(OutboxClosed::new())),
        }
    }
}
