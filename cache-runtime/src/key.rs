//! Rendering cache keys from function arguments.
//!
//! A key template such as `"user:<id>"` is rendered by writing its literal text
//! as is and each placeholder's value through [`KeyPart`]. Values are escaped
//! so that different arguments can never render the same key (guarantee G10):
//! `%` and every punctuation character that occurs in the template's literal
//! text are written as `%XX` (the byte in upper-case hex) when they occur
//! inside a value. With the template `"<a>:<b>"`, `f("a:b", "c")` renders
//! `a%3Ab:c` while `f("a", "b:c")` renders `a:b%3Ac`.

use std::fmt::{self, Write as _};

/// The set of characters a template's values must escape.
///
/// Built at compile time by generated code from the template's literal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escape {
    ascii: u128,
    non_ascii: bool,
}

impl Escape {
    /// The escape set for a template whose literal text is `literals`: `%`,
    /// every ASCII punctuation character in `literals`, and all non-ASCII
    /// characters if `literals` has any.
    pub const fn of(literals: &str) -> Escape {
        let bytes = literals.as_bytes();
        let mut ascii: u128 = 1 << b'%';
        let mut non_ascii = false;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b >= 0x80 {
                non_ascii = true;
            } else if !b.is_ascii_alphanumeric() {
                ascii |= 1 << b;
            }
            i += 1;
        }
        Escape { ascii, non_ascii }
    }

    #[inline]
    fn needs(&self, b: u8) -> bool {
        if b < 0x80 {
            self.ascii & (1 << b) != 0
        } else {
            self.non_ascii
        }
    }
}

impl Default for Escape {
    fn default() -> Self {
        Escape::of("")
    }
}

/// Where a [`KeyPart`] writes itself: a key being rendered.
///
/// Values written with [`write_str`](KeyWriter::write_str) or
/// [`write_display`](KeyWriter::write_display) are escaped; see the
/// module docs.
#[derive(Debug)]
pub struct KeyWriter<'a> {
    out: &'a mut String,
    escape: Escape,
}

impl<'a> KeyWriter<'a> {
    /// A writer appending to `out`, escaping values with `escape`.
    pub fn new(out: &'a mut String, escape: Escape) -> Self {
        Self { out, escape }
    }

    /// Writes a value's text, escaping what could be confused with the
    /// template's own separators.
    #[inline]
    pub fn write_str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        if !bytes.iter().any(|&b| self.escape.needs(b)) {
            self.out.push_str(s);
            return;
        }
        for ch in s.chars() {
            let mut utf8 = [0u8; 4];
            let encoded = ch.encode_utf8(&mut utf8);
            if self.escape.needs(encoded.as_bytes()[0]) {
                for b in encoded.bytes() {
                    self.push_escaped(b);
                }
            } else {
                self.out.push(ch);
            }
        }
    }

    /// Writes a value through its [`Display`](fmt::Display) form, escaped like
    /// [`write_str`](KeyWriter::write_str).
    pub fn write_display(&mut self, value: &dyn fmt::Display) {
        struct Escaping<'w, 'a>(&'w mut KeyWriter<'a>);
        impl fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.write_str(s);
                Ok(())
            }
        }
        // Writing into a String cannot fail; a Display impl that reports an
        // error just leaves what it wrote so far.
        let _ = write!(Escaping(self), "{value}");
    }

    /// Writes the parts of a composite value (a struct's fields, in order)
    /// separated by `,`, with `,` escaped inside each part, so that two
    /// values whose fields differ only in where a `,` falls write different
    /// text. What `#[derive(KeyPart)]` writes for a struct.
    ///
    /// ```
    /// use cachette::{KeyPart, KeyWriter};
    ///
    /// struct Range { from: String, to: String }
    ///
    /// impl KeyPart for Range {
    ///     fn write_key(&self, out: &mut KeyWriter<'_>) {
    ///         out.write_fields(&[&self.from, &self.to]);
    ///     }
    /// }
    /// ```
    pub fn write_fields(&mut self, fields: &[&dyn KeyPart]) {
        let mut escape = self.escape;
        escape.ascii |= 1 << b',';
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            field.write_key(&mut KeyWriter {
                out: self.out,
                escape,
            });
        }
    }

    /// Writes the marker of an absent value (`Option::None`): `%%`, which no
    /// escaped value can produce.
    pub fn write_none(&mut self) {
        self.out.push_str("%%");
    }

    /// Writes literal template text as is. Used by generated code.
    #[doc(hidden)]
    #[inline]
    pub fn lit(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// Writes one placeholder's value. Used by generated code.
    #[doc(hidden)]
    #[inline]
    pub fn part<T: KeyPart + ?Sized>(&mut self, value: &T) {
        value.write_key(self);
    }

    /// Writes a type parameter's name, for generic functions whose key names
    /// the type (`<T>`). Used by generated code.
    #[doc(hidden)]
    pub fn type_name<T: ?Sized>(&mut self) {
        self.write_str(std::any::type_name::<T>());
    }

    #[inline]
    fn push_escaped(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        self.out.push('%');
        self.out.push(HEX[(b >> 4) as usize] as char);
        self.out.push(HEX[(b & 0xF) as usize] as char);
    }

    /// Writes a number's ASCII digits, with a leading `-` escaped when the
    /// template reserves it (digits never are: only punctuation is).
    #[inline]
    fn write_ascii_digits(&mut self, digits: &str) {
        match digits.strip_prefix('-') {
            Some(magnitude) if self.escape.needs(b'-') => {
                self.push_escaped(b'-');
                self.out.push_str(magnitude);
            }
            _ => self.out.push_str(digits),
        }
    }
}

/// How a value is written into a cache key.
///
/// Implemented for integers, `bool`, `char`, `str`, `String`, references,
/// `Box`, `Arc`, `Rc`, `Cow<str>` and `Option<T>` (where `None` renders as
/// `%%`). Implement it for your own types by writing a stable, unique text:
///
/// ```
/// use cachette::{KeyPart, KeyWriter};
///
/// struct UserId(u64);
///
/// impl KeyPart for UserId {
///     fn write_key(&self, out: &mut KeyWriter<'_>) {
///         self.0.write_key(out);
///     }
/// }
/// ```
///
/// Two values that should be different cache entries must write different
/// text; a value's text must not change between runs or processes (so no
/// addresses, no `HashMap` iteration order).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be written into a cache key",
    label = "this placeholder's value must implement `cachette::KeyPart`",
    note = "implement `cachette::KeyPart` for `{Self}`, put one of its fields in the key (`<param.field>`), or leave the parameter out of the key with `skip(...)`"
)]
pub trait KeyPart {
    /// Writes this value's key text into `out`.
    fn write_key(&self, out: &mut KeyWriter<'_>);
}

macro_rules! integer_key_part {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                out.write_ascii_digits(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}

integer_key_part!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl KeyPart for bool {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(if *self { "true" } else { "false" });
    }
}

impl KeyPart for char {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        let mut buf = [0u8; 4];
        out.write_str(self.encode_utf8(&mut buf));
    }
}

impl KeyPart for str {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(self);
    }
}

impl KeyPart for String {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(self);
    }
}

impl KeyPart for std::borrow::Cow<'_, str> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(self);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &mut T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::sync::Arc<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::rc::Rc<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

/// `None` renders as `%%`, which no escaped value produces. `Some(v)` renders
/// as `v`, so `Option<Option<T>>` cannot tell `None` from `Some(None)`.
impl<T: KeyPart> KeyPart for Option<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        match self {
            Some(v) => v.write_key(out),
            None => out.write_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(literals: &str, f: impl FnOnce(&mut KeyWriter<'_>)) -> String {
        let mut s = String::new();
        f(&mut KeyWriter::new(&mut s, Escape::of(literals)));
        s
    }

    #[test]
    fn integers_render_as_decimal() {
        assert_eq!(render(":", |w| w.part(&42u64)), "42");
        assert_eq!(render(":", |w| w.part(&0u8)), "0");
        assert_eq!(render(":", |w| w.part(&-17i32)), "-17");
        assert_eq!(render(":", |w| w.part(&i64::MIN)), "-9223372036854775808");
        assert_eq!(render(":", |w| w.part(&u128::MAX)), u128::MAX.to_string());
    }

    #[test]
    fn separators_inside_values_are_escaped() {
        let a = render(":", |w| {
            w.part("a:b");
            w.lit(":");
            w.part("c");
        });
        let b = render(":", |w| {
            w.part("a");
            w.lit(":");
            w.part("b:c");
        });
        assert_eq!(a, "a%3Ab:c");
        assert_eq!(b, "a:b%3Ac");
    }

    #[test]
    fn percent_is_always_escaped_and_none_is_distinct() {
        assert_eq!(render("", |w| w.part("100%")), "100%25");
        assert_eq!(render("", |w| w.part(&None::<&str>)), "%%");
        assert_eq!(render("", |w| w.part(&Some("%%"))), "%25%25");
    }

    #[test]
    fn minus_is_escaped_only_when_the_template_uses_it() {
        assert_eq!(render("-", |w| w.part(&-1i8)), "%2D1");
        assert_eq!(render(":", |w| w.part(&-1i8)), "-1");
    }

    #[test]
    fn non_ascii_is_escaped_only_when_the_template_has_some() {
        assert_eq!(render(":", |w| w.part("é")), "é");
        assert_eq!(render("→", |w| w.part("é")), "%C3%A9");
    }

    #[test]
    fn fields_are_separated_by_a_comma_escaped_inside_them() {
        let a = render(":", |w| w.write_fields(&[&"a,b", &"c"]));
        let b = render(":", |w| w.write_fields(&[&"a", &"b,c"]));
        assert_eq!((a.as_str(), b.as_str()), ("a%2Cb,c", "a,b%2Cc"));
        assert_eq!(render(":", |w| w.write_fields(&[&"x:y", &7u8])), "x%3Ay,7");
    }

    #[test]
    fn display_values_are_escaped() {
        assert_eq!(render(":", |w| w.write_display(&"x:y")), "x%3Ay");
    }
}
