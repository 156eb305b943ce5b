//! # imrelay
//!
//! Puts a Rocket.Chat server behind a business application as its
//! instant-messaging component (see `README.md` and `docs/DESIGN.md`).
//!
//! Layout (docs/ARCHITECTURE.md draws it): a relay core and three adapters
//! around it, imports pointing one way (adapters → core → upstream/config).
//! - [`core`]: the relay, knowing no wire format and no HTTP: the façade
//!   ([`core::relay::Relay`]), the registry shards, the session actors, the
//!   token cache, the admin agent, readiness, the username rule.
//! - [`rocketchat`]: upstream: REST client, DDP frames and connection, event
//!   mapping, one error classification, the readiness probe, the doctor.
//! - [`clients`]: downstream: credentials (client token, JWT, ABP), the
//!   upgrade path, the native protocol and the SignalR hub.
//! - [`api`]: the backend HTTP API (API key, users, sessions, proxy, health).
//! - [`config`]: `config.toml` as one set of structs; [`admission`]: the
//!   listener's connection bounds; [`fragments`]: websocket reassembly.
//! - [`demo`]: `imrelay demo`.
//! - this file: [`Daemon`], the running daemon shared by `main` and tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod admission;
pub(crate) mod api;
pub mod clients;
pub(crate) mod cluster;
pub mod config;
pub mod core;
pub mod demo;
pub(crate) mod fragments;
pub mod rocketchat;
#[cfg(test)]
mod testing;

use crate::core::admin::{self, AdminAgent};
use crate::core::cache::Entry;
use crate::core::engine::{memory::MemoryEngine, Engine};
use crate::core::readiness;
use crate::core::registry::Registries;
use crate::core::relay::Relay;
use actix::{Actor, Addr};
use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, ServerHandle};
use actix_web::{web, App};
use config::Config;
use futures_util::future::{Either, FutureExt};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A running daemon (inside an actix System).
pub struct Daemon {
    addr: SocketAddr,
    server: ServerHandle,
    registry: Registries,
    admin: Addr<AdminAgent>,
    ready: Arc<readiness::Readiness>,
    cfg: Arc<Config>,
    relay: web::Data<Relay>,
    admission: Arc<admission::Admission>,
}

/// Installs rustls' crypto provider once: awc's rustls support panics at
/// the first TLS connection without one.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Routes added to the daemon's app (the demo's page and endpoints).
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Cores to spread over: one HTTP worker and one registry shard each.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Connections the listener holds before they are accepted. std's `bind`
/// listens with 128, and a restart brings every client back at once: each
/// connection past the backlog waits a second or more for its SYN to be
/// sent again (loadgen saw 128 listen overflows connecting 9,000 clients).
/// The kernel caps it at `net.core.somaxconn` (4096 by default since 5.4).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Listens again on an already listening socket with `backlog` (Linux takes
/// a second `listen()` as a new backlog), whoever bound it.
pub fn widen_backlog(listener: &TcpListener, backlog: i32) -> std::io::Result<()> {
    socket2::SockRef::from(listener).listen(backlog)
}

impl Daemon {
    /// Starts everything on `listener`. Call inside an actix System
    /// (`#[actix_web::main]`, `#[actix_rt::test]`).
    pub fn start(cfg: Config, listener: TcpListener) -> std::io::Result<Daemon> {
        Daemon::start_with(cfg, listener, None)
    }

    /// [`Daemon::start`] with extra routes.
    pub fn start_with(
        cfg: Config,
        listener: TcpListener,
        extra: Option<ExtraRoutes>,
    ) -> std::io::Result<Daemon> {
        install_crypto_provider();
        widen_backlog(&listener, LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let cfg = Arc::new(cfg);
        let history = core::engine::history::Bounds {
            size: cfg.client.history_size,
            ttl: cfg.client.history_ttl,
        };
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new(cfg.session.idle_ttl, history));
        let ready = Arc::new(readiness::Readiness::default());
        // How each client protocol writes an event, for the registry to use
        // without knowing either wire format.
        let wires = [
            clients::native::event_frame as core::registry::EventFrame,
            clients::signalr::protocol::invocation_frame,
        ];
        let backfills = core::backfill::Backfills::start(&cfg.session);
        let registry = Registries::start(Arc::clone(&cfg), Arc::clone(&engine), backfills, wires);
        let fds = admission::descriptor_limit();
        let admission = Arc::new(admission::Admission::new(
            cfg.server.max_connections,
            cfg.server.max_connections_per_ip,
            fds,
        ));
        log::info!(
            "accepting at most {} connections, {} per IP address (descriptor limit {})",
            admission.max_total(),
            cfg.server.max_connections_per_ip,
            fds.map_or("unknown".into(), |n| n.to_string())
        );
        let admin = AdminAgent::new(Arc::clone(&cfg), Arc::clone(&ready)).start();
        let relay = web::Data::new(Relay::new(
            Arc::clone(&cfg),
            engine,
            registry.clone(),
            admin.clone(),
            Arc::clone(&ready),
        ));
        let hub = web::Data::new(clients::signalr::Connections::default());
        let admitted = web::Data::from(Arc::clone(&admission));
        let max_body = cfg.server.max_body_bytes;
        let hub_path = cfg.server.hub_path.clone();
        let (rc_url, rc_timeout) = (cfg.rocketchat.url.clone(), cfg.rocketchat.request_timeout);
        let make_app = {
            let relay = relay.clone();
            move || {
                App::new()
                    .app_data(relay.clone())
                    .app_data(hub.clone())
                    .app_data(admitted.clone())
                    // awc::Client is !Send: one REST client per worker thread.
                    .app_data(web::Data::new(rocketchat::rest::RestClient::new(
                        &rc_url, rc_timeout,
                    )))
                    .app_data(
                        web::JsonConfig::default()
                            .limit(max_body)
                            .error_handler(api::errors::json_error),
                    )
                    .app_data(web::PayloadConfig::new(max_body))
                    .configure(|c| {
                        if let Some(extra) = &extra {
                            extra(c);
                        }
                    })
                    .configure(api::configure)
                    .configure(clients::configure(hub_path.clone()))
            }
        };
        // actix-web's HttpServer, assembled by hand for one addition: an
        // upgrade service, so client websockets leave the HTTP dispatcher
        // and its fixed buffers (see clients::upgrade).
        let server = actix_server::Server::build()
            .workers(cores())
            .disable_signals()
            .shutdown_timeout(cfg.server.shutdown_timeout.as_secs().max(1))
            .listen("imrelay", listener, {
                let admission = Arc::clone(&admission);
                move || {
                    let upgrade_app = make_app.clone();
                    let upgrade = actix_service::fn_factory(move || {
                        let app = upgrade_app();
                        async move {
                            let app = app
                                .into_factory()
                                .new_service(AppConfig::default())
                                .await
                                .map_err(|_| log::error!("the upgrade service did not start"))?;
                            let app = Rc::new(app);
                            Ok::<_, ()>(actix_service::fn_service(move |(req, framed)| {
                                clients::upgrade::serve(Rc::clone(&app), req, framed)
                            }))
                        }
                    });
                    let main = make_app()
                        .into_factory()
                        .map_err(|e: actix_web::Error| e.error_response());
                    let http = HttpService::build()
                        // Pushes are small frames written one by one: with Nagle
                        // each would wait for the ACK of the one before, that is
                        // for the client to read it. (Kestrel, which SignalR
                        // front ends know, disables it too.)
                        .tcp_nodelay(true)
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(addr)
                        .upgrade(upgrade)
                        .finish(map_config(main, |_| AppConfig::default()))
                        .tcp();
                    let admission = Arc::clone(&admission);
                    actix_service::apply_fn_factory(
                        http,
                        move |io: actix_rt::net::TcpStream, svc| {
                            // Refused: the socket is dropped before a byte is read.
                            let admitted = io
                                .peer_addr()
                                .ok()
                                .and_then(|peer| admission.admit(peer.ip()).ok());
                            // Combinators, not an async block: this future
                            // lives as long as the connection, and an async
                            // block would hold the dispatcher's state twice.
                            match admitted {
                                Some(a) => Either::Left(svc.call(io).map(move |r| {
                                    drop(a);
                                    r
                                })),
                                None => Either::Right(std::future::ready(Ok(()))),
                            }
                        },
                    )
                }
            })?
            .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        log::info!(
            "imrelay listening on http://{addr} (Rocket.Chat at {})",
            cfg.rocketchat.url
        );
        Ok(Daemon {
            addr,
            server: handle,
            registry,
            admin,
            ready,
            cfg,
            relay,
            admission,
        })
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin agent is logged in.
    pub fn is_ready(&self) -> bool {
        self.ready.is_ready()
    }

    /// TCP connections open now (every kind).
    pub fn open_connections(&self) -> usize {
        self.admission.open()
    }

    /// The user's login, unless it expired (for tests).
    pub async fn live(&self, username: &str) -> Option<Entry> {
        self.relay.live(username).await.ok().flatten()
    }

    /// Graceful stop, bounded by `server.shutdown_timeout`: not ready, clients
    /// closed with 1001, sessions close their DDP sockets, the admin logs
    /// out, then the HTTP server stops.
    pub async fn shutdown(self) {
        let budget = self.cfg.server.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + budget;
        self.ready.stop();
        let clients = self.registry.shutdown().await;
        log::info!("shutting down: {clients} clients told, sessions closing");
        if tokio::time::timeout_at(deadline, self.admin.send(admin::Logout))
            .await
            .is_err()
        {
            log::warn!("shutdown: the admin logout did not finish in time");
        }
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(100));
        if tokio::time::timeout(left, self.server.stop(true))
            .await
            .is_err()
        {
            log::warn!("shutdown: connections still open after {budget:?}; closing them");
            self.server.stop(false).await;
        }
    }
}
