//! The tables of the store and what each holds.
//!
//! | table       | key                   | value            |
//! |-------------|-----------------------|------------------|
//! | `snapshots` | snapshot key          | encoded [`Record`](crate::Record) |
//! | `ids`       | numeric id            | snapshot key     |
//! | `children`  | parent key            | child keys (multimap) |
//! | `labels`    | `label-key \0 value`  | snapshot keys (multimap) |
//! | `meta`      | `schema_version`, `next_id`, `last_batch`, `store_id` | u64 |
//!
//! Only committed snapshots have children, and committed snapshots are never renamed, so the
//! parents index can be keyed by name. Label keys and values cannot contain NUL (validated on
//! the way in), which makes `\0` a safe separator in the labels index.

use redb::{MultimapTableDefinition, TableDefinition};

pub const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
pub const IDS: TableDefinition<u64, &str> = TableDefinition::new("ids");
pub const CHILDREN: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("children");
pub const LABELS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("labels");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const SCHEMA_VERSION_KEY: &str = "schema_version";
pub const NEXT_ID_KEY: &str = "next_id";
/// The number of the last batch committed: after a commit whose fsync failed, whether the
/// batch reached the file anyway (see `Store::landed`).
/// The intent log's entries carry their batch's number: replay starts after this one.
pub const LAST_BATCH_KEY: &str = "last_batch";
/// A random id the store's intent log entries carry (see `checkpoint::new_store_id`).
pub const STORE_ID_KEY: &str = "store_id";

/// The labels-index key of one label.
pub fn label_entry(key: &str, value: &str) -> String {
    let mut s = String::with_capacity(key.len() + 1 + value.len());
    s.push_str(key);
    s.push('\0');
    s.push_str(value);
    s
}
