//! Collects errors from every stage so that one expansion reports all of
//! them at once instead of stopping at the first.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Errors found while reading and checking one `#[cache]` use.
///
/// Stages push errors and keep going; [`Ctxt::check`] combines them at the
/// end. Forgetting to call `check` is a bug in this crate, caught on drop.
pub(crate) struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// An error spanned from the first to the last token of `tokens`.
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// An error at one span.
    pub(crate) fn error_at<M: Display>(&self, span: Span, message: M) {
        self.syn_error(syn::Error::new(span, message));
    }

    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("errors are collected until `check` runs")
            .push(error);
    }

    /// Whether any error was recorded so far.
    pub(crate) fn has_errors(&self) -> bool {
        self.errors.borrow().as_ref().is_some_and(|e| !e.is_empty())
    }

    /// All recorded errors combined into one, or `Ok` when there were none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("`Ctxt::check` was not called");
        }
    }
}

/// `` `a`, `b`, `c` `` for an error message.
pub(crate) fn backticked<I, S>(names: I) -> String
where
    I: IntoIterator<Item = S>,
    S: Display,
{
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tokens as a person would write them: `Vec<u32>` rather than the
/// token printer's `Vec < u32 >`.
pub(crate) fn type_text<T: ToTokens>(tokens: T) -> String {
    let mut text = tokens.into_token_stream().to_string();
    let tidy = [
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ::", "::"),
        (":: ", "::"),
        (" ,", ","),
        ("& ", "&"),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
    ];
    loop {
        let before = text.len();
        for (from, to) in tidy {
            text = text.replace(from, to);
        }
        if text.len() == before {
            return text;
        }
    }
}

/// The candidate closest to `word`, when it is close enough to be a typo.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|&(distance, candidate)| distance > 0 && distance <= candidate.len().max(3) / 3)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_a_near_miss_and_nothing_for_a_far_one() {
        let known = ["key", "ttl", "negative_ttl", "namespace"];
        assert_eq!(closest("ttll", known), Some("ttl"));
        assert_eq!(closest("negativ_ttl", known), Some("negative_ttl"));
        assert_eq!(closest("colour", known), None);
        assert_eq!(closest("ttl", known), None);
    }

    #[test]
    fn type_text_reads_like_source() {
        let ty: syn::Type = syn::parse_quote!(Result<Vec<Option<&'a mut [u8; 4]>>, std::io::Error>);
        assert_eq!(
            type_text(&ty),
            "Result<Vec<Option<&'a mut [u8; 4]>>, std::io::Error>"
        );
    }

    #[test]
    fn check_combines_every_error() {
        let cx = Ctxt::new();
        cx.error_at(Span::call_site(), "first");
        cx.error_at(Span::call_site(), "second");
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }
}
