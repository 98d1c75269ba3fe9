//! `strata tree`: snapshots arranged by parent, as text or JSON. Pure.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use strata_core::Info;

/// One snapshot and the snapshots made on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Key or name.
    pub name: String,
    /// `active`, `committed` or `view`.
    pub kind: &'static str,
    /// Children, by name.
    pub children: Vec<Node>,
}

/// The forest of `infos`: snapshots without a parent (or whose parent is not among `infos`)
/// are roots; children are sorted by name.
pub fn build(infos: &[Info]) -> Vec<Node> {
    let names: HashSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&Info>> = BTreeMap::new();
    let mut roots = Vec::new();
    for info in infos {
        if info.parent.is_empty() || !names.contains(info.parent.as_str()) {
            roots.push(info);
        } else {
            children.entry(info.parent.as_str()).or_default().push(info);
        }
    }
    roots.sort_by(|a, b| a.name.cmp(&b.name));
    for list in children.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    roots.into_iter().map(|r| node(r, &children)).collect()
}

fn node(info: &Info, children: &BTreeMap<&str, Vec<&Info>>) -> Node {
    Node {
        name: info.name.clone(),
        kind: info.kind.as_str(),
        children: children
            .get(info.name.as_str())
            .map(|list| list.iter().map(|c| node(c, children)).collect())
            .unwrap_or_default(),
    }
}

/// The forest drawn with box characters, one snapshot per line: `name (kind)`.
pub fn render(roots: &[Node]) -> String {
    let mut out = String::new();
    for root in roots {
        out.push_str(&format!("{} ({})\n", root.name, root.kind));
        draw_children(&root.children, "", &mut out);
    }
    out
}

fn draw_children(children: &[Node], prefix: &str, out: &mut String) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, more) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        out.push_str(&format!(
            "{prefix}{branch}{} ({})\n",
            child.name, child.kind
        ));
        draw_children(&child.children, &format!("{prefix}{more}"), out);
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use strata_core::Kind;

    use super::*;

    fn info(name: &str, parent: &str, kind: Kind) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            kind,
            labels: Default::default(),
            created: UNIX_EPOCH,
            updated: UNIX_EPOCH,
        }
    }

    /// Parents above children, siblings sorted, branches drawn.
    #[test]
    fn draws_a_forest() {
        let infos = [
            info("top", "mid", Kind::Active),
            info("base", "", Kind::Committed),
            info("mid", "base", Kind::Committed),
            info("view", "mid", Kind::View),
            info("other", "base", Kind::Active),
            info("lone", "", Kind::Active),
        ];
        assert_eq!(
            render(&build(&infos)),
            "base (committed)\n\
             ├── mid (committed)\n\
             │   ├── top (active)\n\
             │   └── view (view)\n\
             └── other (active)\n\
             lone (active)\n"
        );
    }
}
