//! The one error type of the runtime.

use std::fmt;

/// What can go wrong when configuring a cache, invalidating, or storing a
/// value by hand (`{fn}_put`).
///
/// A cached call itself never returns this: tier faults make a call slower,
/// not failed. The shared-tier variants tell a timeout, an open breaker, a
/// connection failure, a refused operation and bad data apart; for all of
/// them, L1 and this process's generations were already updated. No message
/// contains a credential or a cached value.
///
/// ```
/// use cachette::Error;
///
/// let e = Error::L2Timeout;
/// assert!(e.is_l2());
/// assert!(!Error::GlobalAlreadySet.is_l2());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// [`set_global`](crate::set_global) was called after the global cache
    /// was set or first used.
    GlobalAlreadySet,
    /// A builder setting is out of range; the message says which and why.
    InvalidConfig(String),
    /// The shared tier did not answer within `l2_timeout`.
    L2Timeout,
    /// The shared tier is known to be down (its circuit breaker is open),
    /// so the operation was not tried.
    L2Unavailable,
    /// The shared tier could not be reached, or the connection failed.
    L2Connection(String),
    /// The shared tier answered, refusing the operation (for example a key
    /// of another type written behind the cache's back).
    L2Refused(String),
    /// A value could not be stored in the shared tier: not encodable, or
    /// larger than `max_value_size`. It is kept in L1.
    BadData(String),
}

impl Error {
    /// Whether this is about the shared tier (the call went on without it).
    pub fn is_l2(&self) -> bool {
        matches!(
            self,
            Error::L2Timeout
                | Error::L2Unavailable
                | Error::L2Connection(_)
                | Error::L2Refused(_)
                | Error::BadData(_)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::GlobalAlreadySet => f.write_str(
                "the global cache is already set or in use; call `cachette::set_global` once, before any cached function runs",
            ),
            Error::InvalidConfig(why) => write!(f, "invalid cache configuration: {why}"),
            Error::L2Timeout => f.write_str("the shared tier did not answer in time"),
            Error::L2Unavailable => {
                f.write_str("the shared tier is unavailable (circuit open); L1 was updated")
            }
            Error::L2Connection(why) => write!(f, "the shared tier failed: {why}"),
            Error::L2Refused(why) => write!(f, "the shared tier refused the operation: {why}"),
            Error::BadData(why) => write!(f, "the value could not be stored in the shared tier: {why}"),
        }
    }
}

impl std::error::Error for Error {}
