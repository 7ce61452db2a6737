//! Port mapping against a real miniupnpd (UPnP, NAT-PMP and PCP) in network namespaces: UDP
//! (the QUIC socket) and TCP (a peer relay's listener).
//! Needs root, `ip` (iproute2), `nft` (nftables) and `miniupnpd` (miniupnpd-nftables);
//! without them it prints why it skipped.
//!
//! ```text
//!  client ns              router ns                              wan ns
//!  192.168.77.2 ──LAN── 192.168.77.1  [nftables NAT]  203.0.113.2 ──WAN── 203.0.113.1
//!  (the mapper)          miniupnpd on the LAN side                (fake STUN, senders)
//! ```
//!
//! miniupnpd refuses to map when its WAN address is private or reserved, as RFC 5737
//! addresses are, unless a STUN server says the address is public and unfiltered: the WAN
//! namespace runs a tiny STUN responder (`Role::Stun`) that says so.
//!
//! The sides of the lab run as child processes of this test binary: `ip netns exec NS
//! <this binary> portmap::netns_role --exact` with `PEER_PORTMAP_TEST_ROLE` naming the role.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peer::Spawner;
use peer::net::portmap::{
    NoMapping, PortMapConfig, PortMapper, Protocol, Status, Transport, natpmp,
};

const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const CLIENT_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const ROUTER_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const WAN_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const STUN_PORT: u16 = 3478;
/// The lease the clients ask for: short, so that renewals happen during the test. Not
/// shorter: miniupnpd counts in whole seconds, so a lease of n seconds may end after n - 1,
/// and a renewal at half of 2 s can come too late.
const LEASE: Duration = Duration::from_secs(4);
/// A port mapped by hand, never renewed: miniupnpd must expire it (so that a mapping that
/// outlives its lease in the test was renewed).
const CONTROL_PORT: u16 = 1999;
/// The bound the mapper promises for start-up, plus scheduling slack on a busy machine.
const START_BOUND: Duration = Duration::from_millis(2500);
/// How long a lab process may take (miniupnpd's start, a datagram, a deletion).
const WAIT: Duration = Duration::from_secs(10);
const ROLE: &str = "PEER_PORTMAP_TEST_ROLE";

/// The router's nftables: a NAT with empty chains for miniupnpd to fill.
const ROUTER_RULES: &str = r#"
table inet pmrouter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "LAN" accept
    jump upnp_forward
  }
  chain upnp_forward {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump upnp_prerouting
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump upnp_postrouting
    oifname "WAN" masquerade
  }
  chain upnp_prerouting {
  }
  chain upnp_postrouting {
  }
}
"#;

#[test]
fn miniupnpd_maps_renews_and_deletes_with_upnp_natpmp_and_pcp() {
    if let Some(why) = missing_requirements() {
        eprintln!(
            "skipped: needs root, ip, nft, sysctl and miniupnpd (apt-get install iproute2 nftables procps miniupnpd-nftables): {why}"
        );
        return;
    }
    let mut lab = Lab::new();

    // No router daemon yet: start-up says "none", within its bound.
    lab.client("all", "none").finish();

    lab.start_router();
    // One client per protocol, at once (each on its own port), and one with all three, which
    // must pick PCP.
    let clients: Vec<_> = [
        ("upnp", "upnp"),
        ("natpmp", "natpmp"),
        ("pcp", "pcp"),
        ("all", "pcp"),
    ]
    .into_iter()
    .map(|(protocols, expect)| lab.client(protocols, expect))
    .collect();
    for client in clients {
        client.finish();
    }
    // A peer relay's TCP port, with each protocol.
    let clients: Vec<_> = [
        ("upnp", "upnp"),
        ("natpmp", "natpmp"),
        ("pcp", "pcp"),
        ("all", "pcp"),
    ]
    .into_iter()
    .map(|(protocols, expect)| lab.tcp_client(protocols, expect))
    .collect();
    for client in clients {
        client.finish();
    }
}

/// What the child processes do, by `PEER_PORTMAP_TEST_ROLE`; nothing in a normal test run.
#[test]
fn netns_role() {
    match std::env::var(ROLE).as_deref() {
        Ok("stun") => stun_role(),
        Ok("send") => send_role(),
        Ok("client") => client_role(),
        Ok("tcp_client") => tcp_client_role(),
        Ok("connect") => connect_role(),
        _ => {}
    }
}

fn env(name: &str) -> String {
    std::env::var(format!("PEER_PORTMAP_TEST_{name}")).unwrap_or_default()
}

/// Why the lab cannot run here, if it cannot.
fn missing_requirements() -> Option<String> {
    if std::env::var_os("PB_NO_NETNS_TESTS").is_some() {
        return Some(
            "PB_NO_NETNS_TESTS is set (the cross test under qemu-user; the host run covers it)"
                .into(),
        );
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for (tool, arg) in [
        ("ip", "-V"),
        ("nft", "--version"),
        ("miniupnpd", "--version"),
        ("sysctl", "-V"),
    ] {
        match Command::new(tool).arg(arg).output() {
            Ok(_) => {}
            Err(e) => return Some(format!("`{tool}`: {e}")),
        }
    }
    None
}

/// Runs a command; panics with its output if it fails.
fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Three namespaces, their links, and the processes started in them; all gone on drop.
struct Lab {
    wan: String,
    router: String,
    client: String,
    /// The router's interfaces.
    lan_if: String,
    wan_if: String,
    dir: PathBuf,
    daemons: Vec<Child>,
}

impl Lab {
    fn new() -> Self {
        let id = std::process::id();
        let lab = Self {
            wan: format!("pm-{id}-wan"),
            router: format!("pm-{id}-router"),
            client: format!("pm-{id}-client"),
            lan_if: format!("pm{id}rl"),
            wan_if: format!("pm{id}rw"),
            dir: std::env::temp_dir().join(format!("peer-portmap-{id}")),
            daemons: Vec::new(),
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        let (lan, lan_peer, wan, wan_peer) = (
            &lab.lan_if,
            &format!("pm{id}cl"),
            &lab.wan_if,
            &format!("pm{id}ww"),
        );
        for ns in [&lab.wan, &lab.router, &lab.client] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (a, a_ns, b, b_ns) in [
            (lan, &lab.router, lan_peer, &lab.client),
            (wan, &lab.router, wan_peer, &lab.wan),
        ] {
            run(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
            run(&["ip", "link", "set", a, "netns", a_ns]);
            run(&["ip", "link", "set", b, "netns", b_ns]);
        }
        for (ns, dev, addr) in [
            (&lab.router, lan, format!("{ROUTER_LAN}/24")),
            (&lab.client, lan_peer, format!("{CLIENT_LAN}/24")),
            (&lab.router, wan, format!("{ROUTER_WAN}/24")),
            (&lab.wan, wan_peer, format!("{WAN_HOST}/24")),
        ] {
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        run(&[
            "ip",
            "-n",
            &lab.client,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_LAN.to_string(),
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &lab.router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let rules = lab.dir.join("router.nft");
        std::fs::write(&rules, ROUTER_RULES.replace("LAN", lan).replace("WAN", wan)).unwrap();
        run(&[
            "ip",
            "netns",
            "exec",
            &lab.router,
            "nft",
            "-f",
            rules.to_str().unwrap(),
        ]);
        lab
    }

    /// Starts the STUN responder on the WAN side and miniupnpd on the router, and waits until
    /// miniupnpd has checked its address and listens.
    fn start_router(&mut self) {
        let stun = self.spawn_role(&self.wan.clone(), "stun", &[]);
        self.daemons.push(stun);
        let (lan, wan) = (&self.lan_if, &self.wan_if);
        let config = self.dir.join("miniupnpd.conf");
        let pid_file = self.dir.join("miniupnpd.pid");
        std::fs::write(
            &config,
            format!(
                "ext_ifname={wan}\nlistening_ip={lan}\nport=0\n\
                 enable_upnp=yes\nenable_natpmp=yes\nsecure_mode=yes\nsystem_uptime=no\n\
                 ext_perform_stun=yes\next_stun_host={WAN_HOST}\next_stun_port={STUN_PORT}\n\
                 lease_file={}\nmin_lifetime=2\nmax_lifetime=86400\n\
                 uuid=3b3f5a3e-5a4e-4c2b-9d0a-1b2c3d4e5f60\n\
                 upnp_table_name=pmrouter\nupnp_nat_table_name=pmrouter\n\
                 upnp_forward_chain=upnp_forward\nupnp_nat_chain=upnp_prerouting\n\
                 upnp_nat_postrouting_chain=upnp_postrouting\n\
                 allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
                self.dir.join("leases").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("miniupnpd.log")).unwrap();
        let daemon = Command::new("ip")
            .args(["netns", "exec", &self.router, "miniupnpd", "-d", "-f"])
            .arg(&config)
            .arg("-P")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons.push(daemon);
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(self.dir.join("miniupnpd.log")).unwrap();
            if log.contains("Listening for NAT-PMP/PCP traffic") {
                assert!(
                    log.contains("Port forwarding is now enabled"),
                    "miniupnpd:\n{log}"
                );
                break;
            }
            assert!(start.elapsed() < WAIT, "miniupnpd did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client role in the client namespace: maps with `protocols`, expects `expect`.
    fn client(&self, protocols: &str, expect: &str) -> RoleChild {
        let child = self.spawn_role(
            &self.client,
            "client",
            &[
                ("PROTOCOLS", protocols),
                ("EXPECT", expect),
                ("ROUTER_NS", &self.router),
                ("WAN_NS", &self.wan),
            ],
        );
        RoleChild {
            what: format!("client {protocols}"),
            child,
        }
    }

    /// A client role mapping a TCP listener's port.
    fn tcp_client(&self, protocols: &str, expect: &str) -> RoleChild {
        let child = self.spawn_role(
            &self.client,
            "tcp_client",
            &[
                ("PROTOCOLS", protocols),
                ("EXPECT", expect),
                ("ROUTER_NS", &self.router),
                ("WAN_NS", &self.wan),
            ],
        );
        RoleChild {
            what: format!("TCP client {protocols}"),
            child,
        }
    }

    fn spawn_role(&self, ns: &str, role: &str, vars: &[(&str, &str)]) -> Child {
        role_command(ns, role, vars).spawn().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        for ns in [&self.client, &self.router, &self.wan] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.dir.join("miniupnpd.log"))
        {
            eprintln!("miniupnpd's log:\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ip netns exec NS <this test binary> portmap::netns_role` as `role`.
fn role_command(ns: &str, role: &str, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "portmap::netns_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        cmd.env(format!("PEER_PORTMAP_TEST_{name}"), value);
    }
    cmd
}

/// A role process whose success the test requires.
struct RoleChild {
    what: String,
    child: Child,
}

impl RoleChild {
    fn finish(self) {
        let out = self.child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{} failed:\n{text}", self.what);
        // libtest prints "test portmap::netns_role ... " before the role's first line.
        for line in text
            .lines()
            .filter_map(|l| l.find("portmap: ").map(|at| &l[at..]))
        {
            eprintln!("{line}");
        }
    }
}

/// STUN responder: every Binding Request gets a Binding Response whose MAPPED-ADDRESS is the
/// request's source (RFC 5389 §15.1): "your address is public".
fn stun_role() {
    let socket = UdpSocket::bind((WAN_HOST, STUN_PORT)).unwrap();
    let mut buf = [0u8; 1500];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        if n < 20 || buf[..2] != [0, 1] {
            continue;
        }
        let SocketAddr::V4(from) = from else { continue };
        let mut reply = vec![0x01, 0x01, 0, 12];
        reply.extend_from_slice(&buf[4..20]); // magic cookie and transaction id
        reply.extend_from_slice(&[0, 1, 0, 8, 0, 1]); // MAPPED-ADDRESS, 8 bytes, IPv4
        reply.extend_from_slice(&from.port().to_be_bytes());
        reply.extend_from_slice(&from.ip().octets());
        let _ = socket.send_to(&reply, from);
    }
}

/// Sends `TOKEN` to `TARGET` from the WAN side, a few times.
fn send_role() {
    let socket = UdpSocket::bind((WAN_HOST, 0)).unwrap();
    for _ in 0..10 {
        socket
            .send_to(env("TOKEN").as_bytes(), env("TARGET"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects to `TARGET` over TCP from the WAN side and sends `TOKEN`, a few times.
fn connect_role() {
    let target: SocketAddr = env("TARGET").parse().unwrap();
    for _ in 0..10 {
        if let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            let _ = stream.write_all(env("TOKEN").as_bytes());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The mapper of a TCP listener's port (a peer relay's) in the client namespace, checked
/// against the router's own state.
fn tcp_client_role() {
    let protocols = env("PROTOCOLS");
    let all = protocols == "all";
    let config = PortMapConfig {
        upnp: all || protocols == "upnp",
        pcp: all || protocols == "pcp",
        natpmp: all || protocols == "natpmp",
        lease: LEASE,
        ..Default::default()
    };
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let local = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let router = Router(env("ROUTER_NS"));

    smol::block_on(async {
        let mapper = PortMapper::start_for(Transport::Tcp, local, config, &Spawner::Global).await;
        let mapping = mapper
            .mapping()
            .unwrap_or_else(|| panic!("{:?}", mapper.status()));
        let protocol = match env("EXPECT").as_str() {
            "upnp" => Protocol::Upnp,
            "natpmp" => Protocol::NatPmp,
            _ => Protocol::Pcp,
        };
        assert_eq!(mapping.protocol, protocol);
        assert_eq!(mapping.transport, Transport::Tcp);
        assert_eq!(mapping.internal, SocketAddr::from((CLIENT_LAN, port)));
        assert_eq!(mapping.external.ip(), ROUTER_WAN);
        assert_eq!(mapping.external.port(), port, "the same port when free");
        println!("portmap: {protocols} TCP: mapped by {protocol}");

        assert!(router.forwards_tcp(mapping.external.port(), mapping.internal));
        assert_accepts(&listener, mapping.external);

        smol::Timer::after(LEASE * 3 / 2).await;
        assert_eq!(mapper.mapping(), Some(mapping));
        assert!(
            router.forwards_tcp(mapping.external.port(), mapping.internal),
            "not renewed"
        );
        assert_accepts(&listener, mapping.external);
        println!("portmap: {protocols} TCP: renewed");

        mapper.close().await;
        assert!(
            !router.forwards_tcp(mapping.external.port(), mapping.internal),
            "not deleted"
        );
        println!("portmap: {protocols} TCP: deleted on close");
    });
}

/// A TCP connection from the WAN host to `external` arrives at `listener` (non-blocking) and
/// carries the token. Up to three connecting processes, each given a third of `WAIT`.
fn assert_accepts(listener: &TcpListener, external: SocketAddr) {
    let token = format!("hello {}", listener.local_addr().unwrap().port());
    let target = external.to_string();
    let vars = [("TOKEN", token.as_str()), ("TARGET", target.as_str())];
    let mut got = None;
    for _ in 0..3 {
        let mut sender = role_command(&env("WAN_NS"), "connect", &vars)
            .spawn()
            .unwrap();
        let start = Instant::now();
        got = loop {
            match listener.accept() {
                Ok((mut stream, from)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut buf = vec![0u8; token.len()];
                    if stream.read_exact(&mut buf).is_ok() && buf == token.as_bytes() {
                        break Some(from);
                    }
                }
                _ if start.elapsed() > WAIT / 3 => break None,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let _ = sender.kill();
        let _ = sender.wait();
        if got.is_some() {
            break;
        }
        println!("portmap: no connection from one sender to {external}; another one");
    }
    assert_eq!(
        got.map(|from| from.ip()),
        Some(WAN_HOST.into()),
        "no connection arrived"
    );
}

/// The mapper in the client namespace, checked against the router's own state.
fn client_role() {
    let protocols = env("PROTOCOLS");
    let all = protocols == "all";
    let config = PortMapConfig {
        upnp: all || protocols == "upnp",
        pcp: all || protocols == "pcp",
        natpmp: all || protocols == "natpmp",
        lease: LEASE,
        ..Default::default()
    };
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let local = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let router = Router(env("ROUTER_NS"));

    smol::block_on(async {
        let start = Instant::now();
        let mapper = PortMapper::start(local, config, &Spawner::Global).await;
        let took = start.elapsed();
        let expect = env("EXPECT");
        if expect == "none" {
            assert_eq!(mapper.status(), Status::Unmapped(NoMapping::NoGateway));
            assert!(took < START_BOUND, "start-up took {took:?}");
            println!("portmap: {protocols}: no gateway, start-up returned in {took:?}");
            return;
        }
        let mapping = mapper
            .mapping()
            .unwrap_or_else(|| panic!("{:?}", mapper.status()));
        let protocol = match expect.as_str() {
            "upnp" => Protocol::Upnp,
            "natpmp" => Protocol::NatPmp,
            _ => Protocol::Pcp,
        };
        assert_eq!(mapping.protocol, protocol);
        assert_eq!(mapping.internal, SocketAddr::from((CLIENT_LAN, port)));
        assert_eq!(mapping.external.ip(), ROUTER_WAN);
        assert_eq!(mapping.external.port(), port, "the same port when free");
        assert_eq!(mapping.lease, LEASE);
        println!("portmap: {protocols}: mapped by {protocol} in {took:?}");

        // The router forwards it: the rule exists and a datagram from the WAN arrives.
        assert!(router.forwards(mapping.external.port(), mapping.internal));
        assert_reaches(&socket, mapping.external);

        if protocol == Protocol::NatPmp {
            control_mapping_expires(&router);
        }

        // One and a half leases later it still does: it was renewed.
        smol::Timer::after(LEASE * 3 / 2).await;
        assert_eq!(mapper.mapping(), Some(mapping));
        assert!(
            router.forwards(mapping.external.port(), mapping.internal),
            "not renewed"
        );
        assert_reaches(&socket, mapping.external);
        println!("portmap: {protocols}: renewed");

        mapper.close().await;
        assert!(
            !router.forwards(mapping.external.port(), mapping.internal),
            "not deleted"
        );
        println!("portmap: {protocols}: deleted on close");
    });
}

/// The router namespace, as seen through `nft`.
struct Router(String);

impl Router {
    /// Whether miniupnpd's NAT chain forwards `external_port` to `internal`.
    fn forwards(&self, external_port: u16, internal: SocketAddr) -> bool {
        let ns = &self.0;
        let out = run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "nft",
            "list",
            "chain",
            "inet",
            "pmrouter",
            "upnp_prerouting",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("dport {external_port} dnat ip to {internal}"))
    }

    /// Whether miniupnpd's NAT chain forwards TCP `external_port` to `internal`.
    fn forwards_tcp(&self, external_port: u16, internal: SocketAddr) -> bool {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.0,
            "nft",
            "list",
            "chain",
            "inet",
            "pmrouter",
            "upnp_prerouting",
        ]);
        // miniupnpd matches the IPv4 protocol byte: `@nh,72,8 0x6 th dport ...` (0x11: UDP).
        let rule = format!("dport {external_port} dnat ip to {internal}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| (l.contains("@nh,72,8 0x6 ") || l.contains("tcp dport")) && l.contains(&rule))
    }
}

/// A datagram sent from the WAN host to `external` arrives on `socket`. Up to three senders,
/// each from a new source port (a fresh flow for the router's connection tracking), each given
/// a third of `WAIT`.
fn assert_reaches(socket: &UdpSocket, external: SocketAddr) {
    let token = format!("hello {}", socket.local_addr().unwrap().port());
    let target = external.to_string();
    let vars = [("TOKEN", token.as_str()), ("TARGET", target.as_str())];
    let mut buf = [0u8; 64];
    let mut got = None;
    for _ in 0..3 {
        let mut sender = role_command(&env("WAN_NS"), "send", &vars).spawn().unwrap();
        let start = Instant::now();
        got = loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if buf[..n] == *token.as_bytes() => break Some(from),
                _ if start.elapsed() > WAIT / 3 => break None,
                _ => {}
            }
        };
        let _ = sender.kill();
        let _ = sender.wait();
        if got.is_some() {
            break;
        }
        println!("portmap: nothing from one sender to {external}; another one");
    }
    assert_eq!(
        got.map(|from| from.ip()),
        Some(WAN_HOST.into()),
        "nothing arrived"
    );
}

/// A NAT-PMP mapping made by hand and never renewed disappears when its lease ends: so a
/// mapping that outlives its lease was renewed.
fn control_mapping_expires(router: &Router) {
    let socket = UdpSocket::bind((CLIENT_LAN, 0)).unwrap();
    socket.connect((ROUTER_LAN, 5351)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let request = natpmp::Request::MapUdp {
        internal_port: CONTROL_PORT,
        suggested_port: CONTROL_PORT,
        lifetime: 2,
    };
    socket.send(&request.encode()).unwrap();
    let mut buf = [0u8; 16];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(natpmp::Response::decode(&buf[..n]).map(|r| r.result), Ok(0));
    let internal = SocketAddr::from((CLIENT_LAN, CONTROL_PORT));
    assert!(router.forwards(CONTROL_PORT, internal));
    let start = Instant::now();
    while router.forwards(CONTROL_PORT, internal) {
        assert!(start.elapsed() < WAIT, "miniupnpd kept an expired mapping");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "portmap: control: an unrenewed mapping expired after {:?}",
        start.elapsed()
    );
}
