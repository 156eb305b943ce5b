//! The Rocket.Chat settings and deployment options rcsim imitates. The
//! defaults are a real server's defaults (`docs/protocol/rocketchat.md` §9), which
//! are hostile to a backend that logs many users in from one IP; each can be
//! switched per test with [`crate::Rcsim::update_settings`].

use std::time::Duration;

/// Which Rocket.Chat line `users.createToken` behaves like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateTokenProfile {
    /// 7.x: `{userId}` or `{username}`, allowed when the server's
    /// `CREATE_TOKENS_FOR_USERS` env is `true`.
    V7,
    /// 8.x: `{userId, secret}`, the secret being `CREATE_TOKENS_FOR_USERS_SECRET`.
    V8,
}

/// Runtime-switchable behaviour. Field names follow the Rocket.Chat setting
/// they stand for where there is one.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `API_Enable_Rate_Limiter`.
    pub rest_rate_limiter: bool,
    /// `API_Enable_Rate_Limiter_Limit_Calls_Default`.
    pub rest_rate_limit_calls: u32,
    /// `API_Enable_Rate_Limiter_Limit_Time_Default`.
    pub rest_rate_limit_window: Duration,
    /// `Block_Multiple_Failed_Logins_Enabled`.
    pub block_failed_logins: bool,
    /// `Block_Multiple_Failed_Logins_Attempts_Until_Block_by_User`.
    pub failed_logins_until_block_user: u32,
    /// `Block_Multiple_Failed_Logins_Attempts_Until_Block_By_Ip`.
    pub failed_logins_until_block_ip: u32,
    /// `Block_Multiple_Failed_Logins_Time_To_Unblock_By_{User,Ip}_In_Minutes`.
    pub failed_login_block_time: Duration,
    /// `Accounts_TwoFactorAuthentication_Enabled` with the password fallback:
    /// `users.update` demands `x-2fa-code`.
    pub two_factor_on_update: bool,
    /// `Accounts_TwoFactorAuthentication_RememberFor`.
    pub two_factor_remember_for: Duration,
    /// `Accounts_TwoFactorAuthentication_By_Email_Auto_Opt_In`.
    pub email_2fa_auto_opt_in: bool,
    /// `Accounts_TwoFactorAuthentication_By_Email_Enabled`.
    pub email_2fa_enabled: bool,
    /// Meteor's default accounts rule: 5 `login` calls per 10 s per DDP connection.
    pub ddp_login_rate_limit: bool,
    /// `DDP_Rate_Limit_*_Enabled`, as `method.call` applies the DDP limiter.
    pub ddp_rate_limiter: bool,
    /// `DDP_Rate_Limit_User_By_Method_Interval_Time` and
    /// `DDP_Rate_Limit_Connection_By_Method_Interval_Time` (10 s).
    pub ddp_rate_limit_by_method_interval: Duration,
    /// DDP methods this server no longer has (Rocket.Chat 9 removes the
    /// orphans, `messages/get` and `rooms/get` among them): `method.call`
    /// answers them "not found".
    pub removed_methods: Vec<String>,
    /// How `users.createToken` behaves.
    pub create_token_profile: CreateTokenProfile,
    /// 7.x env `CREATE_TOKENS_FOR_USERS`.
    pub create_tokens_for_users: bool,
    /// 8.x env `CREATE_TOKENS_FOR_USERS_SECRET`; `None` makes every call fail.
    pub create_tokens_secret: Option<String>,
    /// Meteor `heartbeatInterval`: silence before the server pings.
    pub heartbeat_interval: Duration,
    /// Meteor `heartbeatTimeout`: silence after that ping before it closes.
    pub heartbeat_timeout: Duration,
    /// The sockjs socket timeout before DDP `connect` (45 s on Meteor).
    pub connect_timeout: Duration,
    /// Send `{"server_id":"0"}` first, as Meteor 1.x/2.x and the ddp-streamer do.
    pub send_server_id: bool,
    /// `updated` before `result` (Meteor's usual order) or after it (the ddp-streamer's).
    pub updated_before_result: bool,
    /// `Accounts_LoginExpiration` in days.
    pub login_expiration_days: i64,
    /// `UI_Use_Real_Name`: messages carry `u.name`.
    pub use_real_name: bool,
    /// `Site_Url`, for `avatarUrl`; empty means the server's own URL.
    pub site_url: String,
    /// What `GET /api/info` reports.
    pub server_version: String,
    /// Largest inbound DDP frame (Meteor has no small limit; sockjs takes large frames).
    pub max_ddp_frame: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rest_rate_limiter: true,
            rest_rate_limit_calls: 10,
            rest_rate_limit_window: Duration::from_secs(60),
            block_failed_logins: true,
            failed_logins_until_block_user: 10,
            failed_logins_until_block_ip: 50,
            failed_login_block_time: Duration::from_secs(5 * 60),
            two_factor_on_update: true,
            two_factor_remember_for: Duration::from_secs(1800),
            email_2fa_auto_opt_in: true,
            email_2fa_enabled: true,
            ddp_login_rate_limit: true,
            ddp_rate_limiter: true,
            ddp_rate_limit_by_method_interval: Duration::from_secs(10),
            removed_methods: vec![],
            create_token_profile: CreateTokenProfile::V8,
            create_tokens_for_users: false,
            create_tokens_secret: None,
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(45),
            send_server_id: true,
            updated_before_result: true,
            login_expiration_days: 90,
            use_real_name: false,
            site_url: String::new(),
            server_version: "7.10.0".into(),
            max_ddp_frame: 16 << 20,
        }
    }
}

impl Settings {
    /// Everything that gets in a test's way switched off: no rate limits, no
    /// login blocking, no two-factor. Heartbeats stay on.
    pub fn permissive() -> Self {
        Settings {
            rest_rate_limiter: false,
            block_failed_logins: false,
            two_factor_on_update: false,
            email_2fa_auto_opt_in: false,
            ddp_login_rate_limit: false,
            ddp_rate_limiter: false,
            ..Settings::default()
        }
    }

    /// The major of `server_version` (8 when it does not read), for what
    /// changed between releases.
    pub fn major_version(&self) -> u32 {
        self.server_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(8)
    }
}
