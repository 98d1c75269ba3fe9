//! The daemon as the command line sees it: strata-grpc's typed client, addressed to the
//! chosen backend, and the one-line errors its failures become.

use strata_core::Info;
use strata_core::snapshot::Labels;
use strata_grpc::client::{self, Client};

use super::CliError;
use super::args::ClientArgs;

/// Connects to the daemon at `args.address`, addressing the backend `args.snapshotter`.
pub async fn connect(args: &ClientArgs) -> Result<Client, CliError> {
    match Client::connect(&args.address).await {
        Ok(client) => Ok(client.with_snapshotter(args.snapshotter.clone())),
        Err(client::Error::Connect { address, reason }) => {
            Err(CliError::Connect { address, reason })
        }
        Err(source) => Err(CliError::Rpc {
            what: "connect".into(),
            source,
        }),
    }
}

/// Turns a failed call into the one-line error the command prints.
pub trait Context<T> {
    /// Names what was being done (`info base`), for `strata: info base: NotFound: …`.
    fn what(self, what: impl FnOnce() -> String) -> Result<T, CliError>;
}

impl<T> Context<T> for Result<T, client::Error> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T, CliError> {
        self.map_err(|source| CliError::Rpc {
            what: what(),
            source,
        })
    }
}

/// Updates only the labels named in `changes` (`labels.<k>` field paths): a non-empty value
/// sets a label, an empty one removes it.
pub async fn update_labels(
    client: &Client,
    key: &str,
    changes: Labels,
) -> Result<Info, client::Error> {
    let paths: Vec<String> = changes.keys().map(|k| format!("labels.{k}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    client.update(key, changes, &paths).await
}
