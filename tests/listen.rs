//! A restart brings every client back at once. Connections wait in the
//! listener's backlog until the accept loop takes them; past it the kernel
//! drops their SYN and the client tries again a second or more later. So the
//! daemon listens with a backlog of its own (what the kernel then does with
//! it is the kernel's, and not tested here).

mod common;

use imrelay::config::Config;
use imrelay::{Daemon, LISTEN_BACKLOG};
use std::net::TcpListener;

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
