//! `loadgen`: imrelay's benchmark. In one run, for each mode (imrelay, and
//! the two references "direct" and "forwarder"), it starts rcsim (and the
//! relay) as child processes, creates N users in rooms of K, logs them in,
//! connects M clients per user, drives messages through rcsim's fast path
//! (the emit time stamped into each), and measures at the clients:
//! delivered events/s, end-to-end latency, lost and duplicated events; and
//! at the relay: memory per user, CPU per 100k events, session set-up rate.
//!
//! Loopback only; every loop is bounded in count and time.

mod burn;
mod clients;
mod forwarder;
mod http;
mod procs;
mod stalls;

use clap::{Parser, Subcommand, ValueEnum};
use clients::{Kind, Shared, Target};
use hdrhistogram::Histogram;
use procs::{machine_cpu_secs, online_cpus, sibling, wait, Proc};
use serde_json::{json, Value};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "loadgen";
const API_KEY: &str = "loadgen-api-key-0123456789";
const PASSWORD: &str = "loadgen-pw";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// imrelay between rcsim and the clients.
    Imrelay,
    /// Clients on rcsim's DDP themselves: the floor with no relay.
    Direct,
    /// A minimal tokio-tungstenite relay: one extra hop, nothing else.
    Forwarder,
}

/// How imrelay's clients connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// `/ws`.
    Native,
    /// `/signalr` (JSON hub protocol).
    Signalr,
}

#[derive(Parser)]
#[command(about = "imrelay's benchmark (loopback only)")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Small and quick (under a minute): a smoke test that fails only on lost or duplicated events.
    #[arg(long)]
    quick: bool,
    /// Users (N).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Clients per user (M).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Users per room (K): each message reaches K users.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Messages in the full-speed pass.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Messages per second in the latency pass (default: half of the mode's
    /// full speed). A fixed rate compares the modes at the same offered load.
    #[arg(long)]
    rate: Option<f64>,
    /// Client threads in this process.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How imrelay's clients connect.
    #[arg(long, value_enum, default_value = "native")]
    protocol: Protocol,
    /// Logins in flight at once (each takes a DDP round trip or three).
    #[arg(long, default_value_t = 256)]
    login_concurrency: usize,
    /// Which modes, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "imrelay,direct,forwarder"
    )]
    modes: Vec<Mode>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/loadgen.json")]
    json: String,
    /// The rcsim binary (default: next to this one).
    #[arg(long)]
    rcsim: Option<String>,
    /// The imrelay binary (default: next to this one).
    #[arg(long)]
    imrelay: Option<String>,
    /// Write each latency-pass sample to DIR/<mode>.csv (receive µs, latency
    /// µs, client thread), to see when the slow events happen.
    #[arg(long, value_name = "DIR")]
    timeline: Option<String>,
    /// Seconds to measure the machine's own latency floor before the modes
    /// (a thread spinning on each core, counting the gaps when it did not
    /// run); 0 skips it, as --quick does.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    stall_check: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// (internal) run the bare forwarder.
    Forwarder {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
    },
    /// Take CPU beside a run without touching its events (to compare the
    /// direct mode with a relay's CPU but not its hop).
    Burn {
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 100)]
        spin_us: u64,
        #[arg(long, default_value_t = 350)]
        sleep_us: u64,
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
    },
    /// Only measure the machine's latency floor (see --stall-check).
    Stalls {
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
}

fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

fn progress(line: String) {
    eprint!("\r\x1b[2K{line}");
    let _ = std::io::stderr().flush();
}

/// The open-file limit: raised to the hard limit (the daemon side holds two
/// sockets per user, this side M per user).
fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            say(format!("could not raise the open-file limit: {e}"));
            0
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Setup {
    rcsim: Proc,
    relay: Option<Proc>,
    targets: Vec<Target>,
    rooms: Vec<Value>,
    setup_secs: f64,
    logins_per_sec: Option<f64>,
}

fn sim_stats(rcsim: &Proc) -> Value {
    http::ok(
        &rcsim.url,
        "POST",
        "/_sim/stats",
        None,
        &[("X-Sim-Secret", SECRET)],
        Some(&json!({})),
    )
    .unwrap_or(Value::Null)
}

fn setup(mode: Mode, a: &Args) -> Result<Setup, String> {
    let mut cmd = Command::new(sibling("rcsim", &a.rcsim));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--permissive",
        "--control-secret",
        SECRET,
        "--workers",
        "2",
    ])
    .env("RUST_LOG", "warn");
    let rcsim = Proc::start("rcsim", cmd)?;
    let ctl = |op: &str, body: Value| {
        http::ok(
            &rcsim.url,
            "POST",
            &format!("/_sim/{op}"),
            None,
            &[("X-Sim-Secret", SECRET)],
            Some(&body),
        )
    };
    let users = ctl(
        "bulk-users",
        json!({"prefix": "u", "count": a.users, "password": PASSWORD}),
    )?;
    let users: Vec<(String, String, String)> = users["users"]
        .as_array()
        .ok_or("bulk-users answered no list")?
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
            ctl("room", json!({"name": format!("r{i}"), "members": members}))?["rid"].clone(),
        );
    }
    let room_of = |i: usize| i / a.room_size;
    let ws = |url: &str| url.replacen("http://", "ws://", 1);
    let started = Instant::now();
    let (relay, targets, logins_per_sec) = match mode {
        Mode::Direct => {
            let url = format!("{}/websocket", ws(&rcsim.url));
            let t = users.iter().enumerate().map(|(i, (_, uid, token))| Target {
                url: url.clone(),
                kind: Kind::Ddp,
                uid: uid.clone(),
                token: token.clone(),
                room: room_of(i),
            });
            (None, t.collect::<Vec<_>>(), None)
        }
        Mode::Forwarder => {
            let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
            cmd.args([
                "forwarder",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &format!("{}/websocket", ws(&rcsim.url)),
            ]);
            let fwd = Proc::start("forwarder", cmd)?;
            let base = ws(&fwd.url);
            let t = users
                .iter()
                .enumerate()
                .map(|(i, (_, uid, token))| Target {
                    url: format!("{base}/?uid={uid}&token={token}"),
                    kind: Kind::Forwarder,
                    uid: uid.clone(),
                    token: token.clone(),
                    room: room_of(i),
                })
                .collect::<Vec<_>>();
            (Some(fwd), t, None)
        }
        Mode::Imrelay => {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("loadgen-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let cfg = format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\napi_keys = [{{ name = \"loadgen\", key = \"{API_KEY}\" }}]\nmax_connections_per_ip = 100000\n[rocketchat]\nurl = \"{}\"\nadmin_username = \"super\"\nadmin_password = \"123qwe\"\n[users]\npassword = \"default\"\ndefault_password = \"{PASSWORD}\"\n[client]\nqueue_limit = 4096\n",
                rcsim.url
            );
            std::fs::write(dir.join("imrelay.toml"), cfg).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(sibling("imrelay", &a.imrelay));
            cmd.args(["--config", &dir.join("imrelay.toml").display().to_string()])
                .env("RUST_LOG", "warn");
            let url = format!("http://127.0.0.1:{port}");
            let mut relay = Proc::spawn("imrelay", cmd, url.clone())?;
            wait("imrelay ready", Duration::from_secs(30), || {
                http::call(&url, "GET", "/readyz", None, &[], None)
                    .map(|(s, _)| s == 200)
                    .unwrap_or(false)
            })?;
            relay.base_rss = relay.rss_kib();
            // Log everyone in: login -> DDP login -> 6 subscriptions.
            let t0 = Instant::now();
            let names: Vec<String> = users.iter().map(|(u, _, _)| u.clone()).collect();
            let tokens = parallel(&names, a.login_concurrency, |u| {
                http::ok(
                    &url,
                    "POST",
                    &format!("/api/v1/users/{u}/login"),
                    Some(API_KEY),
                    &[],
                    None,
                )
                .map(|v| v["client_token"].as_str().unwrap_or_default().to_string())
            })?;
            wait("every session subscribed", Duration::from_secs(300), || {
                sim_stats(&rcsim)["subscriptions"].as_u64() == Some(6 * a.users as u64)
            })?;
            let secs = t0.elapsed().as_secs_f64();
            let t = tokens
                .into_iter()
                .enumerate()
                .map(|(i, tok)| Target {
                    url: match a.protocol {
                        Protocol::Native => format!("{}/ws?token={tok}", ws(&url)),
                        Protocol::Signalr => format!("{}/signalr?access_token={tok}", ws(&url)),
                    },
                    kind: match a.protocol {
                        Protocol::Native => Kind::Native,
                        Protocol::Signalr => Kind::SignalR,
                    },
                    uid: users[i].1.clone(),
                    token: tok,
                    room: room_of(i),
                })
                .collect::<Vec<_>>();
            (Some(relay), t, Some(a.users as f64 / secs))
        }
    };
    let targets: Vec<Target> = targets
        .into_iter()
        .flat_map(|t| std::iter::repeat_n(t, a.clients))
        .collect();
    Ok(Setup {
        rcsim,
        relay,
        targets,
        rooms,
        setup_secs: started.elapsed().as_secs_f64(),
        logins_per_sec,
    })
}

/// Runs `f` over `items` on `threads` threads; results in order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, String> + Sync,
) -> Result<Vec<R>, String> {
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Result<Vec<R>, String>>()))
            .collect();
        let mut out = vec![];
        for h in handles {
            out.extend(h.join().map_err(|_| "a worker panicked".to_string())??);
        }
        Ok(out)
    })
}

struct Pass {
    posted: u64,
    events: u64,
    msg_events: u64,
    secs: f64,
    relay_cpu: Option<f64>,
    rcsim_cpu: f64,
    /// The machine's busy and stolen CPU seconds over the pass.
    machine: (f64, f64),
    /// The wall time the CPU figures cover: from the post to when they were
    /// read, which a stalled pass's `secs` (to the last progress) is not.
    cpu_window: f64,
}

impl Pass {
    /// CPU seconds over the pass as cores (seconds per second).
    fn cores(&self, cpu_secs: f64) -> f64 {
        cpu_secs / self.cpu_window.max(1e-9)
    }
}

/// Posts `count` messages (at `rate` a second, or as fast as possible) and
/// waits until every client got its copy, or progress stops for 5 s.
fn pass(
    setup: &Setup,
    shared: &Shared,
    a: &Args,
    n: usize,
    count: usize,
    rate: Option<f64>,
    label: &str,
) -> Result<Pass, String> {
    let (ev0, msg0) = (
        shared.events.load(Ordering::Relaxed),
        shared.msg_events.load(Ordering::Relaxed),
    );
    let cpu0 = setup.relay.as_ref().map(Proc::cpu_secs);
    let (sim0, box0) = (setup.rcsim.cpu_secs(), machine_cpu_secs());
    let expected = (count * a.room_size * a.clients) as u64;
    let mut body =
        json!({"rooms": setup.rooms, "count": count, "text": format!("lg{n} {{seq}} {{ts}}")});
    if let Some(r) = rate {
        body["rate"] = json!(r);
    }
    let t0 = Instant::now();
    http::ok(
        &setup.rcsim.url,
        "POST",
        "/_sim/load",
        None,
        &[("X-Sim-Secret", SECRET)],
        Some(&body),
    )?;
    let (mut last, mut last_change, mut done_at) = (0u64, Instant::now(), None);
    let mut tick = Instant::now();
    loop {
        let got = shared.msg_events.load(Ordering::Relaxed) - msg0;
        if got != last {
            last = got;
            last_change = Instant::now();
        }
        if got >= expected {
            done_at = Some(Instant::now());
            break;
        }
        if last_change.elapsed() > Duration::from_secs(5) || t0.elapsed() > Duration::from_secs(600)
        {
            break;
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            let ev = shared.events.load(Ordering::Relaxed) - ev0;
            progress(format!(
                "  {label}: {got}/{expected} messages delivered, {ev} events, {:.0} events/s",
                ev as f64 / t0.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    progress(String::new());
    let end = done_at.unwrap_or(last_change);
    Ok(Pass {
        posted: count as u64,
        events: shared.events.load(Ordering::Relaxed) - ev0,
        msg_events: shared.msg_events.load(Ordering::Relaxed) - msg0,
        secs: end.duration_since(t0).as_secs_f64(),
        relay_cpu: setup
            .relay
            .as_ref()
            .map(|r| r.cpu_secs() - cpu0.unwrap_or(0.0)),
        rcsim_cpu: setup.rcsim.cpu_secs() - sim0,
        machine: {
            let (busy, stolen) = machine_cpu_secs();
            (busy - box0.0, stolen - box0.1)
        },
        cpu_window: t0.elapsed().as_secs_f64(),
    })
}

fn pct(h: &Histogram<u64>) -> Value {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    json!({"p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": h.max() as f64 / 1000.0, "samples": h.len()})
}

/// What the latency pass is called in the progress and summary lines.
fn latency_label(a: &Args) -> &'static str {
    if a.rate.is_some() {
        "fixed rate"
    } else {
        "half rate"
    }
}

/// Measures the machine's latency floor for `secs` on an otherwise idle box,
/// says what it saw, and returns it as JSON with the steal the kernel
/// accounted over the same time (in ticks of 10 ms, so over a few seconds
/// too coarse to say how much of the gaps was the host's).
fn stall_check(secs: f64) -> Value {
    let threshold = Duration::from_millis(1);
    let secs = seconds(secs, 0.1, 600.0);
    say(format!(
        "machine floor: spinning on each CPU for {secs:.1}s (gaps = time a CPU did not run us)"
    ));
    let stolen0 = machine_cpu_secs().1;
    let t0 = Instant::now();
    match stalls::measure(Duration::from_secs_f64(secs), threshold) {
        Ok(r) => {
            let stolen = (machine_cpu_secs().1 - stolen0) / t0.elapsed().as_secs_f64();
            say(format!(
                "  {}; the kernel counted {stolen:.3} cores stolen",
                stalls::describe(&r, threshold)
            ));
            let mut j = stalls::to_json(&r, threshold);
            j["stolen_cores"] = json!(stolen);
            j
        }
        Err(e) => {
            say(format!("  machine floor not measured: {e}"));
            json!({"error": e})
        }
    }
}

/// A seconds argument as something `Duration` takes: clamped to
/// `min..=max`, and `min` if it is not a number.
fn seconds(secs: f64, min: f64, max: f64) -> f64 {
    if secs.is_finite() {
        secs.clamp(min, max)
    } else {
        min
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where a pass's CPU went, in cores: the machine's busy and stolen time,
/// and rcsim's and the relay's shares of it.
fn cpu_line(p: &Pass) -> String {
    let cores = online_cpus();
    format!(
        "machine {:.2} of {cores} cores busy, {:.2} stolen; rcsim {:.2}{}",
        p.cores(p.machine.0),
        p.cores(p.machine.1),
        p.cores(p.rcsim_cpu),
        p.relay_cpu
            .map_or(String::new(), |c| format!(", relay {:.2}", p.cores(c)))
    )
}

fn run_mode(mode: Mode, a: &Args) -> Result<Value, String> {
    let name = format!("{mode:?}").to_lowercase();
    say(format!(
        "== {name}: {} users x {} clients, rooms of {}",
        a.users, a.clients, a.room_size
    ));
    let setup = setup(mode, a)?;
    let shared = Arc::new(Shared::default());
    let total = setup.targets.len();
    let t0 = Instant::now();
    let handles = clients::spawn(
        setup.targets.clone(),
        a.threads,
        setup.rooms.len(),
        Arc::clone(&shared),
        a.timeline.is_some(),
    );
    wait("clients connected", Duration::from_secs(300), || {
        shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= total
    })?;
    let connect_secs = t0.elapsed().as_secs_f64();
    let failed = shared.failed.load(Ordering::Relaxed);
    // Direct and forwarder sessions are set up by their clients: wait until rcsim counts them all.
    if mode != Mode::Imrelay {
        wait("subscriptions", Duration::from_secs(300), || {
            sim_stats(&setup.rcsim)["subscriptions"].as_u64()
                >= Some(
                    6 * a.users as u64
                        * if mode == Mode::Direct {
                            a.clients as u64
                        } else {
                            1
                        },
                )
        })?;
    }
    let setup_rate = setup
        .logins_per_sec
        .unwrap_or(a.users as f64 / t0.elapsed().as_secs_f64());
    let (base, loaded) = setup
        .relay
        .as_ref()
        .map_or((0, 0), |r| (r.base_rss, r.rss_kib()));
    say(format!("  set-up: {setup_rate:.0} sessions/s; clients connected in {connect_secs:.1}s ({failed} failed)"));
    let full = pass(&setup, &shared, a, 1, a.messages, None, "full speed")?;
    let msgs_per_sec = full.posted as f64 / full.secs.max(1e-9);
    let half = if a.quick {
        None
    } else {
        let rate = a.rate.unwrap_or(msgs_per_sec / 2.0);
        let count = ((rate * 10.0) as usize).clamp(100, a.messages);
        Some(pass(
            &setup,
            &shared,
            a,
            2,
            count,
            Some(rate),
            latency_label(a),
        )?)
    };
    *shared.posted.lock().map_err(|_| "poisoned")? =
        [full.posted, half.as_ref().map_or(0, |h| h.posted)];
    shared.done.store(true, Ordering::Relaxed);
    let mut hist = [
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
        Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
    ];
    let (mut lost, mut dup) = ([0u64; 2], [0u64; 2]);
    let mut timeline = String::from("recv_us,latency_us,thread\n");
    for (thread, h) in handles.into_iter().enumerate() {
        let r = h.join().map_err(|_| "a client thread panicked")?;
        for (at, latency) in &r.timeline {
            timeline.push_str(&format!("{at},{latency},{thread}\n"));
        }
        for p in 0..2 {
            hist[p].add(&r.hist[p]).map_err(|e| e.to_string())?;
            lost[p] += r.lost[p];
            dup[p] += r.dup[p];
        }
    }
    if let Some(dir) = &a.timeline {
        let path = std::path::Path::new(dir).join(format!("{name}.csv"));
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&path, timeline))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        say(format!("  timeline: {}", path.display()));
    }
    let per_user_kib = if base > 0 {
        (loaded.saturating_sub(base)) as f64 / a.users as f64
    } else {
        0.0
    };
    let pass_json = |p: &Pass, i: usize| {
        json!({
            "messages": p.posted, "events": p.events, "message_events": p.msg_events, "seconds": p.secs,
            "events_per_sec": p.events as f64 / p.secs.max(1e-9), "messages_per_sec": p.posted as f64 / p.secs.max(1e-9),
            "latency": pct(&hist[i]), "lost": lost[i], "duplicated": dup[i],
            "relay_cpu_secs": p.relay_cpu, "relay_cpu_secs_per_100k_events": p.relay_cpu.map(|c| c * 100_000.0 / p.events.max(1) as f64),
            "rcsim_cpu_secs": p.rcsim_cpu,
            "machine_busy_cores": p.cores(p.machine.0), "machine_stolen_cores": p.cores(p.machine.1),
        })
    };
    let out = json!({
        "mode": name, "clients": total, "clients_failed": failed, "setup_sessions_per_sec": setup_rate,
        "setup_secs": setup.setup_secs, "connect_secs": connect_secs,
        "relay_rss_base_kib": base, "relay_rss_loaded_kib": loaded, "relay_kib_per_user": per_user_kib,
        "full_speed": pass_json(&full, 0),
        "half_rate": half.as_ref().map(|h| pass_json(h, 1)),
    });
    let f = &out["full_speed"];
    say(format!(
        "  full speed: {:.0} events/s ({} msgs in {:.2}s), p50 {} ms p99 {} ms, lost {} dup {}{}",
        f["events_per_sec"].as_f64().unwrap_or(0.0),
        full.posted,
        full.secs,
        f["latency"]["p50_ms"],
        f["latency"]["p99_ms"],
        lost[0],
        dup[0],
        full.relay_cpu.map_or(String::new(), |c| format!(
            ", relay CPU {:.2}s per 100k events",
            c * 100_000.0 / full.events.max(1) as f64
        ))
    ));
    if let Some(h) = &out["half_rate"].as_object() {
        let l = &h["latency"];
        say(format!(
            "  {} ({:.0} msgs/s): p50 {} p90 {} p99 {} p99.9 {} max {} ms, lost {} dup {}",
            latency_label(a),
            h["messages_per_sec"].as_f64().unwrap_or(0.0),
            l["p50_ms"],
            l["p90_ms"],
            l["p99_ms"],
            l["p999_ms"],
            l["max_ms"],
            lost[1],
            dup[1]
        ));
    }
    for (label, p) in [
        ("full speed", Some(&full)),
        (latency_label(a), half.as_ref()),
    ] {
        if let Some(p) = p {
            say(format!("  {label}: {}", cpu_line(p)));
        }
    }
    if base > 0 {
        say(format!(
            "  relay memory: {} MiB -> {} MiB = {per_user_kib:.1} KiB per user",
            base / 1024,
            loaded / 1024
        ));
    }
    Ok(out)
}

fn main() {
    let mut a = Args::parse();
    if let Some(Cmd::Forwarder { listen, upstream }) = &a.cmd {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        if let Err(e) = rt.block_on(forwarder::run(listen, upstream.clone())) {
            eprintln!("forwarder: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(Cmd::Burn {
        threads,
        spin_us,
        sleep_us,
        secs,
    }) = &a.cmd
    {
        let secs = seconds(*secs, 0.0, 3600.0);
        say(format!(
            "burning {threads} thread(s), {spin_us} µs on, {sleep_us} µs off, for {secs:.0}s"
        ));
        let share = burn::run(
            (*threads).clamp(1, 64),
            Duration::from_micros(*spin_us),
            Duration::from_micros(*sleep_us),
            Duration::from_secs_f64(secs),
        );
        say(format!(
            "done: each thread aimed at {:.0} % of a core",
            share * 100.0
        ));
        return;
    }
    if let Some(Cmd::Stalls { secs }) = &a.cmd {
        let floor = stall_check(*secs);
        println!(
            "{}",
            serde_json::to_string_pretty(&floor).unwrap_or_default()
        );
        return;
    }
    if a.quick {
        a.stall_check = 0.0;
        a.users = 60;
        a.clients = 2;
        a.room_size = 10;
        a.messages = 300;
    }
    if a.users % a.room_size != 0 {
        eprintln!("--users must be a multiple of --room-size");
        std::process::exit(2);
    }
    let nofile = raise_nofile();
    let cores = cores();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    say(format!(
        "loadgen: {cores} cores, {}, open-file limit raised to {nofile}",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    ));
    let floor = (a.stall_check > 0.0).then(|| stall_check(a.stall_check));
    let mut results = serde_json::Map::new();
    let mut failed = false;
    for m in a.modes.clone() {
        match run_mode(m, &a) {
            Ok(r) => {
                let bad = r["clients_failed"].as_u64() != Some(0)
                    || ["full_speed", "half_rate"].iter().any(|p| {
                        r[p]["lost"].as_u64().unwrap_or(0)
                            + r[p]["duplicated"].as_u64().unwrap_or(0)
                            > 0
                    });
                failed |= bad;
                results.insert(r["mode"].as_str().unwrap_or("?").to_string(), r);
            }
            Err(e) => {
                say(format!("  {m:?} failed: {e}"));
                failed = true;
            }
        }
    }
    let ratio = |k: &str, path: &[&str]| -> Option<f64> {
        let get = |m: &str| {
            path.iter()
                .fold(results.get(m), |v, p| v.and_then(|v| v.get(*p)))
                .and_then(Value::as_f64)
        };
        Some(get("imrelay")? / get(k)?)
    };
    let ratios = json!({
        "throughput_vs_forwarder": ratio("forwarder", &["full_speed", "events_per_sec"]),
        "throughput_vs_direct": ratio("direct", &["full_speed", "events_per_sec"]),
        "p99_half_rate_vs_forwarder": ratio("forwarder", &["half_rate", "latency", "p99_ms"]),
        "p99_half_rate_vs_direct": ratio("direct", &["half_rate", "latency", "p99_ms"]),
        "memory_per_user_vs_forwarder": ratio("forwarder", &["relay_kib_per_user"]),
    });
    say(format!("ratios (imrelay / reference): {ratios}"));
    let report = json!({
        "machine": {"cores": cores, "online_cpus": online_cpus(), "memory": mem, "nofile": nofile, "stalls": floor},
        "config": {"users": a.users, "clients_per_user": a.clients, "room_size": a.room_size, "messages": a.messages, "client_threads": a.threads, "login_concurrency": a.login_concurrency, "protocol": format!("{:?}", a.protocol).to_lowercase(), "quick": a.quick},
        "modes": results, "ratios": ratios,
    });
    if let Some(dir) = std::path::Path::new(&a.json).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(
        &a.json,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    ) {
        Ok(()) => say(format!("results: {}", a.json)),
        Err(e) => say(format!("cannot write {}: {e}", a.json)),
    }
    if failed {
        say("FAILED: events were lost or duplicated, or clients failed");
        std::process::exit(1);
    }
}
