//! What a run prints and records: progress lines, CPU, the machine's floor.

use crate::*;

pub(crate) fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

pub(crate) fn progress(line: String) {
    eprint!("\r\x1b[2K{line}");
    let _ = std::io::stderr().flush();
}

/// Measures the machine's latency floor for `secs` on an otherwise idle box,
/// says what it saw, and returns it as JSON with the steal the kernel
/// accounted over the same time (in ticks of 10 ms, so over a few seconds
/// too coarse to say how much of the gaps was the host's).
pub(crate) fn stall_check(secs: f64) -> Value {
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
pub(crate) fn seconds(secs: f64, min: f64, max: f64) -> f64 {
    if secs.is_finite() {
        secs.clamp(min, max)
    } else {
        min
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where a pass's CPU went, in cores: the machine's busy and stolen time,
/// and rcsim's and the relay's shares of it.
pub(crate) fn cpu_line(p: &Pass) -> String {
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
