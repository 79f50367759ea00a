//! Splits a key or tag template such as `"user:<id>"` into literal text and
//! placeholders.
//!
//! A placeholder is `<param>` or a field path `<param.field.0>`; `<<` is a
//! literal `<`. Two placeholders need literal text between them, or
//! `f("ab", "c")` and `f("a", "bc")` would render the same key.

use proc_macro2::Span;
use syn::LitStr;

use crate::ctxt::Ctxt;

/// What a template is used for, for error messages.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Key,
    Tag,
}

impl Role {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Role::Key => "key",
            Role::Tag => "tag",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Role::Key => "key = \"user:<id>\"",
            Role::Tag => "tags = [\"org:<org_id>\"]",
        }
    }
}

/// A parsed template.
pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
    /// Where errors about this template point: the string literal, or the
    /// function's name for the default key.
    pub(crate) span: Span,
    /// The template as written, for messages (`"user:<id>"`).
    pub(crate) source: String,
    pub(crate) role: Role,
}

pub(crate) enum Segment {
    /// Literal text, with `<<` already turned into `<`.
    Text(String),
    Hole(Placeholder),
}

/// `<param.field.path>`.
pub(crate) struct Placeholder {
    /// `id`, `self`, `T`.
    pub(crate) root: String,
    /// Field names or tuple indices after the root.
    pub(crate) fields: Vec<String>,
    /// Where errors about this placeholder point. Spans inside a string
    /// literal are not available, so this is the literal's span (or, for the
    /// default key, the parameter's).
    pub(crate) span: Span,
}

impl Placeholder {
    /// The placeholder as written, `<self.tenant>`.
    pub(crate) fn text(&self) -> String {
        let mut text = format!("<{}", self.root);
        for field in &self.fields {
            text.push('.');
            text.push_str(field);
        }
        text.push('>');
        text
    }
}

impl Template {
    /// Parses `lit`, reporting every malformed part in `cx`. Returns `None`
    /// when the template is malformed.
    pub(crate) fn parse(cx: &Ctxt, lit: &LitStr, role: Role) -> Option<Template> {
        let source = lit.value();
        let span = lit.span();
        let noun = role.noun();
        let mut failed = false;
        let mut fail = |message: String| {
            failed = true;
            cx.error_spanned_by(lit, message);
        };
        if source.is_empty() {
            fail(format!(
                "empty {noun} template; write one like `{}`",
                role.example()
            ));
        }
        let mut segments: Vec<Segment> = Vec::new();
        let mut rest = source.as_str();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("<<") {
                push_text(&mut segments, "<");
                rest = after;
            } else if let Some(after) = rest.strip_prefix('<') {
                let Some(end) = after.find('>') else {
                    fail(format!(
                        "unclosed `<` in {noun} template {source:?}; close the placeholder with `>`, or write `<<` for a literal `<`"
                    ));
                    break;
                };
                let inner = &after[..end];
                rest = &after[end + 1..];
                match parse_placeholder(inner, span) {
                    Ok(hole) => {
                        if let [.., Segment::Hole(previous), Segment::Text(between)] =
                            segments.as_slice()
                        {
                            // Values escape `%` and punctuation only, so the
                            // text that ends a value must start with one of
                            // those characters to tell where the value ends.
                            if between.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '%') {
                                fail(format!(
                                    "the text {between:?} between placeholders `{}` and `{}` in {noun} template {source:?} must start with a separator such as `:`, `/` or `-` (not a letter, digit or `%`), or different arguments could share a {noun}; write it like `{}:{between}{}`",
                                    previous.text(),
                                    hole.text(),
                                    previous.text(),
                                    hole.text(),
                                ));
                            }
                        }
                        if let Some(Segment::Hole(previous)) = segments.last() {
                            fail(format!(
                                "placeholders `{}` and `{}` in {noun} template {source:?} have no text between them, so `f(\"ab\", \"c\")` and `f(\"a\", \"bc\")` would share a {noun}; put a separator between them, like `{}:{}`",
                                previous.text(),
                                hole.text(),
                                previous.text(),
                                hole.text(),
                            ));
                        }
                        segments.push(Segment::Hole(hole));
                    }
                    Err(PlaceholderError::Empty) => fail(format!(
                        "empty placeholder `<>` in {noun} template {source:?}; name a parameter, like `<id>`, or write `<<` for a literal `<`"
                    )),
                    Err(PlaceholderError::NotAPath) => fail(format!(
                        "`<{inner}>` in {noun} template {source:?} is not a placeholder; write a parameter name or a field path, like `<id>` or `<user.id>`, or write `<<` for a literal `<`"
                    )),
                }
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                push_text(&mut segments, &rest[..end]);
                rest = &rest[end..];
            }
        }
        if failed {
            return None;
        }
        Some(Template {
            segments,
            span,
            source,
            role,
        })
    }

    /// All literal text of the template, concatenated: the characters the
    /// runtime escapes inside rendered values.
    pub(crate) fn literal_text(&self) -> String {
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Text(text) => Some(text.as_str()),
                Segment::Hole(_) => None,
            })
            .collect()
    }

    /// `"<fn_name>:<p1>:<p2>..."`: the function's name, then each part
    /// separated by `:`. Each part is `(name, span)`.
    pub(crate) fn default_key(fn_name: &str, fn_span: Span, parts: &[(String, Span)]) -> Template {
        let mut segments = vec![Segment::Text(fn_name.to_owned())];
        let mut source = fn_name.to_owned();
        for (name, span) in parts {
            push_text(&mut segments, ":");
            segments.push(Segment::Hole(Placeholder {
                root: name.clone(),
                fields: Vec::new(),
                span: *span,
            }));
            source.push_str(&format!(":<{name}>"));
        }
        Template {
            segments,
            span: fn_span,
            source,
            role: Role::Key,
        }
    }
}

fn push_text(segments: &mut Vec<Segment>, text: &str) {
    if let Some(Segment::Text(previous)) = segments.last_mut() {
        previous.push_str(text);
    } else {
        segments.push(Segment::Text(text.to_owned()));
    }
}

enum PlaceholderError {
    Empty,
    NotAPath,
}

fn parse_placeholder(inner: &str, span: Span) -> Result<Placeholder, PlaceholderError> {
    if inner.is_empty() {
        return Err(PlaceholderError::Empty);
    }
    let mut parts = inner.split('.');
    let root = parts.next().unwrap_or_default();
    if !is_identifier(root) {
        return Err(PlaceholderError::NotAPath);
    }
    let mut fields = Vec::new();
    for field in parts {
        let is_index = !field.is_empty()
            && field.bytes().all(|b| b.is_ascii_digit())
            && (field == "0" || !field.starts_with('0'));
        if !(is_index || (is_identifier(field) && field != "self")) {
            return Err(PlaceholderError::NotAPath);
        }
        fields.push(field.to_owned());
    }
    Ok(Placeholder {
        root: root.to_owned(),
        fields,
        span,
    })
}

/// A Rust identifier (ASCII; `r#` raw identifiers allowed), `self` included.
fn is_identifier(text: &str) -> bool {
    let text = text.strip_prefix("r#").unwrap_or(text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first == '_' || first.is_ascii_alphabetic() => {}
        _ => return false,
    }
    text != "_" && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Template, Vec<String>> {
        let cx = Ctxt::new();
        let lit = LitStr::new(text, Span::call_site());
        let template = Template::parse(&cx, &lit, Role::Key);
        match cx.check() {
            Ok(()) => Ok(template.expect("no error means a template")),
            Err(error) => Err(error.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    fn describe(template: &Template) -> Vec<String> {
        template
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => format!("text {text:?}"),
                Segment::Hole(hole) => format!("hole {}", hole.text()),
            })
            .collect()
    }

    #[test]
    fn text_and_placeholders_are_split() {
        let template = parse("user:<id>/<self.tenant.0>").unwrap();
        assert_eq!(
            describe(&template),
            [
                "text \"user:\"",
                "hole <id>",
                "text \"/\"",
                "hole <self.tenant.0>"
            ]
        );
        assert_eq!(template.literal_text(), "user:/");
    }

    #[test]
    fn double_angle_is_a_literal_angle() {
        let template = parse("a<<b><<<id>>").unwrap();
        assert_eq!(
            describe(&template),
            ["text \"a<b><\"", "hole <id>", "text \">\""]
        );
        assert_eq!(template.literal_text(), "a<b><>");
    }

    #[test]
    fn text_only_templates_are_fine() {
        assert_eq!(describe(&parse("users").unwrap()), ["text \"users\""]);
    }

    #[test]
    fn malformed_templates_are_reported() {
        let cases = [
            ("", "empty key template"),
            ("user:<id", "unclosed `<` in key template"),
            ("user:<>", "empty placeholder `<>`"),
            (
                "user:<a b>",
                "`<a b>` in key template \"user:<a b>\" is not a placeholder",
            ),
            ("user:<a.>", "`<a.>` in key template"),
            ("user:<1a>", "`<1a>` in key template"),
            ("user:<a.01>", "`<a.01>` in key template"),
            (
                "<a><b>",
                "placeholders `<a>` and `<b>` in key template \"<a><b>\" have no text between them",
            ),
        ];
        for (text, expected) in cases {
            let errors = parse(text).err().unwrap_or_default();
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert!(errors[0].starts_with(expected), "{text}: {}", errors[0]);
        }
    }

    #[test]
    fn every_problem_in_one_template_is_reported() {
        let errors = parse("<a><b>:<>:<c d>").err().unwrap();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn default_key_separates_every_part() {
        let parts = [
            ("id".to_owned(), Span::call_site()),
            ("T".to_owned(), Span::call_site()),
        ];
        let template = Template::default_key("get_user", Span::call_site(), &parts);
        assert_eq!(template.source, "get_user:<id>:<T>");
        assert_eq!(
            describe(&template),
            ["text \"get_user:\"", "hole <id>", "text \":\"", "hole <T>"]
        );
        assert_eq!(template.literal_text(), "get_user::");
    }
}
