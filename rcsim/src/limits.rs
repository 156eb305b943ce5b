//! Rocket.Chat's throttles: the REST rate limiter (fixed window per route,
//! counted per client IP), the DDP rate limiter's default rules (as
//! `method.call` applies them) and failed-login blocking (per user and per IP).

use crate::error::MeteorError;
use crate::settings::Settings;
use serde_json::json;
use std::collections::HashMap;

/// What the limiter says about one call; becomes the `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug)]
pub struct RateInfo {
    /// `X-RateLimit-Limit`.
    pub limit: u32,
    /// `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// `X-RateLimit-Reset`, epoch ms.
    pub reset_ms: i64,
    /// Over the limit: answer 429.
    pub blocked: bool,
}

struct Window {
    start: i64,
    counts: HashMap<String, u32>,
}

/// Meteor's `RateLimiter` with RC's one rule `{IPAddr, route}` per route: a
/// fixed window per route (shared by all IPs), counters per IP. The call is
/// counted before it is checked, so calls 1..=limit pass.
#[derive(Default)]
pub struct RateLimiter {
    routes: HashMap<String, Window>,
}

impl RateLimiter {
    /// Counts a call and says whether it may proceed.
    pub fn hit(&mut self, route: &str, ip: &str, limit: u32, window_ms: i64, now: i64) -> RateInfo {
        let w = self
            .routes
            .entry(route.to_string())
            .or_insert_with(|| Window {
                start: now,
                counts: HashMap::new(),
            });
        if now - w.start >= window_ms {
            w.start = now;
            w.counts.clear();
        }
        let c = w.counts.entry(ip.to_string()).or_default();
        *c += 1;
        RateInfo {
            limit,
            remaining: limit.saturating_sub(*c),
            reset_ms: w.start + window_ms,
            blocked: *c > limit,
        }
    }

    /// Forgets every counter.
    pub fn reset(&mut self) {
        self.routes.clear();
    }
}

/// One of `DDP_Rate_Limit_*`: a fixed window of its own, counters per key.
struct DdpRule {
    limit: u32,
    window_ms: i64,
    start: Option<i64>,
    counts: HashMap<String, u32>,
}

/// Meteor's `DDPRateLimiter` with Rocket.Chat's default rules
/// (`server/settings/rate.ts`): per IP (120,000 a minute, 127.0.0.1
/// excluded), per user (1,200 a minute), per connection (600 a minute),
/// per user and method (20 per 10 s), per connection and method (10 per
/// 10 s). Every matching rule counts the call, then any over its limit
/// blocks it.
pub struct DdpLimiter {
    rules: [DdpRule; 5],
}

impl Default for DdpLimiter {
    fn default() -> Self {
        let rule = |limit, window_ms| DdpRule {
            limit,
            window_ms,
            start: None,
            counts: HashMap::new(),
        };
        DdpLimiter {
            rules: [
                rule(120_000, 60_000),
                rule(1_200, 60_000),
                rule(600, 60_000),
                rule(20, 10_000),
                rule(10, 10_000),
            ],
        }
    }
}

impl DdpLimiter {
    /// Counts a method call by `uid` on `connection` (for `method.call`,
    /// the hashed login token), the two by-method rules counting over
    /// `by_method_ms`; the wait in ms when a rule blocks it.
    pub fn hit(
        &mut self,
        uid: &str,
        ip: &str,
        connection: &str,
        method: &str,
        now: i64,
        by_method_ms: i64,
    ) -> Option<i64> {
        self.rules[3].window_ms = by_method_ms;
        self.rules[4].window_ms = by_method_ms;
        let keys = [
            (ip != "127.0.0.1").then(|| ip.to_string()),
            Some(uid.to_string()),
            Some(connection.to_string()),
            Some(format!("{method}{uid}")),
            Some(format!("{method}{connection}")),
        ];
        let mut wait = None;
        for (rule, key) in self.rules.iter_mut().zip(keys) {
            let Some(key) = key else { continue };
            let start = match rule.start {
                Some(t) if now - t <= rule.window_ms => t,
                _ => {
                    rule.counts.clear();
                    *rule.start.insert(now)
                }
            };
            let c = rule.counts.entry(key).or_default();
            *c += 1;
            if *c > rule.limit {
                let left = start + rule.window_ms - now;
                wait = Some(wait.map_or(left, |w: i64| w.max(left)));
            }
        }
        wait
    }

    /// Forgets every counter.
    pub fn reset(&mut self) {
        for r in &mut self.rules {
            r.counts.clear();
        }
    }
}

/// The 429 text, with the wait rounded up to seconds.
pub fn too_many_requests(wait_ms: i64) -> String {
    let secs = (wait_ms.max(0) + 999) / 1000;
    format!("Error, too many requests. Please slow down. You must wait {secs} seconds before trying this endpoint again. [error-too-many-requests]")
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: i64,
}

/// `Block_Multiple_Failed_Logins_*`: failures since the last success, per
/// user and per IP; blocked while over the threshold and the last failure is
/// younger than the unblock time.
#[derive(Default)]
pub struct LoginGuard {
    users: HashMap<String, Failures>,
    ips: HashMap<String, Failures>,
}

fn blocked_error(kind: &str) -> MeteorError {
    let (code, text) = if kind == "ip" {
        (
            "error-login-blocked-for-ip",
            "Login has been temporarily blocked For IP",
        )
    } else {
        (
            "error-login-blocked-for-user",
            "Login has been temporarily blocked For User",
        )
    };
    MeteorError::new(code, text).with_details(json!({"function": "Accounts.validateLoginAttempt"}))
}

impl LoginGuard {
    /// The blocking error for this attempt, if any.
    pub fn check(
        &self,
        uid: Option<&str>,
        ip: &str,
        s: &Settings,
        now: i64,
    ) -> Option<MeteorError> {
        if !s.block_failed_logins {
            return None;
        }
        let window = s.failed_login_block_time.as_millis() as i64;
        let over = |f: Option<&Failures>, limit: u32| {
            f.is_some_and(|f| f.count >= limit && now - f.last < window)
        };
        if over(self.ips.get(ip), s.failed_logins_until_block_ip) {
            return Some(blocked_error("ip"));
        }
        if over(
            uid.and_then(|u| self.users.get(u)),
            s.failed_logins_until_block_user,
        ) {
            return Some(blocked_error("user"));
        }
        None
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, uid: Option<&str>, ip: &str, now: i64) {
        let f = self.ips.entry(ip.to_string()).or_default();
        f.count += 1;
        f.last = now;
        if let Some(u) = uid {
            let f = self.users.entry(u.to_string()).or_default();
            f.count += 1;
            f.last = now;
        }
    }

    /// A success resets the user's and the IP's counts.
    pub fn succeeded(&mut self, uid: &str, ip: &str) {
        self.users.remove(uid);
        self.ips.remove(ip);
    }

    /// Forgets every failure.
    pub fn reset(&mut self) {
        self.users.clear();
        self.ips.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_per_route_and_ip() {
        let mut rl = RateLimiter::default();
        for i in 1..=10 {
            let r = rl.hit("/v1/loginpost", "1.1.1.1", 10, 60_000, 1000);
            assert!(!r.blocked, "call {i}");
            assert_eq!(r.remaining, 10 - i);
            assert_eq!(r.reset_ms, 61_000);
        }
        assert!(rl.hit("/v1/loginpost", "1.1.1.1", 10, 60_000, 2000).blocked);
        assert!(!rl.hit("/v1/loginpost", "2.2.2.2", 10, 60_000, 2000).blocked);
        assert!(!rl.hit("/v1/meget", "1.1.1.1", 10, 60_000, 2000).blocked);
        assert!(
            !rl.hit("/v1/loginpost", "1.1.1.1", 10, 60_000, 61_000)
                .blocked
        );
        assert!(too_many_requests(41_001).contains("wait 42 seconds"));
    }

    #[test]
    fn ddp_rules_count_per_token_and_method() {
        let mut l = DdpLimiter::default();
        for i in 0..10 {
            assert_eq!(
                l.hit("u", "127.0.0.1", "t1", "messages/get", 1, 10_000),
                None,
                "call {i}"
            );
        }
        assert_eq!(
            l.hit("u", "127.0.0.1", "t1", "messages/get", 2_000, 10_000),
            Some(8_001)
        );
        // Another method, or the window over: allowed again.
        assert_eq!(
            l.hit("u", "127.0.0.1", "t1", "rooms/get", 2_000, 10_000),
            None
        );
        assert_eq!(
            l.hit("u", "127.0.0.1", "t1", "messages/get", 10_002, 10_000),
            None
        );
        // Another user's token has its own counters.
        assert_eq!(
            l.hit("v", "127.0.0.1", "t2", "messages/get", 10_003, 10_000),
            None
        );
    }

    #[test]
    fn blocks_user_after_ten_failures() {
        let s = Settings::default();
        let mut g = LoginGuard::default();
        for _ in 0..9 {
            g.failed(Some("u"), "ip", 0);
        }
        assert!(g.check(Some("u"), "ip", &s, 1).is_none());
        g.failed(Some("u"), "ip", 0);
        assert_eq!(
            g.check(Some("u"), "ip", &s, 1).unwrap().error,
            "error-login-blocked-for-user"
        );
        assert!(g.check(Some("u"), "ip", &s, 5 * 60_000).is_none());
    }
}
