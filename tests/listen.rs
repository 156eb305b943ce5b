//! A restart brings every client back at once. Connections wait in the
//! listener's backlog until the accept loop takes them; past it the kernel
//! drops their SYN and the client tries again a second or more later.

mod common;

use imrelay::config::Config;
use imrelay::{widen_backlog, Daemon, LISTEN_BACKLOG};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// How many connections complete their handshake at once while nobody accepts.
fn held_without_accept(listener: &TcpListener, tries: usize) -> usize {
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut held = vec![];
    for _ in 0..tries {
        // Loopback answers a SYN in microseconds; a dropped one is retried after 1 s.
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    held.len()
}

#[test]
fn the_listener_holds_a_reconnect_storm() {
    // std's backlog (128 when this was written), for contrast: the storm overflows it.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    widen_backlog(&plain, 128).unwrap();
    assert!(held_without_accept(&plain, 1000) < 200);

    let widened = TcpListener::bind("127.0.0.1:0").unwrap();
    widen_backlog(&widened, LISTEN_BACKLOG).unwrap();
    assert_eq!(held_without_accept(&widened, 1000), 1000);
}

/// A listening socket's backlog: Linux reports it in `tcpi_sacked`.
fn backlog(listener: &TcpListener) -> u32 {
    common::raw::tcp_info(listener).tcpi_sacked
}

#[actix_rt::test]
async fn the_daemon_listens_with_its_backlog() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let probe = listener.try_clone().unwrap();
    let cfg = Config::for_rocketchat("http://127.0.0.1:9", ("super", "123qwe"), common::API_KEY);
    let daemon = Daemon::start(cfg, listener).unwrap();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    assert_eq!(backlog(&probe), somaxconn.min(LISTEN_BACKLOG as u32));
    daemon.shutdown().await;
}
