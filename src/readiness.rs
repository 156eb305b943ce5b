//! Whether imrelay can serve, and why not: `/readyz` answers from here. The
//! admin agent sets it from its login and its periodic probe of Rocket.Chat
//! (REST and DDP); a graceful stop clears it for good.

use std::sync::atomic::{AtomicBool, Ordering};

/// The daemon's readiness.
pub struct Readiness {
    ready: AtomicBool,
    why_not: parking_lot::Mutex<String>,
    stopping: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            ready: AtomicBool::new(false),
            why_not: parking_lot::Mutex::new(
                "starting: not logged in to Rocket.Chat as the admin yet".into(),
            ),
            stopping: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// Ready to serve (ignored once stopping).
    pub fn set_ready(&self) {
        if !self.stopping.load(Ordering::Relaxed) {
            self.ready.store(true, Ordering::Relaxed);
        }
    }

    /// Not ready, for this reason (written for an operator). Returns whether
    /// this is a change, so callers log transitions only.
    pub fn set_not_ready(&self, why: impl Into<String>) -> bool {
        let was = self.ready.swap(false, Ordering::Relaxed);
        *self.why_not.lock() = why.into();
        was
    }

    /// Shutting down: never ready again.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.set_not_ready("shutting down");
    }

    /// Ready now?
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(self.why_not.lock().clone())
        }
    }
}
