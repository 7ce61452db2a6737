use super::*;
use crate::config::{Cidr, LogLevel, ProxyHeader};
use proptest::prelude::*;
use settings::{SETTINGS, find};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn run(list: &[&str]) -> Result<Config, ConfigError> {
    run_env(list, &[])
}

fn run_env(list: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match load(args(list), &|k| vars.get(k).cloned())? {
        Command::Run(c) => Ok(c),
        other => panic!("expected Run, got {other:?}"),
    }
}

fn err(list: &[&str]) -> String {
    run(list).unwrap_err().to_string()
}

/// A config file in a fresh temporary directory, removed on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(tag: &str, contents: &[u8]) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "pi-server-cli-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pi-server.conf");
        std::fs::write(&path, contents).unwrap();
        TempFile { dir, path }
    }
    fn arg(&self) -> String {
        self.path.to_str().unwrap().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn file_err(text: &str) -> String {
    parse_config_file(Path::new("f.conf"), text.as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn no_arguments_give_the_defaults() {
    assert_eq!(run(&[]).unwrap(), Config::default());
}

#[test]
fn every_setting_is_a_flag_env_var_and_file_name() {
    // A value different from the default for each setting.
    let values: [(&str, &str); 50] = [
        ("listen", "127.0.0.1:4000"),
        ("snapshot", "/var/lib/pb/snap.bin"),
        ("snapshot-interval", "45"),
        ("capacity", "1234"),
        ("ttl", "600"),
        ("retention", "0"),
        ("max-skew", "60"),
        ("max-connections", "100"),
        ("trusted-proxies", "10.0.0.0/8, fd00::/8"),
        ("proxy-header", "Forwarded"),
        ("allow-claimed-ip", "true"),
        ("metrics-public", "true"),
        ("log-level", "debug"),
        ("max-header-bytes", "4096"),
        ("max-body-bytes", "2048"),
        ("read-timeout", "5"),
        ("idle-timeout", "30"),
        ("rate-ip", "0"),
        ("rate-ip-burst", "7"),
        ("rate-key", "9"),
        ("rate-key-burst", "11"),
        ("friend-keys-total", "12"),
        ("max-records-per-address", "13"),
        ("max-friend-keys-per-address", "14"),
        ("max-friend-keys-per-key", "15"),
        ("quota-ipv6-prefix", "56"),
        ("udp-listen", "off"),
        ("udp-alt-port", "3479"),
        ("udp-rate", "3"),
        ("udp-rate-burst", "6"),
        ("punch-rate", "2"),
        ("udp-mapping-ttl", "120"),
        ("relay-listen", "127.0.0.1:4443"),
        ("relay-host", "relay.example.org"),
        ("relay-max-connections", "17"),
        ("relay-max-sessions", "18"),
        ("relay-rate", "19"),
        ("relay-rate-total", "20"),
        ("relay-idle", "21"),
        ("tls-cert", "/etc/pb/cert.pem"),
        ("tls-key", "/etc/pb/key.pem"),
        ("tls-handshake-timeout", "7"),
        ("acme-domain", "PB.Example.org"),
        ("acme-contact", "mailto:admin@example.org"),
        ("acme-directory", "https://localhost:14000/dir"),
        ("acme-ca-root", "/etc/pb/pebble.pem"),
        ("acme-dir", "/var/lib/pb/acme"),
        ("redis-url", REDIS_URL),
        ("redis-prefix", "pb-eu"),
        ("redis-ca", "/etc/pb/redis-ca.pem"),
    ];
    assert_eq!(values.len(), SETTINGS.len());
    let mut flags = Vec::new();
    let mut vars = Vec::new();
    let mut file = String::new();
    for (name, value) in values {
        assert!(find(name).is_some(), "{name}");
        flags.push(format!("--{name}"));
        flags.push(value.to_string());
        vars.push((env_var_name(name), value.to_string()));
        file.push_str(&format!("{name} = {value}\n"));
    }
    let by_flag = run(&flags.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let vars_ref: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let by_env = run_env(&[], &vars_ref).unwrap();
    let by_file = parse_config_file(Path::new("f"), file.as_bytes()).unwrap();
    assert_eq!(by_flag, by_env);
    assert_eq!(by_flag, by_file);
    let d = Config::default();
    assert_eq!(
        by_flag.listen,
        "127.0.0.1:4000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        by_flag.snapshot,
        Some(PathBuf::from("/var/lib/pb/snap.bin"))
    );
    assert_eq!(by_flag.trusted_proxies.len(), 2);
    assert_eq!(by_flag.log_level, LogLevel::Debug);
    assert_eq!(by_flag.rate_ip, 0);
    assert_eq!(by_flag.friend_keys_total, 12);
    // Every field differs from its default, so every setter reached its own field.
    assert_ne!(by_flag.listen, d.listen);
    assert_ne!(by_flag.snapshot_interval, d.snapshot_interval);
    assert_ne!(by_flag.capacity, d.capacity);
    assert_ne!(by_flag.ttl, d.ttl);
    assert_ne!(by_flag.retention, d.retention);
    assert_ne!(by_flag.proxy_header, d.proxy_header);
    assert_ne!(by_flag.max_records_per_address, d.max_records_per_address);
    assert_ne!(
        by_flag.max_friend_keys_per_address,
        d.max_friend_keys_per_address
    );
    assert_ne!(by_flag.max_friend_keys_per_key, d.max_friend_keys_per_key);
    assert_ne!(by_flag.quota_ipv6_prefix, d.quota_ipv6_prefix);
    assert_ne!(by_flag.max_skew, d.max_skew);
    assert_ne!(by_flag.max_connections, d.max_connections);
    assert_ne!(by_flag.allow_claimed_ip, d.allow_claimed_ip);
    assert_ne!(by_flag.metrics_public, d.metrics_public);
    assert_ne!(by_flag.max_header_bytes, d.max_header_bytes);
    assert_ne!(by_flag.max_body_bytes, d.max_body_bytes);
    assert_ne!(by_flag.read_timeout, d.read_timeout);
    assert_ne!(by_flag.idle_timeout, d.idle_timeout);
    assert_ne!(by_flag.rate_ip_burst, d.rate_ip_burst);
    assert_ne!(by_flag.rate_key, d.rate_key);
    assert_ne!(by_flag.rate_key_burst, d.rate_key_burst);
    assert_eq!(by_flag.tls_cert, Some(PathBuf::from("/etc/pb/cert.pem")));
    assert_eq!(by_flag.tls_key, Some(PathBuf::from("/etc/pb/key.pem")));
    assert_ne!(by_flag.tls_handshake_timeout, d.tls_handshake_timeout);
    assert_eq!(by_flag.acme_domain.as_deref(), Some("pb.example.org"));
    assert_eq!(by_flag.acme_contact.as_deref(), Some("admin@example.org"));
    assert_eq!(by_flag.acme_directory, "https://localhost:14000/dir");
    assert_eq!(
        by_flag.acme_ca_root,
        Some(PathBuf::from("/etc/pb/pebble.pem"))
    );
    assert_eq!(by_flag.acme_dir, Some(PathBuf::from("/var/lib/pb/acme")));
    assert_eq!(
        by_flag.redis_url.as_deref(),
        Some(REDIS_URL).filter(|u| !u.is_empty())
    );
    assert_eq!(by_flag.redis_prefix, "pb-eu");
    assert_eq!(
        by_flag.redis_ca,
        Some(PathBuf::from("/etc/pb/redis-ca.pem"))
    );
    assert!(
        run(&["--redis-url", "http://db"])
            .unwrap_err()
            .to_string()
            .contains("redis://")
    );
}

/// A Redis URL, which a build without the `redis` feature refuses (then none is given).
#[cfg(feature = "redis")]
const REDIS_URL: &str = "redis://:pw@db.example:6380/2";
#[cfg(not(feature = "redis"))]
const REDIS_URL: &str = "";

#[test]
fn tls_and_acme_values_are_checked() {
    let long_label = format!("{}.b", "a".repeat(64));
    for bad in ["1.2.3.4", "localhost", "a..b", "-a.b", "a b.c", &long_label] {
        assert!(
            err(&["--acme-domain", bad]).contains("must be a DNS name"),
            "{bad}"
        );
    }
    for bad in ["admin", "@x", "a@b@c", "a b@c"] {
        assert!(err(&["--acme-contact", bad]).contains("e-mail"), "{bad}");
    }
    assert!(err(&["--acme-directory", "http://x/dir"]).contains("https://"));
    assert!(err(&["--tls-cert", "a\nb"]).contains("line break"));
    assert!(err(&["--tls-handshake-timeout", "0"]).contains("from 1 to 120"));
    assert_eq!(run(&["--acme-domain", ""]).unwrap().acme_domain, None);
}

#[test]
fn bad_integer_names_the_flag_and_rule() {
    assert_eq!(
        err(&["--ttl", "abc"]),
        r#"--ttl: must be an integer from 10 to 604800 (got "abc")"#
    );
    assert!(err(&["--capacity", "-1"]).contains("--capacity: must be an integer from 1 to"));
    assert!(err(&["--capacity", "+5"]).contains("must be an integer"));
    assert!(err(&["--capacity", ""]).contains("must be an integer"));
    assert!(err(&["--capacity", "99999999999999999999"]).contains("must be an integer"));
}

#[test]
fn out_of_range_values_are_refused() {
    assert!(err(&["--ttl", "9"]).starts_with("--ttl: must be an integer from 10 to 604800"));
    assert!(run(&["--ttl", "10"]).is_ok());
    assert!(run(&["--ttl", "604800"]).is_ok());
    assert!(err(&["--ttl", "604801"]).contains("(got \"604801\")"));
    assert!(err(&["--capacity", "0"]).contains("from 1 to 50000000"));
    assert!(err(&["--capacity", "50000001"]).contains("from 1 to 50000000"));
    assert!(err(&["--retention", "2592001"]).contains("from 0 to 2592000"));
    assert!(err(&["--max-skew", "0"]).contains("from 1 to 86400"));
    assert!(err(&["--max-connections", "1000001"]).contains("from 1 to 1000000"));
    assert!(err(&["--max-header-bytes", "1023"]).contains("from 1024 to 1048576"));
    assert!(err(&["--max-body-bytes", "1048577"]).contains("from 1024 to 1048576"));
    assert!(err(&["--read-timeout", "0"]).contains("from 1 to 3600"));
    assert!(err(&["--idle-timeout", "3601"]).contains("from 1 to 3600"));
    assert!(err(&["--rate-ip", "1000001"]).contains("from 0 to 1000000"));
    assert!(err(&["--rate-key-burst", "0"]).contains("from 1 to 1000000"));
    assert!(err(&["--snapshot-interval", "0"]).contains("from 1 to 86400"));
    assert_eq!(run(&["--rate-key", "0"]).unwrap().rate_key, 0);
}

#[test]
fn env_errors_name_the_variable() {
    let e = run_env(&[], &[("PI_SERVER_MAX_SKEW", "x")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"PI_SERVER_MAX_SKEW: must be an integer from 1 to 86400 (got "x")"#
    );
}

#[test]
fn long_bad_values_are_shortened_in_errors() {
    let long = "9".repeat(500);
    let e = err(&["--ttl", &long]);
    assert!(e.len() < 200, "{e}");
    assert!(e.contains("..."));
}

#[test]
fn booleans_bare_or_with_a_value() {
    assert!(run(&["--allow-claimed-ip"]).unwrap().allow_claimed_ip);
    assert!(
        run(&["--allow-claimed-ip", "true"])
            .unwrap()
            .allow_claimed_ip
    );
    assert!(
        !run(&["--allow-claimed-ip", "false"])
            .unwrap()
            .allow_claimed_ip
    );
    assert!(!run(&["--allow-claimed-ip=false"]).unwrap().allow_claimed_ip);
    // A bare boolean followed by another flag leaves that flag alone.
    let c = run(&["--metrics-public", "--ttl", "30"]).unwrap();
    assert!(c.metrics_public);
    assert_eq!(c.ttl, 30);
    assert!(err(&["--metrics-public=yes"]).contains("--metrics-public: must be true or false"));
    assert!(err(&["--allow-claimed-ip", "yes"]).contains("unexpected argument \"yes\""));
    let e = run_env(&[], &[("PI_SERVER_ALLOW_CLAIMED_IP", "1")]).unwrap_err();
    assert!(
        e.to_string()
            .contains("PI_SERVER_ALLOW_CLAIMED_IP: must be true or false")
    );
}

#[test]
fn flag_forms_and_flag_errors() {
    assert_eq!(run(&["--ttl=30"]).unwrap().ttl, 30);
    assert!(matches!(load(args(&["-h"]), &no_env), Ok(Command::Help(_))));
    assert!(matches!(
        load(args(&["--help"]), &no_env),
        Ok(Command::Help(_))
    ));
    assert!(matches!(load(args(&["-V"]), &no_env), Ok(Command::Version)));
    assert!(matches!(
        load(args(&["--version"]), &no_env),
        Ok(Command::Version)
    ));
    assert_eq!(
        err(&["--tll", "30"]),
        "--tll: unknown flag (see --help for the list)"
    );
    assert!(err(&["-x"]).contains("-x: unknown flag"));
    assert_eq!(err(&["--ttl"]), "--ttl: needs a value");
    assert!(err(&["stray"]).contains("unexpected argument \"stray\""));
    assert_eq!(
        err(&["--ttl", "30", "--ttl", "40"]),
        "--ttl: given more than once"
    );
    assert!(err(&["--print-config=yes"]).contains("unexpected argument"));
    assert!(matches!(
        load(args(&["--print-config", "--ttl", "20"]), &no_env),
        Ok(Command::PrintConfig(c)) if c.ttl == 20
    ));
}

#[cfg(unix)]
#[test]
fn non_utf8_flag_value_is_an_error() {
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(vec![b'/', 0xff]);
    let e = load(vec![OsString::from("--snapshot"), bad], &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::NotUtf8(_)), "{e}");
}

#[test]
fn listen_addresses() {
    let v6 = run(&["--listen", "[::]:3000"]).unwrap().listen;
    assert_eq!(v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 3000)));
    let v4 = run(&["--listen", "0.0.0.0:3000"]).unwrap().listen;
    assert_eq!(v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 3000)));
    assert_eq!(run(&["--listen", "127.0.0.1:0"]).unwrap().listen.port(), 0);
    for bad in [
        "3000",
        "localhost:3000",
        "::1:3000",
        "1.2.3.4",
        "1.2.3.4:70000",
        "",
    ] {
        let e = err(&["--listen", bad]);
        assert!(
            e.starts_with("--listen: must be an address and port such as [::]:3000"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn snapshot_path_empty_means_none() {
    assert_eq!(run(&["--snapshot", ""]).unwrap().snapshot, None);
    let c = parse_config_file(Path::new("f"), b"snapshot = \"\"\n").unwrap();
    assert_eq!(c.snapshot, None);
    assert!(err(&["--snapshot", "a\nb"]).contains("must not contain a line break"));
}

#[test]
fn trusted_proxies() {
    let c = run(&["--trusted-proxies", "10.0.0.0/8,192.168.1.1,fd00::/8, ::1"]).unwrap();
    let got: Vec<String> = c.trusted_proxies.iter().map(Cidr::to_string).collect();
    assert_eq!(got, ["10.0.0.0/8", "192.168.1.1/32", "fd00::/8", "::1/128"]);
    assert!(c.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
    assert!(!c.trusted_proxies[0].contains("11.0.0.1".parse().unwrap()));
    assert!(c.trusted_proxies[0].contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!c.trusted_proxies[2].contains("10.0.0.1".parse().unwrap()));
    assert!(c.trusted_proxies[2].contains("fd12::1".parse().unwrap()));
    assert_eq!(
        run(&["--trusted-proxies", ""]).unwrap().trusted_proxies,
        vec![]
    );
    let mapped = run(&["--trusted-proxies", "::ffff:10.0.0.0/104"]).unwrap();
    assert_eq!(mapped.trusted_proxies[0].to_string(), "10.0.0.0/8");
    let all = run(&["--trusted-proxies", "0.0.0.0/0,::/0"]).unwrap();
    assert!(all.trusted_proxies[0].contains(IpAddr::from([1, 2, 3, 4])));
    assert!(all.trusted_proxies[1].contains("2001:db8::1".parse().unwrap()));
}

#[test]
fn bad_cidrs_are_refused_with_the_reason() {
    let e = err(&["--trusted-proxies", "10.0.0.1/8"]);
    assert!(
        e.starts_with("--trusted-proxies: must be comma-separated networks"),
        "{e}"
    );
    assert!(e.contains("did you mean 10.0.0.0/8?"), "{e}");
    assert!(err(&["--trusted-proxies", "10.0.0.0/33"]).contains("prefix must be 0-32"));
    assert!(err(&["--trusted-proxies", "fd00::/129"]).contains("0-128 for IPv6"));
    assert!(err(&["--trusted-proxies", "10.0.0.0/"]).contains("prefix"));
    assert!(err(&["--trusted-proxies", "10.0.0.0/+8"]).contains("prefix"));
    assert!(err(&["--trusted-proxies", "10.0.0/8"]).contains("not an IPv4 or IPv6 address"));
    assert!(err(&["--trusted-proxies", "10.0.0.0/8,"]).contains("not an IPv4 or IPv6"));
    assert!(err(&["--trusted-proxies", "fd00::1/8"]).contains("did you mean fd00::/8?"));
    let many = vec!["10.0.0.0/8"; MAX_TRUSTED_PROXIES + 1].join(",");
    assert!(err(&["--trusted-proxies", &many]).contains("at most 256 networks"));
}

#[test]
fn log_levels() {
    for level in LogLevel::ALL {
        assert_eq!(
            run(&["--log-level", level.as_str()]).unwrap().log_level,
            level
        );
    }
    assert_eq!(
        run(&["--log-level", "WARN"]).unwrap().log_level,
        LogLevel::Warn
    );
    assert!(
        err(&["--log-level", "verbose"]).contains(
            "--log-level: must be one of error, warn, info, debug, trace (got \"verbose\")"
        )
    );
}

#[test]
fn precedence_flag_over_env_over_file_over_default() {
    let file = TempFile::new("prec", b"ttl = 100\nretention = 200\nmax-skew = 300\n");
    let vars = [
        ("PI_SERVER_CONFIG", file.arg()),
        ("PI_SERVER_TTL", "111".to_string()),
        ("PI_SERVER_RETENTION", "222".to_string()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = run_env(&["--ttl", "11"], &vars).unwrap();
    assert_eq!(c.ttl, 11, "flag beats env and file");
    assert_eq!(c.retention, 222, "env beats file");
    assert_eq!(c.max_skew, 300, "file beats default");
    assert_eq!(c.capacity, Config::default().capacity, "default otherwise");
}

#[test]
fn config_flag_beats_config_env_and_empty_means_none() {
    let a = TempFile::new("cfg-a", b"ttl = 100\n");
    let vars = [("PI_SERVER_CONFIG", "/nonexistent/pi-server.conf")];
    let c = run_env(&["--config", &a.arg()], &vars).unwrap();
    assert_eq!(c.ttl, 100);
    let e = run_env(&[], &vars).unwrap_err().to_string();
    assert!(
        e.starts_with("config file /nonexistent/pi-server.conf: cannot read"),
        "{e}"
    );
    assert_eq!(
        run_env(&[], &[("PI_SERVER_CONFIG", "")]).unwrap(),
        Config::default()
    );
}

#[test]
fn a_bad_file_value_is_an_error_even_when_overridden() {
    let file = TempFile::new("bad-over", b"# comment\n\nttl = soon\n");
    let e = run(&["--config", &file.arg(), "--ttl", "30"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} line 3: ttl: must be an integer from 10 to 604800 (got \"soon\")",
            file.path.display()
        )
    );
}

#[test]
fn unknown_name_in_file_gives_its_line() {
    assert_eq!(
        file_err("ttl = 30\n\n# c\ntll = 30\n"),
        "f.conf line 4: unknown setting \"tll\" (see --help for the list)"
    );
    assert!(file_err("config = x\n").contains("line 1: unknown setting \"config\""));
}

#[test]
fn duplicate_name_in_file() {
    assert_eq!(
        file_err("ttl = 30\ncapacity = 5\nttl = 40\n"),
        "f.conf line 3: ttl already set on line 1"
    );
}

#[test]
fn file_syntax_errors() {
    assert_eq!(
        file_err("ttl 30\n"),
        "f.conf line 1: expected `name = value`"
    );
    assert!(file_err("= 30\n").contains("line 1: expected `name = value`, the name is missing"));
    let e = parse_config_file(Path::new("f.conf"), b"ttl = 30\nsnapshot = \xff\n").unwrap_err();
    assert_eq!(e.to_string(), "f.conf line 2: not valid UTF-8");
    assert!(file_err("ttl = 3\r0\n").contains("line 1: stray carriage return"));
}

#[test]
fn crlf_bom_quotes_comments_and_tabs() {
    let text = "\u{feff}# written on Windows\r\n\r\n  ttl\t=\t\"600\"\r\nsnapshot = 'C:/pb #1.bin'\r\nlog-level = warn";
    let c = parse_config_file(Path::new("f"), text.as_bytes()).unwrap();
    assert_eq!(c.ttl, 600);
    assert_eq!(c.snapshot, Some(PathBuf::from("C:/pb #1.bin")));
    assert_eq!(c.log_level, LogLevel::Warn);
    // Through a real file and --config too.
    let file = TempFile::new("crlf", text.as_bytes());
    assert_eq!(run(&["--config", &file.arg()]).unwrap(), c);
}

#[test]
fn file_size_is_capped() {
    let mut big = "# padding\n".repeat((MAX_CONFIG_FILE_BYTES / 10) as usize + 1);
    big.push_str("ttl = 30\n");
    let file = TempFile::new("big", big.as_bytes());
    let e = run(&["--config", &file.arg()]).unwrap_err();
    assert!(matches!(e, ConfigError::FileTooLarge(_)), "{e}");
    assert!(e.to_string().contains("larger than 65536 bytes"));
    assert!(matches!(
        parse_config_file(Path::new("f"), big.as_bytes()),
        Err(ConfigError::FileTooLarge(_))
    ));
}

#[test]
fn default_config_round_trips_through_print_config() {
    let text = to_config_file(&Config::default());
    assert_eq!(
        parse_config_file(Path::new("p"), text.as_bytes()).unwrap(),
        Config::default()
    );
    for setting in &SETTINGS {
        assert!(
            text.contains(&format!("\n{} = ", setting.name)),
            "{}",
            setting.name
        );
    }
}

#[test]
fn print_config_output_is_read_back_by_config() {
    let cmd = load(
        args(&[
            "--print-config",
            "--listen",
            "[fe80::1]:1",
            "--snapshot",
            " /tmp/a \"b\" ",
            "--trusted-proxies",
            "10.0.0.0/8,fd00::/8",
            "--allow-claimed-ip",
            "--log-level",
            "trace",
            "--rate-ip",
            "0",
        ]),
        &no_env,
    )
    .unwrap();
    let Command::PrintConfig(config) = cmd else {
        panic!("{cmd:?}")
    };
    let file = TempFile::new("print", to_config_file(&config).as_bytes());
    assert_eq!(run(&["--config", &file.arg()]).unwrap(), config);
    assert_eq!(config.snapshot, Some(PathBuf::from(" /tmp/a \"b\" ")));
}

/// Issue 9: `--help` shows each numeric setting's range, and that range is the one enforced.
#[test]
fn every_numeric_setting_has_its_range_in_help_and_enforced() {
    let Ok(Command::Help(text)) = load(args(&["--help"]), &no_env) else {
        panic!()
    };
    let numeric: Vec<_> = SETTINGS.iter().filter(|s| s.range.is_some()).collect();
    assert_eq!(numeric.len(), 29);
    let d = Config::default();
    for setting in numeric {
        let r = setting.range.clone().unwrap();
        let flag = format!("--{}", setting.name);
        assert!(
            text.contains(&format!("[range: {}-{}]", r.start(), r.end())),
            "{flag}"
        );
        let default: u32 = (setting.get)(&d).parse().unwrap();
        assert!(
            r.contains(&default),
            "{flag} default {default} outside {r:?}"
        );
        for ok in [*r.start(), *r.end()] {
            assert!(run(&[&flag, &ok.to_string()]).is_ok(), "{flag} {ok}");
        }
        let mut bad = vec![u64::from(*r.end()) + 1];
        if *r.start() > 0 {
            bad.push(u64::from(*r.start()) - 1);
        }
        for b in bad {
            let e = err(&[&flag, &b.to_string()]);
            let rule = format!("must be an integer from {} to {}", r.start(), r.end());
            assert!(e.contains(&rule), "{flag} {b}: {e}");
        }
    }
}

#[test]
fn help_lists_every_setting_with_default_and_env() {
    let Ok(Command::Help(text)) = load(args(&["--help"]), &no_env) else {
        panic!()
    };
    let settings = text.split_once("\nSETTINGS:").unwrap().1;
    for setting in &SETTINGS {
        let var = env_var_name(setting.name);
        let block = settings
            .split_once(&format!("--{} ", setting.name))
            .unwrap_or_else(|| panic!("{} missing", setting.name))
            .1;
        let block = &block[..block.find("\n    --").unwrap_or(block.len())];
        assert!(block.contains("[default: "), "{}", setting.name);
        assert!(block.contains(&format!("[env: {var}]")), "{}", setting.name);
        let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words(block).contains(&words(setting.doc)),
            "{}",
            setting.name
        );
        assert!(block.lines().all(|l| l.len() <= 96), "{}", setting.name);
        if let Some(r) = &setting.range {
            let shown = format!("[range: {}-{}]", r.start(), r.end());
            assert!(block.contains(&shown), "{}: {shown}", setting.name);
        }
    }
    for needle in [
        "USAGE",
        "--config PATH",
        "PI_SERVER_CONFIG",
        "--print-config",
        "[default: [::]:3000]",
        "[default: 3600]",
        "--snapshot PATH\n        Snapshot file kept across restarts; empty keeps the table in memory only.\n        [default: none]",
        "POST   /api/register",
        "GET    /api/lookup/{name}",
        "POST   /api/lookup ",
        "DELETE /api/unregister",
        "GET    /api/health",
        "GET    /metrics",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}

#[test]
fn env_var_names() {
    assert_eq!(
        env_var_name("max-header-bytes"),
        "PI_SERVER_MAX_HEADER_BYTES"
    );
    assert_eq!(env_var_name("ttl"), "PI_SERVER_TTL");
}

mod props;
