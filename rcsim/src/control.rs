//! `/_sim/*`: the fault and inspection API for tests written in other
//! languages. Mounted only when rcsim starts with a control secret, which
//! every call must carry in `X-Sim-Secret`.

use crate::hub::Out;
use crate::sim::{LoginPath, RouteFault, Sim};
use crate::store::{NewUser, RoomSpec, RoomType, UserRef};
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `/_sim` scope.
pub fn scope(secret: String) -> Scope {
    web::scope("/_sim")
        .app_data(web::Data::new(ControlSecret(secret)))
        .route("/{op}", web::route().to(handle))
}

struct ControlSecret(String);

fn uid(sim: &Sim, username: Option<&str>) -> Option<String> {
    let name = username?;
    sim.store
        .lock()
        .find_user(&UserRef::Username(name.into()))
        .map(|u| u.id.clone())
}

async fn handle(
    req: HttpRequest,
    op: web::Path<String>,
    body: web::Bytes,
    sim: web::Data<Arc<Sim>>,
    secret: web::Data<ControlSecret>,
) -> HttpResponse {
    let given = req
        .headers()
        .get("x-sim-secret")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given != secret.0 {
        return HttpResponse::Unauthorized()
            .json(json!({"error": "X-Sim-Secret missing or wrong"}));
    }
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return HttpResponse::BadRequest()
                    .json(json!({"error": format!("invalid JSON: {e}")}))
            }
        }
    };
    let ms = |k: &str| Duration::from_millis(b.get(k).and_then(Value::as_u64).unwrap_or(0));
    let username = b.get("username").and_then(Value::as_str);
    match op.as_str() {
        "stats" => {
            let store = sim.store.lock();
            let users: serde_json::Map<String, Value> = store
                .users()
                .map(|u| {
                    (
                        u.username.clone(),
                        json!({
                            "ddp_connections": sim.hub.user_connections(&u.id),
                            "ddp_logins": sim.stats.logins(LoginPath::Ddp, &u.id),
                            "rest_logins": sim.stats.logins(LoginPath::Rest, &u.id),
                            "tokens": store.token_count(&u.id),
                        }),
                    )
                })
                .collect();
            HttpResponse::Ok().json(json!({
                "ddp_connections": sim.hub.connections(),
                "delivered_events": sim.hub.delivered(),
                "subscriptions": sim.hub.total_subscriptions(),
                "failed_logins": sim.stats.failed_logins(),
                "users": users,
            }))
        }
        "drop" => {
            let target = uid(&sim, username);
            let abrupt = b.get("abrupt").and_then(Value::as_bool).unwrap_or(false);
            let n = sim.hub.signal(
                |u, _| username.is_none() || (target.is_some() && u == target.as_deref()),
                || {
                    if abrupt {
                        Out::Abort
                    } else {
                        Out::Close(1000, "Normal closure".into())
                    }
                },
            );
            HttpResponse::Ok().json(json!({"dropped": n}))
        }
        "refuse" => {
            *sim.faults.refuse_until.lock() = Some(Instant::now() + ms("ms"));
            HttpResponse::Ok().json(json!({}))
        }
        "deaf" => {
            let on = b.get("on").and_then(Value::as_bool).unwrap_or(true);
            sim.faults
                .deaf
                .store(on, std::sync::atomic::Ordering::Relaxed);
            HttpResponse::Ok().json(json!({}))
        }
        "delay" => {
            *sim.faults.delay.lock() = ms("ms");
            HttpResponse::Ok().json(json!({}))
        }
        "fail" => {
            let Some(route) = b.get("route").and_then(Value::as_str) else {
                return HttpResponse::BadRequest().json(json!({"error": "route is required"}));
            };
            let status = b.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
            let count = b.get("count").and_then(Value::as_u64).map(|c| c as u32);
            sim.faults.routes.lock().insert(
                route.to_string(),
                RouteFault {
                    status,
                    remaining: count,
                },
            );
            HttpResponse::Ok().json(json!({}))
        }
        "remove-tokens" => {
            let Some(u) = uid(&sim, username) else {
                return HttpResponse::NotFound().json(json!({"error": "no such user"}));
            };
            let removed = sim.store.lock().remove_user_tokens(&u);
            sim.tokens_removed(&removed, None);
            HttpResponse::Ok().json(json!({"removed": removed.len()}))
        }
        "frame" => {
            // {"username", "text"} pushes one raw text frame (any bytes, so
            // malformed JSON too); {"username", "oversize": n} a valid event
            // padded to n bytes; {"username", "fragments": n} one split in n.
            let Some(u) = uid(&sim, username) else {
                return HttpResponse::NotFound().json(json!({"error": "no such user"}));
            };
            let frame = if let Some(t) = b.get("text").and_then(Value::as_str) {
                crate::RawFrame::Text(t.to_string())
            } else if let Some(n) = b.get("oversize").and_then(Value::as_u64) {
                if n > 256 << 20 {
                    return HttpResponse::BadRequest()
                        .json(json!({"error": "oversize: at most 268435456 bytes"}));
                }
                crate::RawFrame::Oversize(n as usize)
            } else if let Some(n) = b.get("fragments").and_then(Value::as_u64) {
                crate::RawFrame::Fragmented(n as usize)
            } else {
                return HttpResponse::BadRequest()
                    .json(json!({"error": "one of text, oversize or fragments is required"}));
            };
            HttpResponse::Ok().json(json!({"sockets": crate::faults::push_frame(&sim, &u, frame)}))
        }
        "logout" => {
            let Some(u) = uid(&sim, username) else {
                return HttpResponse::NotFound().json(json!({"error": "no such user"}));
            };
            crate::faults::force_logout(&sim, &u);
            HttpResponse::Ok().json(json!({}))
        }
        "post" => {
            let (Some(u), Some(rid), Some(text)) = (
                uid(&sim, b.get("from").and_then(Value::as_str)),
                b.get("rid").and_then(Value::as_str),
                b.get("text").and_then(Value::as_str),
            ) else {
                return HttpResponse::BadRequest().json(
                    json!({"error": "from (an existing username), rid and text are required"}),
                );
            };
            let real_name = sim.settings.read().use_real_name;
            let mut out = vec![];
            let r = sim.store.lock().post_message(
                &u,
                rid,
                text,
                Default::default(),
                real_name,
                &mut out,
            );
            sim.emit(out);
            match r {
                Ok(m) => HttpResponse::Ok().json(json!({"message": m})),
                Err(e) => HttpResponse::BadRequest().json(json!({"error": e.message()})),
            }
        }
        "settings" => {
            let mut s = sim.settings.write();
            let flag = |k: &str| b.get(k).and_then(Value::as_bool);
            if let Some(v) = flag("rest_rate_limiter") {
                s.rest_rate_limiter = v;
            }
            if let Some(v) = flag("block_failed_logins") {
                s.block_failed_logins = v;
            }
            if let Some(v) = flag("two_factor_on_update") {
                s.two_factor_on_update = v;
            }
            if let Some(v) = flag("email_2fa_auto_opt_in") {
                s.email_2fa_auto_opt_in = v;
            }
            if let Some(v) = flag("ddp_login_rate_limit") {
                s.ddp_login_rate_limit = v;
            }
            if let Some(v) = flag("ddp_rate_limiter") {
                s.ddp_rate_limiter = v;
            }
            if let Some(v) = b
                .get("ddp_rate_limit_by_method_interval_ms")
                .and_then(Value::as_u64)
            {
                s.ddp_rate_limit_by_method_interval = Duration::from_millis(v.max(1));
            }
            if let Some(v) = b.get("removed_methods").and_then(Value::as_array) {
                s.removed_methods = v
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
            }
            if let Some(v) = flag("updated_before_result") {
                s.updated_before_result = v;
            }
            if let Some(v) = flag("send_server_id") {
                s.send_server_id = v;
            }
            if let Some(v) = b.get("heartbeat_ms").and_then(Value::as_u64) {
                s.heartbeat_interval = Duration::from_millis(v);
                s.heartbeat_timeout = Duration::from_millis(v);
            }
            HttpResponse::Ok().json(json!({}))
        }
        "bulk-users" => {
            let prefix = b.get("prefix").and_then(Value::as_str).unwrap_or("user");
            let count = b.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
            let password = b
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut made = vec![];
            let mut out = vec![];
            {
                let mut store = sim.store.lock();
                for i in 0..count {
                    let username = format!("{prefix}{i}");
                    let new = NewUser {
                        username: username.clone(),
                        name: username.clone(),
                        password: password.clone().unwrap_or_else(|| format!("{username}-pw")),
                        ..Default::default()
                    };
                    match store.create_user(new, &mut out) {
                        Ok(uid) => {
                            let (token, _) = store.add_token(&uid);
                            made.push(json!({"username": username, "uid": uid, "token": token}));
                        }
                        Err(e) => {
                            return HttpResponse::BadRequest().json(json!({"error": e.message()}))
                        }
                    }
                }
            }
            sim.emit(out);
            HttpResponse::Ok().json(json!({"users": made}))
        }
        "room" => {
            let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
            let members: Vec<String> = b
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| uid(&sim, m.as_str()))
                .collect();
            let Some((creator, rest)) = members.split_first() else {
                return HttpResponse::BadRequest()
                    .json(json!({"error": "members must name existing users"}));
            };
            let t = if b.get("type").and_then(Value::as_str) == Some("c") {
                RoomType::Channel
            } else {
                RoomType::Group
            };
            let mut out = vec![];
            let r = sim
                .store
                .lock()
                .create_room(RoomSpec::new(t, name, creator, rest), &mut out);
            sim.emit(out);
            match r {
                Ok(rid) => HttpResponse::Ok().json(json!({"rid": rid})),
                Err(e) => HttpResponse::BadRequest().json(json!({"error": e.message()})),
            }
        }
        "load" => {
            // The fast path: post `count` messages round-robin over `rooms`,
            // each from the room's first member, on a thread of its own so
            // the HTTP workers keep writing to sockets meanwhile. `rate`
            // (messages a second) paces it; in `text`, `{seq}` becomes the
            // message's number and `{ts}` the emit time in µs since the epoch.
            let rooms: Vec<String> = b
                .get("rooms")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            let count = b.get("count").and_then(Value::as_u64).unwrap_or(0);
            let text = b
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("load")
                .to_string();
            let senders: Vec<Option<String>> = {
                let store = sim.store.lock();
                rooms
                    .iter()
                    .map(|r| store.room(r).and_then(|room| room.members.first().cloned()))
                    .collect()
            };
            if rooms.is_empty() || senders.iter().any(Option::is_none) {
                return HttpResponse::BadRequest()
                    .json(json!({"error": "rooms must name existing rooms with members"}));
            }
            let rate = b.get("rate").and_then(Value::as_f64).filter(|r| *r > 0.0);
            let sim = Arc::clone(&sim);
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                for i in 0..count as usize {
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let k = i % rooms.len();
                    let mut out = vec![];
                    let sender = senders[k].as_deref().unwrap_or_default();
                    let micros = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros())
                        .unwrap_or(0);
                    let body = text
                        .replace("{seq}", &i.to_string())
                        .replace("{ts}", &micros.to_string());
                    let r = sim.store.lock().post_message(
                        sender,
                        &rooms[k],
                        &body,
                        Default::default(),
                        false,
                        &mut out,
                    );
                    if let Err(e) = r {
                        log::warn!("rcsim load: {}", e.message());
                        return;
                    }
                    sim.emit(out);
                }
            });
            HttpResponse::Ok().json(json!({"posting": count}))
        }
        other => HttpResponse::NotFound()
            .json(json!({"error": format!("unknown control operation '{other}'")})),
    }
}
