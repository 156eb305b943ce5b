//! `imrelay`: run the daemon, check a config, or run the demo.

use clap::{Parser, Subcommand};
use imrelay::config::Config;
use imrelay::Daemon;
use std::net::TcpListener;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    version,
    about = "Puts Rocket.Chat behind a business application as its instant-messaging component"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config.toml",
        env = "IMRELAY_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Parse and validate a configuration file, then exit.
    CheckConfig {
        /// The file (defaults to --config).
        path: Option<PathBuf>,
    },
    /// Check the configured Rocket.Chat as the admin and print what to change.
    Doctor,
    /// Start an embedded Rocket.Chat simulator and the daemon against it, with demo users.
    Demo {
        /// Where imrelay listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Start with the bot's simulated traffic off (the page can switch it).
        #[arg(long)]
        quiet: bool,
    },
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

fn main() {
    init_logging();
    let cli = Cli::parse();
    let code = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::CheckConfig { path } => {
            let path = path.unwrap_or(cli.config);
            match Config::from_file(&path) {
                Ok(_) => {
                    println!("{}: OK", path.display());
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    2
                }
            }
        }
        Command::Demo { listen, quiet } => imrelay_demo(&listen, !quiet),
        Command::Doctor => match Config::from_file(&cli.config) {
            Ok(cfg) => imrelay::rocketchat::doctor::run(cfg),
            Err(e) => {
                eprintln!("imrelay: {e}");
                2
            }
        },
    };
    std::process::exit(code);
}

fn run(path: &std::path::Path) -> i32 {
    let cfg = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imrelay: {e}");
            return 2;
        }
    };
    let listener = match TcpListener::bind(cfg.server.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("imrelay: cannot listen on {}: {e}", cfg.server.listen);
            return 1;
        }
    };
    actix_rt::System::new().block_on(async move {
        let daemon = match Daemon::start(cfg, listener) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("imrelay: {e}");
                return 1;
            }
        };
        wait_for_signal().await;
        daemon.shutdown().await;
        log::info!("stopped");
        0
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT: stopping"),
    }
}

fn imrelay_demo(listen: &str, simulate: bool) -> i32 {
    match imrelay::demo::run(listen, simulate) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("imrelay demo: {e}");
            1
        }
    }
}
