//! Embedded adapters: the whole product in one process, with no cloud account.

pub mod secrets;
pub mod sqlite;

pub use secrets::EnvSecrets;
pub use sqlite::{EmbeddedStore, Options, Stats};
