//! The checked form of one `#[cache]` use: what `validate` produces and
//! `expand` (or, after an error, `fallback`) turns into code.
//!
//! Nothing here reads tokens or reports errors; every value is already
//! checked.

use std::collections::HashSet;

use proc_macro2::Span;
use syn::{Expr, Ident, Member, Path};

use crate::args::Tier;
use crate::signature::{Function, Output};

/// What the companions' signatures need. Derived even when a check fails,
/// so that the fallback can still emit companions for callers to type-check
/// against.
pub(crate) struct Outline {
    pub(crate) function: Function,
    /// `::cachette` or the `crate = "..."` path.
    pub(crate) root: Path,
    /// Indices into `function.params` of the key args: the parameters that
    /// are not skipped, in order. The receiver is among them only when the
    /// key, a tag or `cache = ...` uses it.
    pub(crate) key_params: Vec<usize>,
    /// Names the templates and `cache = ...` mention besides parameters'
    /// types: the generic parameters that key-args companions keep.
    pub(crate) mentioned: HashSet<String>,
    pub(crate) scope: Scope,
    /// One per tag template, in order: the typed companions that render it
    /// and invalidate it on the function's cache.
    pub(crate) tags: Vec<TagCompanion>,
}

/// The companions of one tag template: `{fn}_tag_{suffix}` and
/// `{fn}_invalidate_{suffix}`.
pub(crate) struct TagCompanion {
    pub(crate) suffix: String,
    /// The template as written, for the companions' docs.
    pub(crate) template: String,
    /// Indices into `function.params` of what they take: the parameters
    /// the tag uses, and those `cache = ...` uses.
    pub(crate) params: Vec<usize>,
}

/// Where the function is, which decides how the generated items name each
/// other.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scope {
    /// A free function: siblings are called by their bare names.
    Free,
    /// In an `impl` (or trait): siblings are called through `Self::`. Told
    /// by a receiver or by `Self` in the signature, body or attribute,
    /// since the attribute cannot see the `impl` around the function.
    Associated,
}

/// Everything `expand` needs, all of it checked.
pub(crate) struct Plan {
    pub(crate) outline: Outline,
    pub(crate) output: Output,
    pub(crate) spec: Spec,
    pub(crate) key: Rendering,
    pub(crate) tags: Vec<Rendering>,
    pub(crate) cache: CacheSource,
}

/// The values of the runtime's `Spec`.
pub(crate) struct Spec {
    /// `None`: `module_path!()::fn_name`.
    pub(crate) name: Option<String>,
    pub(crate) ttl_ms: u64,
    pub(crate) jitter: f64,
    pub(crate) negative_ttl_ms: Option<u64>,
    pub(crate) lock: bool,
    pub(crate) namespace: Option<String>,
    pub(crate) version: u32,
    pub(crate) l1_ttl_ms: Option<u64>,
    pub(crate) tier: Tier,
    pub(crate) stale_ms: u64,
    pub(crate) stale_if_error_ms: u64,
    /// XFetch's beta; 0 is off.
    pub(crate) early: f64,
    pub(crate) refresh_ahead_ms: u64,
    /// Refreshes run on a task or thread of their own
    /// (`refresh = "background"`).
    pub(crate) background: bool,
}

/// A template with every placeholder resolved.
pub(crate) struct Rendering {
    pub(crate) pieces: Vec<Piece>,
    /// All literal text of the template, for `Escape::of`.
    pub(crate) escape: String,
}

pub(crate) enum Piece {
    Text(String),
    /// A parameter (`self` included) and a field path into it.
    Param {
        ident: Ident,
        fields: Vec<Member>,
        span: Span,
    },
    /// A const parameter, rendered as its value.
    Const {
        ident: Ident,
        span: Span,
    },
    /// A type parameter or `Self`, rendered as the type's name.
    TypeName {
        ident: Ident,
        span: Span,
    },
}

/// Which cache instance the generated code uses.
pub(crate) enum CacheSource {
    Global,
    /// `&(EXPR)`.
    Borrowed(Expr),
    /// `EXPR` borrows from a parameter the body takes by value, so the
    /// wrapper works on its own handle instead (a cheap clone).
    Cloned(Expr),
}

impl Plan {
    /// The key, then each tag, in the order the render helper numbers them.
    pub(crate) fn templates(&self) -> impl Iterator<Item = &Rendering> {
        std::iter::once(&self.key).chain(&self.tags)
    }
}
