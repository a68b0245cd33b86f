//! Metrics: linking a service's facts ([`link`], incremental; [`derive`], the reference), the observations
//! that result, and the figures over them ([`dora`], [`query`]). Pure: stores are reached through ports.

pub mod batch;
pub mod delivery;
pub mod derive;
pub mod digest;
pub mod dora;
pub mod figures;
pub mod history;
pub mod incidents;
pub mod levels;
pub mod link;
pub mod memory;
pub mod query;
pub mod rules;
