//! Why a process, emulator or stack did not start.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use restream::pushpin::process::PushpinError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{} is missing: {hint}", path.display())]
    Missing { path: PathBuf, hint: &'static str },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} exited ({status}){hint}: {log}")]
    Exited {
        what: String,
        status: ExitStatus,
        /// Why, when the log tells (e.g. a module that is not installed).
        hint: &'static str,
        log: String,
    },
    #[error("{what} not ready within {within:?}; log: {log}")]
    NotReady {
        what: String,
        within: Duration,
        log: String,
    },
    #[error("no block of 5 free ports")]
    NoPortBlock,
    #[error("Pushpin: {0}")]
    Pushpin(#[from] PushpinError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
