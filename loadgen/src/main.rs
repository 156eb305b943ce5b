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
mod chaos;
mod cli;
mod clients;
mod forwarder;
mod http;
mod pass;
mod procs;
mod redis_clients;
mod report;
mod setup;
mod stalls;

use clap::{Parser, Subcommand, ValueEnum};
use cli::*;
use clients::{Kind, Shared, Target};
use hdrhistogram::Histogram;
use pass::*;
use procs::{machine_cpu_secs, online_cpus, sibling, wait, Proc};
use report::*;
use serde_json::{json, Value};
use setup::*;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run_mode(mode: Mode, a: &Args) -> Result<Value, String> {
    let name = format!("{mode:?}").to_lowercase();
    say(format!(
        "== {name}: {} users x {} clients, rooms of {}",
        a.users, a.clients, a.room_size
    ));
    let setup = setup(mode, a)?;
    let shared = Arc::new(Shared {
        drops: a.chaos.map(|_| tokio::sync::watch::channel(0).0),
        ..Shared::default()
    });
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
    if let Some(secs) = a.chaos {
        let mut out = chaos::run(&setup, &shared, a, secs, handles)?;
        out["mode"] = json!(name);
        out["clients"] = json!(total);
        out["clients_failed"] = json!(failed);
        return Ok(out);
    }
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
    // After the passes the relay also holds what it keeps of the events
    // (each user's history).
    let after = setup.relay.as_ref().map_or(0, |r| r.rss_kib());
    *shared.posted.lock().map_err(|_| "poisoned")? =
        [full.posted, half.as_ref().map_or(0, |h| h.posted)];
    shared.done.store(true, Ordering::Relaxed);
    let joined = join_clients(handles)?;
    let (hist, lost, dup, timeline) = (joined.hist, joined.lost, joined.dup, joined.timeline);
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
        "relay_rss_after_kib": after,
        "relay_kib_per_user_after": if base > 0 { after.saturating_sub(base) as f64 / a.users as f64 } else { 0.0 },
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
            "  relay memory: {} MiB -> {} MiB = {per_user_kib:.1} KiB per user; after the passes {} MiB = {:.1} KiB per user",
            base / 1024,
            loaded / 1024,
            after / 1024,
            after.saturating_sub(base) as f64 / a.users as f64
        ));
    }
    Ok(out)
}

/// The longest latency the histograms hold, µs: an hour (a backfill paced
/// to Rocket.Chat's limiter takes minutes).
pub(crate) const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What every client thread counted, together.
pub(crate) struct Joined {
    pub(crate) hist: [Histogram<u64>; 2],
    pub(crate) recovery: Histogram<u64>,
    pub(crate) lost: [u64; 2],
    pub(crate) dup: [u64; 2],
    /// `recv_us,latency_us,thread` lines.
    pub(crate) timeline: String,
}

/// Waits for the client threads (after `done`) and adds up what they counted.
pub(crate) fn join_clients(
    handles: Vec<std::thread::JoinHandle<clients::ThreadResult>>,
) -> Result<Joined, String> {
    let h = || Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| e.to_string());
    let mut j = Joined {
        hist: [h()?, h()?],
        recovery: h()?,
        lost: [0; 2],
        dup: [0; 2],
        timeline: String::from("recv_us,latency_us,thread\n"),
    };
    for (thread, handle) in handles.into_iter().enumerate() {
        let r = handle.join().map_err(|_| "a client thread panicked")?;
        for (at, latency) in &r.timeline {
            j.timeline.push_str(&format!("{at},{latency},{thread}\n"));
        }
        for p in 0..2 {
            j.hist[p].add(&r.hist[p]).map_err(|e| e.to_string())?;
            j.lost[p] += r.lost[p];
            j.dup[p] += r.dup[p];
        }
        j.recovery.add(&r.recovery).map_err(|e| e.to_string())?;
    }
    Ok(j)
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
    if let Some(Cmd::Redis {
        secs,
        tasks,
        size,
        rate,
        server,
        clients,
    }) = &a.cmd
    {
        let secs = seconds(*secs, 1.0, 600.0);
        let load = redis_clients::Load {
            secs,
            tasks: (*tasks).clamp(1, 4096),
            size: (*size).clamp(20, 1 << 20),
            rate: rate.clamp(1.0, 1e6),
        };
        match redis_clients::run(clients, server, &load) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            Err(e) => {
                eprintln!("loadgen redis: {e}");
                std::process::exit(1);
            }
        }
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
