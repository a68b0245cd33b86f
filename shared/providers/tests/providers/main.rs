//! The provider contract, from the registry alone where it can be: every fixture of every provider becomes the
//! facts written beside it, every provider withstands the same attacks, every authenticator reproduces the
//! published vectors; then the details of the three first providers.

mod attacks;
mod authenticators;
mod common;
mod details;
mod fixtures;
mod generic;
mod props;
