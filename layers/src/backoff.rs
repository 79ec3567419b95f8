//! Retry delays: exponential, capped, jittered (shared by the event task
//! and the outbox drain).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first retry delay's ceiling, unless the layer is told otherwise.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// The cap on retry delays, unless the layer is told otherwise.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The shortest first delay the layer accepts: a zero would spin.
const MIN_INITIAL: Duration = Duration::from_millis(1);

/// How long to wait between attempts (subscriptions, outbox retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BackoffPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: DEFAULT_INITIAL_BACKOFF,
            max: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl BackoffPolicy {
    /// This policy with the first ceiling `initial` (at least 1 ms).
    pub(crate) fn with_initial(mut self, initial: Duration) -> Self {
        self.initial = initial.max(MIN_INITIAL);
        self.max = self.max.max(self.initial);
        self
    }

    /// This policy capped at `max` (never below the first ceiling).
    pub(crate) fn with_max(mut self, max: Duration) -> Self {
        self.max = max.max(self.initial);
        self
    }
}

/// The delay sequence of one retry loop.
///
/// The n-th delay after a reset has the ceiling `initial * 2^n`, capped at
/// `max`, and is drawn uniformly from `[ceiling / 2, ceiling]` ("equal
/// jitter"): never zero, so a source that fails at once cannot spin, and
/// spread out, so many tables that lost one server do not reconnect in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            attempt: 0,
            rng: seed(),
        }
    }

    #[cfg(test)]
    fn with_seed(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// Start again from the first ceiling.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were drawn since the last reset.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ceiling of the next delay.
    fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max)
    }

    /// Draw the next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = ceiling / 2;
        let span = u64::try_from((ceiling - floor).as_nanos()).unwrap_or(u64::MAX);
        let offset = if span == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (span + 1)
        };
        floor + Duration::from_nanos(offset)
    }

    /// xorshift64*: plenty for spreading delays; not for anything secret.
    fn next_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A different nonzero seed per loop: the clock, a process-wide counter and a
/// stack address, mixed.
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let local = 0u8;
    let address = &local as *const u8 as u64;
    // splitmix64 finaliser over the mix.
    let mut z = nanos ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ address.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_in_their_band() {
        let policy = BackoffPolicy::default();
        for seed in [1, 7, 0xDEAD_BEEF, u64::MAX] {
            let mut backoff = Backoff::with_seed(policy, seed);
            let mut ceiling = policy.initial;
            for _ in 0..40 {
                let delay = backoff.next_delay();
                assert!(delay >= ceiling / 2, "{delay:?} below half of {ceiling:?}");
                assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
                ceiling = (ceiling * 2).min(policy.max);
            }
            assert_eq!(ceiling, policy.max);
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::with_seed(BackoffPolicy::default(), 3);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
        assert!(backoff.next_delay() <= DEFAULT_INITIAL_BACKOFF);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut backoff = Backoff::with_seed(
            BackoffPolicy::default().with_initial(Duration::from_secs(1)),
            42,
        );
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|_| {
                backoff.reset();
                backoff.next_delay()
            })
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn zero_initial_is_clamped() {
        let policy = BackoffPolicy::default()
            .with_initial(Duration::ZERO)
            .with_max(Duration::ZERO);
        let mut backoff = Backoff::with_seed(policy, 9);
        assert!(backoff.next_delay() >= MIN_INITIAL / 2);
        assert!(policy.max >= policy.initial);
    }
}
