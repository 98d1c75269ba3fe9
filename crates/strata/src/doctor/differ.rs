//! The diff service's setup: containerd's socket (whose content store it reads layer blobs
//! from) and whether the installed containerd can use a proxy differ (1.7.4+).

use std::path::Path;

use super::{Check, Status, check};
use crate::config::Config;

/// `containerd --version` output (`containerd github.com/containerd/containerd 1.7.24 …`)
/// → `(1, 7, 24)`.
pub fn parse_containerd_version(output: &str) -> Option<(u32, u32, u32)> {
    let version = output.split_whitespace().nth(2)?;
    let version = version.trim_start_matches('v');
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

fn installed_containerd() -> Option<(u32, u32, u32)> {
    let out = std::process::Command::new("containerd")
        .arg("--version")
        .output()
        .ok()?;
    parse_containerd_version(&String::from_utf8_lossy(&out.stdout))
}

/// The `differ` line of `strata doctor`.
pub fn differ_check(config: &Config) -> Check {
    let address: &Path = &config.containerd_address;
    if address.as_os_str().is_empty() {
        return check(
            "differ",
            Status::Ok,
            "diff service off (containerd_address is empty)",
        );
    }
    let version = installed_containerd();
    let version_note = match version {
        Some((1, minor, patch)) if minor < 7 || (minor == 7 && patch < 4) => {
            format!(
                "; containerd 1.{minor}.{patch} on PATH takes no diff proxies (1.7.4+ does): it unpacks with its own differ"
            )
        }
        Some((a, b, c)) => format!(
            "; containerd {a}.{b}.{c} on PATH can use it ([proxy_plugins.strata-diff] type = \"diff\")"
        ),
        None => String::new(),
    };
    match std::os::unix::net::UnixStream::connect(address) {
        Ok(_) => check(
            "differ",
            Status::Ok,
            format!(
                "containerd answers on {}: layer blobs are read from its content store{version_note}",
                address.display()
            ),
        ),
        Err(e) => check(
            "differ",
            Status::Warn,
            format!(
                "containerd's socket {}: {e}; Apply and Diff answer Unavailable until containerd \
                 serves there (set containerd_address, or \"\" to turn the diff service off){version_note}",
                address.display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's and upstream's version strings both parse.
    #[test]
    fn versions() {
        assert_eq!(
            parse_containerd_version(
                "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+b4"
            ),
            Some((1, 7, 24))
        );
        assert_eq!(
            parse_containerd_version("containerd github.com/containerd/containerd v2.1.4 75cb2b7"),
            Some((2, 1, 4))
        );
        assert_eq!(parse_containerd_version("containerd"), None);
    }
}
