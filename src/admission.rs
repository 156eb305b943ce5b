//! Which TCP connections the listener takes: at most so many open in all
//! and from one IP address, and never so many that imrelay's own sockets to
//! Rocket.Chat (a DDP socket per session, REST) run out of descriptors.
//!
//! Why: a connection costs a descriptor and about 10 KiB before it sends a
//! byte, and needs no authentication to be opened; 20,000 idle ones used to
//! reach the descriptor limit, after which nothing (not even a session's
//! reconnect to Rocket.Chat) could open a socket.

use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Descriptors never given to inbound connections: log files, the listener,
/// REST connection pools, a margin.
const RESERVED_FDS: u64 = 1024;
/// At most one warning per this long about refused connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` (or the descriptor limit) reached.
    Total,
    /// `server.max_connections_per_ip` reached for the peer's address.
    PerIp,
}

/// The counts behind the admission decision.
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    last_warn: parking_lot::Mutex<Option<Instant>>,
}

/// An admitted connection; dropping it frees its place.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        if let dashmap::Entry::Occupied(mut e) = self.admission.per_ip.entry(self.ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// The descriptor limit, raised to its hard limit first (systemd's unit
/// sets both; a shell's soft limit is often far lower); the soft limit as it
/// is if raising fails.
pub fn descriptor_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
        .ok()
        .or_else(|| rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft))
}

/// The bucket a peer's connections count in: its IPv4 address, or the /64
/// an IPv6 host controls whole (an IPv4-mapped address counts as IPv4).
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Admission {
    /// Bounds of `max_total` and `max_per_ip`, the total lowered to half of
    /// what `fds` leaves after the reserve: each client's user holds a DDP
    /// socket of its own.
    pub fn new(max_total: usize, max_per_ip: usize, fds: Option<u64>) -> Admission {
        let fd_bound = fds.map_or(usize::MAX, |n| {
            (n.saturating_sub(RESERVED_FDS) / 2).max(1) as usize
        });
        Admission {
            max_total: max_total.min(fd_bound),
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            last_warn: parking_lot::Mutex::new(None),
        }
    }

    /// The total bound in force.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused so far, by reason.
    pub fn refused(&self, why: Refusal) -> u64 {
        match why {
            Refusal::Total => self.refused_total.load(Ordering::Relaxed),
            Refusal::PerIp => self.refused_per_ip.load(Ordering::Relaxed),
        }
    }

    /// Takes a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let ip = bucket(ip);
        let taken = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(self.refuse(Refusal::Total, ip));
        }
        {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(n);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(self.refuse(Refusal::PerIp, ip));
            }
            *n += 1;
        }
        Ok(Admitted {
            admission: Arc::clone(self),
            ip,
        })
    }

    fn refuse(&self, why: Refusal, ip: IpAddr) -> Refusal {
        let counter = match why {
            Refusal::Total => &self.refused_total,
            Refusal::PerIp => &self.refused_per_ip,
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warn.lock();
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            let (bound, key) = match why {
                Refusal::Total => (
                    self.max_total,
                    "server.max_connections (or the descriptor limit, LimitNOFILE)",
                ),
                Refusal::PerIp => (self.max_per_ip, "server.max_connections_per_ip"),
            };
            log::warn!(
                "refusing connections: {bound} open reached ({key}); latest from {ip}, {n} refused for this reason so far"
            );
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_total_and_per_ip_and_frees_on_drop() {
        let a = Arc::new(Admission::new(3, 2, None));
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let one = a.admit(x).unwrap();
        let _two = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refusal::PerIp));
        let _three = a.admit(y).unwrap();
        assert_eq!(a.admit(y).err(), Some(Refusal::Total));
        assert_eq!(a.open(), 3);
        drop(one);
        assert!(a.admit(x).is_ok(), "a closed connection frees its place");
        assert_eq!(
            (a.refused(Refusal::PerIp), a.refused(Refusal::Total)),
            (1, 1)
        );
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a = Arc::new(Admission::new(100, 1, None));
        let _one = a.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            a.admit("2001:db8::ffff:2".parse().unwrap()).err(),
            Some(Refusal::PerIp),
            "same /64"
        );
        assert!(
            a.admit("2001:db8:0:1::1".parse().unwrap()).is_ok(),
            "another /64"
        );
        let _v4 = a.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(
            a.admit("::ffff:192.0.2.1".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
        assert!(
            a.admit("192.0.2.2".parse().unwrap()).is_ok(),
            "IPv4 hosts count apart"
        );
    }

    #[test]
    fn the_descriptor_limit_keeps_a_reserve() {
        assert_eq!(Admission::new(100_000, 10, Some(20_000)).max_total(), 9_488);
        assert_eq!(Admission::new(500, 10, Some(20_000)).max_total(), 500);
    }
}
