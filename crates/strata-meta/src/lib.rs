//! Snapshot metadata, kept in one redb database per backend.
//!
//! Every read happens in one consistent read transaction ([`Store::read`]); every change in a
//! write transaction ([`Store::write`]) that is durable (fsync'd) before the call returns.
//! Concurrent writers are *group-committed*: one of them (the leader) applies every write
//! waiting at that moment in a single transaction and commits it once, and only then are the
//! callers answered, so throughput grows with concurrency while no write is acknowledged
//! before it is durable.
//!
//! A batch is durable once its entry is in the intent log (`log.rs`: one `pwrite`, one
//! `fdatasync`); redb commits it behind the log without a flush, and is made durable by
//! checkpoints (`checkpoint.rs`), after which the log starts over. Every open replays the
//! log's entries the database does not hold yet.
//! redb's types never leave this crate.
#![forbid(unsafe_code)]

mod change;
mod checkpoint;
mod codec;
mod errors;
#[cfg(feature = "testing")]
pub mod faults;
mod handle;
mod log;
mod overlay;
mod store;
mod tables;
mod tx;

pub use codec::Record;
pub use log::LOG_BYTES_ENV;
pub use store::{SCHEMA_VERSION, Store};
pub use tx::{CreatePlan, ReadTx, Snapshot, WriteTx};
