//! How old a slot may be: max age, stale-while-revalidate, and the clock
//! that tells a slot's age.
//!
//! A slot's age is measured from its [`CachedSlot::fetched_at`], the time the
//! master read that filled it *started* (so an answer is never younger than
//! the data in it). The time comes from the stack's [`Clock`]; tests move a
//! [`ManualClock`] by hand instead of sleeping.
//!
//! With a max age `d` and a stale-while-revalidate window `w`, a slot is
//!
//! - **fresh** while its age is at most `d`, and it was filled after the
//!   latest [stale mark](Freshness#stale-marks): served as any hit;
//! - **stale** while its age is at most `d + w`: served at once, and one
//!   background refresh of it starts (single flight with ordinary misses;
//!   fenced like any fill, so a refresh that overlaps a write or an event
//!   never installs its rows);
//! - **expired** beyond that: a miss.
//!
//! Without a max age, slots are fresh until invalidated (the default), or
//! stale once a stale mark covers them if a window is set.
//!
//! # Clocks that jump
//!
//! A wall clock can be set back. A slot stamped later than the clock's
//! present is aged by how far it lies in the future: a clock set back by `J`
//! leaves a slot fresh for at most `d` around the moment the clock catches up
//! with it, and expired otherwise. No jump makes a slot immortal; at worst a
//! jump costs master reads.
//!
//! [`CachedSlot::fetched_at`]: super::CachedSlot::fetched_at

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::cached::CachedSlot;

/// Where a cache stack reads the time: the age of slots and the stamp of
/// fills.
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock ([`SystemTime::now`]), the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until moved: for tests of max age and
/// stale-while-revalidate without sleeping. Clones share the time.
///
/// ```
/// # use std::time::{Duration, SystemTime};
/// # use vantage_live_layers::{Clock, ManualClock};
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
/// let start = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), start + Duration::from_secs(5));
/// clock.set_back(Duration::from_secs(60)); // a wall clock that jumps back
/// assert!(clock.now() < start);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock that reads the system's time now until moved.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Move the clock back by `by`, as a wall clock corrected backwards
    /// does. Saturates at the Unix epoch.
    pub fn set_back(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now
            .checked_sub(by)
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .max(SystemTime::UNIX_EPOCH);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A cache layer's freshness policy: max age, stale-while-revalidate window
/// and clock. The default keeps slots until an invalidation drops them.
///
/// Set it with [`CacheLayer::with_max_age`](super::CacheLayer::with_max_age),
/// [`CacheLayer::with_stale_while_revalidate`](super::CacheLayer::with_stale_while_revalidate)
/// and [`CacheLayer::with_clock`](super::CacheLayer::with_clock) (or the
/// `LiveTable` builders of the same names).
///
/// With a max age `d` and a window `w`, a slot is **fresh** while its age
/// (from [`CachedSlot::fetched_at`], the start of the read that filled it)
/// is at most `d` and no stale mark covers it; **stale** (served, and
/// refreshed in the background) while its age is at most `d + w`;
/// **expired** (a miss) beyond. A slot stamped in the clock's future (a
/// wall clock set back) is as old as it is far ahead, so no clock jump
/// makes a slot immortal.
///
/// # Stale marks
///
/// With a stale-while-revalidate window set, an event task that
/// (re)subscribes marks every slot of the cache_key filled before that
/// moment as stale instead of dropping them (see
/// [`Invalidator::mark_stale`](super::Invalidator::mark_stale)): an app that
/// restarts over a persisted cache answers at once from it, refreshes each
/// slot it serves in the background, and never serves such a slot as fresh.
/// The mark lives in the backend's invalidation state, so every stack
/// sharing the backend and cache_key sees it.
#[derive(Clone)]
pub struct Freshness {
    max_age: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            max_age: None,
            stale_while_revalidate: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for Freshness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Freshness")
            .field("max_age", &self.max_age)
            .field("stale_while_revalidate", &self.stale_while_revalidate)
            .finish_non_exhaustive()
    }
}

/// How a slot stands against the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Age {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Stale,
    /// Do not serve it: a miss.
    Expired,
}

impl Freshness {
    /// Slots kept until invalidated; the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Slots older than `max_age` are stale (with a window) or misses.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Serve slots up to `window` past their max age (or covered by a stale
    /// mark) at once, refreshing them in the background.
    pub fn with_stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Read the time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The max age, if set.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The stale-while-revalidate window, if set.
    pub fn stale_while_revalidate(&self) -> Option<Duration> {
        self.stale_while_revalidate
    }

    /// The clock slots are aged and stamped by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether slots are ever aged: a max age or a window is set.
    pub(crate) fn ages_slots(&self) -> bool {
        self.max_age.is_some() || self.stale_while_revalidate.is_some()
    }

    /// The time now, by the policy's clock.
    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// How `slot` stands now, given the namespace's latest stale mark
    /// (`stale_before`: slots fetched at or before it are never fresh).
    pub(crate) fn judge(&self, slot: &CachedSlot, stale_before: Option<SystemTime>) -> Age {
        if !self.ages_slots() {
            return Age::Fresh;
        }
        let now = self.clock.now();
        // A slot from the clock's future is as old as it is far ahead: see
        // "Clocks that jump".
        let age = match now.duration_since(slot.fetched_at) {
            Ok(age) => age,
            Err(ahead) => ahead.duration(),
        };
        let marked = stale_before.is_some_and(|mark| slot.fetched_at <= mark);
        let fresh_for = self.max_age.unwrap_or(Duration::MAX);
        if age <= fresh_for && !marked {
            return Age::Fresh;
        }
        match self.stale_while_revalidate {
            Some(window) if age <= fresh_for.saturating_add(window) => Age::Stale,
            // A mark without a window is never set; past the window, or
            // past a max age without one, the slot is a miss.
            _ => Age::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::SlotValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn slot(fetched: u64) -> CachedSlot {
        CachedSlot {
            value: SlotValue::Count(1),
            fetched_at: at(fetched),
        }
    }

    #[test]
    fn ages_follow_the_clock() {
        let clock = ManualClock::new(at(1_000));
        let policy = Freshness::new()
            .with_max_age(Duration::from_secs(10))
            .with_stale_while_revalidate(Duration::from_secs(5))
            .with_clock(Arc::new(clock.clone()));
        let s = slot(1_000);
        assert_eq!(policy.judge(&s, None), Age::Fresh);
        clock.advance(Duration::from_secs(10));
        assert_eq!(policy.judge(&s, None), Age::Fresh, "exactly max age");
        clock.advance(Duration::from_secs(1));
        assert_eq!(policy.judge(&s, None), Age::Stale);
        clock.advance(Duration::from_secs(4));
        assert_eq!(policy.judge(&s, None), Age::Stale, "end of the window");
        clock.advance(Duration::from_secs(1));
        assert_eq!(policy.judge(&s, None), Age::Expired);
    }

    #[test]
    fn no_policy_keeps_everything() {
        let policy = Freshness::new().with_clock(Arc::new(ManualClock::new(at(1_000_000))));
        assert_eq!(policy.judge(&slot(0), Some(at(5))), Age::Fresh);
    }

    #[test]
    fn max_age_without_window_expires() {
        let clock = ManualClock::new(at(100));
        let policy = Freshness::new()
            .with_max_age(Duration::from_secs(10))
            .with_clock(Arc::new(clock.clone()));
        clock.advance(Duration::from_secs(11));
        assert_eq!(policy.judge(&slot(100), None), Age::Expired);
    }

    #[test]
    fn a_mark_makes_older_slots_stale_never_fresh() {
        let clock = ManualClock::new(at(100));
        let policy = Freshness::new()
            .with_stale_while_revalidate(Duration::from_secs(5))
            .with_clock(Arc::new(clock.clone()));
        assert_eq!(policy.judge(&slot(100), Some(at(100))), Age::Stale);
        assert_eq!(policy.judge(&slot(101), Some(at(100))), Age::Fresh);
        // Without a max age the window is counted from forever: still stale
        // a long time after, never fresh.
        clock.advance(Duration::from_secs(100_000));
        assert_eq!(policy.judge(&slot(100), Some(at(100))), Age::Stale);
    }

    #[test]
    fn a_clock_set_back_never_makes_a_slot_immortal() {
        let clock = ManualClock::new(at(10_000));
        let policy = Freshness::new()
            .with_max_age(Duration::from_secs(10))
            .with_clock(Arc::new(clock.clone()));
        let s = slot(10_000);
        // The clock jumps back an hour: the slot lies an hour in the future.
        clock.set_back(Duration::from_secs(3_600));
        assert_eq!(policy.judge(&s, None), Age::Expired);
        // A small step back keeps it fresh only within its max age.
        let clock = ManualClock::new(at(10_000));
        let policy = policy.with_clock(Arc::new(clock.clone()));
        clock.set_back(Duration::from_secs(5));
        assert_eq!(policy.judge(&s, None), Age::Fresh);
        clock.advance(Duration::from_secs(16));
        assert_eq!(policy.judge(&s, None), Age::Expired);
    }
}
