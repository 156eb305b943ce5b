//! One pass of messages: posting at a rate, receiving, counting what was lost
//! or duplicated, latency histograms.

use crate::*;

pub(crate) struct Pass {
    pub(crate) posted: u64,
    pub(crate) events: u64,
    pub(crate) msg_events: u64,
    pub(crate) secs: f64,
    pub(crate) relay_cpu: Option<f64>,
    pub(crate) rcsim_cpu: f64,
    /// The machine's busy and stolen CPU seconds over the pass.
    pub(crate) machine: (f64, f64),
    /// The wall time the CPU figures cover: from the post to when they were
    /// read, which a stalled pass's `secs` (to the last progress) is not.
    pub(crate) cpu_window: f64,
}

impl Pass {
    /// CPU seconds over the pass as cores (seconds per second).
    pub(crate) fn cores(&self, cpu_secs: f64) -> f64 {
        cpu_secs / self.cpu_window.max(1e-9)
    }
}

/// Posts `count` messages (at `rate` a second, or as fast as possible) and
/// waits until every client got its copy, or progress stops for 5 s (30 s
/// in chaos).
pub(crate) fn pass(
    setup: &Setup,
    shared: &Shared,
    a: &Args,
    n: usize,
    count: usize,
    rate: Option<f64>,
    label: &str,
) -> Result<Pass, String> {
    // Chaos waits out reconnects and backfills before it calls an event lost.
    let stall = Duration::from_secs(if a.chaos.is_some() { 30 } else { 5 });
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
        // Rocket.Chat's limiter paces a backfill at 10 users a minute.
        let cap = Duration::from_secs(if a.rc_limiter { 4 * 3600 } else { 600 });
        if last_change.elapsed() > stall || t0.elapsed() > cap {
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

pub(crate) fn pct(h: &Histogram<u64>) -> Value {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    json!({"p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": h.max() as f64 / 1000.0, "samples": h.len()})
}

/// What the latency pass is called in the progress and summary lines.
pub(crate) fn latency_label(a: &Args) -> &'static str {
    if a.rate.is_some() {
        "fixed rate"
    } else {
        "half rate"
    }
}
