//! The configuration a local subcommand (`doctor`, `fsck`) works with: the same file and
//! flags as `strata serve`, so it looks at the root and socket the daemon uses.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, DEFAULT_CONFIG};

/// `--config`, `--root`, `--address` as `strata serve` takes them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Configuration file (TOML) [default: /etc/strata/config.toml if present]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Root directory [default: the config's, else /var/lib/strata]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The daemon's unix socket [default: the config's, else /run/strata/strata.sock]
    #[arg(long)]
    pub address: Option<PathBuf>,
}

/// Where the configuration in effect came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Read from this file.
    File(PathBuf),
    /// The default file does not exist: built-in defaults.
    Defaults,
}

impl ConfigArgs {
    /// The configuration `strata serve` would use with these flags, and its source.
    pub fn load(&self) -> Result<(Config, Source), ConfigError> {
        let (mut config, source) = match &self.config {
            Some(path) => (Config::load(path, true)?, Source::File(path.clone())),
            None => {
                let path = Path::new(DEFAULT_CONFIG);
                let config = Config::load(path, false)?;
                let source = if path.exists() {
                    Source::File(path.to_owned())
                } else {
                    Source::Defaults
                };
                (config, source)
            }
        };
        if let Some(root) = &self.root {
            config.root = root.clone();
        }
        if let Some(address) = &self.address {
            config.address = address.clone();
        }
        Ok((config, source))
    }
}
