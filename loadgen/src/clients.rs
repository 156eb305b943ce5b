//! The load's clients: `threads` actix Systems, each holding a share of the
//! websockets. They count events, take the emit time out of each message
//! (`lg<pass> <seq> <µs>`) for latency, and check per client that each
//! room's messages arrive exactly once and in order, in O(1) memory.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem;
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a client speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// imrelay's native `/ws`.
    Native,
    /// imrelay's `/signalr` (JSON hub protocol, skipNegotiation).
    SignalR,
    /// DDP straight to rcsim (the "direct" reference).
    Ddp,
    /// The bare forwarder (DDP frames, copied).
    Forwarder,
}

/// One client to open.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub kind: Kind,
    pub uid: String,
    pub token: String,
    pub room: usize,
}

/// Counters shared with the orchestrator.
#[derive(Default)]
pub struct Shared {
    /// Chaos: each bump drops a fifth of the native clients (by slot), which
    /// come back with `since` and `epoch`.
    pub drops: Option<tokio::sync::watch::Sender<u64>>,
    /// Native clients back with `recovered: true`, and with anything else.
    pub recovered: AtomicU64,
    pub unrecovered: AtomicU64,
    /// `reloadRequired` events seen (a backfill that could not be done).
    pub reloads: AtomicU64,
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    pub events: AtomicU64,
    pub msg_events: AtomicU64,
    pub done: AtomicBool,
    /// Messages posted in each pass, set before `done`.
    pub posted: Mutex<[u64; 2]>,
}

/// One thread's results.
pub struct ThreadResult {
    pub hist: [Histogram<u64>; 2],
    /// Chaos: from a client's drop to its welcome, µs.
    pub recovery: Histogram<u64>,
    pub lost: [u64; 2],
    pub dup: [u64; 2],
    /// The latency pass's samples as (receive µs, latency µs), if asked for.
    pub timeline: Vec<(u64, u64)>,
}

struct Track {
    room: usize,
    last: [i64; 2],
    lost: [u64; 2],
    dup: [u64; 2],
}

/// The imrelay streams a session subscribes to, for DDP clients.
const USER_STREAMS: [&str; 5] = [
    "subscriptions-changed",
    "rooms-changed",
    "notification",
    "message",
    "force_logout",
];

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn is_message_event(frame: &[u8], kind: Kind) -> bool {
    let head = &frame[..frame.len().min(140)];
    match kind {
        Kind::Native | Kind::SignalR => {
            memmem::find(head, b"\"getRoomMessageNotification\"").is_some()
        }
        Kind::Ddp | Kind::Forwarder => memmem::find(head, b"\"__my_messages__\"").is_some(),
    }
}

fn is_event(frame: &[u8], kind: Kind) -> bool {
    match kind {
        Kind::Native => frame.starts_with(br#"{"type":"event""#),
        Kind::SignalR => frame.starts_with(br#"{"type":1,"#),
        Kind::Ddp | Kind::Forwarder => frame.starts_with(br#"{"msg":"changed""#),
    }
}

/// `"msg":"lg<pass> <seq> <µs>"` → (pass, seq, µs).
fn stamp(frame: &[u8]) -> Option<(usize, u64, u64)> {
    let at = memmem::find(frame, b"\"msg\":\"lg")? + 9;
    let rest = &frame[at..];
    let end = rest.iter().position(|b| *b == b'"')?;
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    let mut p = s.split(' ');
    let pass: usize = p.next()?.parse().ok()?;
    Some((
        pass.checked_sub(1)?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    ))
}

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn open(t: &Target) -> Option<Socket> {
    let mut ws = connect(&t.url).await?;
    let wanted = match t.kind {
        Kind::Native => 1,
        Kind::SignalR => {
            let hello = "{\"protocol\":\"json\",\"version\":1}\u{1e}";
            ws.send(awc::ws::Message::Text(hello.into())).await.ok()?;
            1
        }
        Kind::Forwarder => 1,
        Kind::Ddp => {
            let mut frames = vec![
                json!({"msg": "connect", "version": "1", "support": ["1"]}),
                json!({"msg": "method", "method": "login", "id": "1", "params": [{"resume": t.token}]}),
                json!({"msg": "sub", "id": "s0", "name": "stream-room-messages", "params": ["__my_messages__", false]}),
            ];
            for (i, ev) in USER_STREAMS.iter().enumerate() {
                frames.push(json!({"msg": "sub", "id": format!("s{}", i + 1), "name": "stream-notify-user", "params": [format!("{}/{ev}", t.uid), false]}));
            }
            for f in frames {
                ws.send(awc::ws::Message::Text(f.to_string().into()))
                    .await
                    .ok()?;
            }
            1 + USER_STREAMS.len()
        }
    };
    // Native: the welcome. Forwarder: its own "fwd-ready". DDP: one ready per sub.
    let mut seen = 0;
    while seen < wanted {
        match ws.next().await? {
            Ok(awc::ws::Frame::Text(b)) => {
                let ok = match t.kind {
                    Kind::Native => b.starts_with(br#"{"type":"welcome""#),
                    Kind::SignalR => b.starts_with(b"{}\x1e"),
                    Kind::Forwarder => memmem::find(&b, b"fwd-ready").is_some(),
                    Kind::Ddp => b.starts_with(br#"{"msg":"ready""#),
                };
                seen += usize::from(ok);
            }
            Ok(awc::ws::Frame::Ping(p)) => ws.send(awc::ws::Message::Pong(p)).await.ok()?,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    Some(ws)
}

struct Ctx {
    shared: Arc<Shared>,
    hist: Rc<RefCell<[Histogram<u64>; 2]>>,
    recovery: RefCell<Histogram<u64>>,
    tracks: Rc<RefCell<Vec<Track>>>,
    rooms: usize,
    timeline: Option<RefCell<Vec<(u64, u64)>>>,
}

/// Where a native client is in its user's stream (to come back after a drop).
#[derive(Default)]
struct Resume {
    /// Native: the epoch and the last `seq` processed.
    epoch: String,
    seq: u64,
    /// SignalR stateful reconnect: the connection token, the id of the
    /// server's next sequenced record, the last processed and acked.
    token: String,
    next_in: u64,
    done_in: u64,
    acked: u64,
    /// Since when a new transport has been waited for (its Sequence ends it).
    back_since: Option<std::time::Instant>,
}

/// Acknowledge every this many SignalR records (the server holds what is
/// not acknowledged, up to a bound).
const ACK_EVERY: u64 = 20;

/// A SignalR connection negotiated with stateful reconnect, past its
/// handshake (version 2).
async fn open_stateful(t: &Target) -> Option<(Socket, Resume)> {
    let http = t
        .url
        .split("/signalr")
        .next()?
        .replacen("ws://", "http://", 1);
    let mut r = awc::Client::new()
        .post(format!(
            "{http}/signalr/negotiate?negotiateVersion=1&useStatefulReconnect=true"
        ))
        .bearer_auth(&t.token)
        .send()
        .await
        .ok()?;
    let n: serde_json::Value = r.json().await.ok()?;
    let token = n["connectionToken"].as_str()?.to_string();
    let mut ws = signalr_transport(&http, &token, &t.token).await?;
    let hello = "{\"protocol\":\"json\",\"version\":2}\u{1e}";
    ws.send(awc::ws::Message::Text(hello.into())).await.ok()?;
    loop {
        match ws.next().await? {
            Ok(awc::ws::Frame::Text(b)) if b.starts_with(b"{}\x1e") => break,
            Ok(awc::ws::Frame::Ping(p)) => ws.send(awc::ws::Message::Pong(p)).await.ok()?,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    let resume = Resume {
        token,
        next_in: 1,
        ..Resume::default()
    };
    Some((ws, resume))
}

async fn signalr_transport(http: &str, token: &str, access: &str) -> Option<Socket> {
    let url = format!(
        "{}/signalr?id={token}&access_token={access}",
        http.replacen("http://", "ws://", 1)
    );
    connect(&url).await
}

/// A websocket to `url`, with the bounds every client here uses.
async fn connect(url: &str) -> Option<Socket> {
    let (_, ws) = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .ws(url)
        .max_frame_size(16 << 20)
        .connect()
        .await
        .ok()?;
    Some(ws)
}

/// A SignalR record's type, from the frame's start.
fn record_type(frame: &[u8]) -> Option<u64> {
    frame
        .starts_with(b"{\"type\":")
        .then(|| field(frame, "type")?.parse().ok())
        .flatten()
}

/// `"key":"value"` or `"key":number` out of a frame, as text.
fn field<'a>(frame: &'a [u8], key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let at = memmem::find(frame, pat.as_bytes())? + pat.len();
    let rest = &frame[at..];
    let (start, stop): (usize, &[u8]) = if rest.first() == Some(&b'"') {
        (1, b"\"")
    } else {
        (0, b",}")
    };
    let end = rest[start..].iter().position(|b| stop.contains(b))? + start;
    std::str::from_utf8(&rest[start..end]).ok()
}

/// A native client through chaos: reads, and when told to drop, drops its
/// socket without a close and comes back with `since` and `epoch`.
async fn read_resuming(mut ws: Socket, t: Target, slot: usize, ctx: Rc<Ctx>, mut resume: Resume) {
    let Some(drops) = ctx.shared.drops.as_ref().map(|d| d.subscribe()) else {
        read(ws, t.kind, slot, ctx, None).await;
        return;
    };
    let mut drops = drops;
    loop {
        if !read(
            ws,
            t.kind,
            slot,
            Rc::clone(&ctx),
            Some((&mut drops, &mut resume)),
        )
        .await
        {
            return;
        }
        let t0 = std::time::Instant::now();
        if t.kind == Kind::SignalR {
            // The same connection on a new transport: our Sequence first
            // (we send nothing sequenced: 1), then the server's.
            let http = t
                .url
                .split("/signalr")
                .next()
                .unwrap_or_default()
                .replacen("ws://", "http://", 1);
            let mut tries = 0;
            ws = loop {
                if let Some(mut ws) = signalr_transport(&http, &resume.token, &t.token).await {
                    let hello = "{\"type\":9,\"sequenceId\":1}\u{1e}";
                    if ws.send(awc::ws::Message::Text(hello.into())).await.is_ok() {
                        resume.back_since = Some(t0);
                        break ws;
                    }
                }
                if tries == 50 {
                    ctx.shared.unrecovered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tries += 1;
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            };
            continue;
        }
        let url = format!("{}&since={}&epoch={}", t.url, resume.seq, resume.epoch);
        let back = Target { url, ..t.clone() };
        let mut tries = 0;
        ws = loop {
            match open_native(&back).await {
                Some((ws, welcome)) => {
                    let ok = memmem::find(&welcome, b"\"recovered\":true").is_some();
                    let counter = if ok {
                        &ctx.shared.recovered
                    } else {
                        &ctx.shared.unrecovered
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if let Some(e) = field(&welcome, "epoch") {
                        resume.epoch = e.to_string();
                    }
                    if !ok {
                        resume.seq = field(&welcome, "seq")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                    }
                    let _ = ctx
                        .recovery
                        .borrow_mut()
                        .record(t0.elapsed().as_micros().max(1) as u64);
                    break ws;
                }
                None if tries < 50 => {
                    tries += 1;
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
                None => return,
            }
        };
    }
}

/// Reads events until the socket ends (false) or, with `drops`, until this
/// client is told to drop (true).
async fn read(
    mut ws: Socket,
    kind: Kind,
    slot: usize,
    ctx: Rc<Ctx>,
    mut chaos: Option<(&mut tokio::sync::watch::Receiver<u64>, &mut Resume)>,
) -> bool {
    loop {
        let frame = match &mut chaos {
            Some((drops, _)) => tokio::select! {
                f = ws.next() => f,
                _ = drops.changed() => {
                    let generation = *drops.borrow_and_update();
                    if (slot as u64 + generation).is_multiple_of(5) {
                        // Gone without a close, as a network loses it.
                        return true;
                    }
                    continue;
                }
            },
            None => ws.next().await,
        };
        let Some(frame) = frame else { return false };
        match frame {
            Ok(awc::ws::Frame::Text(b)) => {
                if let (Kind::SignalR, Some((_, resume))) = (kind, &mut chaos) {
                    match record_type(&b) {
                        Some(9) => {
                            resume.next_in = field(&b, "sequenceId")
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(resume.next_in);
                            if let Some(t0) = resume.back_since.take() {
                                ctx.shared.recovered.fetch_add(1, Ordering::Relaxed);
                                let _ = ctx
                                    .recovery
                                    .borrow_mut()
                                    .record(t0.elapsed().as_micros().max(1) as u64);
                            }
                            continue;
                        }
                        Some(1..=5) => {
                            let id = resume.next_in;
                            resume.next_in += 1;
                            if id <= resume.done_in {
                                // Sent again after a reconnect, processed already.
                                continue;
                            }
                            resume.done_in = id;
                            if resume.done_in - resume.acked >= ACK_EVERY {
                                resume.acked = resume.done_in;
                                let ack =
                                    format!("{{\"type\":8,\"sequenceId\":{}}}\u{1e}", resume.acked);
                                let _ = ws.send(awc::ws::Message::Text(ack.into())).await;
                            }
                        }
                        Some(7) => {
                            // The server could not resume (or is going away).
                            ctx.shared.unrecovered.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                if let Some((_, resume)) = &mut chaos {
                    if let Some(seq) = b
                        .starts_with(br#"{"type":"event","seq":"#)
                        .then(|| field(&b, "seq"))
                        .flatten()
                    {
                        resume.seq = seq.parse().unwrap_or(resume.seq);
                    }
                    if memmem::find(&b[..b.len().min(60)], b"\"reloadRequired\"").is_some() {
                        ctx.shared.reloads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !is_event(&b, kind) {
                    if b.starts_with(br#"{"msg":"ping""#) {
                        let _ = ws
                            .send(awc::ws::Message::Text(r#"{"msg":"pong"}"#.into()))
                            .await;
                    } else if b.starts_with(br#"{"type":6}"#) {
                        // A SignalR server drops clients silent for 30 s.
                        let _ = ws
                            .send(awc::ws::Message::Text("{\"type\":6}\u{1e}".into()))
                            .await;
                    }
                    continue;
                }
                ctx.shared.events.fetch_add(1, Ordering::Relaxed);
                if !is_message_event(&b, kind) {
                    continue;
                }
                ctx.shared.msg_events.fetch_add(1, Ordering::Relaxed);
                let Some((pass, seq, ts)) = stamp(&b) else {
                    continue;
                };
                if pass > 1 {
                    continue;
                }
                let now = now_micros();
                let latency = now.saturating_sub(ts).max(1);
                let _ = ctx.hist.borrow_mut()[pass].record(latency);
                if let (1, Some(t)) = (pass, &ctx.timeline) {
                    t.borrow_mut().push((now, latency));
                }
                let mut tracks = ctx.tracks.borrow_mut();
                let t = &mut tracks[slot];
                let idx = (seq / ctx.rooms as u64) as i64;
                if seq as usize % ctx.rooms != t.room || idx <= t.last[pass] {
                    t.dup[pass] += 1;
                } else {
                    t.lost[pass] += (idx - t.last[pass] - 1) as u64;
                    t.last[pass] = idx;
                }
            }
            Ok(awc::ws::Frame::Ping(p)) => {
                let _ = ws.send(awc::ws::Message::Pong(p)).await;
            }
            Ok(awc::ws::Frame::Close(_)) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// A native client's socket and its welcome frame.
async fn open_native(t: &Target) -> Option<(Socket, bytes::Bytes)> {
    let mut ws = connect(&t.url).await?;
    loop {
        match ws.next().await? {
            Ok(awc::ws::Frame::Text(b)) if b.starts_with(br#"{"type":"welcome""#) => {
                return Some((ws, b))
            }
            Ok(awc::ws::Frame::Ping(p)) => ws.send(awc::ws::Message::Pong(p)).await.ok()?,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Starts the clients on `threads` threads; returns their join handles.
pub fn spawn(
    targets: Vec<Target>,
    threads: usize,
    rooms: usize,
    shared: Arc<Shared>,
    timeline: bool,
) -> Vec<std::thread::JoinHandle<ThreadResult>> {
    let per = targets.len().div_ceil(threads.max(1)).max(1);
    targets
        .chunks(per)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let hist = || {
                        Histogram::<u64>::new_with_bounds(1, crate::MAX_LATENCY_US, 3)
                            .expect("valid bounds")
                    };
                    let ctx = Rc::new(Ctx {
                        shared: Arc::clone(&shared),
                        hist: Rc::new(RefCell::new([hist(), hist()])),
                        recovery: RefCell::new(hist()),
                        tracks: Rc::new(RefCell::new(
                            chunk
                                .iter()
                                .map(|t| Track {
                                    room: t.room,
                                    last: [-1; 2],
                                    lost: [0; 2],
                                    dup: [0; 2],
                                })
                                .collect(),
                        )),
                        rooms,
                        timeline: timeline.then(|| RefCell::new(Vec::with_capacity(1 << 16))),
                    });
                    let mut slot = 0;
                    // Waves keep the servers' accept queues from overflowing.
                    let chaos = shared.drops.is_some();
                    for wave in chunk.chunks(200) {
                        let opened =
                            futures_util::future::join_all(wave.iter().map(|t| async move {
                                if chaos && t.kind == Kind::SignalR {
                                    open_stateful(t).await.map(|(ws, r)| (ws, Some(r)))
                                } else if chaos && t.kind == Kind::Native {
                                    open_native(t).await.map(|(ws, welcome)| {
                                        let resume = Resume {
                                            epoch: field(&welcome, "epoch")
                                                .unwrap_or_default()
                                                .to_string(),
                                            seq: field(&welcome, "seq")
                                                .and_then(|s| s.parse().ok())
                                                .unwrap_or(0),
                                            ..Resume::default()
                                        };
                                        (ws, Some(resume))
                                    })
                                } else {
                                    open(t).await.map(|ws| (ws, None))
                                }
                            }))
                            .await;
                        for (ws, t) in opened.into_iter().zip(wave) {
                            match ws {
                                Some((ws, resume)) => {
                                    shared.ready.fetch_add(1, Ordering::Relaxed);
                                    match resume {
                                        Some(r) => actix_rt::spawn(read_resuming(
                                            ws,
                                            t.clone(),
                                            slot,
                                            Rc::clone(&ctx),
                                            r,
                                        )),
                                        None => actix_rt::spawn({
                                            let (ctx, kind) = (Rc::clone(&ctx), t.kind);
                                            async move {
                                                read(ws, kind, slot, ctx, None).await;
                                            }
                                        }),
                                    };
                                }
                                None => {
                                    shared.failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            slot += 1;
                        }
                    }
                    while !shared.done.load(Ordering::Relaxed) {
                        actix_rt::time::sleep(Duration::from_millis(20)).await;
                    }
                    let posted = *shared.posted.lock().expect("not poisoned");
                    let mut lost = [0; 2];
                    let mut dup = [0; 2];
                    for t in ctx.tracks.borrow().iter() {
                        for p in 0..2 {
                            // Messages this client's room got in pass p.
                            let expected = posted[p] / rooms as u64
                                + u64::from((t.room as u64) < posted[p] % rooms as u64);
                            lost[p] += t.lost[p] + (expected as i64 - 1 - t.last[p]).max(0) as u64;
                            dup[p] += t.dup[p];
                        }
                    }
                    let hist = ctx.hist.borrow().clone();
                    let recovery = ctx.recovery.borrow().clone();
                    let timeline = ctx.timeline.as_ref().map(|t| t.take()).unwrap_or_default();
                    ThreadResult {
                        recovery,
                        hist,
                        lost,
                        dup,
                        timeline,
                    }
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_kinds() {
        let native = br#"{"type":"event","seq":3,"event":"getRoomMessageNotification","data":{"_id":"x","msg":"lg1 42 1700000000000000"}}"#;
        assert!(is_event(native, Kind::Native) && is_message_event(native, Kind::Native));
        assert_eq!(stamp(native), Some((0, 42, 1_700_000_000_000_000)));
        let ddp = br#"{"msg":"changed","collection":"stream-room-messages","id":"id","fields":{"eventName":"__my_messages__","args":[{"msg":"lg2 7 9"}]}}"#;
        assert!(is_message_event(ddp, Kind::Ddp));
        assert_eq!(stamp(ddp), Some((1, 7, 9)));
        let sr = "{\"type\":1,\"target\":\"getRoomMessageNotification\",\"arguments\":[{\"msg\":\"lg1 3 5\"}]}\u{1e}";
        assert!(
            is_event(sr.as_bytes(), Kind::SignalR)
                && is_message_event(sr.as_bytes(), Kind::SignalR)
        );
        assert_eq!(stamp(sr.as_bytes()), Some((0, 3, 5)));
        assert!(!is_event(b"{\"type\":6}\x1e", Kind::SignalR));
        let room = br#"{"msg":"changed","collection":"stream-notify-user","id":"id","fields":{"eventName":"u/rooms-changed","args":["updated",{"lastMessage":{"msg":"lg1 1 1"}}]}}"#;
        assert!(is_event(room, Kind::Ddp) && !is_message_event(room, Kind::Ddp));
    }
}
