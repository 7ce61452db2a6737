//! A strict, bounded JSON reader (RFC 8259 subset) for request and response bodies.
//!
//! Accepts objects, arrays, strings, `true`/`false`/`null` and non-negative integers below
//! 2^53 (all this protocol uses). Refuses duplicate keys, trailing data, raw control
//! characters in strings, invalid escapes and unpaired surrogates, leading zeros, signs,
//! fractions, exponents, comments and anything deeper or larger than [`Limits`]. It never
//! skips a value it has not parsed, so every input is read once, left to right, in linear time.

use core::fmt;

/// Bounds on what one document may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
    /// Most values (of any kind) in the whole document.
    pub max_values: usize,
    /// Longest string, in bytes after unescaping.
    pub max_string: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 4,
            max_values: 1024,
            max_string: 1024,
        }
    }
}

/// Largest integer accepted: 2^53 - 1, exact in every JSON implementation (C# `double` too).
pub const MAX_SAFE_INT: u64 = (1 << 53) - 1;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A non-negative integer up to [`MAX_SAFE_INT`].
    Int(u64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, keys in document order (unique).
    Object(Vec<(String, Value)>),
}

/// Where and why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What was wrong.
    pub kind: JsonErrorKind,
}

/// What was wrong with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// Input ended inside a value.
    Eof,
    /// A byte that cannot start or continue a value here.
    Unexpected,
    /// Data after the top-level value.
    Trailing,
    /// A number with a sign, fraction, exponent, leading zero, or above 2^53 - 1.
    Number,
    /// A bad escape, raw control character, unpaired surrogate or invalid UTF-8 in a string.
    String,
    /// The same key twice in one object.
    DuplicateKey,
    /// Nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// More values than [`Limits::max_values`], or a string longer than [`Limits::max_string`].
    TooLarge,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JsonErrorKind::Eof => "unexpected end of input",
            JsonErrorKind::Unexpected => "unexpected character",
            JsonErrorKind::Trailing => "data after the JSON value",
            JsonErrorKind::Number => "number must be an integer from 0 to 2^53-1",
            JsonErrorKind::String => "invalid string",
            JsonErrorKind::DuplicateKey => "duplicate key",
            JsonErrorKind::TooDeep => "nested too deeply",
            JsonErrorKind::TooLarge => "too many values or too long a string",
        };
        write!(f, "{what} at byte {}", self.offset)
    }
}

impl std::error::Error for JsonError {}

/// Parses one complete document.
pub fn parse(input: &[u8], limits: Limits) -> Result<Value, JsonError> {
    let mut p = Parser {
        s: input,
        i: 0,
        limits,
        values: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err(JsonErrorKind::Trailing));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    limits: Limits,
    values: usize,
}

impl Parser<'_> {
    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            offset: self.i,
            kind,
        }
    }

    fn peek(&self) -> Result<u8, JsonError> {
        self.s
            .get(self.i)
            .copied()
            .ok_or(self.err(JsonErrorKind::Eof))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), JsonError> {
        if self.peek()? != b {
            return Err(self.err(JsonErrorKind::Unexpected));
        }
        self.i += 1;
        Ok(())
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, JsonError> {
        if self.s.len() - self.i < word.len() {
            return Err(self.err(JsonErrorKind::Eof));
        }
        if &self.s[self.i..self.i + word.len()] != word {
            return Err(self.err(JsonErrorKind::Unexpected));
        }
        self.i += word.len();
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.err(JsonErrorKind::TooLarge));
        }
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Value::Str),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'0'..=b'9' => self.number(),
            b'-' | b'+' | b'.' => Err(self.err(JsonErrorKind::Number)),
            _ => Err(self.err(JsonErrorKind::Unexpected)),
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.s.get(self.i) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .filter(|n| *n <= MAX_SAFE_INT)
                .ok_or(self.err(JsonErrorKind::Number))?;
            self.i += 1;
        }
        let leading_zero = self.s[start] == b'0' && self.i - start > 1;
        let fraction = matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E'));
        if leading_zero || fraction {
            return Err(self.err(JsonErrorKind::Number));
        }
        Ok(Value::Int(n))
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > self.limits.max_depth {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err(JsonErrorKind::Unexpected)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > self.limits.max_depth {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        self.i += 1;
        let mut fields: Vec<(String, Value)> = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return Err(self.err(JsonErrorKind::Unexpected));
            }
            let key_at = self.i;
            let key = self.string()?;
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(JsonError {
                    offset: key_at,
                    kind: JsonErrorKind::DuplicateKey,
                });
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.value(depth)?;
            fields.push((key, v));
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(Value::Object(fields));
                }
                _ => return Err(self.err(JsonErrorKind::Unexpected)),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.peek()?;
            let d = (c as char)
                .to_digit(16)
                .ok_or(self.err(JsonErrorKind::String))?;
            v = v << 4 | d;
            self.i += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            // An escape may add up to 4 bytes: check before anything else.
            if out.len() > self.limits.max_string {
                return Err(self.err(JsonErrorKind::TooLarge));
            }
            // Copy a run of plain bytes at once (most strings have no escape at all).
            let rest = &self.s[self.i..];
            let plain = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(rest.len());
            // Never more than one byte past the limit (`out` is within it, checked above).
            let take = plain.min(self.limits.max_string + 1 - out.len());
            out.extend_from_slice(&rest[..take]);
            self.i += take;
            if out.len() > self.limits.max_string {
                return Err(self.err(JsonErrorKind::TooLarge));
            }
            let b = self.peek()?;
            match b {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| self.err(JsonErrorKind::String));
                }
                0..=0x1f => return Err(self.err(JsonErrorKind::String)),
                b'\\' => {
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.err(JsonErrorKind::String)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let a = self.hex4()?;
        if (0xd800..0xdc00).contains(&a) {
            if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                return Err(self.err(JsonErrorKind::String));
            }
            self.i += 2;
            let b = self.hex4()?;
            if !(0xdc00..0xe000).contains(&b) {
                return Err(self.err(JsonErrorKind::String));
            }
            let c = 0x10000 + ((a - 0xd800) << 10 | (b - 0xdc00));
            return char::from_u32(c).ok_or(self.err(JsonErrorKind::String));
        }
        char::from_u32(a).ok_or(self.err(JsonErrorKind::String))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Value, JsonErrorKind> {
        parse(s.as_bytes(), Limits::default()).map_err(|e| e.kind)
    }

    #[test]
    fn accepts_plain_documents() {
        assert_eq!(
            p(r#" {"a" : [1, "x\u00e9\ud83d\ude00\n", true, null, {}], "b":0} "#),
            Ok(Value::Object(vec![
                (
                    "a".into(),
                    Value::Array(vec![
                        Value::Int(1),
                        Value::Str("xé😀\n".into()),
                        Value::Bool(true),
                        Value::Null,
                        Value::Object(vec![])
                    ])
                ),
                ("b".into(), Value::Int(0)),
            ]))
        );
    }

    #[test]
    fn refuses_what_lax_parsers_accept() {
        use JsonErrorKind::*;
        for (doc, kind) in [
            (r#"{"x":["#, Eof),
            (r#"{"x":,"#, Unexpected),
            (r#"{"x":]"#, Unexpected),
            (r#"{"x":"#, Eof),
            (r#"{"a":1,"a":2}"#, DuplicateKey),
            (r#"{"a":1} x"#, Trailing),
            ("{\"a\":\"\u{1}\"}", String),
            (r#"{"a":"\q"}"#, String),
            (r#"{"a":"\ud800"}"#, String),
            (r#"{"a":01}"#, Number),
            (r#"{"a":+1}"#, Number),
            (r#"{"a":-1}"#, Number),
            (r#"{"a":1.5}"#, Number),
            (r#"{"a":1e3}"#, Number),
            (r#"{"a":9007199254740992}"#, Number),
            (r#"{"a":1} // c"#, Trailing),
            ("{\"a\":1}\0", Trailing),
            (r#"[[[[[1]]]]]"#, TooDeep),
            (r#"{"a":1,}"#, Unexpected),
            (r#"{'a':1}"#, Unexpected),
            ("", Eof),
            ("tru", Eof),
        ] {
            assert_eq!(p(doc), Err(kind), "{doc}");
        }
        assert_eq!(p(&format!("[{}1]", "1,".repeat(2000))), Err(TooLarge));
        assert_eq!(p(&format!("\"{}\"", "a".repeat(2000))), Err(TooLarge));
    }

    #[test]
    fn string_limit_is_exact_with_and_without_escapes() {
        let max = Limits::default().max_string;
        let a = |n: usize| "a".repeat(n);
        assert_eq!(p(&format!("\"{}\"", a(max))), Ok(Value::Str(a(max))));
        assert_eq!(
            p(&format!("\"{}\"", a(max + 1))),
            Err(JsonErrorKind::TooLarge)
        );
        let escaped = format!("{}\n", a(max - 1));
        assert_eq!(
            p(&format!("\"{}\\n\"", a(max - 1))),
            Ok(Value::Str(escaped))
        );
        assert_eq!(
            p(&format!("\"{}\\n\"", a(max))),
            Err(JsonErrorKind::TooLarge)
        );
        // Multi-byte escapes right at the limit (found by fuzzing json_body: the limit was
        // checked only after a plain run, and the room left underflowed).
        assert_eq!(
            p(&format!("\"{}\"", "\\u2222".repeat(max / 3 + 2))),
            Err(JsonErrorKind::TooLarge)
        );
        for pad in 0..4 {
            let doc = format!("\"{}{}x\"", a(max - 3 + pad), "\\u2222");
            let _ = p(&doc); // never panics, whatever the alignment
        }
        // A plain run ending at the end of input is an unterminated string.
        assert_eq!(p(&format!("\"{}", a(10))), Err(JsonErrorKind::Eof));
    }

    /// The defect that made us write this reader: nanoserde 0.2.1's tokenizer, which its
    /// derived `DeJson` uses, accepts inputs that are not JSON (see README design notes).
    #[test]
    fn nanoserde_tokenizer_is_lax() {
        use nanoserde::{DeJsonState, DeJsonTok};
        let lax = |doc: &str| {
            let mut st = DeJsonState::default();
            let mut it = doc.chars();
            st.next(&mut it);
            let mut toks = Vec::new();
            while st.next_tok(&mut it).is_ok() && st.tok != DeJsonTok::Eof {
                toks.push(st.tok.clone());
            }
            toks
        };
        // A comment, a plus sign and a leading zero are all taken as a number token.
        assert_eq!(lax("// comment\n+01"), vec![DeJsonTok::U64(1)]);
        // A NUL character ends the input: the trailing garbage is never seen.
        assert_eq!(lax("1\0garbage").len(), 1);
        assert_eq!(p("1\0garbage"), Err(JsonErrorKind::Trailing));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0..=MAX_SAFE_INT).prop_map(Value::Int),
            "\\PC{0,20}".prop_map(Value::Str),
        ];
        leaf.prop_recursive(3, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn roundtrip(v in arb_value()) {
            let text = crate::json::write::to_string(&v);
            prop_assert_eq!(parse(text.as_bytes(), Limits::default()), Ok(v));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes, Limits::default());
        }

        #[test]
        fn truncations_fail_cleanly(v in arb_value(), cut in any::<prop::sample::Index>()) {
            let text = crate::json::write::to_string(&v);
            let cut = cut.index(text.len().max(1));
            let _ = parse(&text.as_bytes()[..cut], Limits::default());
        }
    }
}
