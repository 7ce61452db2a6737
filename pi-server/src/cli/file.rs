//! The config file: `name = value` lines, read under a size limit (see the module docs of
//! [`crate::cli`] for the syntax).

use super::settings::{SETTINGS, find};
use super::values::shorten;
use super::{ConfigError, MAX_CONFIG_FILE_BYTES, Origin, apply};
use crate::config::Config;
use std::io::{self, Read};
use std::path::Path;

pub(super) fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let read = |path: &Path| -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_CONFIG_FILE_BYTES + 1)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read(path).map_err(|error| ConfigError::FileRead {
        path: path.to_path_buf(),
        error,
    })?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::FileTooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

pub(super) struct Entry {
    index: usize,
    value: String,
    line: usize,
}

/// Splits config-file text into checked `name = value` entries (values not yet parsed).
pub(super) fn parse_entries(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, ConfigError> {
    let syntax = |line: usize, reason: &'static str| ConfigError::FileSyntax {
        path: path.to_path_buf(),
        line,
        reason,
    };
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::FileTooLarge(path.to_path_buf()));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut entries: Vec<Entry> = Vec::new();
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|_| syntax(line, "not valid UTF-8"))?;
        let text = text.trim_matches([' ', '\t']);
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| syntax(line, "expected `name = value`"))?;
        let name = name.trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(syntax(line, "expected `name = value`, the name is missing"));
        }
        let index = find(name).ok_or_else(|| ConfigError::UnknownName {
            path: path.to_path_buf(),
            line,
            name: shorten(name),
        })?;
        if let Some(first) = entries.iter().find(|e| e.index == index) {
            return Err(ConfigError::DuplicateName {
                path: path.to_path_buf(),
                line,
                first_line: first.line,
                name: SETTINGS[index].name,
            });
        }
        let value = unquote(value.trim_matches([' ', '\t']));
        if value.contains('\r') {
            return Err(syntax(line, "stray carriage return"));
        }
        entries.push(Entry {
            index,
            value: value.to_string(),
            line,
        });
    }
    Ok(entries)
}

pub(super) fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// Applies the entries of config-file text (named `path` in errors) to `config`.
pub(super) fn apply_file(
    config: &mut Config,
    path: &Path,
    bytes: &[u8],
) -> Result<(), ConfigError> {
    for entry in parse_entries(path, bytes)? {
        let origin = Origin::File {
            path: path.to_path_buf(),
            line: entry.line,
            name: SETTINGS[entry.index].name,
        };
        apply(config, entry.index, &entry.value, origin)?;
    }
    Ok(())
}

/// Reads config-file text (as `--config` does, named `path` in errors) over the defaults,
/// without the environment or flags. The fuzz target `config_file` drives this.
pub fn parse_config_file(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    apply_file(&mut config, path, bytes)?;
    Ok(config)
}
