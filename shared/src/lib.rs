//! The library every EM Agent function uses: the domain, the providers, the metrics, the ports and their
//! adapters.

pub mod aws;
pub mod config;
pub mod domain;
pub mod embedded;
pub mod emf;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod ports;
pub mod providers;
pub mod time;
