//! rcsim's own benchmark: how many DDP connections it holds and how many
//! stream events a second it pushes to them.
//!
//! It starts the `rcsim` binary as a child process (so each side has its
//! own open-file budget), creates users and rooms through `/_sim/`, opens
//! one logged-in DDP socket per user subscribed the way imrelay's sessions
//! subscribe (`__my_messages__` and five `stream-notify-user` events), then
//! has rcsim post messages on its fast path and counts the events that
//! arrive at the sockets.
//!
//! `cargo build --release -p rcsim && cargo run --release -p rcsim --example bench -- --connections 10000`

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench";

struct Args {
    connections: usize,
    room_size: usize,
    messages: usize,
    threads: usize,
    rcsim: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        connections: 10_000,
        room_size: 100,
        messages: 5_000,
        threads: 2,
        rcsim: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("rcsim")))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "target/release/rcsim".into()),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        let n = || {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{} needs a number", argv[i]))
        };
        match argv[i].as_str() {
            "--connections" => a.connections = n(),
            "--room-size" => a.room_size = n(),
            "--messages" => a.messages = n(),
            "--threads" => a.threads = n(),
            "--rcsim" => a.rcsim = v.clone(),
            other => panic!(
                "unknown argument {other} (--connections --room-size --messages --threads --rcsim)"
            ),
        }
        i += 2;
    }
    a
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn control(url: &str, op: &str, body: Value) -> Value {
    let url = format!("{url}/_sim/{op}");
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("x-sim-secret: {SECRET}"),
            "--data-binary",
            "@-",
            &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(body.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "/_sim/{op} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

struct Counters {
    ready: AtomicUsize,
    failed: AtomicUsize,
    events: AtomicU64,
}

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Connects, logs in by resume and subscribes; resolves at `ready` and
/// leaves a reader task counting events.
/// The streams imrelay's session actor subscribes to, per user.
const USER_STREAMS: [&str; 5] = [
    "subscriptions-changed",
    "rooms-changed",
    "notification",
    "message",
    "force_logout",
];

async fn client(ws: String, uid: String, token: String, c: Arc<Counters>) {
    let Ok((_, mut ws)) = awc::Client::new()
        .ws(ws)
        .max_frame_size(1 << 20)
        .connect()
        .await
    else {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut hello = vec![
        json!({"msg": "connect", "version": "1", "support": ["1"]}),
        json!({"msg": "method", "method": "login", "id": "1", "params": [{"resume": token}]}),
        json!({"msg": "sub", "id": "2", "name": "stream-room-messages", "params": ["__my_messages__", false]}),
    ];
    for (i, ev) in USER_STREAMS.iter().enumerate() {
        hello.push(json!({"msg": "sub", "id": (3 + i).to_string(), "name": "stream-notify-user", "params": [format!("{uid}/{ev}"), false]}));
    }
    let subs = hello.len() - 2;
    for f in hello {
        if ws
            .send(awc::ws::Message::Text(f.to_string().into()))
            .await
            .is_err()
        {
            c.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let mut ready = 0;
    while ready < subs {
        match ws.next().await {
            Some(Ok(awc::ws::Frame::Text(t))) if t.starts_with(br#"{"msg":"ready""#) => ready += 1,
            Some(Ok(_)) => {}
            _ => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    c.ready.fetch_add(1, Ordering::Relaxed);
    actix_rt::spawn(read_events(ws, c));
}

async fn read_events(mut ws: Socket, c: Arc<Counters>) {
    while let Some(Ok(frame)) = ws.next().await {
        match frame {
            awc::ws::Frame::Text(t) => {
                if t.starts_with(br#"{"msg":"changed""#) {
                    c.events.fetch_add(1, Ordering::Relaxed);
                } else if t.starts_with(br#"{"msg":"ping""#) {
                    let _ = ws
                        .send(awc::ws::Message::Text(r#"{"msg":"pong"}"#.into()))
                        .await;
                }
            }
            awc::ws::Frame::Ping(p) => {
                let _ = ws.send(awc::ws::Message::Pong(p)).await;
            }
            _ => {}
        }
    }
}

fn wait(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of /proc/pid/stat, counted after the ")" (state is field 3).
    (ticks(11) + ticks(12)) / 100.0
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let a = parse_args();
    assert!(
        a.room_size >= 1 && a.connections.is_multiple_of(a.room_size),
        "--connections must be a multiple of --room-size"
    );
    let mut child = Command::new(&a.rcsim)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--permissive",
            "--control-secret",
            SECRET,
            "--workers",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with cargo build --release -p rcsim)",
                a.rcsim
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("rcsim prints its URL");
    let pid = child.id();
    let _guard = Kill(child);
    let url = line.trim().rsplit(' ').next().expect("url").to_string();
    let ws = format!("{}/websocket", url.replacen("http", "ws", 1));
    println!(
        "rcsim {url} (pid {pid}), {} connections, rooms of {}, {} messages",
        a.connections, a.room_size, a.messages
    );
    let rss0 = rss_kib(pid);

    let users = control(
        &url,
        "bulk-users",
        json!({"prefix": "b", "count": a.connections}),
    );
    let users: Vec<(String, String, String)> = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            let s = |k: &str| u[k].as_str().unwrap_or_default().to_string();
            (s("username"), s("uid"), s("token"))
        })
        .collect();
    let mut rooms = vec![];
    for (i, group) in users.chunks(a.room_size).enumerate() {
        let members: Vec<&str> = group.iter().map(|(u, _, _)| u.as_str()).collect();
        rooms.push(
            control(
                &url,
                "room",
                json!({"name": format!("bench{i}"), "members": members}),
            )["rid"]
                .clone(),
        );
    }

    let counters = Arc::new(Counters {
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        events: AtomicU64::new(0),
    });
    let started = Instant::now();
    let per_thread = a.connections.div_ceil(a.threads);
    for slice in users.chunks(per_thread).map(|s| s.to_vec()) {
        let (ws, c) = (ws.clone(), Arc::clone(&counters));
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                // Open in waves so the accept queue never overflows.
                for wave in slice.chunks(256) {
                    futures_util::future::join_all(wave.iter().map(|(_, uid, t)| {
                        client(ws.clone(), uid.clone(), t.clone(), Arc::clone(&c))
                    }))
                    .await;
                }
                std::future::pending::<()>().await;
            });
        });
    }
    wait("connections ready", Duration::from_secs(120), || {
        counters.ready.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
            >= a.connections
    });
    let setup = started.elapsed();
    let failed = counters.failed.load(Ordering::Relaxed);
    let rss1 = rss_kib(pid);
    println!(
        "connections: {} ready, {failed} failed, in {:.2} s ({:.0}/s); rcsim RSS {} MiB -> {} MiB ({:.1} KiB per connection)",
        counters.ready.load(Ordering::Relaxed),
        setup.as_secs_f64(),
        a.connections as f64 / setup.as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) as f64 / a.connections as f64
    );

    // Per message in a room of K: __my_messages__ and rooms-changed for all
    // K members, subscriptions-changed for the K-1 who did not send it.
    let expected = (a.messages * (3 * a.room_size - 1)) as u64;
    let (cpu_sim0, cpu_me0) = (cpu_secs(pid), cpu_secs(std::process::id()));
    let t0 = Instant::now();
    control(
        &url,
        "load",
        json!({"rooms": rooms, "count": a.messages, "text": "bench"}),
    );
    wait("events delivered", Duration::from_secs(120), || {
        counters.events.load(Ordering::Relaxed) >= expected
    });
    let dt = t0.elapsed();
    let got = counters.events.load(Ordering::Relaxed);
    println!(
        "events: {got} delivered ({expected} expected) in {:.3} s = {:.0} events/s to {} sockets",
        dt.as_secs_f64(),
        got as f64 / dt.as_secs_f64(),
        a.connections
    );
    let (cpu_sim, cpu_me) = (
        cpu_secs(pid) - cpu_sim0,
        cpu_secs(std::process::id()) - cpu_me0,
    );
    println!(
        "cpu: rcsim {cpu_sim:.2} s ({:.2} s per 100k events), bench clients {cpu_me:.2} s, over {:.2} s on {} cores",
        cpu_sim * 100_000.0 / got.max(1) as f64,
        dt.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if failed > 0 || got != expected {
        std::process::exit(1);
    }
}
