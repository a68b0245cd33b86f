//! What a command reports when it fails: what was wrong with the request, a file, or a port.

use std::path::PathBuf;

use em_core::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// What was asked cannot be done as asked: a flag, a value, a file's content, a server's answer.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A store, queue or secret source failed, with its kind kept.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl CliError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
        let path = path.into();
        move |source| CliError::Io { path, source }
    }
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Invalid(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        CliError::Invalid(message.to_string())
    }
}
