//! The store on one DynamoDB table (`pk`, `sk`, both strings). Layout, access patterns and request counts
//! are in docs/dynamodb.md; in short:
//!
//! | item | pk | sk |
//! |---|---|---|
//! | push | `r#<repo, lower case>` | `p#<before>#<after>` |
//! | deployment | `r#<repo, lower case>` | `d#<outcome>#<provider>#<deployment id>` |
//! | pull request event | `r#<repo, lower case>` | `q#<provider>#<number>#<kind>` |
//! | incident event | `i#<incident service>` | `e#<provider>#<event id>` |
//! | fact source | `src` | `r#<repo>` / `i#<incident service>` |
//! | service registry | `svc` | `<service>` |
//! | metric head | `m#<service>` | `#head`: version, generation, links, a writer's mark |
//! | linked rows | `m#<service>` | `D#`, `S#`, `F#`, `C#`, `c#`, `I#`, `O#`, `A#` (see [`links`]) |
//! | metric day | `m#<service>` | `d#<generation>#<yyyy-mm-dd>#<part>`: that day's rows |
//! | metadata | `meta` | `<key>` |
//!
//! A DORA query reads each service's head and then the day items of the window: reads grow with the days,
//! not with the events in them.

pub(crate) mod codec;
mod days;
mod delivery;
pub(crate) mod keys;
pub mod links;
mod reader;
pub(crate) mod store;
mod writer;

pub use store::DynamoStore;
