//! Per-object exponential backoff for failed reconciles: each parent's
//! retries slow down on their own and reset after a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Backoff state of every failing object of one controller.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Delays start at `base` and double up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the
    /// next try.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(key.to_owned()).or_insert(0);
        let delay = self.base.saturating_mul(2u32.saturating_pow(*count)).min(self.max);
        *count = count.saturating_add(1);
        delay
    }

    /// The longest delay, for failures retrying will not mend soon.
    pub fn longest(&self, key: &str) -> Duration {
        self.failures.lock().expect("backoff lock").insert(key.to_owned(), 32);
        self.max
    }

    /// Forgets `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_caps_and_resets() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<_> = (0..6).map(|_| backoff.failed("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(
            backoff.failed("b"),
            Duration::from_secs(1),
            "other objects keep their own count"
        );
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(1));
    }
}
