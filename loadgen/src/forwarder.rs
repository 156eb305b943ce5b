//! The "bare forwarder" reference: the least one extra hop can cost on this
//! machine. Per user, one upstream DDP socket to rcsim (resume login and the
//! same six subscriptions imrelay makes); every `changed` frame is copied,
//! unparsed, to that user's client sockets. No actors, no JSON beyond what
//! routing needs. Runs as `loadgen forwarder` in its own process.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct User {
    clients: Mutex<Vec<UnboundedSender<Message>>>,
    ready: AtomicBool,
}

type Users = Arc<Mutex<HashMap<String, Arc<User>>>>;

const READY: &str = r#"{"msg":"fwd-ready"}"#;

/// Serves until killed.
pub async fn run(listen: &str, upstream: String) -> std::io::Result<()> {
    let l = TcpListener::bind(listen).await?;
    println!("forwarder listening on http://{}", l.local_addr()?);
    let users: Users = Arc::default();
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(client(s, Arc::clone(&users), upstream.clone()));
    }
}

fn query(uri: &str, key: &str) -> Option<String> {
    uri.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

async fn client(s: TcpStream, users: Users, upstream: String) {
    let uri = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&uri);
    // The signature (and its large error type) is tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let cb = move |req: &Request, resp: Response| {
        *seen.lock().expect("not poisoned") = req.uri().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(s, cb).await else {
        return;
    };
    let uri = uri.lock().expect("not poisoned").clone();
    let (Some(uid), Some(token)) = (query(&uri, "uid"), query(&uri, "token")) else {
        return;
    };
    let (tx, mut rx) = unbounded_channel();
    let (user, new) = {
        let mut map = users.lock().expect("not poisoned");
        let new = !map.contains_key(&uid);
        (Arc::clone(map.entry(uid.clone()).or_default()), new)
    };
    if user.ready.load(Ordering::Relaxed) {
        let _ = tx.send(Message::Text(READY.into()));
    }
    user.clients.lock().expect("not poisoned").push(tx);
    if new {
        tokio::spawn(upstream_task(Arc::clone(&user), upstream, uid, token));
    }
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => if sink.send(m).await.is_err() { break },
                None => break,
            },
            inc = stream.next() => match inc {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                _ => {}
            },
        }
    }
}

async fn upstream_task(user: Arc<User>, url: String, uid: String, token: String) {
    let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let mut hello = vec![
        json!({"msg": "connect", "version": "1", "support": ["1"]}),
        json!({"msg": "method", "method": "login", "id": "1", "params": [{"resume": token}]}),
        json!({"msg": "sub", "id": "s0", "name": "stream-room-messages", "params": ["__my_messages__", false]}),
    ];
    for (i, ev) in [
        "subscriptions-changed",
        "rooms-changed",
        "notification",
        "message",
        "force_logout",
    ]
    .iter()
    .enumerate()
    {
        hello.push(json!({"msg": "sub", "id": format!("s{}", i + 1), "name": "stream-notify-user", "params": [format!("{uid}/{ev}"), false]}));
    }
    for f in hello {
        if sink
            .send(Message::Text(f.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut readies = 0;
    while let Some(Ok(m)) = stream.next().await {
        match m {
            Message::Text(t) => {
                let b = t.as_bytes();
                if b.starts_with(br#"{"msg":"changed""#) {
                    for c in user.clients.lock().expect("not poisoned").iter() {
                        let _ = c.send(Message::Text(t.clone()));
                    }
                } else if b.starts_with(br#"{"msg":"ping""#) {
                    let _ = sink.send(Message::Text(r#"{"msg":"pong"}"#.into())).await;
                } else if b.starts_with(br#"{"msg":"ready""#) {
                    readies += 1;
                    if readies == 6 {
                        user.ready.store(true, Ordering::Relaxed);
                        for c in user.clients.lock().expect("not poisoned").iter() {
                            let _ = c.send(Message::Text(READY.into()));
                        }
                    }
                }
            }
            Message::Ping(p) => {
                let _ = sink.send(Message::Pong(p)).await;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
}
