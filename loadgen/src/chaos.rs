//! The chaos pass: messages at a fixed rate while faults come every few
//! seconds, through the paths imrelay has to lose nothing on (a client's
//! drop and its `since` resume; a session's DDP socket dropped, or refused
//! a while, and its backfill). Counts, per client, what was lost,
//! duplicated or out of order, and how long clients took to come back.

use crate::*;
use std::sync::atomic::AtomicBool;

fn fault(setup: &Setup, shared: &Shared, f: Fault) -> Result<(), String> {
    let ctl = |op: &str, body: Value| {
        http::ok(
            &setup.rcsim.url,
            "POST",
            &format!("/_sim/{op}"),
            None,
            &[("X-Sim-Secret", SECRET)],
            Some(&body),
        )
        .map(drop)
    };
    match f {
        Fault::ClientDrop => {
            if let Some(d) = &shared.drops {
                d.send_modify(|g| *g += 1);
            }
            Ok(())
        }
        Fault::DdpDrop => ctl("drop", json!({"abrupt": true})),
        Fault::DdpRefused => {
            ctl("refuse", json!({"ms": 2000}))?;
            ctl("drop", json!({"abrupt": true}))
        }
    }
}

/// The DDP methods imrelay's backfill asks first.
const BACKFILL_METHODS: &[&str] = &["subscriptions/get", "rooms/get", "messages/get"];

pub(crate) fn run(
    setup: &Setup,
    shared: &Shared,
    a: &Args,
    secs: f64,
    handles: Vec<std::thread::JoinHandle<clients::ThreadResult>>,
) -> Result<Value, String> {
    let rate = a.rate.unwrap_or(200.0);
    let count = ((rate * secs) as usize).max(1);
    let every = Duration::from_secs_f64(seconds(a.fault_every, 0.5, 600.0));
    if a.rc_limiter {
        let removed: &[&str] = if a.rc_without_methods {
            BACKFILL_METHODS
        } else {
            &[]
        };
        // On only now: the set-up's logins are not what is measured.
        http::ok(
            &setup.rcsim.url,
            "POST",
            "/_sim/settings",
            None,
            &[("X-Sim-Secret", SECRET)],
            Some(&json!({
                "rest_rate_limiter": true,
                "ddp_rate_limiter": true,
                "removed_methods": removed,
            })),
        )?;
    }
    let stop = AtomicBool::new(false);
    let (p, injected) = std::thread::scope(|s| {
        let faults = s.spawn(|| {
            let mut n = 0;
            let mut next = Instant::now() + every;
            let end = Instant::now() + Duration::from_secs_f64(secs);
            // Faults while messages are posted; then recovery is waited out.
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                if Instant::now() >= next && !a.faults.is_empty() {
                    let f = a.faults[n % a.faults.len()];
                    if let Err(e) = fault(setup, shared, f) {
                        say(format!("  fault {f:?}: {e}"));
                    }
                    n += 1;
                    next += every;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        });
        let p = pass(setup, shared, a, 1, count, Some(rate), "chaos");
        stop.store(true, Ordering::Relaxed);
        (p, faults.join().unwrap_or(0))
    });
    let p = p?;
    *shared.posted.lock().map_err(|_| "poisoned")? = [p.posted, 0];
    shared.done.store(true, Ordering::Relaxed);
    let j = join_clients(handles)?;
    let (recovered, unrecovered, reloads) = (
        shared.recovered.load(Ordering::Relaxed),
        shared.unrecovered.load(Ordering::Relaxed),
        shared.reloads.load(Ordering::Relaxed),
    );
    let out = json!({
        "chaos": {
            "seconds": secs, "rate": rate, "faults": injected, "fault_every_secs": every.as_secs_f64(),
            "messages": p.posted, "message_events": p.msg_events, "events": p.events,
            "seconds_to_last_delivery": p.secs,
            "lost": j.lost[0], "duplicated_or_reordered": j.dup[0],
            "clients_recovered": recovered, "clients_not_recovered": unrecovered, "reloads": reloads,
            "recovery": pct(&j.recovery), "latency": pct(&j.hist[0]),
        },
        // Read by the pass/fail check with the other passes.
        "full_speed": {"lost": j.lost[0] + unrecovered + reloads, "duplicated": j.dup[0]},
    });
    let c = &out["chaos"];
    say(format!(
        "  chaos: {} messages at {rate:.0}/s, {injected} faults, the last delivered after {:.1} s; lost {} dup/reordered {}; {recovered} client resumes ({unrecovered} not recovered), {reloads} reloads; recovery p50 {} p99 {} max {} ms; latency p99 {} max {} ms",
        p.posted, p.secs, j.lost[0], j.dup[0],
        c["recovery"]["p50_ms"], c["recovery"]["p99_ms"], c["recovery"]["max_ms"],
        c["latency"]["p99_ms"], c["latency"]["max_ms"],
    ));
    Ok(out)
}
