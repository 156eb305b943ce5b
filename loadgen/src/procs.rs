//! Child processes (rcsim, imrelay, the bare forwarder) and what /proc says
//! about them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
    /// Resident memory once ready, before load (KiB).
    pub base_rss: u64,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `cmd` and reads stdout until a line containing `http://`; the
    /// first `http://…` word of it is the child's URL.
    pub fn start(name: &'static str, mut cmd: Command) -> Result<Proc, String> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.to_string());
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| format!("{name} did not print its URL"))?;
        let mut p = Proc {
            child,
            url,
            base_rss: 0,
        };
        p.base_rss = p.rss_kib();
        Ok(p)
    }

    /// Starts `cmd` whose URL is known in advance; its log goes to the file
    /// `$LOADGEN_RELAY_LOG` if set.
    pub fn spawn(name: &'static str, mut cmd: Command, url: String) -> Result<Proc, String> {
        let log = match std::env::var_os("LOADGEN_RELAY_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path).map_err(|e| e.to_string())?),
            None => Stdio::null(),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            child,
            url,
            base_rss: 0,
        })
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// User + system CPU seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.child.id())
    }
}

/// User + system CPU seconds of a process (fields 14 and 15 of /proc/pid/stat).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The machine's CPU seconds from /proc/stat's `cpu` line, summed over
/// cores, as (busy, stolen): busy is what this box ran (user, nice, system,
/// irq, softirq), stolen is time the hypervisor gave a runnable vCPU to
/// someone else. Over a pass, the first says how much of the box the load,
/// the simulator and the relay took between them; the second, how noisy the
/// neighbours were.
pub fn machine_cpu_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let t: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        // Unparsable as 0, not dropped: the fields are read by position.
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| t.get(i).copied().unwrap_or(0.0) / 100.0;
    // user nice system idle iowait irq softirq steal (guest is inside user).
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}

/// The CPUs /proc/stat's `cpu` line sums over (every online one, whatever
/// this process may run on).
pub fn online_cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
        .max(1)
}

/// A binary next to this one (target/<profile>/), or the given path.
pub fn sibling(name: &str, given: &Option<String>) -> String {
    given.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.join(name)))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| name.to_string())
    })
}

/// Polls `cond` every 10 ms until it holds, at most `timeout`.
pub fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
