//! JSON: a strict reader ([`parse`]) and typed field access that refuses unknown fields.

mod value;
mod write;

pub use value::{JsonError, JsonErrorKind, Limits, MAX_SAFE_INT, Value, parse};
pub use write::to_string;

use core::fmt;

/// Why a JSON body does not make a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// Not JSON, or beyond the limits.
    Json(JsonError),
    /// The top-level value is not an object.
    NotObject,
    /// A required field is absent.
    Missing(&'static str),
    /// A field that this message does not have.
    UnknownField,
    /// A field with a value of the wrong type or out of range; the text says which rule.
    Invalid(&'static str, String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Json(e) => write!(f, "invalid JSON: {e}"),
            BodyError::NotObject => f.write_str("body must be a JSON object"),
            BodyError::Missing(name) => write!(f, "missing field {name}"),
            BodyError::UnknownField => f.write_str("unknown field in body"),
            BodyError::Invalid(name, why) => write!(f, "invalid {name}: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// The field this error is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            BodyError::Missing(f) | BodyError::Invalid(f, _) => Some(f),
            _ => None,
        }
    }
}

/// The fields of one object, taken one by one; [`Fields::finish`] refuses any left over.
#[derive(Debug)]
pub struct Fields {
    fields: Vec<(String, Value)>,
}

impl Fields {
    /// Parses `body` and checks it is an object.
    pub fn parse(body: &[u8], limits: Limits) -> Result<Self, BodyError> {
        match parse(body, limits).map_err(BodyError::Json)? {
            Value::Object(fields) => Ok(Fields { fields }),
            _ => Err(BodyError::NotObject),
        }
    }

    /// Wraps an already parsed object.
    pub fn from_value(v: Value) -> Result<Self, BodyError> {
        match v {
            Value::Object(fields) => Ok(Fields { fields }),
            _ => Err(BodyError::NotObject),
        }
    }

    /// Removes and returns a field; `null` counts as absent.
    pub fn take(&mut self, name: &'static str) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| k == name)?;
        match self.fields.swap_remove(i).1 {
            Value::Null => None,
            v => Some(v),
        }
    }

    /// A required string.
    pub fn str(&mut self, name: &'static str) -> Result<String, BodyError> {
        self.opt_str(name)?.ok_or(BodyError::Missing(name))
    }

    /// An optional string.
    pub fn opt_str(&mut self, name: &'static str) -> Result<Option<String>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(BodyError::Invalid(name, "must be a string".into())),
        }
    }

    /// A required integer in `range`.
    pub fn int(
        &mut self,
        name: &'static str,
        range: core::ops::RangeInclusive<u64>,
    ) -> Result<u64, BodyError> {
        self.opt_int(name, range)?.ok_or(BodyError::Missing(name))
    }

    /// An optional integer in `range`.
    pub fn opt_int(
        &mut self,
        name: &'static str,
        range: core::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Int(n)) if range.contains(&n) => Ok(Some(n)),
            Some(_) => Err(BodyError::Invalid(
                name,
                format!(
                    "must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, name: &'static str) -> Result<Option<bool>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(BodyError::Invalid(name, "must be true or false".into())),
        }
    }

    /// An optional array with at most `max` items.
    fn opt_array(
        &mut self,
        name: &'static str,
        max: usize,
    ) -> Result<Option<Vec<Value>>, BodyError> {
        let items = match self.take(name) {
            None => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(BodyError::Invalid(name, "must be an array".into())),
        };
        if items.len() > max {
            return Err(BodyError::Invalid(name, format!("at most {max} items")));
        }
        Ok(Some(items))
    }

    /// An optional array of strings with at most `max` items.
    pub fn opt_str_array(
        &mut self,
        name: &'static str,
        max: usize,
    ) -> Result<Option<Vec<String>>, BodyError> {
        let Some(items) = self.opt_array(name, max)? else {
            return Ok(None);
        };
        items
            .into_iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s),
                _ => Err(BodyError::Invalid(name, "items must be strings".into())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional array of objects with at most `max` items.
    pub fn opt_obj_array(
        &mut self,
        name: &'static str,
        max: usize,
    ) -> Result<Option<Vec<Fields>>, BodyError> {
        let Some(items) = self.opt_array(name, max)? else {
            return Ok(None);
        };
        items
            .into_iter()
            .map(Fields::from_value)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Fails if any field was not taken.
    pub fn finish(self) -> Result<(), BodyError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(BodyError::UnknownField)
        }
    }

    /// Drops fields not taken (for answers from a newer server, which may add fields).
    pub fn ignore_rest(self) {}
}
