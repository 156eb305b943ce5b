//! `rcsim`: run the Rocket.Chat simulator as a server.

use clap::Parser;
use rcsim::{Rcsim, Seed, Settings, SimConfig};
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

/// A protocol-faithful Rocket.Chat simulator (REST + DDP).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Admin account as `username:password`.
    #[arg(long, default_value = "super:123qwe")]
    admin: String,
    /// Initial data: `demo` (alice, bob, carol, #general, engineering).
    #[arg(long)]
    seed: Option<String>,
    /// Enable the `/_sim/*` control API with this secret (`X-Sim-Secret`).
    #[arg(long, env = "RCSIM_CONTROL_SECRET", hide_env_values = true)]
    control_secret: Option<String>,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Switch off the real server's throttles and two-factor rules.
    #[arg(long)]
    permissive: bool,
    /// DDP heartbeat interval and timeout in milliseconds (Meteor: 15000).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// `CREATE_TOKENS_FOR_USERS_SECRET` for `users.createToken` (8.x profile).
    #[arg(long, env = "CREATE_TOKENS_FOR_USERS_SECRET", hide_env_values = true)]
    create_tokens_secret: Option<String>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("rcsim: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let (user, password) = args
        .admin
        .split_once(':')
        .ok_or("--admin must be username:password")?;
    let seed = match args.seed.as_deref() {
        None => None,
        Some("demo") => Some(Seed::Demo),
        Some(other) => return Err(format!("unknown seed '{other}' (known: demo)")),
    };
    let mut settings = if args.permissive {
        Settings::permissive()
    } else {
        Settings::default()
    };
    if let Some(ms) = args.heartbeat_ms {
        settings.heartbeat_interval = Duration::from_millis(ms);
        settings.heartbeat_timeout = Duration::from_millis(ms);
    }
    settings.create_tokens_secret = args.create_tokens_secret;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let sim = Rcsim::start_on(
        listener,
        SimConfig {
            admin: Some((user.to_string(), password.to_string())),
            seed,
            settings,
            workers: args.workers,
            control_secret: args.control_secret,
        },
    )
    .map_err(|e| e.to_string())?;
    println!("rcsim listening on {}", sim.url());
    let _ = std::io::stdout().flush();
    log::info!("REST at {}/api/v1, DDP at {}", sim.url(), sim.ws_url());
    loop {
        std::thread::park();
    }
}
