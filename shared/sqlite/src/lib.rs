//! The embedded adapters of [`Queue`] and [`Store`]: one SQLite file in the data directory.
//!
//! Every write goes through one writer thread that commits whatever is waiting in a single transaction
//! (group commit): each enqueue still waits for its own fsync'd commit, but one fsync serves every request
//! that arrived meanwhile, so durability costs little throughput. Each job runs in its own savepoint, so one
//! failing job does not undo the others. Reads use their own connections (WAL lets them run beside the writer).
//!
//! [`Queue`]: em_core::ports::Queue
//! [`Store`]: em_core::ports::Store

mod codec;
mod days;
mod delivery;
mod links;
mod outbox;
mod queue;
mod reader;
mod schema;
mod store;
mod writer;

pub use store::{EmbeddedStore, Options, Stats, DB_FILE};
