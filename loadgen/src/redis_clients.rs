//! `loadgen redis`: the two Rust Redis clients a cluster could be built on,
//! `redis` (its connection manager) and `fred`, measured at what the
//! cluster asks of a client rather than at GET/SET. Per batch of events one
//! round trip: a script that checks the owner's fencing generation, appends
//! the batch to the user's stream (bounded) and publishes it on one of 16
//! shard channels. A subscriber on those channels, on its own actix
//! runtime, gets every batch. Then Redis is killed and restarted under a
//! paced load: how long each client takes to answer again, and whether its
//! subscriber comes back without being told.

use crate::procs::{cpu_secs, wait, Proc};
use crate::report::say;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Fence, append, publish: what an owner does with one batch.
const APPEND: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'b', ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
";
const SHARDS: usize = 16;
const USERS_PER_TASK: usize = 8;
const GENERATION: &str = "7";
/// Every call's deadline, as the engine would give it.
const DEADLINE: Duration = Duration::from_secs(2);

use crate::cli::RedisClient as Kind;

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Fred => "fred",
        }
    }
}

/// One multiplexed connection per client, shared by every task, as a
/// node's shards would share it.
#[derive(Clone)]
enum Conn {
    Redis(redis::aio::ConnectionManager, Arc<redis::Script>),
    Fred(fred::clients::Client, Arc<fred::types::scripts::Script>),
}

fn keys(user: usize) -> [String; 3] {
    [
        format!("bench:lease:{user}"),
        format!("bench:stream:{user}"),
        format!("bench:shard:{}", user % SHARDS),
    ]
}

fn channels() -> Vec<String> {
    (0..SHARDS).map(|s| format!("bench:shard:{s}")).collect()
}

fn redis_url(port: u16, kind: Kind) -> String {
    match kind {
        // Pushes (the subscriber's messages) need RESP3 on the manager.
        Kind::Redis => format!("redis://127.0.0.1:{port}/?protocol=resp3"),
        Kind::Fred => format!("redis://127.0.0.1:{port}"),
    }
}

fn fred_builder(url: &str) -> Result<fred::types::Builder, String> {
    use fred::prelude::*;
    let config = Config::from_url(url).map_err(|e| e.to_string())?;
    let mut b = Builder::from_config(config);
    b.with_connection_config(|c| {
        c.connection_timeout = DEADLINE;
        c.internal_command_timeout = DEADLINE;
    })
    .with_performance_config(|p| {
        p.default_command_timeout = DEADLINE;
        // The default (32) drops messages a slow reader has not taken yet.
        p.broadcast_channel_capacity = 65_536;
    })
    .set_policy(ReconnectPolicy::new_exponential(0, 50, 1_000, 2));
    Ok(b)
}

fn redis_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEADLINE))
        .set_response_timeout(Some(DEADLINE))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
}

impl Conn {
    async fn open(kind: Kind, port: u16) -> Result<Conn, String> {
        let url = redis_url(port, kind);
        match kind {
            Kind::Redis => {
                let client = redis::Client::open(url).map_err(|e| e.to_string())?;
                let m = redis::aio::ConnectionManager::new_with_config(client, redis_config())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Conn::Redis(m, Arc::new(redis::Script::new(APPEND))))
            }
            Kind::Fred => {
                use fred::prelude::*;
                let c = fred_builder(&url)?.build().map_err(|e| e.to_string())?;
                c.init().await.map_err(|e| e.to_string())?;
                let s = fred::types::scripts::Script::from_lua(APPEND);
                Ok(Conn::Fred(c, Arc::new(s)))
            }
        }
    }

    /// The batch appended and published: true, or fenced off: false.
    async fn append(&mut self, user: usize, batch: &[u8]) -> Result<bool, String> {
        let k = keys(user);
        let answer: i64 = match self {
            Conn::Redis(m, script) => {
                let mut inv = script.prepare_invoke();
                inv.key(&k[0])
                    .key(&k[1])
                    .key(&k[2])
                    .arg(GENERATION)
                    .arg(1024)
                    .arg(batch);
                let call = inv.invoke_async(m);
                tokio::time::timeout(DEADLINE, call)
                    .await
                    .map_err(|_| "deadline".to_string())?
                    .map_err(|e| e.to_string())?
            }
            Conn::Fred(c, script) => {
                let args: Vec<fred::types::Value> = vec![
                    GENERATION.into(),
                    1024.into(),
                    fred::types::Value::Bytes(bytes::Bytes::copy_from_slice(batch)),
                ];
                let call = script.evalsha_with_reload(c, k.to_vec(), args);
                tokio::time::timeout(DEADLINE, call)
                    .await
                    .map_err(|_| "deadline".to_string())?
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(answer == 1)
    }
}

fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A batch of `size` bytes that starts with the time it was made.
fn batch(size: usize) -> Vec<u8> {
    let mut b = format!("{:020}", now_ns()).into_bytes();
    b.resize(size.max(20), b'x');
    b
}

fn sent_at(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b.get(..20)?).ok()?.parse().ok()
}

/// What the subscriber saw.
#[derive(Default)]
struct Heard {
    count: AtomicU64,
    after: After,
    latency: Mutex<Option<Histogram<u64>>>,
}

/// When something first happened after a mark (Redis back), 0 until then.
#[derive(Default)]
struct After {
    mark: AtomicU64,
    first: AtomicU64,
}

impl After {
    fn happened(&self, now: u64) {
        let mark = self.mark.load(Ordering::Relaxed);
        if mark != 0 && now > mark {
            let _ = self
                .first
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Milliseconds from the mark to the first time, if it came.
    fn ms(&self) -> Option<f64> {
        let (mark, first) = (
            self.mark.load(Ordering::Relaxed),
            self.first.load(Ordering::Relaxed),
        );
        (first > mark && mark != 0).then(|| (first - mark) as f64 / 1e6)
    }
}

impl Heard {
    fn heard(&self, payload: &[u8]) {
        let now = now_ns();
        self.count.fetch_add(1, Ordering::Relaxed);
        self.after.happened(now);
        if let (Some(at), Ok(mut h)) = (sent_at(payload), self.latency.lock()) {
            let h = h.get_or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap());
            let _ = h.record((now.saturating_sub(at) / 1_000).max(1));
        }
    }
}

/// Subscribes to every shard channel and reports each message until `stop`.
async fn listen(
    kind: Kind,
    port: u16,
    heard: Arc<Heard>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let channels = channels();
    match kind {
        Kind::Redis => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let client = redis::Client::open(redis_url(port, kind)).map_err(|e| e.to_string())?;
            let config = redis_config()
                .set_push_sender(tx)
                .set_automatic_resubscription();
            let mut m = redis::aio::ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|e| e.to_string())?;
            m.subscribe(&channels).await.map_err(|e| e.to_string())?;
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(push)) =
                    tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
                else {
                    continue;
                };
                if push.kind == redis::PushKind::Message {
                    if let Some(redis::Value::BulkString(b)) = push.data.get(1) {
                        heard.heard(b);
                    }
                }
            }
        }
        Kind::Fred => {
            use fred::prelude::*;
            let sub = fred_builder(&redis_url(port, kind))?
                .build_subscriber_client()
                .map_err(|e| e.to_string())?;
            sub.init().await.map_err(|e| e.to_string())?;
            let _resubscribe = sub.manage_subscriptions();
            let mut rx = sub.message_rx();
            sub.subscribe(channels).await.map_err(|e| e.to_string())?;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                    Ok(Ok(m)) => {
                        if let Some(b) = m.value.as_bytes() {
                            heard.heard(b);
                        }
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        say(format!("  fred subscriber lagged: {n} messages dropped"));
                    }
                    Ok(Err(_)) => return Err("fred's message channel closed".into()),
                    Err(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// What the publishing tasks saw.
struct Sent {
    ok: AtomicU64,
    fenced: AtomicU64,
    errors: AtomicU64,
    /// The first success after Redis came back.
    ok_after: After,
    /// The first failure after Redis came back.
    failed_after: After,
    latency: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Sent {
    fn failed(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.failed_after.happened(now_ns());
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }

    fn new() -> Self {
        Sent {
            ok: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ok_after: After::default(),
            failed_after: After::default(),
            latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
            first_error: Mutex::new(None),
        }
    }
}

/// `tasks` tasks, each appending for its users in turn until `stop`, at
/// most `rate` batches a second in all (0: as fast as answers come).
async fn publish(
    kind: Kind,
    port: u16,
    tasks: usize,
    size: usize,
    rate: f64,
    sent: Arc<Sent>,
    stop: Arc<AtomicBool>,
) {
    // Opened here: a connection's driver runs on the runtime that opened it.
    let conn = match Conn::open(kind, port).await {
        Ok(c) => c,
        Err(e) => return sent.failed(e),
    };
    let mut all = Vec::new();
    for t in 0..tasks {
        let (mut conn, sent, stop) = (conn.clone(), sent.clone(), stop.clone());
        all.push(actix_rt::spawn(async move {
            let pause = (rate > 0.0).then(|| Duration::from_secs_f64(tasks as f64 / rate));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let user = t * USERS_PER_TASK + n % USERS_PER_TASK;
                n += 1;
                let start = Instant::now();
                match conn.append(user, &batch(size)).await {
                    Ok(true) => {
                        sent.ok.fetch_add(1, Ordering::Relaxed);
                        sent.ok_after.happened(now_ns());
                        if let Ok(mut h) = sent.latency.lock() {
                            let _ = h.record((start.elapsed().as_micros() as u64).max(1));
                        }
                    }
                    Ok(false) => {
                        sent.fenced.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        sent.failed(e);
                        // A refused connection answers at once: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                if let Some(p) = pause {
                    tokio::time::sleep(p.saturating_sub(start.elapsed())).await;
                }
            }
        }));
    }
    for t in all {
        let _ = t.await;
    }
}

fn start_server(bin: &str, port: u16) -> Result<Proc, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
    let p = Proc::spawn("redis-server", cmd, format!("redis://127.0.0.1:{port}"))?;
    wait("redis-server listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(p)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn quantiles(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({"p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0})
}

/// A runtime on its own thread running `f`, as an actix arbiter would.
fn on_runtime<F, Fut>(f: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    std::thread::spawn(move || actix_rt::System::new().block_on(f()))
}

/// What each client is put through.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    /// Seconds at full speed.
    pub(crate) secs: f64,
    /// Concurrent publishing tasks.
    pub(crate) tasks: usize,
    /// Bytes per batch.
    pub(crate) size: usize,
    /// Batches a second while Redis is restarted.
    pub(crate) rate: f64,
}

/// The clients, one after the other, against one fresh redis-server each.
pub(crate) fn run(kinds: &[Kind], bin: &str, load: &Load) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for &kind in kinds {
        out.insert(kind.name().into(), measure(kind, bin, load)?);
    }
    Ok(Value::Object(out))
}

/// A part of the run on a runtime and thread of its own, until stopped.
struct Side {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Side {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// A subscriber on every shard channel, once the server counts it.
fn subscriber(kind: Kind, port: u16) -> Result<(Arc<Heard>, Side), String> {
    let heard = Arc::new(Heard::default());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (h, s) = (heard.clone(), stop.clone());
        on_runtime(move || async move {
            if let Err(e) = listen(kind, port, h, s).await {
                say(format!("  subscriber: {e}"));
            }
        })
    };
    wait("the subscriber", Duration::from_secs(10), || {
        subscribed(port) == SHARDS
    })?;
    Ok((heard, Side { stop, thread }))
}

/// The publishing tasks, at `rate` batches a second (0: full speed).
fn publishers(kind: Kind, port: u16, load: &Load, rate: f64) -> (Arc<Sent>, Side) {
    let (tasks, size) = (load.tasks, load.size);
    let sent = Arc::new(Sent::new());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (s, st) = (sent.clone(), stop.clone());
        on_runtime(move || publish(kind, port, tasks, size, rate, s, st))
    };
    (sent, Side { stop, thread })
}

fn measure(kind: Kind, bin: &str, load: &Load) -> Result<Value, String> {
    let Load {
        secs,
        tasks,
        size,
        rate,
    } = *load;
    let port = free_port()?;
    let mut server = start_server(bin, port)?;
    let users = tasks * USERS_PER_TASK;
    lease(port, users);
    say(format!(
        "== {}: {tasks} tasks, {size}-byte batches",
        kind.name()
    ));

    // Full speed.
    let (heard, sub) = subscriber(kind, port)?;
    let (me0, rs0, t0) = (
        cpu_secs(std::process::id()),
        server.cpu_secs(),
        Instant::now(),
    );
    let (sent, pubs) = publishers(kind, port, load, 0.0);
    std::thread::sleep(Duration::from_secs_f64(secs));
    pubs.stop();
    let elapsed = t0.elapsed().as_secs_f64();
    let (me, rs) = (cpu_secs(std::process::id()) - me0, server.cpu_secs() - rs0);
    let ok = sent.ok.load(Ordering::Relaxed);
    wait(
        "the subscriber to catch up",
        Duration::from_secs(10),
        || heard.count.load(Ordering::Relaxed) >= ok,
    )
    .ok();
    sub.stop();
    let heard_n = heard.count.load(Ordering::Relaxed);
    let full = json!({
        "batches_per_sec": ok as f64 / elapsed,
        "round_trip": quantiles(&*sent.latency.lock().map_err(|_| "poisoned")?),
        "delivery": heard.latency.lock().map_err(|_| "poisoned")?.as_ref().map(quantiles),
        "published": ok,
        "heard": heard_n,
        "errors": sent.errors.load(Ordering::Relaxed),
        "first_error": sent.first_error.lock().map_err(|_| "poisoned")?.clone(),
        "client_cpu_us_per_batch": me * 1e6 / ok.max(1) as f64,
        "redis_cpu_us_per_batch": rs * 1e6 / ok.max(1) as f64,
    });
    say(format!("  full speed: {full}"));

    // A restart under a paced load.
    let (heard, sub) = subscriber(kind, port)?;
    let (sent, pubs) = publishers(kind, port, load, rate);
    std::thread::sleep(Duration::from_secs(2));
    drop(server);
    let down = Duration::from_secs(1);
    std::thread::sleep(down);
    server = start_server(bin, port)?;
    let back = now_ns();
    for a in [&sent.ok_after, &sent.failed_after, &heard.after] {
        a.mark.store(back, Ordering::Relaxed);
    }
    lease(port, users);
    let answered = wait(
        "the publishers to succeed again",
        Duration::from_secs(15),
        || sent.ok_after.ms().is_some(),
    );
    let resubscribed = wait(
        "the subscriber to hear again",
        Duration::from_secs(15),
        || heard.after.ms().is_some(),
    );
    pubs.stop();
    let published = sent.ok.load(Ordering::Relaxed);
    // What pub/sub lost while Redis was away (at most once): counted, not failed.
    wait("the subscriber to catch up", Duration::from_secs(5), || {
        heard.count.load(Ordering::Relaxed) >= published
    })
    .ok();
    sub.stop();
    let restart = json!({
        "rate": rate,
        "redis_down_ms": down.as_millis() as u64,
        "errors": sent.errors.load(Ordering::Relaxed),
        "first_error": sent.first_error.lock().map_err(|_| "poisoned")?.clone(),
        "fenced_before_leases_restored": sent.fenced.load(Ordering::Relaxed),
        "first_success_after_restart_ms": sent.ok_after.ms(),
        "failures_after_restart_began": sent.failed_after.ms().is_some(),
        "subscriber_heard_after_restart_ms": heard.after.ms(),
        "published": published,
        "heard": heard.count.load(Ordering::Relaxed),
        "round_trip": quantiles(&*sent.latency.lock().map_err(|_| "poisoned")?),
    });
    say(format!("  restart: {restart}"));
    drop(server);
    // A batch published and not heard, or a client that did not come back,
    // is what would lose a user's events: that fails the run.
    if heard_n < ok || answered.is_err() || resubscribed.is_err() {
        return Err(format!(
            "{}: {heard_n} of {ok} batches heard; answering again: {}; subscriber back: {}",
            kind.name(),
            answered.is_ok(),
            resubscribed.is_ok()
        ));
    }
    Ok(json!({"full_speed": full, "restart": restart}))
}

/// Commands over a plain socket, so neither client under test is involved:
/// the reply's integers.
fn raw(port: u16, commands: &str) -> Vec<i64> {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return vec![];
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("{commands}QUIT\r\n").as_bytes())
        .is_err()
    {
        return vec![];
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .lines()
        .filter_map(|l| l.strip_prefix(':')?.parse().ok())
        .collect()
}

/// The leases the script checks (lost with Redis's data on a restart).
fn lease(port: u16, users: usize) {
    let sets: String = (0..users)
        .map(|u| format!("SET {} {GENERATION}\r\n", keys(u)[0]))
        .collect();
    raw(port, &sets);
}

/// Shard channels with a subscriber (PUBSUB NUMSUB).
fn subscribed(port: u16) -> usize {
    raw(port, &format!("PUBSUB NUMSUB {}\r\n", channels().join(" ")))
        .iter()
        .filter(|n| **n > 0)
        .count()
}
