//! Property tests: every valid configuration survives `--print-config` and `--config`, and no
//! config-file text makes the parser panic.

use super::*;
use crate::config::{AltPort, UdpListen};

fn arb_cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            let addr = IpAddr::V4(a.into());
            Cidr {
                addr: crate::config::mask(addr, p),
                prefix: p,
            }
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
            let addr = IpAddr::V6(a.into());
            Cidr {
                addr: crate::config::mask(addr, p),
                prefix: p,
            }
        }),
    ]
    .prop_filter("not IPv4-mapped", |c| match c.addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => true,
    })
}

fn arb_config() -> impl Strategy<Value = Config> {
    (
        (
            (any::<IpAddr>(), any::<u16>()).prop_map(SocketAddr::from),
            proptest::option::of("[^\r\n]{1,40}"),
        ),
        (
            1u32..=86_400,
            1u32..=50_000_000,
            10u32..=604_800,
            0u32..=2_592_000,
        ),
        (
            1u32..=86_400,
            1u32..=1_000_000,
            proptest::collection::vec(arb_cidr(), 0..5),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::sample::select(LogLevel::ALL.to_vec()),
        ),
        (
            1024u32..=1_048_576,
            1024u32..=1_048_576,
            1u32..=3600,
            1u32..=3600,
        ),
        (
            0u32..=1_000_000,
            1u32..=1_000_000,
            0u32..=1_000_000,
            1u32..=1_000_000,
        ),
        (
            0u32..=100_000_000,
            proptest::sample::select(ProxyHeader::ALL.to_vec()),
            (
                1u32..=50_000_000,
                0u32..=100_000_000,
                0u32..=100_000_000,
                32u32..=64,
            ),
        ),
        (
            prop_oneof![
                Just(UdpListen::SameAsHttp),
                Just(UdpListen::Off),
                (any::<IpAddr>(), any::<u16>()).prop_map(|a| UdpListen::At(SocketAddr::from(a))),
            ],
            prop_oneof![
                Just(AltPort::Next),
                Just(AltPort::Off),
                (1u16..).prop_map(AltPort::Port),
            ],
            (0u32..=1_000_000, 1u32..=1_000_000),
            1u32..=10_000,
            30u32..=3600,
        ),
        (
            proptest::option::of((any::<IpAddr>(), any::<u16>()).prop_map(SocketAddr::from)),
            proptest::option::of(Just("relay.example.org".to_string())),
            (1u32..=100_000, 1u32..=1024),
            (0u32..=4_000_000_000, 0u32..=4_000_000_000),
            10u32..=3600,
        ),
        (
            (
                proptest::option::of("[^\r\n]{1,40}"),
                proptest::option::of("[^\r\n]{1,40}"),
            ),
            1u32..=120,
            proptest::option::of(Just("pb.example.org".to_string())),
            proptest::option::of(Just("admin@example.org".to_string())),
            proptest::sample::select(vec![
                crate::config::LETS_ENCRYPT_DIRECTORY.to_string(),
                "https://localhost:14000/dir".to_string(),
            ]),
            (
                proptest::option::of("[^\r\n]{1,40}"),
                proptest::option::of("[^\r\n]{1,40}"),
            ),
        ),
    )
        .prop_map(|(a, b, c, d, e, f, g, u, r, t)| Config {
            listen: a.0,
            snapshot: a.1.map(PathBuf::from),
            snapshot_interval: b.0,
            capacity: b.1,
            ttl: b.2,
            retention: b.3,
            max_skew: c.0,
            max_connections: c.1,
            trusted_proxies: c.2,
            proxy_header: g.1,
            allow_claimed_ip: d.0,
            metrics_public: d.1,
            log_level: d.2,
            max_header_bytes: e.0,
            max_body_bytes: e.1,
            read_timeout: e.2,
            idle_timeout: e.3,
            rate_ip: f.0,
            rate_ip_burst: f.1,
            rate_key: f.2,
            rate_key_burst: f.3,
            friend_keys_total: g.0,
            max_records_per_address: g.2.0,
            max_friend_keys_per_address: g.2.1,
            max_friend_keys_per_key: g.2.2,
            quota_ipv6_prefix: g.2.3,
            udp_listen: u.0,
            udp_alt_port: u.1,
            udp_rate: u.2.0,
            udp_rate_burst: u.2.1,
            punch_rate: u.3,
            udp_mapping_ttl: u.4,
            relay_listen: r.0,
            relay_host: r.1,
            relay_max_connections: r.2.0,
            relay_max_sessions: r.2.1,
            relay_rate: r.3.0,
            relay_rate_total: r.3.1,
            relay_idle: r.4,
            tls_cert: t.0.0.map(PathBuf::from),
            tls_key: t.0.1.map(PathBuf::from),
            tls_handshake_timeout: t.1,
            acme_domain: t.2,
            acme_contact: t.3,
            acme_directory: t.4,
            acme_ca_root: t.5.0.map(PathBuf::from),
            acme_dir: t.5.1.map(PathBuf::from),
            redis_url: None,
            redis_prefix: "pb".to_owned(),
            redis_ca: None,
        })
}

proptest! {
    #[test]
    fn any_valid_config_round_trips(config in arb_config()) {
        let text = to_config_file(&config);
        let back = parse_config_file(Path::new("p"), text.as_bytes()).unwrap();
        prop_assert_eq!(back, config);
    }

    #[test]
    fn config_file_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_config_file(Path::new("p"), &bytes);
    }

    #[test]
    fn config_file_lines_never_panic(lines in proptest::collection::vec(
        (proptest::sample::select(vec!["ttl", "listen", "trusted-proxies", "snapshot", "log-level", "x"]),
         "[ -~\t\r]{0,30}"), 0..6)) {
        let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        if let Ok(config) = parse_config_file(Path::new("p"), text.as_bytes()) {
            let again = parse_config_file(Path::new("p"), to_config_file(&config).as_bytes());
            prop_assert_eq!(again.unwrap(), config);
        }
    }
}
