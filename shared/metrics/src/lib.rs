//! DORA metrics: linking facts per service ([`derive`]) and summarising a window ([`dora`]). Pure.

pub mod derive;
pub mod dora;
pub mod levels;
