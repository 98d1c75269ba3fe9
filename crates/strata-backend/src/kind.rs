//! The backends this build has, by name.

/// A backend this build can serve. Its name (`Display`, `FromStr`) is the directory under
/// the root, the `snapshotter` field that reaches it, and the word in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// Layers stacked by overlayfs ([`crate::overlay`]).
    Overlay,
    /// Full copies, bind-mounted ([`crate::native`]).
    Native,
    /// btrfs subvolumes ([`crate::btrfs`]).
    Btrfs,
}

impl BackendKind {
    /// Every backend, in the order they are listed to people.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Overlay,
        BackendKind::Native,
        BackendKind::Btrfs,
    ];

    /// The backend's name: `overlay`, `native`, `btrfs`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Overlay => "overlay",
            BackendKind::Native => "native",
            BackendKind::Btrfs => "btrfs",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no backend of this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}; known backends: overlay, native, btrfs")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(name: &str) -> Result<BackendKind, UnknownBackend> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| UnknownBackend(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name parses back to its backend; anything else is refused with the list.
    #[test]
    fn names_round_trip() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.to_string().parse::<BackendKind>(), Ok(kind));
        }
        let err = "zfs".parse::<BackendKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown backend \"zfs\"; known backends: overlay, native, btrfs"
        );
        assert!("Overlay".parse::<BackendKind>().is_err());
    }
}
