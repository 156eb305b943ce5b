//! Configuration: `config.toml`, parsed strictly into one set of structs
//! (unknown keys are errors that name the key), then validated in place.
//! Secrets resolve as they are read (inline, an environment variable, a file,
//! or a systemd credential) and never print. Tests and the demo build a
//! [`Config`] as values ([`Config::for_rocketchat`]), not as TOML text.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret: written in the config as `"inline"`, `{ env = "NAME" }`,
/// `{ file = "/path" }` or `{ credential = "name" }` (read from
/// `$CREDENTIALS_DIRECTORY/name`, systemd's `LoadCredential=`), and resolved
/// as it is read. `Debug` prints `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a value (tests, the demo).
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from, as written.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
    Credential { credential: String },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = SecretSource::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a secret is \"inline\", { env = \"NAME\" }, { file = \"/path\" } or { credential = \"name\" }",
            )
        })?;
        let v = match source {
            SecretSource::Inline(v) => v,
            SecretSource::Env { env } => std::env::var(&env).map_err(|_| {
                serde::de::Error::custom(format!("environment variable {env} is not set"))
            })?,
            SecretSource::File { file } => {
                read_secret_file(&file).map_err(serde::de::Error::custom)?
            }
            SecretSource::Credential { credential } => {
                let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| {
                    serde::de::Error::custom(format!("credential {credential:?} but CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"))
                })?;
                read_secret_file(&Path::new(&dir).join(credential))
                    .map_err(serde::de::Error::custom)?
            }
        };
        if v.is_empty() {
            return Err(serde::de::Error::custom("the secret is empty"));
        }
        Ok(Secret(v))
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// How imrelay obtains a user's Rocket.Chat token (`docs/protocol/rocketchat.md` §9).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// The session's own DDP socket logs in with the password digest: only
    /// per-connection limits apply (the default).
    #[default]
    Ddp,
    /// The admin mints tokens with `users.createToken`.
    CreateToken,
    /// REST `/api/v1/login`: 10 per minute per IP on a default server.
    Rest,
}

/// Which password imrelay gives the users it creates and logs in.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PasswordPolicy {
    /// HMAC-SHA256(secret, username), hex: unique per user, never stored.
    #[default]
    Derived,
    /// One shared password (user bases made by the older .NET integration).
    Default,
}

/// A named API key for a backend app.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Shown in logs instead of the key.
    pub name: String,
    /// The key.
    pub key: Secret,
}

fn listen_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e| {
        serde::de::Error::custom(format!("{e} (expected host:port, e.g. 127.0.0.1:8080)"))
    })
}

/// `[server]`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    #[serde(deserialize_with = "listen_addr")]
    pub listen: SocketAddr,
    /// Backend API keys (at least one, each of 16 characters or more).
    pub api_keys: Vec<ApiKey>,
    /// Browser origins allowed (CORS and the websocket `Origin` check).
    pub allowed_origins: Origins,
    /// The SignalR hub path.
    pub hub_path: String,
    /// Upper bound on a graceful stop.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Largest backend request body.
    pub max_body_bytes: usize,
    /// Largest body passed through to Rocket.Chat (uploads).
    pub max_proxy_body_bytes: usize,
    /// How long a request body may take to arrive.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Open TCP connections at most (what the descriptor limit leaves is
    /// lower, then that applies).
    pub max_connections: usize,
    /// Open TCP connections from one IP address (an IPv6 /64) at most.
    pub max_connections_per_ip: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: vec![],
            allowed_origins: Origins::SameOrigin,
            hub_path: "/signalr".into(),
            shutdown_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_proxy_body_bytes: 16 << 20,
            body_timeout: Duration::from_secs(10),
            max_connections: 20_000,
            max_connections_per_ip: 4_000,
        }
    }
}

/// Which browser origins may use the client endpoints (`server.allowed_origins`).
#[derive(Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(try_from = "Vec<String>")]
pub enum Origins {
    /// Only pages served from imrelay's own host (`Origin` matches `Host`):
    /// the default, safe when nothing is configured.
    #[default]
    SameOrigin,
    /// Any origin (`["*"]`): an explicit choice.
    Any,
    /// These origins (scheme, host and port, in lower case), plus the same origin.
    List(Vec<String>),
}

impl TryFrom<Vec<String>> for Origins {
    type Error = String;

    fn try_from(list: Vec<String>) -> Result<Origins, String> {
        if list.iter().any(|o| o == "*") {
            return if list.len() == 1 {
                Ok(Origins::Any)
            } else {
                Err("\"*\" allows any origin; list it alone".into())
            };
        }
        // Browsers send scheme and host in lower case.
        let list: Vec<String> = list.iter().map(|o| o.to_ascii_lowercase()).collect();
        let is_origin = |o: &str| {
            o.split_once("://").is_some_and(|(scheme, authority)| {
                matches!(scheme, "http" | "https")
                    && !authority.is_empty()
                    && !authority.contains(['/', '?', '#'])
            })
        };
        if let Some(bad) = list.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "{bad:?} is not an origin (scheme://host[:port], no path or trailing slash)"
            ));
        }
        Ok(if list.is_empty() {
            Origins::SameOrigin
        } else {
            Origins::List(list)
        })
    }
}

impl Origins {
    /// Whether a browser page from `origin` may connect to a server that it
    /// reached as `host` (the request's `Host` header).
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let same = host.is_some_and(|h| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(h))
        });
        match self {
            Origins::Any => true,
            Origins::SameOrigin => same,
            Origins::List(list) => same || list.iter().any(|a| a.eq_ignore_ascii_case(origin)),
        }
    }
}

/// `[rocketchat]`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RocketChatConfig {
    /// `http(s)://host[:port]`, no trailing slash.
    pub url: String,
    /// `ws(s)://host[:port]/websocket`; derived from `url` when left out.
    #[serde(default)]
    pub ws_url: String,
    /// Admin account.
    pub admin_username: String,
    /// Its password.
    pub admin_password: Secret,
    /// Per REST call.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest DDP frame accepted (reassembled).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// How users' tokens are obtained.
    #[serde(default)]
    pub login_method: LoginMethod,
    /// `CREATE_TOKENS_FOR_USERS_SECRET` for `login_method = "create_token"` on 8.x.
    #[serde(default)]
    pub create_token_secret: Option<Secret>,
    /// Front-end auth mode: login also returns the Rocket.Chat token, so a
    /// browser can hold its own DDP connection.
    #[serde(default)]
    pub expose_rc_token: bool,
    /// How often the admin agent checks that Rocket.Chat answers (`/readyz`).
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_frame() -> usize {
    16 << 20
}

impl RocketChatConfig {
    /// A server at `url` with this admin account, everything else default.
    pub fn new(url: &str, admin_username: &str, admin_password: Secret) -> Self {
        RocketChatConfig {
            url: url.into(),
            ws_url: String::new(),
            admin_username: admin_username.into(),
            admin_password,
            request_timeout: default_request_timeout(),
            max_frame_bytes: default_max_frame(),
            login_method: LoginMethod::default(),
            create_token_secret: None,
            expose_rc_token: false,
            health_interval: default_health_interval(),
        }
    }
}

/// `[users]`.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Password policy.
    pub password: PasswordPolicy,
    /// Secret for `derived`.
    pub password_secret: Option<Secret>,
    /// Password for `default`.
    pub default_password: Option<Secret>,
    /// Accounts that are never end users (lower case once validated): the
    /// admin, Rocket.Chat's own `rocket.cat`, and those configured (bots).
    pub reserved: Vec<String>,
}

/// `[session]`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session ends after this long without activity.
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// First reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Ping Rocket.Chat after this much silence; reconnect after twice it.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long a login may take.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Connected clients keep their user's session alive (otherwise only
    /// backend logins do, and a session can end under open clients).
    pub clients_keep_alive: bool,
    /// After a DDP reconnect, what Rocket.Chat emitted meanwhile is fetched
    /// if the socket was away at most this long; clients are told to reload
    /// otherwise.
    #[serde(with = "humantime_serde")]
    pub backfill_max_age: Duration,
    /// ... and if it holds at most this many messages.
    pub backfill_max_messages: usize,
    /// Backfill REST calls a minute per route, for all users together
    /// (Rocket.Chat's API_Enable_Rate_Limiter_Limit_Calls_Default); 0 when
    /// the users' role holds api-bypass-rate-limit.
    pub backfill_rate: u32,
    /// Backfills running at once.
    pub backfill_concurrency: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_ttl: Duration::from_secs(3600),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(25),
            login_timeout: Duration::from_secs(15),
            clients_keep_alive: true,
            backfill_max_age: Duration::from_secs(3600),
            backfill_max_messages: 500,
            backfill_rate: 10,
            backfill_concurrency: 16,
        }
    }
}

/// `[client]`.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Websocket ping interval.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Close after this much silence.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Longest output may wait for a client's socket to take it.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Deliveries (the events of one read from Rocket.Chat each) queued per
    /// client before it is closed as a slow consumer.
    pub queue_limit: usize,
    /// Events kept per user for clients that reconnect with `since`
    /// (0: none, and a reconnecting client always reloads).
    pub history_size: usize,
    /// How long an event stays replayable.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// How long a SignalR connection with stateful reconnect stays
    /// resumable after its transport drops.
    #[serde(with = "humantime_serde")]
    pub signalr_reconnect_window: Duration,
    /// JWTs signed by the backend accepted as client credentials.
    pub jwt: Option<JwtConfig>,
    /// ABP's `enc_auth_token` passphrase (`AppConsts.DefaultPassPhrase`).
    pub abp_passphrase: Option<Secret>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            queue_limit: 256,
            history_size: 64,
            history_ttl: Duration::from_secs(120),
            signalr_reconnect_window: Duration::from_secs(30),
            jwt: None,
            abp_passphrase: None,
        }
    }
}

/// `[client.jwt]`: HS256 JWTs from the backend.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The shared HS256 secret.
    pub secret: Secret,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// The claim holding the username (`sub`, or ABP's
    /// `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name`).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_username_claim() -> String {
    "sub".into()
}

/// The whole configuration.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[rocketchat]`.
    pub rocketchat: RocketChatConfig,
    /// `[users]`.
    #[serde(default)]
    pub users: UsersConfig,
    /// `[session]`.
    #[serde(default)]
    pub session: SessionConfig,
    /// `[client]`.
    #[serde(default)]
    pub client: ClientConfig,
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validated()
    }

    /// Checks what the types alone do not, naming the key, and completes
    /// what is derived (the DDP URL, the reserved accounts).
    pub fn validated(mut self) -> Result<Config, ConfigError> {
        for (i, k) in self.server.api_keys.iter().enumerate() {
            if k.key.expose().len() < 16 {
                return Err(invalid(
                    format!("server.api_keys[{i}].key"),
                    format!("({}) use at least 16 characters", k.name),
                ));
            }
        }
        if self.server.api_keys.is_empty() {
            return Err(invalid(
                "server.api_keys",
                "configure at least one key for backend apps",
            ));
        }
        if !self.server.hub_path.starts_with('/') {
            return Err(invalid("server.hub_path", "must start with '/'"));
        }
        let sv = &self.server;
        if sv.body_timeout < Duration::from_millis(100) {
            return Err(invalid("server.body_timeout", "at least 100ms"));
        }
        if sv.max_connections == 0 || sv.max_connections_per_ip == 0 {
            return Err(invalid(
                "server.max_connections, max_connections_per_ip",
                "at least 1",
            ));
        }
        let rc = &mut self.rocketchat;
        rc.url = rc.url.trim_end_matches('/').to_string();
        if rc.ws_url.is_empty() {
            rc.ws_url = derive_ws_url(&rc.url)
                .ok_or_else(|| invalid("rocketchat.url", "must start with http:// or https://"))?;
        }
        if !(rc.ws_url.starts_with("ws://") || rc.ws_url.starts_with("wss://")) {
            return Err(invalid(
                "rocketchat.ws_url",
                "must start with ws:// or wss://",
            ));
        }
        if rc.max_frame_bytes < 64 << 10 {
            return Err(invalid("rocketchat.max_frame_bytes", "at least 65536"));
        }
        if rc.health_interval < Duration::from_millis(100) {
            return Err(invalid("rocketchat.health_interval", "at least 100ms"));
        }
        let users = &mut self.users;
        match users.password {
            PasswordPolicy::Derived if users.password_secret.is_none() => {
                return Err(invalid(
                    "users.password_secret",
                    "required with password = \"derived\"",
                ))
            }
            PasswordPolicy::Default if users.default_password.is_none() => {
                return Err(invalid(
                    "users.default_password",
                    "required with password = \"default\"",
                ))
            }
            _ => {}
        }
        let mut reserved: Vec<String> = vec![];
        for name in [self.rocketchat.admin_username.as_str(), "rocket.cat"]
            .into_iter()
            .chain(users.reserved.iter().map(String::as_str))
        {
            let name = name.to_ascii_lowercase();
            if !reserved.contains(&name) {
                reserved.push(name);
            }
        }
        users.reserved = reserved;
        let s = &self.session;
        if s.reconnect_min.is_zero() || s.reconnect_max < s.reconnect_min {
            return Err(invalid(
                "session.reconnect_min/reconnect_max",
                "need 0 < reconnect_min <= reconnect_max",
            ));
        }
        if s.backfill_concurrency == 0 {
            return Err(invalid("session.backfill_concurrency", "at least 1"));
        }
        if s.backfill_rate > 6000 {
            return Err(invalid(
                "session.backfill_rate",
                "at most 6000 a minute (0: not paced)",
            ));
        }
        if s.idle_ttl < Duration::from_secs(1) {
            return Err(invalid("session.idle_ttl", "at least 1s"));
        }
        let c = &self.client;
        if c.heartbeat_timeout <= c.heartbeat_interval {
            return Err(invalid(
                "client.heartbeat_timeout",
                "must be longer than client.heartbeat_interval",
            ));
        }
        if c.queue_limit < 2 {
            return Err(invalid("client.queue_limit", "at least 2"));
        }
        if c.history_size > 100_000 {
            return Err(invalid(
                "client.history_size",
                "at most 100000 (events kept per user)",
            ));
        }
        if c.write_timeout < Duration::from_millis(100) {
            return Err(invalid("client.write_timeout", "at least 100ms"));
        }
        Ok(self)
    }

    /// A configuration for tests and the demo: everything default, pointed
    /// at `rc_url`, with the given admin and API key, listening on port 0.
    pub fn for_rocketchat(rc_url: &str, admin: (&str, &str), api_key: &str) -> Config {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                api_keys: vec![ApiKey {
                    name: "default".into(),
                    key: Secret::new(api_key),
                }],
                ..ServerConfig::default()
            },
            rocketchat: RocketChatConfig::new(rc_url, admin.0, Secret::new(admin.1)),
            users: UsersConfig {
                password_secret: Some(Secret::new("imrelay-demo-password-secret")),
                ..UsersConfig::default()
            },
            session: SessionConfig::default(),
            client: ClientConfig::default(),
        }
        .validated()
        .expect("the built-in config is valid")
    }
}

/// Why a configuration was refused, as the operator reads it at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// What was wrong in a file, and which file.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong in it.
        error: Box<ConfigError>,
    },
    /// Not TOML, an unknown key, or a value of the wrong type or form.
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    /// A value its type allows but imrelay cannot run with.
    #[error("{key}: {why}")]
    Invalid {
        /// The key, as it is written in the file (`server.api_keys[0].key`).
        key: String,
        /// What it needs to be.
        why: String,
    },
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

fn derive_ws_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .map(|r| ("wss://", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("ws://", r)))?;
    Some(format!("{}{}/websocket", rest.0, rest.1))
}

#[cfg(test)]
mod tests;
