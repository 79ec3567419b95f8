//! A master "over the network": a real `AnyTable` behind a `TableLike` that
//! counts reads and waits a fixed latency before each one.
//!
//! A local `vantage-redb` read never yields to the runtime, so two reads of
//! it never overlap and "concurrent" reads run one after the other. A master
//! across a network is awaited; the latency here makes reads overlap the way
//! they do against one, which is what the concurrency figure is about.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vantage_table::any::AnyTable;

use super::hooked::{Call, Hooked, Hooks};

/// What the bench sees of a [`Remote`] (shared by all its clones).
#[derive(Debug, Default)]
pub struct RemoteProbe {
    reads: AtomicUsize,
    latency: Duration,
}

impl RemoteProbe {
    /// Master reads so far (`list_values`, `get_value`, `get_some_value`,
    /// `get_count`).
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

/// A real table behind a read counter and a fixed read latency.
pub struct Remote;

impl Remote {
    /// Wrap `table`: every read waits `latency` (a tokio sleep) first.
    pub fn wrap(table: AnyTable, latency: Duration) -> (AnyTable, Arc<RemoteProbe>) {
        let probe = Arc::new(RemoteProbe {
            reads: AtomicUsize::new(0),
            latency,
        });
        (Hooked::wrap(table, probe.clone()), probe)
    }
}

impl Hooks for RemoteProbe {
    fn read<'a, T: Send + 'a>(&'a self, call: Call<'a, T>) -> Call<'a, T> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            call.await
        })
    }
}
