//! Command line, environment and config file: turns them into a [`Command`].
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

use crate::config::{Cidr, Config, LogLevel, ProxyHeader};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

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

/// `snapshot-interval`, seconds.
pub const SNAPSHOT_INTERVAL_RANGE: RangeInclusive<u32> = 1..=86_400;
/// `capacity`, registrations.
pub const CAPACITY_RANGE: RangeInclusive<u32> = 1..=50_000_000;
/// `ttl`, seconds (10 s to 7 days).
pub const TTL_RANGE: RangeInclusive<u32> = 10..=604_800;
/// `retention`, seconds (0 to 30 days).
pub const RETENTION_RANGE: RangeInclusive<u32> = 0..=2_592_000;
/// `max-skew`, seconds.
pub const MAX_SKEW_RANGE: RangeInclusive<u32> = 1..=86_400;
/// `max-connections`.
pub const MAX_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `max-header-bytes` and `max-body-bytes` (1 KiB to 1 MiB).
pub const MESSAGE_BYTES_RANGE: RangeInclusive<u32> = 1024..=1_048_576;
/// `read-timeout` and `idle-timeout`, seconds.
pub const TIMEOUT_RANGE: RangeInclusive<u32> = 1..=3600;
/// `rate-ip` and `rate-key`, requests per second; 0 means unlimited.
pub const RATE_RANGE: RangeInclusive<u32> = 0..=1_000_000;
/// `rate-ip-burst` and `rate-key-burst`, requests (unused when the rate is 0).
pub const BURST_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `friend-keys-total`, keys (0 allows only public registrations with friends lists empty).
pub const FRIEND_KEYS_TOTAL_RANGE: RangeInclusive<u32> = 0..=100_000_000;

/// `max-records-per-address`, live records.
pub const RECORDS_PER_ADDRESS_RANGE: RangeInclusive<u32> = 1..=50_000_000;
/// `max-friend-keys-per-address` and `max-friend-keys-per-key`, keys.
pub const FRIEND_KEYS_QUOTA_RANGE: RangeInclusive<u32> = 0..=100_000_000;
/// `quota-ipv6-prefix`, bits.
pub const QUOTA_IPV6_PREFIX_RANGE: RangeInclusive<u32> = 32..=64;

/// The program's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Serve with this configuration.
    Run(Config),
    /// Print this configuration in config-file syntax ([`Config::to_config_file`]) and exit.
    PrintConfig(Config),
    /// Print this help text and exit.
    Help(String),
    /// Print [`VERSION`] and exit.
    Version,
}

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
        /// The value given (shortened to [`MAX_QUOTED_VALUE_CHARS`]).
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

/// What a setting holds, for the help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Addr,
    Path,
    Secs,
    Count,
    Bytes,
    Bool,
    Cidrs,
    Level,
    Header,
}

impl Kind {
    fn placeholder(self) -> &'static str {
        match self {
            Kind::Addr => "ADDR",
            Kind::Path => "PATH",
            Kind::Secs => "SECS",
            Kind::Count => "N",
            Kind::Bytes => "BYTES",
            Kind::Bool => "true|false",
            Kind::Cidrs => "CIDR,...",
            Kind::Level => "LEVEL",
            Kind::Header => "HEADER",
        }
    }
}

/// One setting: its name, doc, and how to read and write its value.
struct Setting {
    name: &'static str,
    kind: Kind,
    doc: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
    get: fn(&Config) -> String,
}

fn int(value: &str, range: RangeInclusive<u32>) -> Result<u32, String> {
    let rule = || {
        format!(
            "must be an integer from {} to {}",
            range.start(),
            range.end()
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(rule());
    }
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(rule()),
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_string()),
    }
}

fn cidrs(value: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    if value.trim().is_empty() {
        return Ok(out);
    }
    for item in value.split(',') {
        let item = item.trim();
        if out.len() == MAX_TRUSTED_PROXIES {
            return Err(format!("must list at most {MAX_TRUSTED_PROXIES} networks"));
        }
        let net = Cidr::parse(item).map_err(|e| {
            format!(
                "must be comma-separated networks such as 10.0.0.0/8,fd00::/8; {:?}: {e}",
                shorten(item)
            )
        })?;
        out.push(net);
    }
    Ok(out)
}

macro_rules! int_setting {
    ($name:literal, $field:ident, $kind:expr, $range:expr, $doc:literal) => {
        Setting {
            name: $name,
            kind: $kind,
            doc: $doc,
            set: |c, v| {
                c.$field = int(v, $range)?;
                Ok(())
            },
            get: |c| c.$field.to_string(),
        }
    };
}

macro_rules! bool_setting {
    ($name:literal, $field:ident, $doc:literal) => {
        Setting {
            name: $name,
            kind: Kind::Bool,
            doc: $doc,
            set: |c, v| {
                c.$field = boolean(v)?;
                Ok(())
            },
            get: |c| c.$field.to_string(),
        }
    };
}

/// Every setting, in help and `--print-config` order.
static SETTINGS: [Setting; 26] = [
    Setting {
        name: "listen",
        kind: Kind::Addr,
        doc: "Address and port to listen on; [::] is dual-stack (IPv6 and IPv4).",
        set: |c, v| {
            c.listen = v.parse().map_err(|_| {
                "must be an address and port such as [::]:3000 or 0.0.0.0:3000".to_string()
            })?;
            Ok(())
        },
        get: |c| c.listen.to_string(),
    },
    Setting {
        name: "snapshot",
        kind: Kind::Path,
        doc: "Snapshot file kept across restarts; empty keeps the table in memory only.",
        set: |c, v| {
            if v.contains(['\n', '\r']) {
                return Err("must not contain a line break".to_string());
            }
            c.snapshot = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
        get: |c| {
            let path = c
                .snapshot
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("\"{path}\"")
        },
    },
    int_setting!(
        "snapshot-interval",
        snapshot_interval,
        Kind::Secs,
        SNAPSHOT_INTERVAL_RANGE,
        "Seconds between snapshots (written only when something changed)."
    ),
    int_setting!(
        "capacity",
        capacity,
        Kind::Count,
        CAPACITY_RANGE,
        "Most live registrations held; memory for them is allocated at start."
    ),
    int_setting!(
        "ttl",
        ttl,
        Kind::Secs,
        TTL_RANGE,
        "Seconds a registration lives unless renewed."
    ),
    int_setting!(
        "retention",
        retention,
        Kind::Secs,
        RETENTION_RANGE,
        "Seconds a name stays bound to its key after expiry or unregistration."
    ),
    int_setting!(
        "max-skew",
        max_skew,
        Kind::Secs,
        MAX_SKEW_RANGE,
        "Largest difference allowed between a signed timestamp and the server clock."
    ),
    int_setting!(
        "max-connections",
        max_connections,
        Kind::Count,
        MAX_CONNECTIONS_RANGE,
        "Most open client connections."
    ),
    Setting {
        name: "trusted-proxies",
        kind: Kind::Cidrs,
        doc: "Networks of your reverse proxies: their proxy-header is believed (empty: none).",
        set: |c, v| {
            c.trusted_proxies = cidrs(v)?;
            Ok(())
        },
        get: |c| {
            let list: Vec<String> = c.trusted_proxies.iter().map(Cidr::to_string).collect();
            list.join(",")
        },
    },
    Setting {
        name: "proxy-header",
        kind: Kind::Header,
        doc: "The one header your trusted proxies set: x-forwarded-for (nginx, Caddy, HAProxy, \
              Traefik append to it by default), forwarded (RFC 7239) or x-real-ip. Only it is \
              read, walked from the right; the proxy must append to it or overwrite it.",
        set: |c, v| {
            c.proxy_header = ProxyHeader::parse(v).ok_or_else(|| {
                "must be one of x-forwarded-for, forwarded, x-real-ip".to_string()
            })?;
            Ok(())
        },
        get: |c| c.proxy_header.to_string(),
    },
    bool_setting!(
        "allow-claimed-ip",
        allow_claimed_ip,
        "Accept a client-claimed ip that differs from the observed one (LAN only)."
    ),
    bool_setting!(
        "metrics-public",
        metrics_public,
        "Serve /metrics to everyone (otherwise only to clients on loopback or in \
         trusted-proxies, judged after proxy resolution)."
    ),
    Setting {
        name: "log-level",
        kind: Kind::Level,
        doc: "error, warn (audit lines), info, debug (shows addresses) or trace; RUST_LOG wins.",
        set: |c, v| {
            c.log_level = LogLevel::parse(v)
                .ok_or_else(|| "must be one of error, warn, info, debug, trace".to_string())?;
            Ok(())
        },
        get: |c| c.log_level.to_string(),
    },
    int_setting!(
        "max-header-bytes",
        max_header_bytes,
        Kind::Bytes,
        MESSAGE_BYTES_RANGE,
        "Largest request head (431 above)."
    ),
    int_setting!(
        "max-body-bytes",
        max_body_bytes,
        Kind::Bytes,
        MESSAGE_BYTES_RANGE,
        "Largest request body (413 above)."
    ),
    int_setting!(
        "read-timeout",
        read_timeout,
        Kind::Secs,
        TIMEOUT_RANGE,
        "Seconds allowed to receive a whole request once it started (slowloris defence)."
    ),
    int_setting!(
        "idle-timeout",
        idle_timeout,
        Kind::Secs,
        TIMEOUT_RANGE,
        "Seconds an idle keep-alive connection is kept."
    ),
    int_setting!(
        "rate-ip",
        rate_ip,
        Kind::Count,
        RATE_RANGE,
        "Requests per second per source address (IPv6 per /64), sustained; 0 = unlimited."
    ),
    int_setting!(
        "rate-ip-burst",
        rate_ip_burst,
        Kind::Count,
        BURST_RANGE,
        "Burst of requests allowed per source address."
    ),
    int_setting!(
        "rate-key",
        rate_key,
        Kind::Count,
        RATE_RANGE,
        "Requests per second per public key, sustained; 0 = unlimited."
    ),
    int_setting!(
        "rate-key-burst",
        rate_key_burst,
        Kind::Count,
        BURST_RANGE,
        "Burst of requests allowed per public key."
    ),
    int_setting!(
        "friend-keys-total",
        friend_keys_total,
        Kind::Count,
        FRIEND_KEYS_TOTAL_RANGE,
        "Most friend keys stored across all registrations."
    ),
    int_setting!(
        "max-records-per-address",
        max_records_per_address,
        Kind::Count,
        RECORDS_PER_ADDRESS_RANGE,
        "Most live registrations charged to one address (IPv6: one quota-ipv6-prefix); \
         more get 429 quota_exceeded. Players behind one carrier-grade NAT share it."
    ),
    int_setting!(
        "max-friend-keys-per-address",
        max_friend_keys_per_address,
        Kind::Count,
        FRIEND_KEYS_QUOTA_RANGE,
        "Most friend keys held by the live registrations of one address (IPv6: one prefix)."
    ),
    int_setting!(
        "max-friend-keys-per-key",
        max_friend_keys_per_key,
        Kind::Count,
        FRIEND_KEYS_QUOTA_RANGE,
        "Most friend keys held by the live registrations of one public key (64 = one full list)."
    ),
    int_setting!(
        "quota-ipv6-prefix",
        quota_ipv6_prefix,
        Kind::Count,
        QUOTA_IPV6_PREFIX_RANGE,
        "IPv6 addresses in one prefix of this length share the per-address quotas: 48, since \
         one subscriber or server often holds a whole /48 (65,536 /64s)."
    ),
];

fn find(name: &str) -> Option<usize> {
    SETTINGS.iter().position(|s| s.name == name)
}

/// The environment variable of a setting: `ttl` -> `PI_SERVER_TTL`.
pub fn env_var_name(setting: &str) -> String {
    let mut var = String::with_capacity(ENV_PREFIX.len() + setting.len());
    var.push_str(ENV_PREFIX);
    var.extend(setting.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    var
}

/// Reads an environment variable of this process for [`load`]; a value that is not valid UTF-8
/// is passed on with replacement characters, so that it fails its setting's rule visibly
/// instead of being ignored.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}

fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    }
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

fn os_to_string(value: OsString, what: &str) -> Result<String, ConfigError> {
    value
        .into_string()
        .map_err(|_| ConfigError::NotUtf8(what.to_string()))
}

fn lexopt_error(error: lexopt::Error) -> ConfigError {
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
        for entry in parse_entries(&path, &bytes)? {
            let origin = Origin::File {
                path: path.clone(),
                line: entry.line,
                name: SETTINGS[entry.index].name,
            };
            apply(&mut config, entry.index, &entry.value, origin)?;
        }
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

/// A boolean flag's value: `--flag=VALUE`, `--flag true|false`, or a bare `--flag` (true).
fn bool_value(parser: &mut lexopt::Parser) -> Result<OsString, ConfigError> {
    if let Some(value) = parser.optional_value() {
        return Ok(value);
    }
    let mut raw = parser.raw_args().map_err(lexopt_error)?;
    let next_is_bool = matches!(raw.peek().and_then(|a| a.to_str()), Some("true" | "false"));
    let taken = if next_is_bool { raw.next() } else { None };
    Ok(taken.unwrap_or_else(|| OsString::from("true")))
}

fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
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

struct Entry {
    index: usize,
    value: String,
    line: usize,
}

/// Splits config-file text into checked `name = value` entries (values not yet parsed).
fn parse_entries(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, ConfigError> {
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

fn unquote(value: &str) -> &str {
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

/// Reads config-file text (as `--config` does, named `path` in errors) over the defaults,
/// without the environment or flags. The fuzz target `config_file` drives this.
pub fn parse_config_file(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for entry in parse_entries(path, bytes)? {
        let origin = Origin::File {
            path: path.to_path_buf(),
            line: entry.line,
            name: SETTINGS[entry.index].name,
        };
        apply(&mut config, entry.index, &entry.value, origin)?;
    }
    Ok(config)
}

/// `config` in config-file syntax, one documented `name = value` per setting.
pub(crate) fn to_config_file(config: &Config) -> String {
    let mut out = String::from(
        "# pi-server settings (pi-server --print-config). Read with --config PATH.\n\
         # Precedence: flag > environment variable > this file > default.\n",
    );
    for setting in &SETTINGS {
        out.push_str(&format!(
            "\n# {}\n{} = {}\n",
            setting.doc,
            setting.name,
            (setting.get)(config)
        ));
    }
    out
}

/// The `--help` text.
pub fn help_text() -> String {
    let defaults = Config::default();
    let mut out = format!(
        "pi-server {VERSION}: the phone book of the FFXIV peer-to-peer mod sync, a small HTTP \
         server that maps player names to signed peer addresses, shown only to whom each player allows.

USAGE:
    pi-server                        serve on [::]:3000 with an in-memory table
    pi-server --snapshot /var/lib/pi-server/snapshot.bin
                                     keep the table across restarts
    pi-server --config /boot/pi-server.conf
    pi-server --print-config > pi-server.conf
                                     write the effective settings as a config file

Every setting is a flag (--ttl 600 or --ttl=600), an environment variable
(PI_SERVER_TTL=600) or a line of the config file (ttl = 600).
Precedence: flag > environment > config file > default.

OPTIONS:
    --config PATH       config file of `name = value` lines (env {ENV_CONFIG}); `#` starts a
                        comment line; at most {MAX_CONFIG_FILE_BYTES} bytes; CRLF is fine
    --print-config      print the effective settings in config-file syntax and exit
    -h, --help          print this help and exit
    -V, --version       print the version and exit

SETTINGS:
"
    );
    for setting in &SETTINGS {
        let default = (setting.get)(&defaults);
        out.push_str(&format!(
            "    --{} {}\n        {}\n        [default: {}] [env: {}]\n",
            setting.name,
            setting.kind.placeholder(),
            setting.doc,
            if default.is_empty() || default == "\"\"" {
                "none"
            } else {
                &default
            },
            env_var_name(setting.name),
        ));
    }
    out.push_str(
        "
API (docs/PROTOCOL.md has the exact bodies, signatures and status codes):
    POST   /api/register          register or renew a signed name -> address binding
    GET    /api/lookup/{name}     one player's address (Authorization: Bearer <token>)
    POST   /api/lookup            up to 64 names at once (Authorization: Bearer <token>)
    DELETE /api/unregister        remove a registration (signed)
    GET    /api/health            {\"status\":\"ok\",\"activeUsers\":N,...}
    GET    /metrics               Prometheus text metrics

Logs go to stderr (journald under systemd); player addresses appear only at debug and trace.
",
    );
    out
}

#[cfg(test)]
mod tests;
