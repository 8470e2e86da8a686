//! Per-key token buckets (GCRA via `governor`).
//!
//! The keyed state grows with the number of distinct callers: only authenticated ids ever
//! reach the limiter (keys of the keys file, `anonymous`, subjects of validly signed JWTs),
//! so a flood of bogus credentials cannot grow it. JWT subjects are many more than keys, so
//! once the state holds [`PRUNE_ABOVE`] callers, those whose buckets are full again (idle
//! long enough to have no history left) are forgotten.

use super::KeyId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// Callers held before idle ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

pub(super) struct KeyedLimiter {
    limiter: DefaultKeyedRateLimiter<KeyId>,
    clock: DefaultClock,
}

impl KeyedLimiter {
    /// `Ok(None)` when `per_second` is 0 (no limit); `Err(())` when it is negative or not finite.
    pub(super) fn new(per_second: f64, burst: u32) -> Result<Option<Self>, ()> {
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(());
        }
        if per_second == 0.0 {
            return Ok(None);
        }
        let period = Duration::try_from_secs_f64(1.0 / per_second).map_err(|_| ())?;
        // A burst of 0 means "one second's worth", at least one request.
        let burst = if burst == 0 {
            per_second.ceil().min(f64::from(u32::MAX)) as u32
        } else {
            burst
        };
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).ok_or(())?.allow_burst(burst);
        Ok(Some(Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }))
    }

    /// `Ok` when the key may send a request now, else how long until it may.
    pub(super) fn check(&self, key: &KeyId) -> Result<(), Duration> {
        if self.limiter.len() > PRUNE_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}
