//! Image references: which registry host and repository a `cri.image-ref` names.

use crate::error::{PullError, Result};

/// The registry host and repository of an image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The host as named (`docker.io`, `127.0.0.1:5000`): what hosts.toml directories use.
    pub host: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
}

impl Reference {
    /// Parses `[host/]path[:tag][@digest]` as containerd's and Docker's normalisation does:
    /// a first component with a `.` or `:`, or `localhost`, is a host; otherwise the host is
    /// `docker.io` and a single-component path gets `library/`.
    pub fn parse(reference: &str) -> Result<Reference> {
        let bad = |why| PullError::Reference {
            reference: reference.to_owned(),
            why,
        };
        let name = reference.split('@').next().unwrap_or_default();
        // A tag follows the last `:` after the last `/`.
        let name = match (name.rfind(':'), name.rfind('/')) {
            (Some(c), Some(s)) if c > s => &name[..c],
            (Some(c), None) => &name[..c],
            _ => name,
        };
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let (host, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let path = if host == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if path.is_empty() || !path.chars().all(valid) || path.contains("..") {
            return Err(bad("invalid repository name"));
        }
        Ok(Reference {
            host,
            repository: path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// References name hosts and repositories as containerd normalises them.
    #[test]
    fn parse() {
        let r = |s| Reference::parse(s).map(|r| (r.host, r.repository));
        assert_eq!(
            r("docker.io/library/busybox:latest").unwrap(),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            r("busybox").unwrap(),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            r("127.0.0.1:5000/a/b:v1@sha256:00").unwrap(),
            ("127.0.0.1:5000".into(), "a/b".into())
        );
        assert_eq!(r("localhost/x").unwrap(), ("localhost".into(), "x".into()));
        assert!(r("host.io/A").is_err());
        assert!(r("host.io/../x").is_err());
        assert!(r("").is_err());
    }
}
