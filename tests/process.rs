//! The real binary: SIGTERM stops it cleanly, and `imrelay demo` (the
//! README's run command) serves a working daemon.

use rcsim::{Rcsim, SimConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imrelay");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = awc::Client::new().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(mut r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

async fn until_ready(url: &str) {
    let start = Instant::now();
    while get(&format!("{url}/readyz"), None).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(15), "never ready");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn sigterm_drains_and_exits_within_the_bound() {
    let sim = Rcsim::start(SimConfig::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("imrelay-proc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\napi_keys = [{{ name = \"t\", key = {{ env = \"T_KEY\" }} }}]\nshutdown_timeout = \"3s\"\n[rocketchat]\nurl = \"{}\"\nadmin_username = \"super\"\nadmin_password = {{ file = \"{}\" }}\n[users]\npassword_secret = \"s\"\n",
        sim.url(),
        dir.join("pw").display()
    );
    std::fs::write(dir.join("pw"), "123qwe\n").unwrap();
    std::fs::write(dir.join("config.toml"), cfg).unwrap();
    let child = Command::new(BIN)
        .args(["--config", dir.join("config.toml").to_str().unwrap()])
        .env("T_KEY", "0123456789abcdef-key")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let url = format!("http://127.0.0.1:{port}");
    until_ready(&url).await;
    assert_eq!(sim.token_count("super"), 1);
    let t = Instant::now();
    signal(&child.0, "-TERM");
    let status = wait_exit(&mut child.0, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(
        sim.token_count("super"),
        0,
        "the admin logged out on the way out"
    );
    let mut log = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(!log.contains("123qwe"), "no secret in the log");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[actix_rt::test]
async fn bad_config_fails_at_start_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("imrelay-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.toml"), "[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n[rocketchat]\nurl = \"http://x\"\nadmin_username = \"a\"\nadmin_password = \"b\"\n").unwrap();
    let cfg = dir.join("c.toml");
    let cfg = cfg.to_str().unwrap();
    // A bad config exits 2 naming the key, whichever way the file is given;
    // --config is accepted after a subcommand too (as the README writes it).
    for args in [
        &["check-config", cfg][..],
        &["--config", cfg],
        &["doctor", "--config", cfg],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("lisen"), "{args:?}: {stderr}");
    }
}

#[actix_rt::test]
async fn the_demo_serves_a_working_daemon() {
    let child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("imrelay ") {
            let mut parts = rest.split_whitespace();
            url = parts.next().unwrap().to_string();
            key = rest
                .rsplit("API key: ")
                .next()
                .unwrap()
                .trim_end_matches(')')
                .to_string();
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, sessions) = get(&format!("{url}/api/v1/sessions"), Some(&key)).await;
    assert_eq!(status, 200, "{sessions}");
    let mut r = awc::Client::new()
        .post(format!("{url}/api/v1/users/alice/login"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let login: Value = r.json().await.unwrap();
    let ws = format!(
        "{}/ws?token={}",
        url.replacen("http", "ws", 1),
        login["client_token"].as_str().unwrap()
    );
    let (_, mut framed) = awc::Client::new()
        .ws(ws)
        .connect()
        .await
        .expect("client websocket");
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut framed),
    )
    .await
    .unwrap();
    match first {
        Some(Ok(awc::ws::Frame::Text(t))) => {
            assert!(String::from_utf8_lossy(&t).contains("welcome"))
        }
        other => panic!("{other:?}"),
    }
    // The page and its demo-only endpoints.
    let mut page = awc::Client::new()
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(!page.body().await.unwrap().is_empty());
    let bundle = awc::Client::new()
        .get(format!("{url}/static/signalr.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bundle.status().as_u16(),
        200,
        "the official SignalR bundle is served locally"
    );
    let mut r = awc::Client::new()
        .post(format!("{url}/demo/login/bob"))
        .send()
        .await
        .unwrap();
    let bob: Value = r.json().await.unwrap();
    let mut me = awc::Client::new()
        .get(format!("{url}/demo/rc/me"))
        .bearer_auth(bob["client_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        me["username"], "bob",
        "chat actions run as the token's user"
    );
    let r = awc::Client::new()
        .get(format!("{url}/demo/rc/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = awc::Client::new()
        .post(format!("{url}/demo/login/super"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "only the demo users");
    let mut s = awc::Client::new()
        .post(format!("{url}/demo/simulate"))
        .send_json(&serde_json::json!({"on": false}))
        .await
        .unwrap();
    assert_eq!(s.json::<Value>().await.unwrap()["on"], false);
    signal(&child.0, "-INT");
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}
