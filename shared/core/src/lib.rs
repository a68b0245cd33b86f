//! The domain every EM Agent crate shares: normalised facts, time, the configuration, the ports the
//! handlers are generic over, typed errors and the one shape of an HTTP answer. No I/O beyond reading the
//! configuration and the environment.

pub mod bounds;
pub mod calendar;
pub mod config;
pub mod domain;
pub mod emf;
pub mod error;
pub mod http;
pub mod ports;
pub mod rows;
pub mod secrets;
pub mod time;
