//! A test-only master that can be made unreachable, and one whose writes
//! fail at random as a dropped connection would: before the master applied
//! them, or after (the write landed, the answer was lost). The data always
//! lives in the real table; these wrappers only fail calls, with the
//! `std::io::Error` a dropped connection gives, which the outbox's default
//! rule classifies as unreachable.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vantage_core::VantageError;
use vantage_table::any::AnyTable;

use super::hooked::{Call, Hooked, Hooks};
use super::rng::Rng;

/// The error every call returns while unreachable.
pub fn connection_error(what: &str) -> VantageError {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, what.to_string()).into()
}

/// A switch: while `down`, every read and write fails before reaching the
/// master. Counts the writes that reached it.
#[derive(Debug, Default)]
pub struct Switch {
    down: AtomicBool,
    /// Writes that reached the real table.
    pub writes: AtomicUsize,
    /// Calls refused while down.
    pub refused: AtomicUsize,
}

impl Switch {
    /// `table` behind a new switch (up).
    pub fn wrap(table: AnyTable) -> (AnyTable, Arc<Switch>) {
        let switch = Arc::new(Switch::default());
        (Hooked::wrap(table, switch.clone()), switch)
    }

    /// Make the master unreachable (`true`) or reachable again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> vantage_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(connection_error("master unreachable (test switch)"))
        } else {
            Ok(())
        }
    }
}

impl Hooks for Switch {
    fn read<'a, T: Send + 'a>(&'a self, call: Call<'a, T>) -> Call<'a, T> {
        Box::pin(async move {
            self.check()?;
            call.await
        })
    }

    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        call: Call<'a, T>,
    ) -> Call<'a, T> {
        Box::pin(async move {
            self.check()?;
            self.writes.fetch_add(1, Ordering::SeqCst);
            call.await
        })
    }
}

/// Writes that fail at random: `before` per mille before reaching the
/// master, `after` per mille after the master applied them.
#[derive(Debug)]
pub struct Flaky {
    rng: Mutex<Rng>,
    before: u64,
    after: u64,
    /// Writes failed before the master saw them.
    pub lost_requests: AtomicUsize,
    /// Writes the master applied whose answer was lost.
    pub lost_answers: AtomicUsize,
}

impl Flaky {
    /// `table` with flaky writes, drawn from `seed`.
    pub fn wrap(table: AnyTable, seed: u64, before: u64, after: u64) -> (AnyTable, Arc<Flaky>) {
        let flaky = Arc::new(Flaky {
            rng: Mutex::new(Rng::new(seed, 0xf1a4)),
            before,
            after,
            lost_requests: AtomicUsize::new(0),
            lost_answers: AtomicUsize::new(0),
        });
        (Hooked::wrap(table, flaky.clone()), flaky)
    }
}

impl Hooks for Flaky {
    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        call: Call<'a, T>,
    ) -> Call<'a, T> {
        Box::pin(async move {
            let (fail_before, fail_after) = {
                let mut rng = self.rng.lock().unwrap();
                (rng.chance(self.before), rng.chance(self.after))
            };
            if fail_before {
                self.lost_requests.fetch_add(1, Ordering::SeqCst);
                return Err(connection_error("connection reset before the write (test)"));
            }
            let result = call.await;
            if fail_after && result.is_ok() {
                self.lost_answers.fetch_add(1, Ordering::SeqCst);
                return Err(connection_error("connection reset after the write (test)"));
            }
            result
        })
    }
}
