//! What can go wrong while reading the settings, and where a value came from.

use super::MAX_CONFIG_FILE_BYTES;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (without `--`).
    Flag(&'static str),
    /// An environment variable (its full name).
    Env(String),
    /// A line of the config file.
    File {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// The setting's name.
        name: &'static str,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) => write!(f, "--{name}"),
            Origin::Env(var) => f.write_str(var),
            Origin::File { path, line, name } => {
                write!(f, "{} line {line}: {name}", path.display())
            }
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value breaks its setting's rule.
    Invalid {
        /// Where it came from.
        origin: Origin,
        /// The rule, such as "must be an integer from 10 to 604800".
        rule: String,
        /// The value given (shortened to [`super::MAX_QUOTED_VALUE_CHARS`]).
        got: String,
    },
    /// An argument that is not a known flag (as given).
    UnknownFlag(String),
    /// A flag that needs a value came last.
    MissingValue(String),
    /// A stray argument, or a value given to a flag that takes none.
    UnexpectedArgument(String),
    /// A flag given twice.
    DuplicateFlag(String),
    /// An argument that is not valid UTF-8.
    NotUtf8(String),
    /// The config file could not be read.
    FileRead {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// The config file is larger than [`MAX_CONFIG_FILE_BYTES`].
    FileTooLarge(PathBuf),
    /// A line of the config file is not valid UTF-8 or not `name = value`.
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A name in the config file that is not a setting.
    UnknownName {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// The name (shortened).
        name: String,
    },
    /// A name given twice in the config file.
    DuplicateName {
        /// The file.
        path: PathBuf,
        /// Line number of the second occurrence.
        line: usize,
        /// Line number of the first.
        first_line: usize,
        /// The setting's name.
        name: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid { origin, rule, got } => {
                write!(f, "{origin}: {rule} (got {got:?})")
            }
            ConfigError::UnknownFlag(flag) => {
                write!(f, "{flag}: unknown flag (see --help for the list)")
            }
            ConfigError::MissingValue(flag) => write!(f, "{flag}: needs a value"),
            ConfigError::UnexpectedArgument(arg) => {
                write!(
                    f,
                    "unexpected argument {arg:?} (settings are given as --name VALUE)"
                )
            }
            ConfigError::DuplicateFlag(flag) => write!(f, "{flag}: given more than once"),
            ConfigError::NotUtf8(what) => write!(f, "{what}: must be valid UTF-8"),
            ConfigError::FileRead { path, error } => {
                write!(f, "config file {}: cannot read: {error}", path.display())
            }
            ConfigError::FileTooLarge(path) => write!(
                f,
                "config file {}: larger than {MAX_CONFIG_FILE_BYTES} bytes",
                path.display()
            ),
            ConfigError::FileSyntax { path, line, reason } => {
                write!(f, "{} line {line}: {reason}", path.display())
            }
            ConfigError::UnknownName { path, line, name } => write!(
                f,
                "{} line {line}: unknown setting {name:?} (see --help for the list)",
                path.display()
            ),
            ConfigError::DuplicateName {
                path,
                line,
                first_line,
                name,
            } => write!(
                f,
                "{} line {line}: {name} already set on line {first_line}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::FileRead { error, .. } => Some(error),
            _ => None,
        }
    }
}
