//! Slowing down guessing: at most N failures per window for an account or an address.
//!
//! Written here rather than taken from a rate-limiting crate (tower's, governor): those count
//! requests, and a person who signs in correctly a hundred times must never be locked out. This
//! counts only failures, recorded after the answer is known (a wrong password, a used code), and
//! keyed by account as well as by address.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts recent failures per key ("account:NAME", "address:IP").
#[derive(Debug)]
pub struct FailureLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// Allows `max` failures per `window` for each key.
    pub fn new(max: usize, window: Duration) -> Self {
        FailureLimiter { max: max.max(1), window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(wait)` if `key` has used up its failures: how long until the oldest expires.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(key) else { return Ok(()) };
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            times.pop_front();
        }
        if times.len() < self.max {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err(self.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
    }

    /// Records a failure for `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget keys whose failures have all expired, so the map cannot grow without bound.
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let times = map.entry(key.to_owned()).or_default();
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_then_a_wait_until_the_window_passes() {
        let limiter = FailureLimiter::new(10, Duration::from_secs(600));
        let start = Instant::now();
        for i in 0..10 {
            assert_eq!(limiter.check("account:an", start), Ok(()), "failure {i} is still allowed");
            limiter.fail("account:an", start + Duration::from_secs(i));
        }
        let wait = limiter.check("account:an", start + Duration::from_secs(10)).expect_err("blocked");
        assert_eq!(wait, Duration::from_secs(590));
        assert_eq!(limiter.check("account:binh", start), Ok(()), "other keys are not affected");
        assert_eq!(limiter.check("account:an", start + Duration::from_secs(600)), Ok(()), "the oldest expired");
    }
}
