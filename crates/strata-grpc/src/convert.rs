//! Conversions between the wire types and Strata's domain types.

use std::time::{SystemTime, UNIX_EPOCH};

use strata_core::{Info, Kind, Mount, Usage};

use crate::proto::{snapshots as pb, types};

/// Domain kind to wire kind.
pub fn kind_to_wire(kind: Kind) -> pb::Kind {
    match kind {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    }
}

/// Wire kind to domain kind (`None` for `UNKNOWN` or an unknown number).
pub fn kind_from_wire(kind: i32) -> Option<Kind> {
    match pb::Kind::try_from(kind).ok()? {
        pb::Kind::View => Some(Kind::View),
        pb::Kind::Active => Some(Kind::Active),
        pb::Kind::Committed => Some(Kind::Committed),
        pb::Kind::Unknown => None,
    }
}

/// Domain info to wire info.
pub fn info_to_wire(info: Info) -> pb::Info {
    pb::Info {
        name: info.name,
        parent: info.parent,
        kind: kind_to_wire(info.kind) as i32,
        created_at: Some(info.created.into()),
        updated_at: Some(info.updated.into()),
        labels: info.labels,
    }
}

/// Wire info to domain info (for the client side). A missing or unknown kind becomes View
/// only if the server sent garbage; timestamps outside the representable range become the
/// epoch.
pub fn info_from_wire(info: pb::Info) -> Info {
    let time = |t: Option<prost_types::Timestamp>| {
        t.and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or(UNIX_EPOCH)
    };
    Info {
        name: info.name,
        parent: info.parent,
        kind: kind_from_wire(info.kind).unwrap_or(Kind::View),
        labels: info.labels,
        created: time(info.created_at),
        updated: time(info.updated_at),
    }
}

/// Domain mounts to wire mounts.
pub fn mounts_to_wire(mounts: Vec<Mount>) -> Vec<types::Mount> {
    mounts
        .into_iter()
        .map(|m| types::Mount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        })
        .collect()
}

/// Wire mounts to domain mounts.
pub fn mounts_from_wire(mounts: Vec<types::Mount>) -> Vec<Mount> {
    mounts
        .into_iter()
        .map(|m| Mount {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect()
}

/// Domain usage to the wire response.
pub fn usage_to_wire(usage: Usage) -> pb::UsageResponse {
    pb::UsageResponse {
        size: usage.size,
        inodes: usage.inodes,
    }
}
