//! The runtime behind [cachette](https://docs.rs/cachette): stores, keys,
//! invalidation, single-flight and stats.
//!
//! Use it through the `cachette` crate, which re-exports everything public
//! here next to the `#[cache]` attribute. Generated code calls only the
//! `__private` module, which is not part of the public API.
//!
//! # Example
//!
//! ```
//! use cachette::Cache;
//!
//! let cache = Cache::local();
//! cache.invalidate_key_blocking("user:42").unwrap();
//! assert!(cache.stats().functions.is_empty());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod background;
mod breaker;
mod clock;
mod codec;
mod compress;
mod config;
mod entry;
mod envelope;
mod error;
mod flight;
mod global;
mod handle;
#[cfg(feature = "axum")]
pub mod http;
mod invalidate;
mod key;
mod l1;
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "without `redis`, only tests construct a backend")
)]
mod l2;
mod pick;
mod refresh;
mod shape;
mod share;
mod spec;
mod stats;
mod tier;
mod trace;
mod value;
mod wait;

pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use codec::{Bincode, Codec, CodecError};
pub use config::{
    Builder, DEFAULT_COMPRESS_ABOVE, DEFAULT_L1_CAPACITY, DEFAULT_L2_TIMEOUT, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_VALUE_SIZE, DEFAULT_SHARED_L1_MAX_TTL,
};
pub use entry::{ETag, Entry, Source};
pub use error::Error;
pub use global::{
    clear, clear_blocking, invalidate_key, invalidate_key_blocking, invalidate_namespace,
    invalidate_namespace_blocking, invalidate_tag, invalidate_tag_blocking, set_global, stats,
};
pub use handle::Cache;
pub use key::{KeyPart, KeyWriter};
pub use l1::L1Store;
pub use spec::Tier;
pub use stats::{FunctionStats, Stats};
pub use value::{CacheValue, KeyedBy, ManyElement, SharedValue, ThreadShareable};

/// What generated code calls. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::background::{CallerAsync, CallerBlocking, Job, SpawnAsync, SpawnBlocking};
    pub use crate::entry::Record;
    pub use crate::global::global;
    pub use crate::key::{Escape, KeyPart, KeyWriter};
    pub use crate::pick::{LocalProbe, Pick, PickLocal, PickShared, PickUnusable, SharedProbe};
    pub use crate::shape::{Element, Never, Opt, Plain, Res, ResOpt, Shape, Stores, Unusable};
    pub use crate::share::{KeepResults, Probe, ShareResults, Sharing};
    pub use crate::spec::{Freshness, Site, Spec, Tier};
    pub use crate::tier::{
        invalidate_async, invalidate_blocking, invalidate_many_async, invalidate_many_blocking,
        key_string, lookup, lookup_entry, put_async, put_blocking, refresh, Batch, ElementProbe,
        Hashed, KeyStore, Keys, Load, Lookup, ManyTag, PickKeys, PickUnkeyed, Step, Tag, Unbatched,
    };
    pub use crate::value::{local, shared, ManyElement, ValueCodec};
    pub use crate::Cache;
    pub use crate::Error;
    pub use core::time::Duration;
}
