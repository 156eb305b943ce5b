//! Reassembly of fragmented websocket messages, which awc and
//! actix-web-actors hand over as raw continuation frames, and the size a
//! frame header declares.

/// The payload length a websocket frame header declares, once enough of it
/// is in: actix-http's parser compares it with its limit only once the whole
/// frame is buffered, so both directions check it here first.
pub fn declared_len(buf: &[u8]) -> Option<u64> {
    let len = *buf.get(1)? & 0x7f;
    match len {
        126 => Some(u64::from(u16::from_be_bytes(
            buf.get(2..4)?.try_into().ok()?,
        ))),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => Some(u64::from(n)),
    }
}

/// Reassembles fragmented text messages, capped in size.
#[derive(Default)]
pub struct Reassembler {
    buf: Vec<u8>,
    active: bool,
}

/// What to do with a fragment.
#[derive(Debug, PartialEq)]
pub enum Fragment {
    /// More to come.
    Pending,
    /// A whole message.
    Complete(Vec<u8>),
    /// The peer broke the rules or the message is too large.
    Violation(String),
}

impl Reassembler {
    /// Starts a fragmented message.
    pub fn first(&mut self, data: &[u8], max: usize) -> Fragment {
        if self.active {
            return Fragment::Violation(
                "a new fragmented message began before the last one ended".into(),
            );
        }
        self.active = true;
        self.buf.clear();
        self.push(data, max)
    }

    /// Continues it.
    pub fn more(&mut self, data: &[u8], max: usize) -> Fragment {
        if !self.active {
            return Fragment::Violation("a continuation frame without a first frame".into());
        }
        self.push(data, max)
    }

    /// Ends it.
    pub fn last(&mut self, data: &[u8], max: usize) -> Fragment {
        match self.more(data, max) {
            Fragment::Pending => {
                self.active = false;
                Fragment::Complete(std::mem::take(&mut self.buf))
            }
            other => other,
        }
    }

    /// Feeds one continuation frame, as actix hands them over raw.
    /// Fragmented binary messages are refused: every peer here speaks text.
    pub fn item(&mut self, item: actix_http::ws::Item, max: usize) -> Fragment {
        use actix_http::ws::Item;
        match item {
            Item::FirstText(b) => self.first(&b, max),
            Item::FirstBinary(_) => {
                Fragment::Violation("fragmented binary messages are not supported".into())
            }
            Item::Continue(b) => self.more(&b, max),
            Item::Last(b) => self.last(&b, max),
        }
    }

    fn push(&mut self, data: &[u8], max: usize) -> Fragment {
        if self.buf.len() + data.len() > max {
            self.active = false;
            self.buf = Vec::new();
            return Fragment::Violation(format!("fragmented message larger than {max} bytes"));
        }
        self.buf.extend_from_slice(data);
        Fragment::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_with_a_cap() {
        let mut r = Reassembler::default();
        assert_eq!(r.first(b"hel", 10), Fragment::Pending);
        assert_eq!(r.more(b"l", 10), Fragment::Pending);
        assert_eq!(r.last(b"o", 10), Fragment::Complete(b"hello".to_vec()));
        assert!(matches!(r.more(b"x", 10), Fragment::Violation(_)));
        assert_eq!(r.first(b"0123456789", 10), Fragment::Pending);
        assert!(matches!(r.last(b"!", 10), Fragment::Violation(_)));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of fragments: never more than the cap buffered, and
        /// a completed message is never over it.
        #[test]
        fn fragments_stay_under_the_cap(ops in proptest::collection::vec((0u8..3, proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
            let mut r = Reassembler::default();
            for (op, data) in ops {
                let out = match op {
                    0 => r.first(&data, 64),
                    1 => r.more(&data, 64),
                    _ => r.last(&data, 64),
                };
                if let Fragment::Complete(m) = out {
                    prop_assert!(m.len() <= 64);
                }
                prop_assert!(r.buf.len() <= 64);
            }
        }
    }
}
