//! The client subcommands: `strata ls`, `info`, `usage`, `prepare`, `mount`, … talk to a
//! running daemon over its socket with the same gRPC API containerd uses, and print tables
//! for people or JSON for programs.
//!
//! Every failure is one line on stderr, `strata: <what>: <gRPC code>: <message>`, and a
//! non-zero exit code.

pub mod args;
mod commands;
pub mod format;
pub mod mounts;
pub mod render;
pub mod rpc;
pub mod tree;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub use args::{ClientArgs, ClientCommand};

/// Why a client subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon's socket does not answer.
    #[error("connect {}: {reason} (is `strata serve` running there? see --address)", address.display())]
    Connect {
        /// The socket.
        address: PathBuf,
        /// The OS's or the transport's words.
        reason: String,
    },
    /// The daemon refused or failed a request.
    #[error("{what}: {source}")]
    Rpc {
        /// What was asked (`info base`).
        what: String,
        /// The failure, with its gRPC code and the daemon's message.
        source: strata_grpc::client::Error,
    },
    /// A mount or an unmount failed.
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    /// The arguments do not make sense (a label without `=`).
    #[error("{0}")]
    Usage(String),
    /// Several failures, each already printed.
    #[error("{0}")]
    Reported(String),
}

impl CliError {
    /// The process exit code: 2 for bad arguments (as clap uses), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs a client subcommand to completion, printing its output and any error; returns the
/// process exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(command)) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`strata ls | head`) is not an error worth a message.
            match stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("strata: writing output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
