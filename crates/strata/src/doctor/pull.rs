//! The pull path's setup: whether it is on, its credentials file, containerd's host directory
//! and the plain-HTTP-only limit of this build.

use super::{Check, Status, check};
use crate::config::Config;

/// The `pull` line of `strata doctor`.
pub fn pull_check(config: &Config) -> Check {
    let pull = &config.pull;
    if !pull.enabled {
        return check(
            "pull",
            Status::Ok,
            "pulling layers into snapshots is off ([pull] enabled = false)",
        );
    }
    if let Some(path) = &pull.credentials_file
        && let Err(e) = strata_pull::auth::load_credentials(path)
    {
        return check(
            "pull",
            Status::Fail,
            format!("[pull] credentials_file: {e}; strata serve refuses to start"),
        );
    }
    let hosts = if pull.hosts_dir.is_dir() {
        format!(
            "registries from {}/<host>/hosts.toml",
            pull.hosts_dir.display()
        )
    } else {
        format!(
            "no hosts_dir {} (registries at their default https address)",
            pull.hosts_dir.display()
        )
    };
    let plain = if pull.plain_http.is_empty() {
        String::new()
    } else {
        format!("; plain HTTP to {}", pull.plain_http.join(", "))
    };
    check(
        "pull",
        Status::Ok,
        format!(
            "on for remote-snapshot Prepares (CRI disable_snapshot_annotations = false), \
             {} layers at once; {hosts}{plain}; HTTPS verified against the system's CA \
             certificates plus each host's `ca` files",
            pull.max_concurrent_layers
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Off says off; a broken credentials file fails; otherwise the settings are named.
    #[test]
    fn lines() {
        let mut config = Config::default();
        config.pull.enabled = false;
        let c = pull_check(&config);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("off"), "{}", c.detail);

        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("c.toml");
        std::fs::write(&creds, "[hosts.\"r\"]\nuser = \"x\"\n").unwrap();
        config.pull.enabled = true;
        config.pull.credentials_file = Some(creds.clone());
        assert_eq!(pull_check(&config).status, Status::Fail);

        std::fs::write(
            &creds,
            "[hosts.\"r\"]\nusername = \"x\"\npassword = \"y\"\n",
        )
        .unwrap();
        config.pull.hosts_dir = dir.path().to_owned();
        config.pull.plain_http = vec!["127.0.0.1:5000".into()];
        let c = pull_check(&config);
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.detail.contains("plain HTTP to 127.0.0.1:5000"),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("HTTPS verified"), "{}", c.detail);
    }
}
