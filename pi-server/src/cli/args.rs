//! Command-line arguments: lexopt's errors as [`ConfigError`], boolean flags, the environment.

use super::ConfigError;
use std::ffi::OsString;

pub(super) fn os_to_string(value: OsString, what: &str) -> Result<String, ConfigError> {
    value
        .into_string()
        .map_err(|_| ConfigError::NotUtf8(what.to_string()))
}

pub(super) fn lexopt_error(error: lexopt::Error) -> ConfigError {
    match error {
        lexopt::Error::MissingValue { option } => {
            ConfigError::MissingValue(option.unwrap_or_else(|| "a flag".to_string()))
        }
        lexopt::Error::UnexpectedOption(flag) => ConfigError::UnknownFlag(flag),
        lexopt::Error::UnexpectedArgument(arg) => {
            ConfigError::UnexpectedArgument(arg.to_string_lossy().into_owned())
        }
        lexopt::Error::UnexpectedValue { option, value } => {
            ConfigError::UnexpectedArgument(format!("{option}={}", value.to_string_lossy()))
        }
        lexopt::Error::NonUnicodeValue(value) => {
            ConfigError::NotUtf8(value.to_string_lossy().into_owned())
        }
        other => ConfigError::UnexpectedArgument(other.to_string()),
    }
}

/// A boolean flag's value: `--flag=VALUE`, `--flag true|false`, or a bare `--flag` (true).
pub(super) fn bool_value(parser: &mut lexopt::Parser) -> Result<OsString, ConfigError> {
    if let Some(value) = parser.optional_value() {
        return Ok(value);
    }
    let mut raw = parser.raw_args().map_err(lexopt_error)?;
    let next_is_bool = matches!(raw.peek().and_then(|a| a.to_str()), Some("true" | "false"));
    let taken = if next_is_bool { raw.next() } else { None };
    Ok(taken.unwrap_or_else(|| OsString::from("true")))
}

/// Reads an environment variable of this process for [`super::load`]; a value that is not valid UTF-8
/// is passed on with replacement characters, so that it fails its setting's rule visibly
/// instead of being ignored.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}
