//! The end-to-end, AWS and contract tests, linked into one binary: each module was a binary of its own, and
//! each linked the AWS SDK and SQLite again. Tests of every module run concurrently; each uses resources
//! named for itself (see `common`).

mod common;

mod aws_fault;
mod aws_scenario;
mod cli;
mod contract;
mod crash;
mod digest_aws;
mod digest_function;
mod http_errors;
mod incidents;
mod lambda_watch;
mod mixed;
mod notices;
mod notify;
mod replay;
mod scenario;
mod serve_aws;
