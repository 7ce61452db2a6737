//! A tiny JSON writer for the tools' `--json` reports, and a lenient reader of one integer field
//! (for `activeUsers` in health answers of either server).

use std::fmt::Write as _;

/// Builds one JSON object, field by field.
#[derive(Debug, Default)]
pub struct Obj {
    out: String,
}

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Obj {
    /// An empty object.
    pub fn new() -> Self {
        Obj::default()
    }

    fn key(&mut self, k: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_str(&mut self.out, k);
        self.out.push(':');
    }

    /// A string field.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(&mut self.out, v);
        self
    }

    /// An integer field.
    pub fn int(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    /// A number field (non-finite numbers become `null`).
    pub fn num(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.out, "{}", (v * 1000.0).round() / 1000.0);
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// A boolean field.
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    /// A field holding already-serialised JSON (an object, an array or `null`).
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.out.push_str(json);
        self
    }

    /// The finished text.
    pub fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

/// Finds `"key":<digits>` in a JSON text and returns the number (a lenient read of trusted
/// answers; the proto crate's strict readers are for anything that matters).
pub fn find_u64(body: &[u8], key: &str) -> Option<u64> {
    let text = core::str::from_utf8(body).ok()?;
    let pat = format!("\"{key}\":");
    let at = text.find(&pat)? + pat.len();
    let rest = text[at..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads() {
        let o = Obj::new()
            .str("a", "x\"y")
            .int("b", 3)
            .num("c", 1.23456)
            .bool("d", true)
            .raw("e", "[1]")
            .finish();
        assert_eq!(o, r#"{"a":"x\"y","b":3,"c":1.235,"d":true,"e":[1]}"#);
        assert_eq!(Obj::new().finish(), "{}");
        assert_eq!(
            find_u64(br#"{"status":"ok","activeUsers": 12}"#, "activeUsers"),
            Some(12)
        );
        assert_eq!(find_u64(b"{}", "activeUsers"), None);
    }
}
