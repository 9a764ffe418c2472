//! One process-wide clock for every timestamp in the pipeline.
//!
//! Timestamps are integer nanoseconds since the Unix epoch, so they can be sent to the stimulus
//! computer and compared with its clock, but they advance monotonically: the wall-clock time is
//! read once, at first use, and every later reading adds a monotonic `Instant` delta to it.
//! Per-stage latencies computed from these values are therefore never negative, even if NTP
//! adjusts the system clock during a session.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    unix_ns: u64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    })
}

/// Nanoseconds since the Unix epoch, monotonic within this process.
pub fn now_ns() -> u64 {
    let a = anchor();
    a.unix_ns + a.instant.elapsed().as_nanos() as u64
}

/// The clock value of an `Instant` taken in this process.
pub fn instant_ns(at: Instant) -> u64 {
    let a = anchor();
    match at.checked_duration_since(a.instant) {
        Some(d) => a.unix_ns + d.as_nanos() as u64,
        None => a.unix_ns - a.instant.duration_since(at).as_nanos() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_close_to_wall_time() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        // Within a second of the wall clock: the anchor was read moments ago.
        assert!(wall.abs_diff(b) < 1_000_000_000, "clock {b} vs wall {wall}");
        let i = Instant::now();
        let n = instant_ns(i);
        assert!(n >= b && n <= now_ns());
    }
}
