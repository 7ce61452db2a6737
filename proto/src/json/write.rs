//! Writing [`Value`]s, with nanoserde's (correct) string escaping.

use super::value::Value;
use nanoserde::{SerJson, SerJsonState};

impl SerJson for Value {
    fn ser_json(&self, d: usize, s: &mut SerJsonState) {
        match self {
            Value::Null => s.out.push_str("null"),
            Value::Bool(b) => b.ser_json(d, s),
            Value::Int(n) => n.ser_json(d, s),
            Value::Str(t) => t.ser_json(d, s),
            Value::Array(items) => {
                s.out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        s.out.push(',');
                    }
                    v.ser_json(d, s);
                }
                s.out.push(']');
            }
            Value::Object(fields) => {
                s.out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.out.push(',');
                    }
                    k.ser_json(d, s);
                    s.out.push(':');
                    v.ser_json(d, s);
                }
                s.out.push('}');
            }
        }
    }
}

/// Serialises a value compactly.
pub fn to_string(v: &Value) -> String {
    v.serialize_json()
}
