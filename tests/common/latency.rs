//! A test-only `TableLike` around a real `AnyTable` that adds latency and
//! jitter to every master call, drawn from a seeded RNG. The data lives in
//! the real table; the wrapper only delays.
//!
//! Each read and write sleeps a random time before it reaches the real table
//! and another one after it, so the instant the master is actually read (or
//! written) falls anywhere inside the call, as with a real network.
//!
//! ```ignore
//! let master = Latency::wrap(seeded.table.clone(), Delays::jitter(seed, 2_000));
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vantage_table::any::AnyTable;

use super::hooked::{Call, Hooked, Hooks};
use super::rng::Rng;

/// How long master calls take: each side of the real call sleeps a random
/// time in `0..=max` microseconds (a fifth of the calls do not sleep at all,
/// so some calls overtake others).
#[derive(Debug)]
pub struct Delays {
    rng: Mutex<Rng>,
    read_us: u64,
    write_us: u64,
    /// Master reads so far.
    pub reads: AtomicUsize,
    /// Master writes so far.
    pub writes: AtomicUsize,
}

impl Delays {
    /// Up to `max_us` microseconds on each side of every read and write.
    pub fn jitter(seed: u64, max_us: u64) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(Rng::new(seed, 0x1a7e)),
            read_us: max_us,
            write_us: max_us,
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
        })
    }

    fn draw(&self, max_us: u64) -> Option<Duration> {
        if max_us == 0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap();
        if rng.chance(200) {
            return None;
        }
        Some(Duration::from_micros(rng.range(1, max_us)))
    }

    async fn pause(&self, max_us: u64) {
        match self.draw(max_us) {
            Some(d) => tokio::time::sleep(d).await,
            None => tokio::task::yield_now().await,
        }
    }
}

/// A real `AnyTable` behind [`Delays`].
pub struct Latency;

impl Latency {
    /// Wrap `table`; the returned `AnyTable` (and every clone) is delayed by
    /// `delays`.
    pub fn wrap(table: AnyTable, delays: Arc<Delays>) -> AnyTable {
        Hooked::wrap(table, delays)
    }
}

impl Hooks for Delays {
    fn read<'a, T: Send + 'a>(&'a self, call: Call<'a, T>) -> Call<'a, T> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.pause(self.read_us).await;
            let result = call.await;
            self.pause(self.read_us).await;
            result
        })
    }

    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        call: Call<'a, T>,
    ) -> Call<'a, T> {
        Box::pin(async move {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.pause(self.write_us).await;
            let result = call.await;
            self.pause(self.write_us).await;
            result
        })
    }
}
