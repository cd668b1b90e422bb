//! The wait between two attempts of a client that reconnects on its own (a cast's target, a
//! relay, a push): doubling from a first wait to a cap, back to the first after a success.

use std::time::Duration;

/// A capped exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits of `first`, then twice as long each time, at most `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    /// The wait before the next attempt (and the one after it doubles).
    pub fn next_wait(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.cap);
        now
    }

    /// An attempt succeeded: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(8));
        let waits: Vec<u64> = (0..6).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        b.reset();
        assert_eq!(b.next_wait(), s(1));
    }
}
