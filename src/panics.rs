//! Fault isolation: what a panic on one of wsedge's threads turns into.
//!
//! Owns: the panic hook for wsedge's own threads, the note of where the
//! last panic on a thread happened, a panic's short message, and (with the
//! `fault-injection` feature only) the test hooks that cause panics.
//! Must not touch: what is done after a panic (the core closes the
//! connection with 1011; the admin plane answers 500) or the counters.
//!
//! The policy (README "Fault isolation"):
//! - The threads wsedge starts (cores, the admin runtime's threads)
//!   call [`own_thread`]. Every panic on them is caught — per connection,
//!   per delivery, per inbox command, per admin request, or else at the
//!   thread's top — and the catcher logs it as one `error` line with the
//!   connection id (if any), the location and the message. The hook
//!   prints nothing for them: std's default output would say the same in a
//!   second, free-form line (breaking `log.format = "json"`). With
//!   `RUST_BACKTRACE=1` the line also carries the backtrace.
//! - A panic on any other thread goes to the hook installed before ours
//!   (std's default prints it to stderr), unchanged.
//!
//! The message is the panic's own text (such as `index out of bounds: the
//! len is 3 but the index is 7`), cut to [`MAX_MESSAGE`] bytes: wsedge's
//! code never formats message payloads or tokens into a panic.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Once;

/// Longest panic message logged, in bytes.
pub const MAX_MESSAGE: usize = 200;

thread_local! {
    static OWN: Cell<bool> = const { Cell::new(false) };
    static LAST: RefCell<Option<Note>> = const { RefCell::new(None) };
}

/// Where a panic happened and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `file:line:column`, or `unknown` (another hook replaced ours).
    pub location: String,
    /// The panic's message, at most [`MAX_MESSAGE`] bytes.
    pub message: String,
    /// The backtrace, when `RUST_BACKTRACE` asks for one.
    pub backtrace: Option<String>,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.location)
    }
}

/// Installs the hook (once per process; later calls do nothing). It keeps
/// the hook that was there before for threads that are not wsedge's own.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !OWN.try_with(Cell::get).unwrap_or(false) {
                return previous(info);
            }
            let bt = std::backtrace::Backtrace::capture();
            let note = Note {
                location: info
                    .location()
                    .map_or_else(|| "unknown".to_string(), |l| l.to_string()),
                message: message(info.payload()),
                backtrace: (bt.status() == std::backtrace::BacktraceStatus::Captured)
                    .then(|| bt.to_string()),
            };
            let _ = LAST.try_with(|l| {
                if let Ok(mut l) = l.try_borrow_mut() {
                    *l = Some(note);
                }
            });
        }));
    });
}

/// Marks the calling thread as one of wsedge's: its panics are caught and
/// logged by wsedge, so the hook stays silent for them.
pub fn own_thread() {
    install_hook();
    OWN.with(|o| o.set(true));
}

/// The note of the panic just caught on this thread (whose payload is
/// `payload`): the hook's, or built from the payload alone when another
/// hook replaced ours.
pub fn take_note(payload: &(dyn Any + Send)) -> Note {
    LAST.try_with(|l| l.try_borrow_mut().ok().and_then(|mut l| l.take()))
        .ok()
        .flatten()
        .unwrap_or_else(|| Note {
            location: "unknown".into(),
            message: message(payload),
            backtrace: None,
        })
}

/// A panic payload's text (`panic!` with a literal or with formatting),
/// cut to [`MAX_MESSAGE`] bytes at a character boundary.
pub fn message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "(a panic without a message)"
    };
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Test-only fault hooks (the `fault-injection` feature: the crate's own
/// tests and benches enable it, the product build does not have this
/// module). Compiled in, they still do nothing until [`fault::enable`]:
/// `cargo bench` and `cargo test --release` also leave a
/// `target/release/wsedge` with the feature, and that binary must not
/// panic on a client's say-so (it turns them on only with
/// `WSEDGE_FAULT_INJECTION=1`).
#[cfg(feature = "fault-injection")]
pub mod fault {
    use std::sync::atomic::{AtomicBool, Ordering};

    static ENABLED: AtomicBool = AtomicBool::new(false);

    /// Turns the hooks on for the whole process (tests call it).
    pub fn enable() {
        ENABLED.store(true, Ordering::Relaxed);
    }

    /// Whether the hooks are on.
    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// A data message (on `/echo` or `/ws`) with exactly this payload
    /// panics while its connection's message is handled.
    pub const PANIC: &[u8] = b"__wsedge_panic__";
    /// ...arms a panic at that connection's next timer expiry.
    pub const PANIC_ON_TIMER: &[u8] = b"__wsedge_panic_on_timer__";
    /// ...arms a panic at the next fan-out or API delivery to it.
    pub const PANIC_ON_DELIVERY: &[u8] = b"__wsedge_panic_on_delivery__";
    /// ...panics as [`PANIC`] does, and again when the core flushes the
    /// connection's 1011 close (the "panic while closing" path).
    pub const PANIC_TWICE: &[u8] = b"__wsedge_panic_twice__";

    /// Where an armed panic fires.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Trigger {
        Timer,
        Delivery,
        /// The end-of-turn flush.
        Flush,
    }

    /// A core's armed faults, as (key, generation, where).
    #[derive(Debug, Default)]
    pub struct Armed(Vec<(usize, u32, Trigger)>);

    impl Armed {
        /// A data message of connection (`key`, `gen`): panics for
        /// [`PANIC`], arms for the others. The message is handled as
        /// usual afterwards (echoed, or refused as a bad request on `/ws`).
        pub fn on_message(&mut self, key: usize, gen: u32, payload: &[u8]) {
            if !enabled() {
                return;
            }
            if payload == PANIC_TWICE {
                self.0.push((key, gen, Trigger::Flush));
            }
            if payload == PANIC || payload == PANIC_TWICE {
                panic!("fault injection: panic while handling a message");
            }
            let trigger = if payload == PANIC_ON_TIMER {
                Trigger::Timer
            } else if payload == PANIC_ON_DELIVERY {
                Trigger::Delivery
            } else {
                return;
            };
            self.0.push((key, gen, trigger));
        }

        /// Panics if a fault is armed for this connection and trigger
        /// (once).
        pub fn fire(&mut self, key: usize, gen: u32, trigger: Trigger) {
            if let Some(i) = self.0.iter().position(|a| *a == (key, gen, trigger)) {
                self.0.swap_remove(i);
                panic!("fault injection: panic at {trigger:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        assert_eq!(message(&"plain"), "plain");
        assert_eq!(message(&String::from("formatted 7")), "formatted 7");
        assert_eq!(message(&42u8), "(a panic without a message)");
        let long = "é".repeat(MAX_MESSAGE);
        let cut = message(&long);
        assert!(cut.len() <= MAX_MESSAGE && cut.len() >= MAX_MESSAGE - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_hook_notes_panics_of_own_threads_and_the_catcher_takes_the_note() {
        let note = std::thread::spawn(|| {
            own_thread();
            let payload = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
            let note = take_note(&*payload);
            (note, take_note(&*payload))
        })
        .join()
        .unwrap();
        assert_eq!(note.0.message, "boom 7");
        assert!(note.0.location.contains("panics.rs"), "{:?}", note.0);
        // Taken once: without a note, the payload alone.
        assert_eq!(note.1.location, "unknown");
        assert_eq!(note.1.message, "boom 7");
    }
}
