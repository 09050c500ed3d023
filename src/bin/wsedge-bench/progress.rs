//! Progress on stderr: when a mode's next progress line is due.
//!
//! Owns: the pacing of progress lines (about every 2 s, in every mode,
//! with or without `--json`). Must not touch: stdout (the report is the
//! only thing there) or what a line says (each mode words its own).

use std::time::{Duration, Instant};

/// Says when a progress line is due (about every 2 s).
pub struct Progress {
    last: Instant,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            last: Instant::now(),
        }
    }

    /// True at most once per 2 s; the caller then prints to stderr.
    pub fn due(&mut self) -> bool {
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            true
        } else {
            false
        }
    }
}
