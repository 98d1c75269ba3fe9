//! What a set of mounts stacks: the layer directories, top first, and which one (if any) is
//! the writable top — where a layer is applied, and how its deletions are written there.
//! Pure, so the differ's and the pull path's decisions are table-tested without mounting.

use std::path::PathBuf;

use strata_core::Mount;

use crate::apply::Whiteouts;

/// The layers a set of mounts shows, top first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// Layer directories, top first (an overlay's upper directory, then its lower ones; or a
    /// bind mount's source).
    pub layers: Vec<PathBuf>,
    /// The writable top layer, when the mounts have one.
    pub writable: Option<PathBuf>,
    /// Whether the layers are stacked by overlayfs (whiteouts are character devices) rather
    /// than one bind-mounted tree.
    pub overlay: bool,
}

impl Stack {
    /// The stack of `mounts`: none (an empty tree), one overlay, or one bind mount. Anything
    /// else (other filesystems, several mounts) is `None`: not a shape Strata hands out.
    pub fn of(mounts: &[Mount]) -> Option<Stack> {
        match mounts {
            [] => Some(Stack {
                layers: Vec::new(),
                writable: None,
                overlay: false,
            }),
            [m] if m.kind == "overlay" => {
                let mut upper = None;
                let mut lowers = Vec::new();
                for option in &m.options {
                    if let Some(u) = option.strip_prefix("upperdir=") {
                        upper = Some(PathBuf::from(u));
                    } else if let Some(l) = option.strip_prefix("lowerdir=") {
                        lowers = l.split(':').map(PathBuf::from).collect();
                    }
                }
                if lowers.is_empty() {
                    return None;
                }
                let layers = upper.iter().cloned().chain(lowers).collect();
                Some(Stack {
                    layers,
                    writable: upper,
                    overlay: true,
                })
            }
            [m] if m.kind == "bind" || m.kind == "rbind" => {
                let source = PathBuf::from(&m.source);
                let read_only = m.options.iter().any(|o| o == "ro");
                Some(Stack {
                    layers: vec![source.clone()],
                    writable: (!read_only).then_some(source),
                    overlay: false,
                })
            }
            _ => None,
        }
    }

    /// The overlay lower layers under the writable top (nearest first).
    pub fn lowers(&self) -> &[PathBuf] {
        if self.writable.is_some() && !self.layers.is_empty() {
            &self.layers[1..]
        } else {
            &self.layers
        }
    }

    /// Where a layer applied to these mounts goes, and how its deletions are written there:
    /// the writable top, with overlay whiteouts over the lowers, or deletions in a bind
    /// mount's tree. `None` when nothing is writable.
    pub fn target(&self) -> Option<(PathBuf, Whiteouts)> {
        let dir = self.writable.clone()?;
        let whiteouts = if self.overlay {
            Whiteouts::Overlay {
                lowers: self.lowers().to_vec(),
            }
        } else {
            Whiteouts::Delete
        };
        Some((dir, whiteouts))
    }

    /// When `self` is `lower` with exactly one more layer on top, that layer: the changes
    /// from `lower` to `self` are then its content alone.
    pub fn single_layer_over(&self, lower: &Stack) -> Option<&PathBuf> {
        let (top, rest) = self.layers.split_first()?;
        (rest == lower.layers.as_slice() && (self.overlay || rest.is_empty())).then_some(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(options: &[&str]) -> Mount {
        Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn bind(source: &str, mode: &str) -> Mount {
        Mount {
            kind: "bind".into(),
            source: source.into(),
            options: vec![mode.into(), "rbind".into()],
        }
    }

    /// Strata's mount shapes map to their layers; other shapes are not recognised.
    #[test]
    fn stacks() {
        let active = Stack::of(&[overlay(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/a:/b",
        ])])
        .unwrap();
        assert_eq!(
            active.layers,
            vec![PathBuf::from("/u"), "/a".into(), "/b".into()]
        );
        assert_eq!(active.writable, Some("/u".into()));
        assert_eq!(active.lowers(), &[PathBuf::from("/a"), "/b".into()]);
        let view = Stack::of(&[overlay(&["lowerdir=/a:/b"])]).unwrap();
        assert_eq!(view.writable, None);
        let single = Stack::of(&[bind("/a", "ro")]).unwrap();
        assert_eq!(
            (single.layers.clone(), single.writable.clone()),
            (vec!["/a".into()], None)
        );
        let rw = Stack::of(&[bind("/a", "rw")]).unwrap();
        assert_eq!(rw.writable, Some("/a".into()));
        assert!(Stack::of(&[overlay(&["upperdir=/u"])]).is_none());
        assert!(Stack::of(&[bind("/a", "rw"), bind("/b", "rw")]).is_none());
        assert!(
            Stack::of(&[Mount {
                kind: "ext4".into(),
                source: "/dev/x".into(),
                options: vec![]
            }])
            .is_none()
        );
    }

    /// The fast diff applies exactly when the upper stack is the lower one plus one layer;
    /// two full copies (native binds) never qualify.
    #[test]
    fn single_layer_over() {
        let empty = Stack::of(&[]).unwrap();
        let parent = Stack::of(&[bind("/p", "ro")]).unwrap();
        let child = Stack::of(&[overlay(&["upperdir=/c", "lowerdir=/p", "workdir=/w"])]).unwrap();
        assert_eq!(child.single_layer_over(&parent), Some(&PathBuf::from("/c")));
        assert_eq!(child.single_layer_over(&empty), None);
        let first = Stack::of(&[bind("/f", "rw")]).unwrap();
        assert_eq!(first.single_layer_over(&empty), Some(&PathBuf::from("/f")));
        let native_child = Stack::of(&[bind("/copy", "rw")]).unwrap();
        assert_eq!(native_child.single_layer_over(&parent), None);
    }
}
