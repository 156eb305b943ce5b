//! The DDP methods rcsim answers: login and logout (with Meteor's login
//! rate limit), rooms, messages, reactions, typing.

use super::*;

impl Connection {
    /// Meteor answers an unknown method at once, then arms the fence.
    async fn unknown_method(&mut self, id: &str, method: &str) -> Flow {
        let err = MeteorError::new(404, format!("Method '{method}' not found"));
        let r = self
            .send(&json!({"msg": "result", "id": id, "error": err.to_ddp()}))
            .await;
        if r.is_err() {
            return Flow::Stop;
        }
        let r = self.send(&json!({"msg": "updated", "methods": [id]})).await;
        self.flow(r)
    }

    pub(super) async fn handle_method(&mut self, msg: &Value) -> Flow {
        let id = msg.get("id").and_then(Value::as_str);
        let method = msg.get("method").and_then(Value::as_str);
        let params_ok = msg.get("params").is_none_or(Value::is_array);
        let seed_ok = msg.get("randomSeed").is_none_or(Value::is_string);
        let (Some(id), Some(method), true, true) = (id, method, params_ok, seed_ok) else {
            return self
                .send_error("Malformed method invocation", Some(msg))
                .await;
        };
        let id = id.to_string();
        let params = params(msg);
        let delay = self.sim.faults.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A method a later release removed answers as one never there.
        let removed = self
            .sim
            .settings()
            .removed_methods
            .iter()
            .any(|m| m == method);
        let result = match method {
            _ if removed => return self.unknown_method(&id, method).await,
            "login" => self.method_login(&params).await,
            "logout" => self.method_logout().await,
            "rooms/get" => Ok(self.method_rooms_get(&params)),
            "sendMessage" => self.method_send_message(&params),
            "setReaction" => self.method_set_reaction(&params),
            "stream-notify-room" => self.method_notify_room(&params),
            other => return self.unknown_method(&id, other).await,
        };
        let mut frame = json!({"msg": "result", "id": id});
        match result {
            Ok(Some(v)) => frame["result"] = v,
            Ok(None) => {}
            Err(e) => frame["error"] = e.to_ddp(),
        }
        let updated = json!({"msg": "updated", "methods": [id]});
        let frames = if self.sim.settings.read().updated_before_result {
            [updated, frame]
        } else {
            [frame, updated]
        };
        for f in &frames {
            if self.send(f).await.is_err() {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    pub(super) fn login_rate_limited(&mut self) -> Option<MeteorError> {
        if !self.sim.settings.read().ddp_login_rate_limit {
            return None;
        }
        let now = Instant::now();
        while self
            .login_calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            self.login_calls.pop_front();
        }
        self.login_calls.push_back(now);
        if self.login_calls.len() <= LOGINS_PER_WINDOW {
            return None;
        }
        let oldest = *self.login_calls.front().expect("just pushed");
        let wait = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
        Some(
            MeteorError::new(
                "too-many-requests",
                format!(
                    "Error, too many requests. Please slow down. You must wait {} seconds before trying again.",
                    wait.as_secs_f64().ceil() as u64
                ),
            )
            .with_details(json!({"timeToReset": wait.as_millis() as u64})),
        )
    }

    pub(super) async fn method_login(
        &mut self,
        params: &[Value],
    ) -> Result<Option<Value>, MeteorError> {
        if let Some(e) = self.login_rate_limited() {
            return Err(e);
        }
        let cred = parse_login_params(params.first())?;
        let ok = self.sim.login(cred, &self.ip, LoginPath::Ddp)?;
        let user = self.sim.store.lock().user(&ok.uid).cloned();
        let Some(user) = user else {
            return Err(MeteorError::new(403, "User not found"));
        };
        let my_subs = self
            .subs
            .values()
            .filter(|s| s.kind == SubKind::MyMessages)
            .count() as u32;
        self.sim.hub.set_user(
            self.id,
            Some((ok.uid.clone(), ok.token_hash.clone())),
            my_subs,
        );
        // The token may have been removed between the check and the bind.
        if self.sim.store.lock().token(&ok.token_hash).is_none() {
            return Err(MeteorError::new(
                403,
                "You've been logged out by the server. Please log in again.",
            ));
        }
        let added = json!({"msg": "added", "collection": "users", "id": ok.uid, "fields": user.ddp_fields()});
        if self.send(&added).await.is_err() {
            return Err(MeteorError::internal());
        }
        let result = json!({"id": ok.uid, "token": ok.token, "tokenExpires": date(ok.expires), "type": ok.kind});
        self.login = Some(ok);
        self.sim.bump();
        Ok(Some(result))
    }

    pub(super) async fn method_logout(&mut self) -> Result<Option<Value>, MeteorError> {
        let Some(login) = self.login.take() else {
            return Ok(None);
        };
        self.sim.hub.set_user(self.id, None, 0);
        self.sim.store.lock().remove_token(&login.token_hash);
        self.sim
            .tokens_removed(std::slice::from_ref(&login.token_hash), Some(self.id));
        // setUserId(null) re-runs the subscriptions: user-scoped ones stop.
        let scoped: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| matches!(s.kind, SubKind::Stream(c) if c != "stream-notify-all"))
            .map(|(id, _)| id.clone())
            .collect();
        for sub_id in scoped {
            if let Some(s) = self.subs.remove(&sub_id) {
                if let SubKind::Stream(c) = s.kind {
                    self.sim.hub.unsubscribe(self.id, c, &s.event, None);
                }
                let _ = self
                    .send(&json!({"msg": "nosub", "id": sub_id, "error": MeteorError::bare("not-allowed").to_ddp()}))
                    .await;
            }
        }
        let _ = self
            .send(&json!({"msg": "removed", "collection": "users", "id": login.uid}))
            .await;
        Ok(None)
    }

    pub(super) fn method_rooms_get(&self, params: &[Value]) -> Option<Value> {
        let Some(login) = &self.login else {
            return Some(json!([]));
        };
        let store = self.sim.store.lock();
        match params.first().and_then(parse_date) {
            Some(since) => {
                Some(json!({"update": store.rooms_of(&login.uid, Some(since)), "remove": []}))
            }
            None => Some(Value::Array(store.rooms_of(&login.uid, None))),
        }
    }

    pub(super) fn method_send_message(
        &self,
        params: &[Value],
    ) -> Result<Option<Value>, MeteorError> {
        let Some(login) = &self.login else {
            return Err(MeteorError::new("error-invalid-user", "Invalid user")
                .with_details(json!({"method": "sendMessage"})));
        };
        let Some(Value::Object(m)) = params.first() else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let (Some(rid), Some(text)) = (
            m.get("rid").and_then(Value::as_str),
            m.get("msg").and_then(Value::as_str),
        ) else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let extra: Map<String, Value> = m
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "rid" | "msg"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let real_name = self.sim.settings.read().use_real_name;
        let mut out = vec![];
        let doc = self
            .sim
            .store
            .lock()
            .post_message(&login.uid, rid, text, extra, real_name, &mut out)?;
        self.sim.emit(out);
        Ok(Some(doc))
    }

    /// `setReaction [emoji, messageId, shouldReact?]`.
    pub(super) fn method_set_reaction(
        &self,
        params: &[Value],
    ) -> Result<Option<Value>, MeteorError> {
        let Some(login) = &self.login else {
            return Err(MeteorError::new("error-invalid-user", "Invalid user")
                .with_details(json!({"method": "setReaction"})));
        };
        let (Some(emoji), Some(id)) = (
            params.first().and_then(Value::as_str),
            params.get(1).and_then(Value::as_str),
        ) else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let should = params.get(2).and_then(Value::as_bool);
        let mut out = vec![];
        let r = self
            .sim
            .store
            .lock()
            .react(&login.uid, id, emoji, should, &mut out);
        self.sim.emit(out);
        r.map(|()| None)
    }

    /// The method RC's streamer registers for `stream-notify-room`: a client
    /// announces typing (`<rid>/user-activity` or the deprecated
    /// `<rid>/typing`) as itself, to the room's other subscribers.
    pub(super) fn method_notify_room(
        &self,
        params: &[Value],
    ) -> Result<Option<Value>, MeteorError> {
        let not_allowed = || MeteorError::bare("not-allowed");
        let Some(login) = &self.login else {
            return Err(not_allowed());
        };
        let Some(event) = params.first().and_then(Value::as_str) else {
            return Err(MeteorError::new(400, "Match failed"));
        };
        let (rid, kind) = event.split_once('/').unwrap_or((event, ""));
        let store = self.sim.store.lock();
        let username = store
            .user(&login.uid)
            .map(|u| u.username.clone())
            .unwrap_or_default();
        let writes_as_self = params.get(1).and_then(Value::as_str) == Some(username.as_str());
        if !matches!(kind, "typing" | "user-activity")
            || !writes_as_self
            || !store.can_access(rid, &login.uid)
        {
            return Err(not_allowed());
        }
        drop(store);
        let args = Value::Array(params[1..].to_vec());
        let mut emits = vec![crate::store::Emit::Stream {
            collection: "stream-notify-room",
            event: event.to_string(),
            args: Arc::from(args.to_string()),
        }];
        if kind == "user-activity" {
            let typing = params
                .get(2)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "user-typing"));
            emits.push(crate::store::Emit::Stream {
                collection: "stream-notify-room",
                event: format!("{rid}/typing"),
                args: Arc::from(json!([username, typing]).to_string()),
            });
        }
        self.sim.hub.emit_except(emits, Some(self.id));
        Ok(None)
    }

    // ---- subscriptions -----------------------------------------------
}

/// Reads the `login` method's argument: `{resume}`, or `{user, password}`
/// (optionally wrapped as `{totp:{login, code}}`).
pub(super) fn parse_login_params(arg: Option<&Value>) -> Result<Credential, MeteorError> {
    let Some(Value::Object(o)) = arg else {
        return Err(MeteorError::new(400, "Match failed"));
    };
    if let Some(totp) = o.get("totp") {
        let code = totp.get("code").and_then(Value::as_str).map(str::to_string);
        let mut cred = parse_login_params(totp.get("login"))?;
        if let Credential::Password { code: c, .. } = &mut cred {
            *c = code;
        }
        return Ok(cred);
    }
    if let Some(r) = o.get("resume") {
        return match r.as_str() {
            Some(t) => Ok(Credential::Resume(t.to_string())),
            None => Err(MeteorError::new(400, "Match failed")),
        };
    }
    let (Some(user), Some(password)) = (o.get("user"), o.get("password")) else {
        return Err(MeteorError::new(
            400,
            "Unrecognized options for login request",
        ));
    };
    let user = if let Some(u) = user.get("username").and_then(Value::as_str) {
        UserRef::Username(u.to_string())
    } else if let Some(e) = user.get("email").and_then(Value::as_str) {
        UserRef::Email(e.to_string())
    } else if let Some(i) = user.get("id").and_then(Value::as_str) {
        UserRef::Id(i.to_string())
    } else if let Some(s) = user.as_str() {
        if s.contains('@') {
            UserRef::Email(s.to_string())
        } else {
            UserRef::Username(s.to_string())
        }
    } else {
        return Err(MeteorError::new(400, "Match failed"));
    };
    let password = match password {
        Value::String(p) => Password::Plain(p.clone()),
        Value::Object(p) if p.get("algorithm").and_then(Value::as_str) == Some("sha-256") => {
            match p.get("digest").and_then(Value::as_str) {
                Some(d) => Password::Digest(d.to_string()),
                None => return Err(MeteorError::new(400, "Match failed")),
            }
        }
        _ => return Err(MeteorError::new(400, "Match failed")),
    };
    Ok(Credential::Password {
        user,
        password,
        code: None,
    })
}
