//! What surrounds the attribute, read from the source file: an attribute
//! macro is handed only its function, so whether that function sits in a
//! trait `impl` (where the companions cannot go) is read from the file the
//! compiler names for the attribute. Anything unexpected (no file, a span
//! from another macro, text that does not lex) answers "unknown", and the
//! attribute expands as it would have.

use std::path::Path;

/// The header of a trait `impl` (`impl Store for Db`) that holds the
/// attribute written at `line` and `column` (both 1-based, the column in
/// characters) of `file`, if the attribute is inside one.
pub(crate) fn trait_impl_around(file: &Path, line: usize, column: usize) -> Option<String> {
    let source = std::fs::read_to_string(file).ok()?;
    let offset = offset_of(&source, line, column)?;
    if !source[offset..].starts_with('#') {
        return None;
    }
    let header = innermost_block_header(&source[..offset])?;
    is_trait_impl(header).then(|| header.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The byte offset of a 1-based line and character column.
fn offset_of(source: &str, line: usize, column: usize) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        source.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let rest = &source[start..];
    let within = rest
        .char_indices()
        .nth(column.checked_sub(1)?)
        .map_or(rest.len(), |(at, _)| at);
    Some(start + within)
}

/// The text before the innermost `{` still open at the end of `before`,
/// back to the previous `;`, `{` or `}`: the header of the block the
/// attribute is in. Comments, strings and character literals are skipped.
fn innermost_block_header(before: &str) -> Option<&str> {
    let bytes = before.as_bytes();
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut boundary = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'/' if bytes.get(at + 1) == Some(&b'/') => {
                at = before[at..].find('\n').map_or(bytes.len(), |n| at + n);
                continue;
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                at = skip_block_comment(bytes, at)?;
                continue;
            }
            b'"' => {
                at = skip_string(bytes, at + 1, 0)?;
                continue;
            }
            b'r' if is_raw_string_start(bytes, at) => {
                let hashes = bytes[at + 1..].iter().take_while(|&&b| b == b'#').count();
                at = skip_string(bytes, at + 2 + hashes, hashes)?;
                continue;
            }
            b'\'' => {
                at = skip_char_or_lifetime(bytes, at);
                continue;
            }
            b'{' => {
                open.push((boundary, at));
                boundary = at + 1;
            }
            b'}' => {
                open.pop()?;
                boundary = at + 1;
            }
            b';' => boundary = at + 1,
            _ => {}
        }
        at += 1;
    }
    let &(start, brace) = open.last()?;
    Some(&before[start..brace])
}

/// `r"` or `r#"` that starts a raw string (not the end of an identifier).
fn is_raw_string_start(bytes: &[u8], at: usize) -> bool {
    let ident_before = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
    if ident_before {
        return false;
    }
    let hashes = bytes[at + 1..].iter().take_while(|&&b| b == b'#').count();
    bytes.get(at + 1 + hashes) == Some(&b'"')
}

fn skip_block_comment(bytes: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    while at + 1 < bytes.len() {
        match (bytes[at], bytes[at + 1]) {
            (b'/', b'*') => {
                depth += 1;
                at += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                at += 2;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// Past the closing quote (and `hashes` `#`s) of a string whose contents
/// start at `at`; escapes only count in non-raw strings.
fn skip_string(bytes: &[u8], mut at: usize, hashes: usize) -> Option<usize> {
    let raw = hashes > 0 || (at >= 2 && bytes[at - 2] == b'r');
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if !raw => at += 2,
            b'"' if bytes[at + 1..]
                .iter()
                .take(hashes)
                .filter(|&&b| b == b'#')
                .count()
                == hashes =>
            {
                return Some(at + 1 + hashes);
            }
            _ => at += 1,
        }
    }
    None
}

/// Past a character literal (`'a'`, `'\n'`, `'{'`), or past the quote of
/// a lifetime (`'a`).
fn skip_char_or_lifetime(bytes: &[u8], at: usize) -> usize {
    match (bytes.get(at + 1), bytes.get(at + 2)) {
        (Some(b'\\'), _) => {
            let close = bytes
                .get(at + 3..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\''));
            close.map_or(at + 1, |n| at + 3 + n + 1)
        }
        (Some(_), Some(b'\'')) => at + 3,
        _ => {
            // A multi-byte character literal, or a lifetime.
            let next = std::str::from_utf8(&bytes[at + 1..(at + 5).min(bytes.len())])
                .ok()
                .or_else(|| std::str::from_utf8(&bytes[at + 1..(at + 4).min(bytes.len())]).ok())
                .or_else(|| std::str::from_utf8(&bytes[at + 1..(at + 3).min(bytes.len())]).ok());
            match next.and_then(|s| s.chars().next()) {
                Some(c) if bytes.get(at + 1 + c.len_utf8()) == Some(&b'\'') => {
                    at + 1 + c.len_utf8() + 1
                }
                _ => at + 1,
            }
        }
    }
}

/// Whether a block header reads `impl .. for ..` (attributes, `unsafe` and
/// `default` aside), with `for` outside angle brackets and not a
/// higher-ranked `for<'a>`.
fn is_trait_impl(header: &str) -> bool {
    use proc_macro2::{Delimiter, TokenTree};
    let Ok(tokens) = header.parse::<proc_macro2::TokenStream>() else {
        return false;
    };
    let mut tokens = tokens.into_iter().peekable();
    loop {
        match tokens.peek() {
            Some(TokenTree::Punct(p)) if p.as_char() == '#' => {
                tokens.next();
                if matches!(tokens.peek(), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket)
                {
                    tokens.next();
                }
            }
            Some(TokenTree::Ident(i)) if i == "unsafe" || i == "default" => {
                tokens.next();
            }
            _ => break,
        }
    }
    if !matches!(tokens.next(), Some(TokenTree::Ident(i)) if i == "impl") {
        return false;
    }
    let mut depth = 0i32;
    let mut previous_dash = false;
    while let Some(token) = tokens.next() {
        match &token {
            TokenTree::Punct(p) if p.as_char() == '<' => depth += 1,
            TokenTree::Punct(p) if p.as_char() == '>' && !previous_dash => depth -= 1,
            TokenTree::Ident(i) if i == "for" && depth == 0 => {
                let higher_ranked =
                    matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '<');
                if !higher_ranked {
                    return true;
                }
            }
            TokenTree::Ident(i) if i == "where" && depth == 0 => return false,
            _ => {}
        }
        previous_dash = matches!(&token, TokenTree::Punct(p) if p.as_char() == '-');
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn around(source: &str) -> Option<String> {
        let offset = source.find("#[cache").expect("an attribute");
        let header = innermost_block_header(&source[..offset])?;
        is_trait_impl(header).then(|| header.trim().to_owned())
    }

    #[test]
    fn a_trait_impl_is_found_and_an_inherent_impl_or_a_free_function_is_not() {
        assert_eq!(
            around("trait S { fn get(&self); }\nimpl S for Db {\n    #[cache(key = \"a\")]\n    fn get(&self) {}\n}"),
            Some("impl S for Db".to_owned())
        );
        assert_eq!(
            around("impl<T: Fn() -> u8> store::S<T> for Db<T> where T: Send {\n #[cache] fn get() {} }"),
            Some("impl<T: Fn() -> u8> store::S<T> for Db<T> where T: Send".to_owned())
        );
        assert_eq!(around("impl Db {\n #[cache] fn get() {} }"), None);
        assert_eq!(
            around("impl<F> Db<F> where F: for<'a> Fn(&'a u8) {\n #[cache] fn get() {} }"),
            None
        );
        assert_eq!(around("fn main() {}\n#[cache] fn get() {}"), None);
        assert_eq!(around("mod m {\n #[cache] fn get() {} }"), None);
    }

    #[test]
    fn braces_in_comments_strings_and_characters_are_skipped() {
        let source = "impl S for Db {\n fn a() { let _ = \"}\"; let _ = '}'; let _ = r#\"}\"#; } // }\n /* } */ fn b<'a>(_: &'a u8) {}\n #[cache] fn get() {} }";
        assert_eq!(around(source), Some("impl S for Db".to_owned()));
        let source =
            "impl Db {\n fn a() { let _ = \"{\"; let _ = '{'; } // {\n #[cache] fn get() {} }";
        assert_eq!(around(source), None);
    }

    #[test]
    fn a_line_and_column_map_to_a_byte_offset() {
        let source = "ab\ncé#x\n";
        assert_eq!(offset_of(source, 1, 1), Some(0));
        assert_eq!(offset_of(source, 2, 3), Some(source.find('#').unwrap()));
    }
}
