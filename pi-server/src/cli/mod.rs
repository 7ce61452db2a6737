//! Command line, environment and config file: turns them into a [`Command`]. This module
//! reads settings; the [`Config`] type, its defaults and ranges are in [`crate::config`], which
//! does not depend on this one. Files: `settings` (the table of settings), `values` (the rule
//! of each kind of value), `args` (flags), `file` (the config file), `write` (config-file
//! output), `help` (the `--help` text), `error` (what can go wrong).
//!
//! Every [`Config`] field is set in one of four places; the first that has it wins:
//!
//! 1. a flag, `--kebab-case-name VALUE` (or `--name=VALUE`);
//! 2. an environment variable, `PI_SERVER_UPPER_SNAKE_NAME` (for systemd's `Environment=`);
//! 3. the config file given by `--config PATH` or `PI_SERVER_CONFIG`: `name = value` lines;
//! 4. the default ([`Config::default`]).
//!
//! Every value is checked wherever it comes from, so a bad value in the file is an error even
//! when a flag overrides it. A flag given twice is an error, as is a name given twice in the
//! file. Each error names where the value came from (flag, variable, or file and line) and the
//! rule it broke:
//!
//! ```
//! use pi_server::cli::{load, Command};
//!
//! let no_env = |_: &str| None;
//! let err = load(["--ttl".into(), "abc".into()], &no_env).unwrap_err();
//! assert_eq!(err.to_string(), r#"--ttl: must be an integer from 10 to 604800 (got "abc")"#);
//!
//! let env = |k: &str| (k == "PI_SERVER_TTL").then(|| "600".to_string());
//! let Ok(Command::Run(config)) = load(Vec::new(), &env) else { panic!() };
//! assert_eq!(config.ttl, 600);
//! ```
//!
//! The config file is UTF-8 (a leading byte-order mark is skipped), at most
//! [`MAX_CONFIG_FILE_BYTES`]. Lines end in LF or CRLF (the file is often edited on Windows, on
//! the FAT boot partition of the Pi). Blank lines and lines starting with `#` are ignored;
//! a `#` later in a line is part of the value (paths may hold one). Around the name, the `=` and
//! the value, spaces and tabs are ignored, and one pair of matching quotes (`"..."` or `'...'`)
//! around the value is removed. Names are the flag names without `--`.

mod args;
mod error;
mod file;
mod help;
mod settings;
mod values;
mod write;

pub use args::process_env;
pub use error::{ConfigError, Origin};
pub use file::parse_config_file;
pub use help::help_text;
pub use settings::env_var_name;
pub use write::to_config_file;

use crate::config::Config;
use args::{bool_value, lexopt_error, os_to_string};
use file::{apply_file, read_config_file};
use settings::{Kind, SETTINGS, find};
use std::ffi::OsString;
use std::path::PathBuf;
use values::shorten;

/// Largest config file read, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 * 1024;
/// Most networks in `trusted-proxies`.
pub const MAX_TRUSTED_PROXIES: usize = 256;
/// Longest piece of a bad value quoted back in an error message, in characters.
pub const MAX_QUOTED_VALUE_CHARS: usize = 80;
/// Prefix of every environment variable.
pub const ENV_PREFIX: &str = "PI_SERVER_";
/// Environment variable naming the config file (like `--config`).
pub const ENV_CONFIG: &str = "PI_SERVER_CONFIG";

/// The program's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Serve with this configuration.
    Run(Config),
    /// Print this configuration in config-file syntax ([`to_config_file`]) and exit.
    PrintConfig(Config),
    /// Print this help text and exit.
    Help(String),
    /// Print [`VERSION`] and exit.
    Version,
}

fn apply(
    config: &mut Config,
    index: usize,
    value: &str,
    origin: Origin,
) -> Result<(), ConfigError> {
    let setting = &SETTINGS[index];
    (setting.set)(config, value).map_err(|rule| ConfigError::Invalid {
        origin,
        rule,
        got: shorten(value),
    })
}

/// Reads the command line (`args` without the program name, as `std::env::args_os().skip(1)`)
/// and the environment (`env`, such as [`process_env`]), then the config file if one is named,
/// and returns what to do.
///
/// Precedence: flag > environment > config file > default. `--help` and `--version` win over
/// everything that follows them and read neither the environment nor the file.
pub fn load(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut flags: Vec<(usize, String)> = Vec::new();
    let mut config_flag: Option<String> = None;
    let mut print = false;
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(help_text())),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("print-config") => {
                if print {
                    return Err(ConfigError::DuplicateFlag("--print-config".into()));
                }
                print = true;
            }
            Long("config") => {
                if config_flag.is_some() {
                    return Err(ConfigError::DuplicateFlag("--config".into()));
                }
                let value = parser.value().map_err(lexopt_error)?;
                config_flag = Some(os_to_string(value, "--config")?);
            }
            Long(name) => {
                let flag = format!("--{name}");
                let index = find(name).ok_or_else(|| ConfigError::UnknownFlag(flag.clone()))?;
                if flags.iter().any(|(i, _)| *i == index) {
                    return Err(ConfigError::DuplicateFlag(flag));
                }
                let value = if SETTINGS[index].kind == Kind::Bool {
                    bool_value(&mut parser)?
                } else {
                    parser.value().map_err(lexopt_error)?
                };
                flags.push((index, os_to_string(value, &flag)?));
            }
            Short(c) => return Err(ConfigError::UnknownFlag(format!("-{c}"))),
            Value(v) => {
                return Err(ConfigError::UnexpectedArgument(
                    v.to_string_lossy().into_owned(),
                ));
            }
        }
    }

    let mut config = Config::default();
    let file = match config_flag {
        Some(path) => Some(path),
        None => env(ENV_CONFIG),
    };
    if let Some(path) = file.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let bytes = read_config_file(&path)?;
        apply_file(&mut config, &path, &bytes)?;
    }
    for (index, setting) in SETTINGS.iter().enumerate() {
        let var = env_var_name(setting.name);
        if let Some(value) = env(&var) {
            apply(&mut config, index, &value, Origin::Env(var))?;
        }
    }
    for (index, value) in flags {
        apply(
            &mut config,
            index,
            &value,
            Origin::Flag(SETTINGS[index].name),
        )?;
    }
    Ok(if print {
        Command::PrintConfig(config)
    } else {
        Command::Run(config)
    })
}

#[cfg(test)]
mod tests;
