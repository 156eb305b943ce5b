//! Setting a mode up: rcsim and the relay under test, users, rooms, logins, clients.

use crate::*;

/// The open-file limit: raised to the hard limit (the daemon side holds two
/// sockets per user, this side M per user).
pub(crate) fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            say(format!("could not raise the open-file limit: {e}"));
            0
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub(crate) struct Setup {
    pub(crate) rcsim: Proc,
    pub(crate) relay: Option<Proc>,
    pub(crate) targets: Vec<Target>,
    pub(crate) rooms: Vec<Value>,
    pub(crate) setup_secs: f64,
    pub(crate) logins_per_sec: Option<f64>,
}

pub(crate) fn sim_stats(rcsim: &Proc) -> Value {
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

pub(crate) fn setup(mode: Mode, a: &Args) -> Result<Setup, String> {
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
            // rcsim runs permissive (no REST limiter): backfills need no
            // pacing, unless --rc-limiter turns it on. The history must reach back over a reconnect and what
            // a SignalR client had not acknowledged (about 1 s): --quick
            // gives each user some 100 events a second.
            let cfg = if a.chaos.is_some() {
                let cfg = cfg.replace("[client]\n", "[client]\nhistory_size = 1024\n");
                let pace = if a.rc_limiter { 10 } else { 0 };
                format!("{cfg}[session]\nbackfill_rate = {pace}\n")
            } else {
                cfg
            };
            std::fs::write(dir.join("imrelay.toml"), cfg).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(sibling("imrelay", &a.imrelay));
            cmd.args(["--config", &dir.join("imrelay.toml").display().to_string()])
                .env(
                    "RUST_LOG",
                    std::env::var("LOADGEN_RELAY_RUST_LOG").unwrap_or("warn".into()),
                );
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
pub(crate) fn parallel<T: Sync, R: Send>(
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
