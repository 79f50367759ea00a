//! Checks the arguments against the function and resolves every template
//! placeholder, producing the [`Plan`] that `expand` turns into code.
//!
//! Every problem is recorded in the [`Ctxt`]; a plan is returned only when
//! there were none, and otherwise the [`Outline`] that the fallback's
//! companions need.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{Expr, FnArg, Ident, Index, LitStr, Member};

use crate::args::{Args, RefreshMode, Tier};
use crate::ctxt::{backticked, closest, type_text, Ctxt};
use crate::plan::{CacheSource, Outline, Piece, Plan, Rendering, Scope, Spec};
use crate::signature::{mentioned_names, Function, Param, ParamKind, Shape};
use crate::template::{Placeholder, Role, Segment, Template};

/// Checks everything. Returns the plan when nothing is wrong, and the
/// outline of the companions otherwise.
pub(crate) fn check(cx: &Ctxt, args: Args, function: Function) -> Result<Plan, Box<Outline>> {
    check_item(cx, &function);
    let (skipped, meant_to_skip) = resolve_skip(cx, &args, &function);
    check_patterns(cx, &function, &skipped);
    let cache_uses = args
        .cache
        .as_ref()
        .map(|expr| cache_uses(expr, &function))
        .unwrap_or_default();

    let mut key_uses = HashSet::new();
    let key = resolve_key(cx, &args, &function, &skipped, &cache_uses, &mut key_uses);
    let mut each_tag_uses = Vec::new();
    let tags: Vec<_> = args
        .tags
        .iter()
        .map(|lit| {
            let mut uses = HashSet::new();
            let rendering = resolve_tag(cx, lit, &function, &skipped, &mut uses);
            each_tag_uses.push(uses);
            rendering
        })
        .collect();
    let tag_uses: HashSet<String> = each_tag_uses.iter().flatten().cloned().collect();
    if let (Some(lit), Some(_)) = (&args.key, &key) {
        // A misspelled `skip(...)` entry has its own error; the parameter it
        // meant is not reported again.
        let excused: HashSet<String> = skipped.union(&meant_to_skip).cloned().collect();
        check_every_param_is_keyed(cx, &function, &excused, &key_uses, &cache_uses);
        check_generic_output_is_keyed(cx, lit, &function, &key_uses);
    }
    let keyed: HashSet<String> = key_uses.union(&tag_uses).cloned().collect();
    check_no_mut_ref_in_key(cx, &function, &keyed);
    check_negative_ttl(cx, &args, &function);
    let background = check_freshness(cx, &args, &function);
    // A `ttl` that was written but rejected, or misspelled, already has its
    // own error.
    if !args.written.contains("ttl") && !args.misspelled.contains("ttl") {
        cx.error_at(
            Span::call_site(),
            "missing `ttl`: every cached function needs a time to live, like `#[cache(ttl = 300)]` or `#[cache(ttl = \"5m\")]`",
        );
    }

    let tag_companions = tag_companions(&args, &function, &cache_uses, &each_tag_uses);
    let mut outline = outline(&args, function, &skipped, &cache_uses, key_uses, tag_uses);
    outline.tags = tag_companions;
    if cx.has_errors() {
        return Err(Box::new(outline));
    }
    let (Some(output), Some(key), Some(tags), Some(ttl)) = (
        outline.function.output.clone(),
        key,
        tags.into_iter().collect::<Option<Vec<_>>>(),
        &args.ttl,
    ) else {
        return Err(Box::new(outline));
    };
    let cache = match args.cache {
        None => CacheSource::Global,
        Some(expr) => {
            let borrows_a_moved_param = outline.function.params.iter().any(|param| {
                !param.is_shared_reference()
                    && param_names(param)
                        .iter()
                        .any(|name| cache_uses.contains(name))
            });
            if borrows_a_moved_param {
                CacheSource::Cloned(expr)
            } else {
                CacheSource::Borrowed(expr)
            }
        }
    };
    Ok(Plan {
        spec: Spec {
            name: args.name.map(|arg| arg.value),
            ttl_ms: ttl.value,
            jitter: args.jitter.map_or(0.0, |arg| arg.value),
            negative_ttl_ms: args.negative_ttl.map(|arg| arg.value),
            lock: args.lock,
            namespace: args.namespace.map(|arg| arg.value),
            version: args.version.map_or(1, |arg| arg.value),
            l1_ttl_ms: args.l1_ttl.map(|arg| arg.value),
            tier: args.tier.map_or(Tier::Both, |arg| arg.value),
            stale_ms: args.stale.map_or(0, |arg| arg.value),
            stale_if_error_ms: args.stale_if_error.map_or(0, |arg| arg.value),
            early: args.early.map_or(0.0, |arg| arg.value),
            refresh_ahead_ms: args.refresh_ahead.map_or(0, |arg| arg.value),
            background,
        },
        output,
        key,
        tags,
        cache,
        outline,
    })
}

/// What the companions' signatures need, from whatever the checks could
/// read. `skipped` holds only names that exist.
fn outline(
    args: &Args,
    function: Function,
    skipped: &HashSet<String>,
    cache_uses: &HashSet<String>,
    key_uses: HashSet<String>,
    tag_uses: HashSet<String>,
) -> Outline {
    let key_params = function
        .params
        .iter()
        .enumerate()
        .filter(|(_, param)| {
            param
                .name()
                .is_some_and(|name| !skipped.contains(&name) || cache_uses.contains(&name))
        })
        .map(|(index, _)| index)
        .collect();
    let mut mentioned: HashSet<String> = key_uses.into_iter().chain(tag_uses).collect();
    if let Some(expr) = &args.cache {
        mentioned.extend(mentioned_names(expr.to_token_stream()));
    }
    let names_self_type = args
        .key
        .iter()
        .chain(&args.tags)
        .any(|lit| lit.value().contains("<Self>"))
        || mentioned.contains("Self");
    let scope = if function.is_associated() || names_self_type {
        Scope::Associated
    } else {
        Scope::Free
    };
    Outline {
        root: args
            .krate
            .as_ref()
            .map_or_else(|| syn::parse_quote!(::cachette), |arg| arg.value.clone()),
        key_params,
        mentioned,
        scope,
        function,
        tags: Vec::new(),
    }
}

/// The typed companions of each tag template: a name from the template's
/// literal text (`"org:<org_id>"` -> `org`, `"org:<o>:team:<t>"` ->
/// `org_team`, `"<id>"` -> `tag0`), and the parameters the tag and
/// `cache = ...` use.
fn tag_companions(
    args: &Args,
    function: &Function,
    cache_uses: &HashSet<String>,
    each_tag_uses: &[HashSet<String>],
) -> Vec<crate::plan::TagCompanion> {
    let mut taken = HashSet::new();
    args.tags
        .iter()
        .zip(each_tag_uses)
        .enumerate()
        .map(|(index, (lit, uses))| {
            let template = lit.value();
            let mut suffix = tag_suffix(&template);
            if suffix.is_empty() || suffix.starts_with(|c: char| c.is_ascii_digit()) {
                suffix = format!("tag{index}");
            }
            if !taken.insert(suffix.clone()) {
                suffix = format!("{suffix}_{index}");
                taken.insert(suffix.clone());
            }
            let params = function
                .params
                .iter()
                .enumerate()
                .filter(|(_, param)| {
                    param
                        .name()
                        .is_some_and(|name| uses.contains(&name) || cache_uses.contains(&name))
                })
                .map(|(index, _)| index)
                .collect();
            crate::plan::TagCompanion {
                suffix,
                template,
                params,
            }
        })
        .collect()
}

/// The words of a template's literal text, lower-case, joined by `_`.
fn tag_suffix(template: &str) -> String {
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' if chars.peek() == Some(&'<') => {
                chars.next();
                literal.push(' ');
            }
            '<' => {
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                }
                literal.push(' ');
            }
            c => literal.push(c),
        }
    }
    literal
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("_")
}

/// The key template (written or default) with its placeholders resolved.
fn resolve_key(
    cx: &Ctxt,
    args: &Args,
    function: &Function,
    skipped: &HashSet<String>,
    cache_uses: &HashSet<String>,
    key_uses: &mut HashSet<String>,
) -> Option<Rendering> {
    let template = match &args.key {
        Some(lit) => Template::parse(cx, lit, Role::Key)?,
        None => default_key(function, skipped, cache_uses),
    };
    resolve(
        cx,
        &template,
        function,
        skipped,
        key_uses,
        |name, hole, _| {
            let ident = args
                .skip
                .iter()
                .find(|ident| ident.unraw() == name)
                .expect("a skipped name comes from `skip(...)`");
            cx.error_at(
                ident.span(),
                format!(
                    "`{name}` is skipped, but the key uses `{}`; remove `{name}` from `skip(...)`",
                    hole.text()
                ),
            );
        },
    )
}

/// One tag template with its placeholders resolved.
fn resolve_tag(
    cx: &Ctxt,
    lit: &LitStr,
    function: &Function,
    skipped: &HashSet<String>,
    uses: &mut HashSet<String>,
) -> Option<Rendering> {
    let template = Template::parse(cx, lit, Role::Tag)?;
    let on_skipped = |name: &str, hole: &Placeholder, template: &Template| {
        cx.error_spanned_by(
            lit,
            format!(
                "tag {:?} uses `{}`, but `{name}` is skipped and companions such as `{}_invalidate` do not take it; remove `{name}` from `skip(...)` or from the tag",
                template.source,
                hole.text(),
                function.name().unraw(),
            ),
        );
    };
    resolve(cx, &template, function, skipped, uses, on_skipped)
}

/// `negative_ttl` needs a return type with an absent value.
fn check_negative_ttl(cx: &Ctxt, args: &Args, function: &Function) {
    let (Some(negative_ttl), Some(output)) = (&args.negative_ttl, &function.output) else {
        return;
    };
    if output.shape.has_absent_value() {
        return;
    }
    let value = type_text(&output.value);
    cx.error_at(
        negative_ttl.span,
        format!(
            "`negative_ttl` caches absent results, but `{value}` has no absent value; return `Option<{value}>` (or `Result<Option<{value}>, E>`) or remove `negative_ttl`"
        ),
    );
}

/// The freshness arguments against each other and the signature (§2a);
/// returns whether refreshes run in the background.
fn check_freshness(cx: &Ctxt, args: &Args, function: &Function) -> bool {
    if let (Some(arg), Some(output)) = (&args.stale_if_error, &function.output) {
        if !matches!(output.shape, Shape::Res | Shape::ResOpt) {
            let ty = type_text(&output.ty);
            cx.error_at(
                arg.span,
                format!(
                    "`stale_if_error` answers with the stored value when the body fails, but `{ty}` cannot fail; return `Result<{ty}, E>`, or remove `stale_if_error`"
                ),
            );
        }
    }
    if let (Some(ahead), Some(ttl)) = (&args.refresh_ahead, &args.ttl) {
        if ahead.value >= ttl.value {
            cx.error_at(
                ahead.span,
                "`refresh_ahead` must be shorter than `ttl`: with this much left of the TTL every hit would start a refresh; write a fraction of the TTL, like `refresh_ahead = \"1m\"` for `ttl = \"10m\"`",
            );
        }
    }
    let refreshes = args.stale.is_some() || args.early.is_some() || args.refresh_ahead.is_some();
    let borrowed = borrowed_input(function);
    match &args.refresh {
        Some(mode) if !refreshes => {
            cx.error_at(
                mode.span,
                "`refresh` says where refreshes run, but nothing starts one; add `stale`, `early` or `refresh_ahead`, or remove `refresh`",
            );
            false
        }
        Some(mode) if mode.value == RefreshMode::Background => match borrowed {
            Some((tokens, why)) => {
                cx.error_spanned_by(
                    tokens,
                    format!(
                        "`refresh = \"background\"` runs the body after the call has returned, but {why}; take owned values (like `String` for `&str`, or an `Arc` of the shared state), or write `refresh = \"caller\"` to refresh in the call that finds the entry due"
                    ),
                );
                false
            }
            None => true,
        },
        Some(_) => false,
        None => borrowed.is_none(),
    }
}

/// The first part of the signature that a background refresh could not
/// keep after the call returns: a receiver, a reference, a lifetime, a type
/// parameter or an `impl Trait` argument. With why.
fn borrowed_input(function: &Function) -> Option<(TokenStream, String)> {
    let generics = &function.item.sig.generics;
    let type_params: HashSet<String> = generics
        .type_params()
        .map(|param| param.ident.to_string())
        .collect();
    for param in &function.params {
        match (&param.kind, &param.arg) {
            (ParamKind::Receiver, FnArg::Receiver(receiver)) => {
                let written = match (&receiver.reference, &receiver.mutability) {
                    (Some(_), Some(_)) => "&mut self",
                    (Some(_), None) => "&self",
                    (None, _) => "self",
                };
                return Some((
                    receiver.to_token_stream(),
                    format!("a method's receiver (`{written}`) belongs to the caller"),
                ));
            }
            (_, FnArg::Typed(typed)) => {
                let name = param.name().unwrap_or_else(|| "_".to_owned());
                let ty = type_text(&typed.ty);
                let why = if borrowed_part(&typed.ty).is_some() {
                    format!("`{name}: {ty}` is borrowed only for the call")
                } else if matches!(&*typed.ty, syn::Type::ImplTrait(_)) {
                    format!("`{name}: {ty}` may hold borrows")
                } else if mentions_any(&typed.ty, &type_params) {
                    format!("`{name}: {ty}` has a type parameter, which may hold borrows")
                } else {
                    continue;
                };
                return Some((typed.ty.to_token_stream(), why));
            }
            _ => {}
        }
    }
    None
}

/// Whether `ty` names one of `names` (type parameters).
fn mentions_any(ty: &syn::Type, names: &HashSet<String>) -> bool {
    !names.is_empty()
        && mentioned_names(ty.to_token_stream())
            .iter()
            .any(|name| names.contains(name))
}

/// Items `#[cache]` cannot wrap.
fn check_item(cx: &Ctxt, function: &Function) {
    let sig = &function.item.sig;
    if let Some(constness) = &sig.constness {
        cx.error_at(
            constness.span,
            "`#[cache]` cannot wrap a `const fn`: a cache lookup does not run at compile time; remove `const`",
        );
    }
    if function.output.is_none() {
        let message = format!(
            "`{}` returns nothing, so there is nothing to cache; return the value to cache, or remove `#[cache]`",
            sig.ident.unraw()
        );
        match &sig.output {
            syn::ReturnType::Type(_, ty) => cx.error_spanned_by(ty, message),
            syn::ReturnType::Default => cx.error_at(sig.ident.span(), message),
        }
    }
    if let Some(syn::ReturnType::Type(_, ty)) = Some(&sig.output) {
        if let Some(borrowed) = borrowed_part(ty) {
            cx.error_spanned_by(
                borrowed,
                "`#[cache]` stores the returned value and hands out clones of it, so the value must own its data; return an owned type instead, like `String` for `&str`, `T` for `&T`, or `Cow<'static, str>` for `Cow<'a, str>`",
            );
        }
    }
    if let Some(impl_trait) = function.impl_trait_output() {
        cx.error_spanned_by(
            impl_trait,
            "`#[cache]` cannot store an `impl Trait` value, whose type is hidden; return a concrete type, like `Vec<User>`",
        );
    }
}

/// The first reference, or lifetime other than `'static`, in a return type.
fn borrowed_part(ty: &syn::Type) -> Option<TokenStream> {
    struct Find(Option<TokenStream>);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
            if self.0.is_none() {
                self.0 = Some(reference.to_token_stream());
            }
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if self.0.is_none() && lifetime.ident != "static" {
                self.0 = Some(lifetime.to_token_stream());
            }
        }
    }
    let mut find = Find(None);
    find.visit_type(ty);
    find.0
}

/// A `&mut` parameter in the key or a tag: the body may change it after the
/// key was rendered, and the entry would be stored under a key that no
/// longer describes the value.
fn check_no_mut_ref_in_key(cx: &Ctxt, function: &Function, uses: &HashSet<String>) {
    for param in &function.params {
        let (ParamKind::Named { ident }, FnArg::Typed(typed)) = (&param.kind, &param.arg) else {
            continue;
        };
        let name = ident.unraw().to_string();
        let syn::Type::Reference(reference) = &*typed.ty else {
            continue;
        };
        if reference.mutability.is_none() || !uses.contains(&name) {
            continue;
        }
        cx.error_spanned_by(
            &typed.ty,
            format!(
                "`{name}` is a `&mut` reference in the key: the body may change it after the key was rendered, and the result would be stored under a key that no longer describes it; take `{name}` by value or by `&`, or leave it out of the key with `skip({name})`"
            ),
        );
    }
}

/// The names in `skip(...)` that exist, each once; and the parameters that
/// misspelled names in it were probably meant to skip.
fn resolve_skip(cx: &Ctxt, args: &Args, function: &Function) -> (HashSet<String>, HashSet<String>) {
    let mut skipped = HashSet::new();
    let mut meant = HashSet::new();
    let known: Vec<String> = function.params.iter().flat_map(param_names).collect();
    for ident in &args.skip {
        let name = ident.unraw().to_string();
        if !known.contains(&name) {
            if let Some(near) = closest(&name, known.iter().map(String::as_str)) {
                meant.insert(near.to_owned());
            }
            cx.error_at(
                ident.span(),
                format!(
                    "`skip({name})` names no parameter of `{}`; {}",
                    function.name().unraw(),
                    describe_params(function, &name, |near| near.to_owned()),
                ),
            );
        } else if !skipped.insert(name.clone()) {
            cx.error_at(
                ident.span(),
                format!("`{name}` is skipped twice; list it once"),
            );
        }
    }
    (skipped, meant)
}

/// Destructuring parameters cannot go into the key, so each must be skipped
/// (all the names it binds) or bind nothing at all.
fn check_patterns(cx: &Ctxt, function: &Function, skipped: &HashSet<String>) {
    for param in &function.params {
        let ParamKind::Pattern { bindings } = &param.kind else {
            continue;
        };
        let names: Vec<String> = bindings.iter().map(|b| b.unraw().to_string()).collect();
        if names.iter().all(|name| skipped.contains(name)) {
            continue;
        }
        cx.error_spanned_by(
            param.name_tokens(),
            format!(
                "a destructuring pattern cannot go into the key; bind this parameter to a name and use its fields in the key, like `<pair.0>`, or skip it with `skip({})`",
                names.join(", ")
            ),
        );
    }
}

/// Names `cache = EXPR` uses: parameters named as plain paths (`db`,
/// `self.cache`) or inside macro calls.
fn cache_uses(expr: &Expr, function: &Function) -> HashSet<String> {
    struct Paths(HashSet<String>);
    impl Visit<'_> for Paths {
        fn visit_expr_path(&mut self, path: &syn::ExprPath) {
            if let (None, None, Some(ident)) =
                (&path.qself, &path.path.leading_colon, path.path.get_ident())
            {
                self.0.insert(ident.unraw().to_string());
            }
            syn::visit::visit_expr_path(self, path);
        }
        fn visit_macro(&mut self, mac: &syn::Macro) {
            self.0.extend(mentioned_names(mac.tokens.clone()));
        }
    }
    let mut paths = Paths(HashSet::new());
    paths.visit_expr(expr);
    let params: HashSet<String> = function.params.iter().flat_map(param_names).collect();
    // A parameter that picks the cache may also be skipped (it is not in
    // the key either way); the companions take it, since they need the
    // cache.
    paths.0.intersection(&params).cloned().collect()
}

/// `"<fn_name>:<p1>:<p2>..."` over the parameters that are neither skipped
/// nor used only to pick the cache, then `<T>` for each type or const
/// parameter the return type mentions.
fn default_key(
    function: &Function,
    skipped: &HashSet<String>,
    cache_uses: &HashSet<String>,
) -> Template {
    let mut parts = Vec::new();
    for param in &function.params {
        let Some(name) = param.name() else { continue };
        if !skipped.contains(&name) && !cache_uses.contains(&name) {
            parts.push((name, param.span()));
        }
    }
    let in_output = output_generics(function);
    for ident in function.type_and_const_params() {
        let name = ident.unraw().to_string();
        if in_output.contains(&name) {
            parts.push((name, ident.span()));
        }
    }
    let name = function.name().unraw().to_string();
    Template::default_key(&name, function.name().span(), &parts)
}

/// Type and const parameters that the return type mentions.
fn output_generics(function: &Function) -> HashSet<String> {
    let Some(output) = &function.output else {
        return HashSet::new();
    };
    let mentioned = mentioned_names(output.ty.to_token_stream());
    function
        .type_and_const_params()
        .into_iter()
        .map(|ident| ident.unraw().to_string())
        .filter(|name| mentioned.contains(name))
        .collect()
}

/// Resolves each placeholder to a parameter, const parameter or type
/// parameter, recording the roots used in `uses`. `on_skipped` reports a
/// placeholder whose parameter is skipped.
fn resolve(
    cx: &Ctxt,
    template: &Template,
    function: &Function,
    skipped: &HashSet<String>,
    uses: &mut HashSet<String>,
    on_skipped: impl Fn(&str, &Placeholder, &Template),
) -> Option<Rendering> {
    let mut pieces = Vec::new();
    let mut ok = true;
    for segment in &template.segments {
        let hole = match segment {
            Segment::Text(text) => {
                pieces.push(Piece::Text(text.clone()));
                continue;
            }
            Segment::Hole(hole) => hole,
        };
        let root = hole.root.strip_prefix("r#").unwrap_or(&hole.root);
        let param = function
            .params
            .iter()
            .find(|param| param.name().as_deref() == Some(root));
        if let Some(param) = param {
            uses.insert(root.to_owned());
            if skipped.contains(root) {
                on_skipped(root, hole, template);
                ok = false;
                continue;
            }
            pieces.push(Piece::Param {
                ident: param.ident_at(hole.span),
                fields: hole
                    .fields
                    .iter()
                    .map(|field| member(field, hole.span))
                    .collect(),
                span: hole.span,
            });
            continue;
        }
        // `<Self>` names the implementing type, which carries the `impl`'s
        // own generic parameters that the attribute cannot see.
        let is_self_type = root == "Self";
        let is_type = is_self_type || function.is_type_param(root);
        if is_type || function.is_const_param(root) {
            uses.insert(root.to_owned());
            if !hole.fields.is_empty() {
                let what = if is_self_type {
                    "`Self` is the implementing type".to_owned()
                } else if is_type {
                    format!("`{root}` is a type parameter")
                } else {
                    format!("`{root}` is a const parameter")
                };
                cx.error_at(
                    template.span,
                    format!(
                        "{what}, so `{}` has no fields; write `<{root}>`",
                        hole.text()
                    ),
                );
                ok = false;
            } else if is_type {
                let ident = if is_self_type {
                    Ident::new("Self", hole.span)
                } else {
                    generic_ident(function, root, hole.span)
                };
                pieces.push(Piece::TypeName {
                    ident,
                    span: hole.span,
                });
            } else {
                pieces.push(Piece::Const {
                    ident: generic_ident(function, root, hole.span),
                    span: hole.span,
                });
            }
            continue;
        }
        ok = false;
        // A name bound by a destructuring parameter already has an error
        // there, saying how to bind the parameter to a name instead.
        let in_pattern = function
            .params
            .iter()
            .filter(|param| matches!(param.kind, ParamKind::Pattern { .. }))
            .any(|param| param_names(param).iter().any(|name| name == root));
        if in_pattern {
            if skipped.contains(root) {
                on_skipped(root, hole, template);
            }
        } else {
            cx.error_at(
                template.span,
                format!(
                    "unknown placeholder `{}` in {} {:?}; {}",
                    hole.text(),
                    template.role.noun(),
                    template.source,
                    describe_params(function, root, |near| format!("<{near}>")),
                ),
            );
        }
    }
    ok.then(|| Rendering {
        pieces,
        escape: template.literal_text(),
    })
}

/// A parameter that is neither in the key nor skipped would let calls that
/// differ in it share one entry.
fn check_every_param_is_keyed(
    cx: &Ctxt,
    function: &Function,
    skipped: &HashSet<String>,
    key_uses: &HashSet<String>,
    cache_uses: &HashSet<String>,
) {
    for param in &function.params {
        let Some(name) = param.name() else { continue };
        if skipped.contains(&name) || key_uses.contains(&name) || cache_uses.contains(&name) {
            continue;
        }
        let message = match param.kind {
            ParamKind::Receiver => "`self` is not in the key, so calls on different values would share one entry; use its fields in the key, like `<self.id>`, or write `skip(self)`".to_owned(),
            _ => format!(
                "`{name}` is not in the key, so calls that differ only in `{name}` would share one entry; add `<{name}>` to the key, or write `skip({name})` if the result does not depend on it"
            ),
        };
        cx.error_spanned_by(param.name_tokens(), message);
    }
}

/// A generic function whose result depends on `T` must key on `<T>`, or
/// `f::<A>` and `f::<B>` would share entries.
fn check_generic_output_is_keyed(
    cx: &Ctxt,
    lit: &LitStr,
    function: &Function,
    key_uses: &HashSet<String>,
) {
    let mut missing: Vec<String> = output_generics(function)
        .into_iter()
        .filter(|name| !key_uses.contains(name))
        .collect();
    missing.sort();
    for name in missing {
        cx.error_spanned_by(
            lit,
            format!(
                "the return type depends on `{name}`, but the key does not; add `<{name}>` to the key, like \"{}:<{name}>\", so that calls with different `{name}` do not share entries",
                lit.value(),
            ),
        );
    }
}

/// "did you mean `<id>`? the parameters of `f` are `db`, `id`": what to
/// write instead of `wrong`, shown by `show` (`<id>` or `id`).
fn describe_params(function: &Function, wrong: &str, show: impl Fn(&str) -> String) -> String {
    let names: Vec<String> = function
        .params
        .iter()
        .flat_map(|param| param.name())
        .collect();
    let generics: Vec<String> = function
        .type_and_const_params()
        .into_iter()
        .map(|ident| ident.unraw().to_string())
        .collect();
    let candidates = names.iter().chain(&generics).map(String::as_str);
    let mut text = match closest(wrong, candidates) {
        Some(near) => format!("did you mean `{}`? ", show(near)),
        None => String::new(),
    };
    let fn_name = function.name().unraw();
    let has_patterns = names.len() < function.params.len();
    match names.as_slice() {
        [] if has_patterns => text.push_str(&format!("`{fn_name}` has no named parameters")),
        [] => text.push_str(&format!("`{fn_name}` has no parameters")),
        [only] => text.push_str(&format!("the only parameter of `{fn_name}` is `{only}`")),
        _ => text.push_str(&format!(
            "the parameters of `{fn_name}` are {}",
            backticked(&names)
        )),
    }
    match generics.as_slice() {
        [] => {}
        [only] => text.push_str(&format!(", and its type parameter is `{only}`")),
        _ => text.push_str(&format!(
            ", and its type parameters are {}",
            backticked(&generics)
        )),
    }
    text
}

/// Names a parameter binds: its own name, or the names inside a pattern.
fn param_names(param: &Param) -> Vec<String> {
    match &param.kind {
        ParamKind::Pattern { bindings } => bindings.iter().map(|b| b.unraw().to_string()).collect(),
        _ => param.name().into_iter().collect(),
    }
}

/// The function's own identifier for a generic parameter, at `span`.
fn generic_ident(function: &Function, name: &str, span: Span) -> Ident {
    let mut ident = function
        .type_and_const_params()
        .into_iter()
        .find(|ident| ident.unraw() == name)
        .expect("resolved to a generic parameter")
        .clone();
    ident.set_span(span);
    ident
}

fn member(field: &str, span: Span) -> Member {
    match (field.parse::<u32>(), field.strip_prefix("r#")) {
        (Ok(index), _) => Member::Unnamed(Index { index, span }),
        (Err(_), Some(raw)) => Member::Named(Ident::new_raw(raw, span)),
        (Err(_), None) => Member::Named(Ident::new(field, span)),
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::*;
    use crate::args;

    fn check_tokens(args: TokenStream, item: TokenStream) -> Result<Plan, Vec<String>> {
        let cx = Ctxt::new();
        let args = args::parse(&cx, args);
        let function = Function::new(syn::parse2(item).expect("a function"));
        let plan = check(&cx, args, function);
        match cx.check() {
            Ok(()) => Ok(plan.unwrap_or_else(|_| panic!("no error means a plan"))),
            Err(errors) => Err(errors.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
        check_tokens(args, item).err().unwrap_or_default()
    }

    #[test]
    fn a_parameter_that_picks_the_cache_needs_no_place_in_the_key() {
        let plan = check_tokens(
            quote!(key = "<id>", ttl = 1, cache = pick(store)),
            quote!(
                fn f(store: &Stores, id: u32) -> u32 {
                    id
                }
            ),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(plan.outline.key_params, [0, 1], "companions still take it");
        assert!(matches!(plan.cache, CacheSource::Borrowed(_)));
    }

    #[test]
    fn the_default_key_leaves_out_skipped_and_cache_parameters() {
        let plan = check_tokens(
            quote!(ttl = 1, cache = &holder.cache, skip(db)),
            quote!(
                fn f(holder: Holder, db: &Db, id: u32) -> u32 {
                    id
                }
            ),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let roots: Vec<String> = plan
            .key
            .pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Param { ident, .. } => Some(ident.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(roots, ["id"]);
        assert!(
            matches!(plan.cache, CacheSource::Cloned(_)),
            "`holder` moves into the body"
        );
    }

    #[test]
    fn a_misspelled_skip_is_reported_once() {
        let errors = errors(
            quote!(key = "<id>", ttl = 1, skip(dbb)),
            quote!(
                fn f(db: &Db, id: u32) -> u32 {
                    id
                }
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("did you mean `db`?"), "{errors:?}");
    }

    #[test]
    fn a_misspelled_ttl_is_not_also_missing() {
        let errors = errors(
            quote!(ttll = 1),
            quote!(
                fn f() -> u32 {
                    1
                }
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("did you mean `ttl`?"), "{errors:?}");
    }

    #[test]
    fn a_generic_return_type_must_be_keyed() {
        let errors = errors(
            quote!(key = "<id>", ttl = 1),
            quote!(
                fn f<T: Default>(id: u32) -> Option<T> {
                    None
                }
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("the return type depends on `T`"),
            "{errors:?}"
        );
        assert!(check_tokens(
            quote!(key = "<T>:<id>", ttl = 1),
            quote!(
                fn f<T: Default>(id: u32) -> Option<T> {
                    None
                }
            ),
        )
        .is_ok());
    }

    #[test]
    fn skipped_pattern_bindings_are_fine_and_unskipped_ones_are_not() {
        assert!(check_tokens(
            quote!(key = "<id>", ttl = 1, skip(a, b)),
            quote!(
                fn f((a, b): (u8, u8), _: &str, id: u32) -> u32 {
                    id
                }
            ),
        )
        .is_ok());
        let errors = errors(
            quote!(key = "<id>", ttl = 1, skip(a)),
            quote!(
                fn f((a, b): (u8, u8), id: u32) -> u32 {
                    id
                }
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].ends_with("`skip(a, b)`"), "{errors:?}");
    }
}
