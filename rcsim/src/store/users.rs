//! Users and their login tokens.

use super::*;

/// Input of [`Store::create_user`].
#[derive(Clone, Debug, Default)]
pub struct NewUser {
    /// `username`.
    pub username: String,
    /// `name`.
    pub name: String,
    /// `email`.
    pub email: String,
    /// Plain password.
    pub password: String,
    /// `roles`; empty means `["user"]`.
    pub roles: Vec<String>,
    /// `verified`.
    pub verified: bool,
    /// `joinDefaultChannels`.
    pub join_default_channels: bool,
    /// `active` (`None` = true).
    pub active: Option<bool>,
    /// Set `createdAt` this far in the past (seeded admins are old accounts,
    /// so the two-factor "new user" grace does not apply to them).
    pub age_ms: i64,
    /// Opt the user in to email 2FA (`..._By_Email_Auto_Opt_In`).
    pub email2fa: bool,
}

/// Changes [`Store::update_user`] applies.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    /// `name`.
    pub name: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `active`.
    pub active: Option<bool>,
    /// `roles`.
    pub roles: Option<Vec<String>>,
    /// `verified`.
    pub verified: Option<bool>,
}

/// How a user is named in a call.
#[derive(Clone, Debug)]
pub enum UserRef {
    /// By `_id`.
    Id(String),
    /// By `username`.
    Username(String),
    /// By email address.
    Email(String),
}

impl Store {
    /// Finds a user.
    pub fn find_user(&self, r: &UserRef) -> Option<&User> {
        let id = match r {
            UserRef::Id(id) => id.clone(),
            UserRef::Username(u) => self.by_username.get(&u.to_lowercase())?.clone(),
            UserRef::Email(e) => self.by_email.get(&e.to_lowercase())?.clone(),
        };
        self.users.get(&id)
    }

    /// A user by id.
    pub fn user(&self, uid: &str) -> Option<&User> {
        self.users.get(uid)
    }

    /// A user by id, mutably.
    pub fn user_mut(&mut self, uid: &str) -> Option<&mut User> {
        self.users.get_mut(uid)
    }

    /// All users.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// `users.create` (via `saveUser`): validates, inserts, joins default channels.
    pub fn create_user(&mut self, n: NewUser, out: &mut Vec<Emit>) -> Result<String, MeteorError> {
        if !valid_username(&n.username) {
            return Err(MeteorError::new(
                "error-input-is-not-a-valid-field",
                format!("{} is not a valid username", n.username),
            )
            .with_details(
                json!({"method": "insertOrUpdateUser", "input": n.username, "field": "Username"}),
            ));
        }
        if self.by_username.contains_key(&n.username.to_lowercase()) {
            return Err(field_unavailable(&n.username));
        }
        if !n.email.is_empty() && self.by_email.contains_key(&n.email.to_lowercase()) {
            return Err(field_unavailable(&n.email));
        }
        let now = self.tick();
        let id = ids::random_id();
        let user = User {
            id: id.clone(),
            username: n.username.clone(),
            name: if n.name.is_empty() {
                n.username.clone()
            } else {
                n.name
            },
            emails: if n.email.is_empty() {
                vec![]
            } else {
                vec![Email {
                    address: n.email.clone(),
                    verified: n.verified,
                }]
            },
            password_digest: Some(ids::sha256_hex(&n.password)),
            roles: if n.roles.is_empty() {
                vec!["user".into()]
            } else {
                n.roles
            },
            active: n.active.unwrap_or(true),
            created_at: now - n.age_ms,
            updated_at: now,
            email2fa: n.email2fa,
            kind: "user".into(),
            email_code: None,
        };
        self.by_username
            .insert(n.username.to_lowercase(), id.clone());
        if !n.email.is_empty() {
            self.by_email.insert(n.email.to_lowercase(), id.clone());
        }
        self.users.insert(id.clone(), user);
        if n.join_default_channels {
            let defaults: Vec<String> = self
                .rooms
                .values()
                .filter(|r| r.default)
                .map(|r| r.id.clone())
                .collect();
            for rid in defaults {
                self.add_member(&rid, &id, None, out)?;
            }
        }
        Ok(id)
    }

    /// `users.update`. Returns the hashes of tokens removed (deactivation and
    /// password changes log the user out everywhere, as Meteor's
    /// `setPassword` does by default).
    pub fn update_user(&mut self, uid: &str, p: UserPatch) -> Result<Vec<String>, MeteorError> {
        if !self.users.contains_key(uid) {
            return Err(MeteorError::new("error-invalid-user", "Invalid user"));
        }
        if let Some(u) = &p.username {
            if !valid_username(u) {
                return Err(MeteorError::new(
                    "error-input-is-not-a-valid-field",
                    format!("{u} is not a valid username"),
                ));
            }
            if self
                .by_username
                .get(&u.to_lowercase())
                .is_some_and(|id| id != uid)
            {
                return Err(field_unavailable(u));
            }
        }
        if let Some(e) = &p.email {
            if self
                .by_email
                .get(&e.to_lowercase())
                .is_some_and(|id| id != uid)
            {
                return Err(field_unavailable(e));
            }
        }
        let now = self.tick();
        let mut logout = false;
        let user = self.users.get_mut(uid).expect("checked above");
        if let Some(u) = p.username {
            self.by_username.remove(&user.username.to_lowercase());
            self.by_username.insert(u.to_lowercase(), uid.to_string());
            user.username = u;
        }
        if let Some(e) = p.email {
            for old in &user.emails {
                self.by_email.remove(&old.address.to_lowercase());
            }
            self.by_email.insert(e.to_lowercase(), uid.to_string());
            user.emails = vec![Email {
                address: e,
                verified: p.verified.unwrap_or(false),
            }];
        } else if let Some(v) = p.verified {
            if let Some(first) = user.emails.first_mut() {
                first.verified = v;
            }
        }
        if let Some(n) = p.name {
            user.name = n;
        }
        if let Some(r) = p.roles {
            user.roles = r;
        }
        if let Some(pw) = p.password {
            user.password_digest = Some(ids::sha256_hex(&pw));
            logout = true;
        }
        if let Some(a) = p.active {
            user.active = a;
            logout |= !a;
        }
        user.updated_at = now;
        Ok(if logout {
            self.remove_user_tokens(uid)
        } else {
            vec![]
        })
    }

    /// `users.delete`: removes the user, its tokens and its subscriptions.
    pub fn delete_user(&mut self, uid: &str, out: &mut Vec<Emit>) -> Option<Vec<String>> {
        let user = self.users.get(uid)?.clone();
        let rooms: Vec<String> = self
            .user_rooms
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for rid in rooms {
            self.remove_member(&rid, uid, None, out);
        }
        let removed = self.remove_user_tokens(uid);
        self.users.remove(uid);
        self.by_username.remove(&user.username.to_lowercase());
        for e in &user.emails {
            self.by_email.remove(&e.address.to_lowercase());
        }
        self.user_rooms.remove(uid);
        Some(removed)
    }

    // ---- tokens ------------------------------------------------------

    /// Adds a login token for the user; returns the token itself.
    pub fn add_token(&mut self, uid: &str) -> (String, i64) {
        let token = ids::login_token();
        let when = self.tick();
        self.tokens.insert(
            ids::hash_login_token(&token),
            TokenRec {
                uid: uid.to_string(),
                when,
                expired: false,
                two_factor_until: None,
            },
        );
        // RC keeps at most 50 tokens per user (`ensureLoginTokensLimit`).
        self.tokens.keep_newest(uid, 50);
        (token, when)
    }

    /// The record of a hashed token.
    pub fn token(&self, hashed: &str) -> Option<&TokenRec> {
        self.tokens.get(hashed)
    }

    /// The record of a hashed token, mutably (its `uid` must not change:
    /// the tokens are indexed by it).
    pub fn token_mut(&mut self, hashed: &str) -> Option<&mut TokenRec> {
        self.tokens.get_mut(hashed)
    }

    /// Removes one token.
    pub fn remove_token(&mut self, hashed: &str) -> bool {
        self.tokens.remove(hashed).is_some()
    }

    /// `unsetLoginTokens`: removes all of a user's tokens; returns their hashes.
    pub fn remove_user_tokens(&mut self, uid: &str) -> Vec<String> {
        self.tokens.remove_user(uid)
    }

    /// Marks a user's tokens as past `tokenExpires` (not yet purged).
    pub fn expire_user_tokens(&mut self, uid: &str) -> usize {
        self.tokens.expire_user(uid)
    }

    /// Meteor's `_expireTokens` run: removes every expired token.
    pub fn purge_expired_tokens(&mut self) -> Vec<String> {
        self.tokens.purge_expired()
    }

    /// How many tokens a user holds.
    pub fn token_count(&self, uid: &str) -> usize {
        self.tokens.count(uid)
    }

    // ---- rooms -------------------------------------------------------
}
