//! Strategies shared by the property tests of every parser that takes bytes
//! from the network (Rocket.Chat's DDP frames, client frames, negotiate
//! queries, JWTs). They run in `cargo test`; `PROPTEST_CASES` raises the
//! count (CI runs more, bounded in time).

use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value, nested a few levels, with the strings and numbers that
/// break parsers (escapes, huge and negative numbers, empty keys).
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!("\u{1e}")),
        Just(json!("\"\\\u{0}")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that is mostly JSON-shaped: a value's text, cut or spliced anywhere.
pub fn json_ish() -> impl Strategy<Value = String> {
    (json_value(), any::<usize>(), "\\PC{0,4}").prop_map(|(v, cut, splice)| {
        let t = v.to_string();
        let at = if t.is_empty() { 0 } else { cut % (t.len() + 1) };
        let at = (0..=at).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
        format!("{}{splice}{}", &t[..at], &t[at..])
    })
}

/// A redis-server of the test's own on a unix socket in a directory of its
/// own (no port to race other tests for), without persistence, killed when
/// dropped. Debian's `redis-server` (`.ci/run` installs it).
pub struct RedisServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one and waits (10 s at most) until it answers.
    pub fn start() -> RedisServer {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "imrelay-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the test's Redis");
        let socket = dir.join("redis.sock");
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian: apt-get install redis-server)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ping(&socket) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        RedisServer { child, dir }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }
}

/// Whether a Redis server answers PING on `socket`.
fn ping(socket: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
