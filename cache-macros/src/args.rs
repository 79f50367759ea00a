//! Reads the attribute's arguments: `#[cache(key = "user:<id>", ttl = 300, ...)]`.
//!
//! Each argument is checked on its own here (a duration is positive, a tier
//! is one of three words); checks that need the function's signature live in
//! `validate`.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Path, UnOp};

use crate::ctxt::{backticked, closest, Ctxt};

/// One argument of the attribute: the single place that lists its name, how
/// it is written, what it means and how its value is read. The `#[cache]`
/// rustdoc's table shows the same rows (a test keeps the two in step).
pub(crate) struct ArgDef {
    pub(crate) name: &'static str,
    /// The docs table's first column, as Markdown.
    #[cfg_attr(not(test), allow(dead_code, reason = "the docs table test reads it"))]
    pub(crate) written: &'static str,
    /// What to write, for error messages: `ttl = 300`.
    pub(crate) example: &'static str,
    /// The docs table's "meaning" column.
    #[cfg_attr(not(test), allow(dead_code, reason = "the docs table test reads it"))]
    pub(crate) doc: &'static str,
    /// The docs table's "default" column.
    #[cfg_attr(not(test), allow(dead_code, reason = "the docs table test reads it"))]
    pub(crate) default: &'static str,
    pub(crate) kind: Kind,
}

/// How an argument is written, and what reading it stores.
pub(crate) enum Kind {
    /// A word alone: `lock`.
    Flag(fn(&mut Args)),
    /// Names in parentheses: `skip(db, self)`.
    Names(fn(&mut Args, Vec<Ident>)),
    /// `name = value`: checks the value (reporting problems) and stores it.
    /// The `Ident` is the argument's name, for errors that point at it.
    Value(fn(&Ctxt, &mut Args, &Ident, &Expr)),
}

/// Every argument, in the order the docs list them.
pub(crate) const ARGS: &[ArgDef] = &[
    ArgDef {
        name: "key",
        written: "`key = \"user:<id>\"`",
        example: "key = \"user:<id>\"",
        doc: "key template: literal text and `<param>` or `<param.field.path>` placeholders (`<self.tenant>` too); `<T>` (a type parameter) and `<Self>` render the type's name; `<<` is a literal `<`",
        default: "`\"<fn_name>:<p1>:<p2>...\"` over all parameters that are not skipped, then `<T>` for each type parameter the return type mentions",
        kind: Kind::Value(|cx, args, _, value| args.key = string(cx, "key", value)),
    },
    ArgDef {
        name: "ttl",
        written: "`ttl = 300` / `ttl = \"5m\"`",
        example: "ttl = 300",
        doc: "time to live: integer seconds or a duration string with units `ms`, `s`, `m`, `h`, `d` (`\"1h30m\"`)",
        default: "required",
        kind: Kind::Value(|cx, args, _, value| {
            args.ttl = duration(cx, "ttl", value).map(|ms| Arg::at_value(ms, value));
        }),
    },
    ArgDef {
        name: "jitter",
        written: "`jitter = 0.1`",
        example: "jitter = 0.1",
        doc: "the TTL is drawn from `[ttl*(1-j), ttl*(1+j)]`; `0 <= j < 1`",
        default: "0",
        kind: Kind::Value(|cx, args, _, value| {
            args.jitter = jitter(cx, value).map(|j| Arg::at_value(j, value));
        }),
    },
    ArgDef {
        name: "negative_ttl",
        written: "`negative_ttl = 60`",
        example: "negative_ttl = 60",
        doc: "cache an absent result (`None`, `Ok(None)`) for this long",
        default: "absent results are not cached",
        kind: Kind::Value(|cx, args, ident, value| {
            // Errors about an absent value point at the argument's name.
            args.negative_ttl = duration(cx, "negative_ttl", value).map(|ms| Arg {
                value: ms,
                span: ident.span(),
            });
        }),
    },
    ArgDef {
        name: "lock",
        written: "`lock`",
        example: "lock",
        doc: "single-flight: one body run per key at a time (see Concurrency)",
        default: "off",
        kind: Kind::Flag(|args| args.lock = true),
    },
    ArgDef {
        name: "tags",
        written: "`tags = [\"org:<org_id>\"]`",
        example: "tags = [\"users\"]",
        doc: "templates, checked like `key`, for `invalidate_tag`",
        default: "none",
        kind: Kind::Value(|cx, args, _, value| args.tags = tags(cx, value)),
    },
    ArgDef {
        name: "namespace",
        written: "`namespace = \"users\"`",
        example: "namespace = \"users\"",
        doc: "versioned namespace (letters, digits, `_`, `.`, `-`) for `invalidate_namespace`",
        default: "none",
        kind: Kind::Value(|cx, args, _, value| {
            args.namespace = namespace(cx, value).map(|n| Arg::at_value(n, value));
        }),
    },
    ArgDef {
        name: "version",
        written: "`version = 2`",
        example: "version = 2",
        doc: "schema version baked into the key",
        default: "1",
        kind: Kind::Value(|cx, args, _, value| {
            args.version = version(cx, value).map(|v| Arg::at_value(v, value));
        }),
    },
    ArgDef {
        name: "l1_ttl",
        written: "`l1_ttl = 30`",
        example: "l1_ttl = 30",
        doc: "cap on how long entries live in L1",
        default: "the cache's `l1_max_ttl`",
        kind: Kind::Value(|cx, args, _, value| {
            args.l1_ttl = duration(cx, "l1_ttl", value).map(|ms| Arg::at_value(ms, value));
        }),
    },
    ArgDef {
        name: "tier",
        written: "`tier = \"both\"`",
        example: "tier = \"l1\"",
        doc: "`\"l1\"`, `\"l2\"` or `\"both\"`",
        default: "`\"both\"`",
        kind: Kind::Value(|cx, args, _, value| {
            args.tier = tier(cx, value).map(|t| Arg::at_value(t, value));
        }),
    },
    ArgDef {
        name: "skip",
        written: "`skip(db, self)`",
        example: "skip(db, self)",
        doc: "parameters that do not shape the result",
        default: "none",
        kind: Kind::Names(|args, names| args.skip = names),
    },
    ArgDef {
        name: "cache",
        written: "`cache = EXPR`",
        example: "cache = &CACHE",
        doc: "the cache to use, a `Cache` or `&Cache` expression; may use parameters, which then pick the cache instead of going into the key",
        default: "the global cache",
        kind: Kind::Value(|_, args, _, value| args.cache = Some(value.clone())),
    },
    ArgDef {
        name: "name",
        written: "`name = \"users.get\"`",
        example: "name = \"users.get\"",
        doc: "name in stats, traces and metrics",
        default: "`module_path::fn_name` (`module_path::Type::method` for a method)",
        kind: Kind::Value(|cx, args, _, value| {
            args.name = function_name(cx, value).map(|n| Arg::at_value(n, value));
        }),
    },
    ArgDef {
        name: "crate",
        written: "`crate = \"path\"`",
        example: "crate = \"::my_app::cachette\"",
        doc: "path of the `cachette` crate in generated code",
        default: "`::cachette`",
        kind: Kind::Value(|cx, args, _, value| {
            args.krate = crate_path(cx, value).map(|p| Arg::at_value(p, value));
        }),
    },
    ArgDef {
        name: "stale",
        written: "`stale = 60`",
        example: "stale = 60",
        doc: "after the TTL, serve the stored value for up to this long while one refresh runs",
        default: "0",
        kind: Kind::Value(|cx, args, ident, value| {
            args.stale = duration(cx, "stale", value).map(|ms| Arg::at_value(ms, ident));
        }),
    },
    ArgDef {
        name: "stale_if_error",
        written: "`stale_if_error = 600`",
        example: "stale_if_error = 600",
        doc: "if the body fails, return the stored value when its TTL ended less than this ago (`Result` return types)",
        default: "0",
        kind: Kind::Value(|cx, args, ident, value| {
            args.stale_if_error =
                duration(cx, "stale_if_error", value).map(|ms| Arg::at_value(ms, ident));
        }),
    },
    ArgDef {
        name: "early",
        written: "`early = 1.0`",
        example: "early = 1.0",
        doc: "probabilistic early refresh before the TTL ends (XFetch; beta > 0, 1.0 is the usual choice)",
        default: "off",
        kind: Kind::Value(|cx, args, _, value| {
            args.early = beta(cx, value).map(|b| Arg::at_value(b, value));
        }),
    },
    ArgDef {
        name: "refresh_ahead",
        written: "`refresh_ahead = \"1m\"`",
        example: "refresh_ahead = \"1m\"",
        doc: "refresh once when less than this is left of the TTL",
        default: "off",
        kind: Kind::Value(|cx, args, _, value| {
            args.refresh_ahead =
                duration(cx, "refresh_ahead", value).map(|ms| Arg::at_value(ms, value));
        }),
    },
    ArgDef {
        name: "refresh",
        written: "`refresh = \"caller\"`",
        example: "refresh = \"caller\"",
        doc: "where refreshes run: `\"background\"` (a task or thread; the call returns at once) or `\"caller\"` (the call that starts it runs the body)",
        default: "`\"background\"` when every parameter is owned, `\"caller\"` otherwise",
        kind: Kind::Value(|cx, args, _, value| {
            args.refresh = refresh_mode(cx, value).map(|m| Arg::at_value(m, value));
        }),
    },
];

/// The arguments that are accepted, for "known arguments are ..." messages.
fn known() -> impl Iterator<Item = &'static str> + Clone {
    ARGS.iter().map(|def| def.name)
}

/// An argument's value and the span that errors about it point at.
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

impl<T> Arg<T> {
    /// A value whose errors point at `written` (the value, or the name).
    fn at_value(value: T, written: &impl Spanned) -> Arg<T> {
        Arg {
            value,
            span: written.span(),
        }
    }
}

/// Where a function's refreshes run (`refresh = ".."`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RefreshMode {
    Background,
    Caller,
}

/// Which stores a function's entries live in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tier {
    L1,
    L2,
    Both,
}

/// The attribute's arguments, each one checked on its own.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) key: Option<LitStr>,
    /// Milliseconds.
    pub(crate) ttl: Option<Arg<u64>>,
    pub(crate) jitter: Option<Arg<f64>>,
    /// Milliseconds; the span is the argument's name.
    pub(crate) negative_ttl: Option<Arg<u64>>,
    pub(crate) lock: bool,
    pub(crate) tags: Vec<LitStr>,
    pub(crate) namespace: Option<Arg<String>>,
    pub(crate) version: Option<Arg<u32>>,
    /// Milliseconds.
    pub(crate) l1_ttl: Option<Arg<u64>>,
    pub(crate) tier: Option<Arg<Tier>>,
    /// Parameter names as written, `self` included.
    pub(crate) skip: Vec<Ident>,
    pub(crate) cache: Option<Expr>,
    pub(crate) name: Option<Arg<String>>,
    pub(crate) krate: Option<Arg<Path>>,
    /// Milliseconds; the span is the argument's name.
    pub(crate) stale: Option<Arg<u64>>,
    /// Milliseconds; the span is the argument's name.
    pub(crate) stale_if_error: Option<Arg<u64>>,
    pub(crate) early: Option<Arg<f64>>,
    /// Milliseconds.
    pub(crate) refresh_ahead: Option<Arg<u64>>,
    pub(crate) refresh: Option<Arg<RefreshMode>>,
    /// Names of the known arguments that were written, valid or not.
    pub(crate) written: HashSet<String>,
    /// Known arguments that unknown ones were probably meant to be.
    pub(crate) misspelled: HashSet<String>,
}

/// Reads the arguments, recording every problem in `cx`.
///
/// A value that is wrong leaves its argument unset and parsing goes on; only
/// tokens that cannot be split into arguments at all stop it.
pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        let Some(ident) = meta.path.get_ident().cloned() else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown argument `{}`; known arguments are {}",
                    path_text(&meta.path),
                    backticked(known()),
                ),
            );
            return discard_value(&meta);
        };
        let name = ident.to_string();
        let Some(def) = ARGS.iter().find(|def| def.name == name) else {
            let near = closest(&name, known());
            if let Some(near) = near {
                args.misspelled.insert(near.to_owned());
            }
            let hint = match near {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            cx.error_at(
                ident.span(),
                format!(
                    "unknown argument `{name}`; {hint}known arguments are {}",
                    backticked(known())
                ),
            );
            return discard_value(&meta);
        };
        if !args.written.insert(name.clone()) {
            cx.error_at(ident.span(), format!("`{name}` is given twice; keep one"));
            return discard_value(&meta);
        }
        match def.kind {
            Kind::Flag(store) => {
                if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                    cx.error_at(
                        ident.span(),
                        format!("`{name}` takes no value; write `{name}` alone"),
                    );
                    return discard_value(&meta);
                }
                store(&mut args);
            }
            Kind::Names(store) => {
                let names = parse_names(cx, &meta, def)?;
                store(&mut args, names);
            }
            Kind::Value(store) => {
                if let Some(value) = value_of(cx, &meta, def)? {
                    store(cx, &mut args, &ident, &value);
                }
            }
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(tokens) {
        cx.syn_error(error);
    }
    args
}

/// The expression after `=`, or `None` (with an error) when the argument
/// was written without one.
fn value_of(cx: &Ctxt, meta: &ParseNestedMeta, def: &ArgDef) -> syn::Result<Option<Expr>> {
    if meta.input.peek(syn::Token![=]) {
        return meta.value()?.parse().map(Some);
    }
    cx.error_spanned_by(
        &meta.path,
        format!("`{}` needs a value, like `{}`", def.name, def.example),
    );
    discard_value(meta)?;
    Ok(None)
}

/// Skips whatever value follows an argument that is being rejected, so the
/// arguments after it are still read.
fn discard_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// `skip(db, self)`.
fn parse_names(cx: &Ctxt, meta: &ParseNestedMeta, def: &ArgDef) -> syn::Result<Vec<Ident>> {
    let mut names = Vec::new();
    if !meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(
            &meta.path,
            format!(
                "`{}` lists parameters in parentheses, like `{}`",
                def.name, def.example
            ),
        );
        discard_value(meta)?;
        return Ok(names);
    }
    meta.parse_nested_meta(|inner| {
        match inner.path.get_ident() {
            Some(ident)
                if !inner.input.peek(syn::Token![=]) && !inner.input.peek(syn::token::Paren) =>
            {
                names.push(ident.clone());
            }
            _ => {
                cx.error_spanned_by(
                    &inner.path,
                    format!(
                        "`{}(...)` takes parameter names, like `{}`",
                        def.name, def.example
                    ),
                );
                discard_value(&inner)?;
            }
        }
        Ok(())
    })?;
    Ok(names)
}

/// The row of the argument called `name`.
fn def(name: &str) -> &'static ArgDef {
    ARGS.iter()
        .find(|def| def.name == name)
        .expect("every argument has a row")
}

fn string(cx: &Ctxt, name: &str, value: &Expr) -> Option<LitStr> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    {
        return Some(lit.clone());
    }
    let example = def(name).example;
    cx.error_spanned_by(value, format!("`{name}` takes a string, like `{example}`"));
    None
}

/// Integer seconds or a duration string, in milliseconds.
fn duration(cx: &Ctxt, name: &str, value: &Expr) -> Option<u64> {
    let not_positive = || {
        cx.error_spanned_by(
            value,
            format!("`{name}` must be positive; write a number of seconds like `{name} = 300` or a duration like `{name} = \"5m\"`"),
        );
        None
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => {
            let suffix = lit.suffix();
            if UNITS.iter().any(|(unit, _)| *unit == suffix) {
                cx.error_spanned_by(
                    lit,
                    format!("put the duration in quotes: `{name} = \"{}\"`", lit.token()),
                );
                return None;
            }
            if !suffix.is_empty() && !is_integer_suffix(suffix) {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "unknown unit `{suffix}`; write `{name} = \"5m\"` with one of the units {}",
                        backticked(UNITS.iter().map(|(u, _)| u))
                    ),
                );
                return None;
            }
            let Ok(seconds) = lit.base10_parse::<u64>() else {
                cx.error_spanned_by(lit, format!("`{name}` is too large"));
                return None;
            };
            match seconds.checked_mul(1000) {
                Some(0) => not_positive(),
                Some(ms) => Some(ms),
                None => {
                    cx.error_spanned_by(lit, format!("`{name}` is too large"));
                    None
                }
            }
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match parse_duration(&lit.value()) {
            Ok(0) => not_positive(),
            Ok(ms) => Some(ms),
            Err(DurationError::TooLarge) => {
                cx.error_spanned_by(lit, format!("`{name}` is too large"));
                None
            }
            Err(DurationError::Malformed) => {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "malformed duration {:?}; write whole numbers with units {}, like \"90s\" or \"1h30m\"",
                        lit.value(),
                        backticked(UNITS.iter().map(|(u, _)| u)),
                    ),
                );
                None
            }
        },
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => not_positive(),
        Expr::Lit(ExprLit {
            lit: Lit::Float(_), ..
        }) => {
            cx.error_spanned_by(
                value,
                format!("`{name}` takes whole seconds; write fractions with a unit, like `{name} = \"1500ms\"`"),
            );
            None
        }
        _ => {
            cx.error_spanned_by(
                value,
                format!("`{name}` takes integer seconds or a duration string, like `{name} = 300` or `{name} = \"5m\"`"),
            );
            None
        }
    }
}

/// Duration units and their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

fn is_integer_suffix(suffix: &str) -> bool {
    matches!(
        suffix,
        "u8" | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
            | "i8"
            | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
    )
}

#[derive(Debug, PartialEq, Eq)]
enum DurationError {
    Malformed,
    TooLarge,
}

/// `"1h30m"` -> 5_400_000. Components are whole numbers each followed by a
/// unit; spaces between components are allowed.
fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::Malformed);
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Malformed);
        }
        let amount: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge)?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        let (_, scale) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or(DurationError::Malformed)?;
        rest = rest[letters..].trim_start();
        total = amount
            .checked_mul(*scale)
            .and_then(|ms| total.checked_add(ms))
            .ok_or(DurationError::TooLarge)?;
    }
    Ok(total)
}

/// `early = 1.0`: XFetch's beta, a positive finite number.
fn beta(cx: &Ctxt, value: &Expr) -> Option<f64> {
    let beta = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Float(lit),
            ..
        }) => lit.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_parse::<f64>().ok(),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Some(-1.0),
        _ => None,
    };
    match beta {
        Some(b) if b > 0.0 && b.is_finite() => Some(b),
        _ => {
            cx.error_spanned_by(
                value,
                "`early` takes a positive number, XFetch's beta: `early = 1.0` refreshes a hot key shortly before its TTL ends, larger values earlier",
            );
            None
        }
    }
}

/// `refresh = "background"` or `refresh = "caller"`.
fn refresh_mode(cx: &Ctxt, value: &Expr) -> Option<RefreshMode> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    {
        match lit.value().as_str() {
            "background" => return Some(RefreshMode::Background),
            "caller" => return Some(RefreshMode::Caller),
            _ => {}
        }
    }
    cx.error_spanned_by(
        value,
        "`refresh` is `\"background\"` or `\"caller\"`, like `refresh = \"caller\"`",
    );
    None
}

fn jitter(cx: &Ctxt, value: &Expr) -> Option<f64> {
    let jitter = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Float(lit),
            ..
        }) => lit.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_parse::<f64>().ok(),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) if matches!(
            **expr,
            Expr::Lit(ExprLit {
                lit: Lit::Float(_) | Lit::Int(_),
                ..
            })
        ) =>
        {
            Some(-1.0)
        }
        _ => {
            cx.error_spanned_by(
                value,
                "`jitter` takes a number in `[0, 1)`, like `jitter = 0.1`",
            );
            return None;
        }
    };
    match jitter {
        Some(j) if (0.0..1.0).contains(&j) => Some(j),
        _ => {
            cx.error_spanned_by(
                value,
                "`jitter` must be at least 0 and below 1: it is the fraction by which the TTL may vary, like `jitter = 0.1`",
            );
            None
        }
    }
}

fn version(cx: &Ctxt, value: &Expr) -> Option<u32> {
    let version = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_parse::<u32>().ok(),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Some(0),
        _ => None,
    };
    match version {
        Some(0) => {
            cx.error_spanned_by(
                value,
                "`version` starts at 1; write `version = 1` or higher",
            );
            None
        }
        Some(v) => Some(v),
        None => {
            cx.error_spanned_by(
                value,
                "`version` takes a positive integer that fits in `u32`, like `version = 2`",
            );
            None
        }
    }
}

fn tier(cx: &Ctxt, value: &Expr) -> Option<Tier> {
    let lit = string(cx, "tier", value)?;
    match lit.value().as_str() {
        "l1" => Some(Tier::L1),
        "l2" => Some(Tier::L2),
        "both" => Some(Tier::Both),
        other => {
            cx.error_spanned_by(
                &lit,
                format!("unknown tier {other:?}; write `tier = \"l1\"`, `tier = \"l2\"` or `tier = \"both\"`"),
            );
            None
        }
    }
}

fn namespace(cx: &Ctxt, value: &Expr) -> Option<String> {
    let lit = string(cx, "namespace", value)?;
    let namespace = lit.value();
    if namespace.is_empty() {
        cx.error_spanned_by(
            &lit,
            "`namespace` is empty; write a name like `namespace = \"users\"` or remove it",
        );
        return None;
    }
    if let Some(bad) = namespace
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        cx.error_spanned_by(
            &lit,
            format!("`namespace` may not contain {bad:?}; use letters, digits, `_`, `.` and `-`, like `namespace = \"users.v2\"`"),
        );
        return None;
    }
    Some(namespace)
}

fn function_name(cx: &Ctxt, value: &Expr) -> Option<String> {
    let lit = string(cx, "name", value)?;
    if lit.value().is_empty() {
        cx.error_spanned_by(
            &lit,
            "`name` is empty; write a name like `name = \"users.get\"` or remove it",
        );
        return None;
    }
    Some(lit.value())
}

fn crate_path(cx: &Ctxt, value: &Expr) -> Option<Path> {
    let lit = string(cx, "crate", value)?;
    match lit.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            cx.error_spanned_by(
                &lit,
                format!(
                    "`crate` must be a path to the `cachette` crate, like `{}`",
                    def("crate").example
                ),
            );
            None
        }
    }
}

/// `tags = ["org:<org_id>", "users"]`.
fn tags(cx: &Ctxt, value: &Expr) -> Vec<LitStr> {
    let Expr::Array(array) = value else {
        let hint = match value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => format!("tags = [{:?}]", lit.value()),
            _ => "tags = [\"users\"]".to_owned(),
        };
        cx.error_spanned_by(
            value,
            format!("`tags` takes an array of strings, like `{hint}`"),
        );
        return Vec::new();
    };
    let mut tags = Vec::new();
    for element in &array.elems {
        match element {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => tags.push(lit.clone()),
            _ => cx.error_spanned_by(
                element,
                "each tag is a string template, like `\"org:<org_id>\"`",
            ),
        }
    }
    tags
}

fn path_text(path: &Path) -> String {
    let mut text = String::new();
    if path.leading_colon.is_some() {
        text.push_str("::");
    }
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    text.push_str(&segments.join("::"));
    text
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse_ok(tokens: TokenStream) -> Args {
        let cx = Ctxt::new();
        let args = parse(&cx, tokens);
        if let Err(error) = cx.check() {
            panic!("unexpected error: {error}");
        }
        args
    }

    fn errors(tokens: TokenStream) -> Vec<String> {
        let cx = Ctxt::new();
        parse(&cx, tokens);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_argument_is_read() {
        let args = parse_ok(quote! {
            key = "user:<id>", ttl = "1h30m", jitter = 0.25, negative_ttl = 60, lock,
            tags = ["org:<org>", "users"], namespace = "users.v2", version = 3,
            l1_ttl = "30s", tier = "l1", skip(db, self), cache = &self.cache,
            name = "users.get", crate = "::app::cachette"
        });
        assert_eq!(args.key.unwrap().value(), "user:<id>");
        assert_eq!(args.ttl.unwrap().value, 5_400_000);
        assert_eq!(args.jitter.unwrap().value, 0.25);
        assert_eq!(args.negative_ttl.unwrap().value, 60_000);
        assert!(args.lock);
        assert_eq!(args.tags.len(), 2);
        assert_eq!(args.namespace.unwrap().value, "users.v2");
        assert_eq!(args.version.unwrap().value, 3);
        assert_eq!(args.l1_ttl.unwrap().value, 30_000);
        assert_eq!(args.tier.unwrap().value, Tier::L1);
        let skip: Vec<String> = args.skip.iter().map(ToString::to_string).collect();
        assert_eq!(skip, ["db", "self"]);
        assert!(args.cache.is_some());
        assert_eq!(args.name.unwrap().value, "users.get");
        let krate = args.krate.unwrap().value;
        assert_eq!(quote!(#krate).to_string(), ":: app :: cachette");
    }

    #[test]
    fn durations_accept_seconds_and_unit_strings() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1d 2h"), Ok(93_600_000));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("5"), Err(DurationError::Malformed));
        assert_eq!(parse_duration("5 minutes"), Err(DurationError::Malformed));
        assert_eq!(parse_duration("m5"), Err(DurationError::Malformed));
        assert_eq!(parse_duration(""), Err(DurationError::Malformed));
        assert_eq!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::TooLarge)
        );
    }

    #[test]
    fn bad_values_are_all_reported() {
        let errors = errors(quote! {
            ttl = 0, negative_ttl = -5, l1_ttl = "5 minutes", jitter = 1.0,
            version = 0, tier = "l3", namespace = "a b", name = ""
        });
        assert_eq!(errors.len(), 8, "{errors:#?}");
        assert!(errors[0].starts_with("`ttl` must be positive"));
        assert!(errors[1].starts_with("`negative_ttl` must be positive"));
        assert!(errors[2].starts_with("malformed duration \"5 minutes\""));
        assert!(errors[3].starts_with("`jitter` must be at least 0 and below 1"));
        assert!(errors[4].starts_with("`version` starts at 1"));
        assert!(errors[5].starts_with("unknown tier \"l3\""));
        assert!(errors[6].starts_with("`namespace` may not contain ' '"));
        assert!(errors[7].starts_with("`name` is empty"));
    }

    #[test]
    fn unknown_duplicate_and_malformed_arguments_are_reported_and_skipped() {
        let errors = errors(quote! {
            ttll = 5, ttl = 1, ttl = 2, stale = 0, early = 0, refresh = "later", key = "k"
        });
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].starts_with("unknown argument `ttll`; did you mean `ttl`?"));
        assert_eq!(errors[1], "`ttl` is given twice; keep one");
        assert!(errors[2].starts_with("`stale` must be positive"));
        assert!(errors[3].starts_with("`early` takes a positive number"));
        assert!(errors[4].starts_with("`refresh` is `\"background\"` or `\"caller\"`"));
    }

    #[test]
    fn the_docs_table_shows_the_rows_of_the_argument_table() {
        let docs = include_str!("lib.rs");
        let section = docs
            .split("/// # Arguments")
            .nth(1)
            .and_then(|rest| rest.split("/// # ").next())
            .expect("the `#[cache]` docs have an Arguments section");
        let shown: Vec<&str> = section
            .lines()
            .map(|line| line.trim_start_matches("///").trim())
            .filter(|line| line.starts_with("| `"))
            .collect();
        let rows: Vec<String> = ARGS
            .iter()
            .map(|def| format!("| {} | {} | {} |", def.written, def.doc, def.default))
            .collect();
        assert_eq!(shown, rows);
    }

    #[test]
    fn an_unquoted_unit_asks_for_quotes() {
        let errors = errors(quote!(ttl = 5m));
        assert_eq!(errors, ["put the duration in quotes: `ttl = \"5m\"`"]);
    }
}
