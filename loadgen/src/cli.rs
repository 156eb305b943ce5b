//! The command line: modes, protocols, options.

use crate::*;

pub(crate) const SECRET: &str = "loadgen";
pub(crate) const API_KEY: &str = "loadgen-api-key-0123456789";
pub(crate) const PASSWORD: &str = "loadgen-pw";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// imrelay between rcsim and the clients.
    Imrelay,
    /// Clients on rcsim's DDP themselves: the floor with no relay.
    Direct,
    /// A minimal tokio-tungstenite relay: one extra hop, nothing else.
    Forwarder,
}

/// How imrelay's clients connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// `/ws`.
    Native,
    /// `/signalr` (JSON hub protocol).
    Signalr,
}

/// A Redis client crate `loadgen redis` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RedisClient {
    /// `redis` (redis-rs) with its connection manager.
    Redis,
    /// `fred`.
    Fred,
}

#[derive(Parser)]
#[command(about = "imrelay's benchmark (loopback only)")]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) cmd: Option<Cmd>,
    /// Small and quick (under a minute): a smoke test that fails only on lost or duplicated events.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Users (N).
    #[arg(long, default_value_t = 1000)]
    pub(crate) users: usize,
    /// Clients per user (M).
    #[arg(long, default_value_t = 1)]
    pub(crate) clients: usize,
    /// Users per room (K): each message reaches K users.
    #[arg(long, default_value_t = 10)]
    pub(crate) room_size: usize,
    /// Messages in the full-speed pass.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) messages: usize,
    /// Messages per second in the latency pass (default: half of the mode's
    /// full speed). A fixed rate compares the modes at the same offered load.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Client threads in this process.
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// How imrelay's clients connect.
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) protocol: Protocol,
    /// Logins in flight at once (each takes a DDP round trip or three).
    #[arg(long, default_value_t = 256)]
    pub(crate) login_concurrency: usize,
    /// Which modes, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "imrelay,direct,forwarder"
    )]
    pub(crate) modes: Vec<Mode>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/loadgen.json")]
    pub(crate) json: String,
    /// The rcsim binary (default: next to this one).
    #[arg(long)]
    pub(crate) rcsim: Option<String>,
    /// The imrelay binary (default: next to this one).
    #[arg(long)]
    pub(crate) imrelay: Option<String>,
    /// Write each latency-pass sample to DIR/<mode>.csv (receive µs, latency
    /// µs, client thread), to see when the slow events happen.
    #[arg(long, value_name = "DIR")]
    pub(crate) timeline: Option<String>,
    /// Seconds to measure the machine's own latency floor before the modes
    /// (a thread spinning on each core, counting the gaps when it did not
    /// run); 0 skips it, as --quick does.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub(crate) stall_check: f64,
    /// Chaos (imrelay): deliver at --rate (default 200 messages/s) for SECS
    /// seconds while a fault comes every --fault-every seconds: a fifth of
    /// the clients drop (native ones come back with since/epoch, SignalR
    /// ones with stateful reconnect); every DDP socket drops; or DDP is
    /// refused for 2 s with every socket dropped (a Rocket.Chat restart as
    /// imrelay sees it). Fails on any event lost, duplicated or out of
    /// order, any client not recovered, any reload asked for.
    #[arg(long, value_name = "SECS")]
    pub(crate) chaos: Option<f64>,
    /// Seconds between chaos faults.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub(crate) fault_every: f64,
    /// Chaos with rcsim's limiters on as a default Rocket.Chat has them (REST:
    /// 10 calls a minute per route from imrelay's IP; DDP, which method.call
    /// applies: per user and token) and imrelay pacing its REST backfill
    /// calls to it, instead of the limiters off and no pacing.
    #[arg(long)]
    pub(crate) rc_limiter: bool,
    /// With `--rc-limiter`: rcsim answers the backfill's DDP methods "not
    /// found", as a Rocket.Chat 9 without them, so imrelay backfills over the
    /// REST routes.
    #[arg(long, requires = "rc_limiter")]
    pub(crate) rc_without_methods: bool,
    /// Which chaos faults, taken in turn.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "client-drop,ddp-drop,ddp-refused"
    )]
    pub(crate) faults: Vec<Fault>,
}

/// A chaos fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Fault {
    /// A fifth of the clients drop (no close) and come back (since/epoch, or SignalR stateful reconnect).
    ClientDrop,
    /// Every session's DDP socket drops (no close).
    DdpDrop,
    /// DDP refused for 2 s and every socket dropped: a Rocket.Chat restart as imrelay sees it.
    DdpRefused,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// (internal) run the bare forwarder.
    Forwarder {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
    },
    /// Take CPU beside a run without touching its events (to compare the
    /// direct mode with a relay's CPU but not its hop).
    Burn {
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 100)]
        spin_us: u64,
        #[arg(long, default_value_t = 350)]
        sleep_us: u64,
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
    },
    /// The Redis clients the cluster could use (`redis`, `fred`), measured at
    /// its work: one fenced append-and-publish script per batch, a
    /// subscriber on 16 shard channels, Redis restarted under a paced load.
    Redis {
        /// Seconds at full speed, per client.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Concurrent publishing tasks on one connection (a node's shards).
        #[arg(long, default_value_t = 64)]
        tasks: usize,
        /// Bytes per batch.
        #[arg(long, default_value_t = 600)]
        size: usize,
        /// Batches a second in all while Redis is restarted.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// The redis-server binary.
        #[arg(long, default_value = "redis-server")]
        server: String,
        /// Which clients, in this order (to interleave runs: `fred,redis`).
        #[arg(long, value_delimiter = ',', default_value = "redis,fred")]
        clients: Vec<RedisClient>,
    },
    /// Only measure the machine's latency floor (see --stall-check).
    Stalls {
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
}
