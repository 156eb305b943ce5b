//! Faults tests inject over DDP: raw frames at a user's sockets (malformed,
//! oversize, fragmented) and a forced logout; the library API and
//! `/_sim/` share them.

use crate::hub::{self, Out};
use crate::sim::Sim;
use crate::{store, RawFrame};
use serde_json::Value;

/// Pushes `frame` at the DDP sockets logged in as `uid` (the library API and `/_sim/frame`).
pub(crate) fn push_frame(sim: &Sim, uid: &str, frame: RawFrame) -> usize {
    let event = format!("{uid}/message");
    let make = move || match &frame {
        RawFrame::Text(t) => Out::Text(t.clone().into()),
        RawFrame::Oversize(n) => Out::Text(hub::changed_frame(
            "stream-notify-user",
            &event,
            &padded(*n),
        )),
        RawFrame::Fragmented(parts) => {
            let text = hub::changed_frame("stream-notify-user", &event, &padded(64)).to_string();
            let step = text.len().div_ceil((*parts).max(2));
            let chunks = text
                .as_bytes()
                .chunks(step)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            Out::Fragments(chunks)
        }
    };
    sim.hub.signal(|user, _| user == Some(uid), make)
}

/// Emits `<uid>/force_logout` and removes the user's tokens, as device
/// management's `sessions/logout` does (the library API and `/_sim/logout`).
pub(crate) fn force_logout(sim: &Sim, uid: &str) {
    sim.emit(vec![store::user_event(
        uid,
        "force_logout",
        Value::Array(vec![]),
    )]);
    let removed = sim.store.lock().remove_user_tokens(uid);
    sim.tokens_removed(&removed, None);
}

/// A `stream-notify-user` `message` payload padded with text to `bytes`.
fn padded(bytes: usize) -> String {
    serde_json::json!([{"_id": "padding", "msg": "x".repeat(bytes)}]).to_string()
}
