//! The one error type of the runtime.

use std::fmt;

/// What can go wrong when configuring or invalidating a cache.
///
/// A cached call itself never returns this: tier faults make a call slower,
/// not failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// [`set_global`](crate::set_global) was called after the global cache
    /// was set or first used.
    GlobalAlreadySet,
    /// A builder setting is out of range; the message says which and why.
    InvalidConfig(String),
    /// The shared tier could not be reached or refused an operation. Local
    /// state (L1, this process's generations) was already updated. The
    /// message never contains credentials.
    L2(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::GlobalAlreadySet => f.write_str(
                "the global cache is already set or in use; call `cachette::set_global` once, before any cached function runs",
            ),
            Error::InvalidConfig(why) => write!(f, "invalid cache configuration: {why}"),
            Error::L2(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}
