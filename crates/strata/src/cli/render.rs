//! What the listing commands print: tables for people and JSON for programs. Pure: each
//! function turns domain values into text.

use serde::Serialize;
use strata_core::snapshot::Labels;
use strata_core::{Info, Kind, Usage};

use super::format::{rfc3339, size, table};

/// A snapshot's info as JSON (containerd's field names; times in RFC 3339 with nanoseconds).
#[derive(Debug, Serialize)]
pub struct InfoJson<'a> {
    /// Key or name.
    pub name: &'a str,
    /// Parent's name, empty for none.
    pub parent: &'a str,
    /// `active`, `committed` or `view`.
    pub kind: &'static str,
    /// Creation (for a committed snapshot: commit) time.
    pub created: String,
    /// Last label update.
    pub updated: String,
    /// Labels.
    pub labels: &'a Labels,
}

impl<'a> From<&'a Info> for InfoJson<'a> {
    fn from(info: &'a Info) -> InfoJson<'a> {
        InfoJson {
            name: &info.name,
            parent: &info.parent,
            kind: info.kind.as_str(),
            created: rfc3339(info.created, true),
            updated: rfc3339(info.updated, true),
            labels: &info.labels,
        }
    }
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("serializing to a string");
    text.push('\n');
    text
}

/// `strata ls`: one row per snapshot.
pub fn ls_table(infos: &[Info]) -> String {
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.parent.clone(),
                i.kind.to_string(),
                rfc3339(i.created, false),
                labels_inline(&i.labels),
            ]
        })
        .collect();
    table(&["KEY", "PARENT", "KIND", "CREATED", "LABELS"], &rows)
}

fn labels_inline(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `strata info`: one field per line, labels indented below.
pub fn info_text(info: &Info) -> String {
    let mut out = String::new();
    for (field, value) in [
        ("name", info.name.clone()),
        ("parent", info.parent.clone()),
        ("kind", info.kind.to_string()),
        ("created", rfc3339(info.created, true)),
        ("updated", rfc3339(info.updated, true)),
    ] {
        out.push_str(format!("{:<9}{value}", format!("{field}:")).trim_end());
        out.push('\n');
    }
    out.push_str("labels:");
    if info.labels.is_empty() {
        out.push_str(" {}\n");
    } else {
        out.push('\n');
        out.push_str(&labels_text(&info.labels, "  "));
    }
    out
}

/// Labels as `k=v` lines, each after `indent`.
pub fn labels_text(labels: &Labels, indent: &str) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{indent}{k}={v}\n"))
        .collect()
}

/// One snapshot's usage, as `strata usage` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    /// Key or name.
    pub key: String,
    /// `active`, `committed` or `view`; absent when only one snapshot was asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Bytes (`st_blocks × 512`).
    pub size: i64,
    /// Inodes.
    pub inodes: i64,
}

impl UsageRow {
    /// The row of `key` (of `kind`, when known).
    pub fn new(key: &str, kind: Option<Kind>, usage: Usage) -> UsageRow {
        UsageRow {
            key: key.to_owned(),
            kind: kind.map(Kind::as_str),
            size: usage.size,
            inodes: usage.inodes,
        }
    }
}

/// Totals of `strata usage` without a key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageTotal {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Sum of their bytes.
    pub size: i64,
    /// Sum of their inodes.
    pub inodes: i64,
}

/// `strata usage --json` without a key.
#[derive(Debug, Serialize)]
pub struct UsageReport {
    /// Every snapshot.
    pub snapshots: Vec<UsageRow>,
    /// Their sums.
    pub total: UsageTotal,
}

/// The usage table: one row per snapshot, plus a `TOTAL` row when `total` is given.
pub fn usage_table(rows: &[UsageRow], total: Option<&UsageTotal>, exact: bool) -> String {
    let mut cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.key.clone(),
                r.kind.unwrap_or("").to_owned(),
                size(r.size, exact),
                r.inodes.to_string(),
            ]
        })
        .collect();
    if let Some(t) = total {
        cells.push(vec![
            "TOTAL".to_owned(),
            format!("{} snapshots", t.snapshots),
            size(t.size, exact),
            t.inodes.to_string(),
        ]);
        return table(&["KEY", "KIND", "SIZE", "INODES"], &cells);
    }
    let cells: Vec<Vec<String>> = cells
        .into_iter()
        .map(|mut r| {
            r.remove(1);
            r
        })
        .collect();
    table(&["KEY", "SIZE", "INODES"], &cells)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn info(name: &str, parent: &str, kind: Kind) -> Info {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Info {
            name: name.into(),
            parent: parent.into(),
            kind,
            labels: [("a".to_string(), "1".to_string())].into(),
            created: t,
            updated: t,
        }
    }

    /// The ls table has a header, one row per snapshot, labels inline.
    #[test]
    fn ls() {
        let text = ls_table(&[
            info("base", "", Kind::Committed),
            info("top", "base", Kind::Active),
        ]);
        assert_eq!(
            text,
            "KEY   PARENT  KIND       CREATED               LABELS\n\
             base          committed  2023-11-14T22:13:20Z  a=1\n\
             top   base    active     2023-11-14T22:13:20Z  a=1\n"
        );
    }

    /// JSON carries containerd's field names and nanosecond times.
    #[test]
    fn info_as_json() {
        let i = info("base", "", Kind::Committed);
        let v: serde_json::Value = serde_json::from_str(&json(&InfoJson::from(&i))).unwrap();
        assert_eq!(v["name"], "base");
        assert_eq!(v["kind"], "committed");
        assert_eq!(v["created"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(v["labels"]["a"], "1");
    }

    /// The usage table has a TOTAL row when listing everything.
    #[test]
    fn usage() {
        let rows = vec![UsageRow::new(
            "base",
            Some(Kind::Committed),
            Usage {
                size: 8192,
                inodes: 3,
            },
        )];
        let total = UsageTotal {
            snapshots: 1,
            size: 8192,
            inodes: 3,
        };
        assert_eq!(
            usage_table(&rows, Some(&total), false),
            "KEY    KIND         SIZE     INODES\n\
             base   committed    8.0 KiB  3\n\
             TOTAL  1 snapshots  8.0 KiB  3\n"
        );
        assert_eq!(
            usage_table(&rows, None, true),
            "KEY   SIZE  INODES\nbase  8192  3\n"
        );
    }
}
