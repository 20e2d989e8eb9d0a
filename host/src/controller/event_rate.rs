//! Event writes per parent, rate-limited: a plugin that asks for events on
//! every reconcile (at most [`crate::runtime::MAX_EVENTS`] each, at most one
//! reconcile a second) still writes at most [`PER_WINDOW`] per parent per
//! [`WINDOW`]; the rest are dropped and counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events written per parent per window.
pub const PER_WINDOW: usize = 30;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Events written per parent (by uid) in its current window.
#[derive(Debug, Default)]
pub struct EventRate {
    windows: Mutex<HashMap<String, (Instant, usize)>>,
}

impl EventRate {
    /// How many of `wanted` events the parent `uid` may write now; counts them.
    pub fn admit(&self, uid: &str, wanted: usize) -> usize {
        let mut windows = self.windows.lock().expect("event rate lock");
        if windows.len() > 4096 {
            // Forget parents whose window is over (deleted ones among them).
            windows.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let window = windows.entry(uid.to_owned()).or_insert((Instant::now(), 0));
        if window.0.elapsed() >= WINDOW {
            *window = (Instant::now(), 0);
        }
        let admitted = wanted.min(PER_WINDOW.saturating_sub(window.1));
        window.1 += admitted;
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_writes_at_most_its_share_per_window() {
        let rate = EventRate::default();
        assert_eq!(rate.admit("a", 10), 10);
        assert_eq!(rate.admit("a", 10), 10);
        assert_eq!(rate.admit("a", 10), 10);
        assert_eq!(rate.admit("a", 10), 0, "the window's share is spent");
        assert_eq!(rate.admit("b", 10), 10, "another parent has its own");
        rate.windows.lock().unwrap().get_mut("a").unwrap().0 -= WINDOW;
        assert_eq!(rate.admit("a", 10), 10, "a new window");
    }
}
