//! Whether imrelay can serve, and why not: `/readyz` answers from here. The
//! admin agent sets it from its login and its periodic probe of Rocket.Chat
//! (REST and DDP); a graceful stop clears it for good.

/// The daemon's readiness.
pub struct Readiness {
    state: parking_lot::Mutex<State>,
}

struct State {
    /// `None` when ready, else why not.
    why_not: Option<String>,
    stopping: bool,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            state: parking_lot::Mutex::new(State {
                why_not: Some("starting: not logged in to Rocket.Chat as the admin yet".into()),
                stopping: false,
            }),
        }
    }
}

impl Readiness {
    /// Ready to serve (ignored once stopping).
    pub fn set_ready(&self) {
        let mut s = self.state.lock();
        if !s.stopping {
            s.why_not = None;
        }
    }

    /// Not ready, for this reason (written for an operator; no secrets).
    /// Returns whether this is a change, so callers log transitions only.
    pub fn set_not_ready(&self, why: impl Into<String>) -> bool {
        let mut s = self.state.lock();
        let was_ready = s.why_not.is_none();
        if !s.stopping {
            s.why_not = Some(why.into());
        }
        was_ready
    }

    /// Shutting down: never ready again.
    pub fn stop(&self) {
        let mut s = self.state.lock();
        s.stopping = true;
        s.why_not = Some("shutting down".into());
    }

    /// Ready now?
    pub fn is_ready(&self) -> bool {
        self.state.lock().why_not.is_none()
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        match &self.state.lock().why_not {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }
}
