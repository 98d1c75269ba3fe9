//! `strata`: the daemon (`strata serve`), its client subcommands (`ls`, `info`, `mount`, …)
//! and the operator's offline tools (`doctor`, `fsck`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use strata::cli::ClientCommand;
use strata::config::{Config, DEFAULT_CONFIG};

/// Strata: a containerd snapshotter (proxy plugin) with overlay, native and btrfs backends.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: serve containerd's snapshots API on a unix socket.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Check what this machine and root support and what Strata will use (OK/WARN/FAIL).
    Doctor(strata::doctor::DoctorArgs),
    /// Check a stopped daemon's root: metadata against directories (--repair: fix what is safe).
    Fsck(strata::fsck::FsckArgs),
    /// Print a shell completion script (bash, zsh, fish, …).
    ///
    /// For example: `strata completions bash > /etc/bash_completion.d/strata`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML; every key optional) [default: /etc/strata/config.toml if present]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Root directory [default: /var/lib/strata]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Unix socket to listen on [default: /run/strata/strata.sock]
    #[arg(long)]
    address: Option<PathBuf>,
    /// Default backend: overlay, native or btrfs [default: overlay]
    #[arg(long)]
    backend: Option<String>,
    /// Serve Prometheus metrics on HOST:PORT (`GET /metrics`) [default: off]
    #[arg(long, value_name = "HOST:PORT")]
    metrics_address: Option<String>,
    /// containerd's socket, for the diff service's blobs; "" turns the diff service off
    /// [default: /run/containerd/containerd.sock]
    #[arg(long, value_name = "SOCKET")]
    containerd_address: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Client(command) => strata::cli::run(command),
        Command::Doctor(args) => ExitCode::from(strata::doctor::main(args)),
        Command::Fsck(args) => ExitCode::from(strata::fsck::main(args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "strata", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => Config::load(path, true),
        None => Config::load(DEFAULT_CONFIG.as_ref(), false),
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(root) = args.root {
        config.root = root;
    }
    if let Some(address) = args.address {
        config.address = address;
    }
    if let Some(backend) = args.backend {
        config.backend = backend;
    }
    if let Some(metrics) = args.metrics_address {
        config.metrics_address = Some(metrics);
    }
    if let Some(containerd) = args.containerd_address {
        config.containerd_address = containerd;
    }
    init_logging(&config.log_level);
    match strata::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // A log that cannot be written (stderr redirected to a full disk) must cost the log
        // line, not the request: the default reports the failure with `eprintln!`, which
        // panics when stderr fails, killing the thread that was serving a request.
        .log_internal_errors(false)
        .init();
}
