//! UPnP IGD through igd-next's blocking client, each call on one of smol's blocking threads
//! (igd-next's async API needs tokio).
//!
//! igd-next bounds each HTTP request at 10 s and its SSDP search at the timeout given; callers
//! stop waiting at their own deadline and leave the thread to finish. Two rules keep that safe:
//! a mapping added after its caller stopped waiting is deleted again by the same thread, and
//! one mapper's calls take turns on one lock ([`Lane`]), so a deletion is never overtaken by a
//! renewal still in flight.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use igd_next::{
    AddAnyPortError, AddPortError, GetExternalIpError, PortMappingProtocol, RequestError,
    SearchOptions,
};

use super::client::Granted;
use super::{DESCRIPTION, NoMapping, Protocol, Transport};

pub(crate) use igd_next::Gateway;

/// UPnP error codes (WANIPConnection:2 §2.4.16), as [`NoMapping::Refused`] reports them.
const INVALID_ARGS: u16 = 402;
const STRING_ARGUMENT_TOO_LONG: u16 = 605;
const ACTION_NOT_AUTHORIZED: u16 = 606;
const CONFLICT_IN_MAPPING_ENTRY: u16 = 718;
const SAME_PORT_VALUES_REQUIRED: u16 = 724;
const ONLY_PERMANENT_LEASES_SUPPORTED: u16 = 725;
const NO_PORT_MAPS_AVAILABLE: u16 = 728;

/// One mapper's turn-taking lock for UPnP calls.
pub(crate) type Lane = Arc<Mutex<()>>;

/// Finds the router by SSDP multicast: no side effects on it. `None` when nothing answered
/// within `timeout`. The task may be dropped; the search then ends on its own.
pub(crate) fn search(timeout: Duration, local: Option<Ipv4Addr>) -> smol::Task<Option<Gateway>> {
    smol::unblock(move || {
        let mut options = SearchOptions::default();
        options.bind_addr = SocketAddr::new(local.unwrap_or(Ipv4Addr::UNSPECIFIED).into(), 0);
        options.timeout = Some(timeout);
        options.single_search_timeout = Some(timeout);
        match igd_next::search_gateway(options) {
            Ok(gateway) => Some(gateway),
            Err(e) => {
                log::debug!("port mapping: UPnP search: {e}");
                None
            }
        }
    })
}

/// Sets a flag when dropped while armed: the future waiting for a blocking call was dropped.
struct GaveUp(Option<Arc<AtomicBool>>);

impl Drop for GaveUp {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// `NewProtocol` of the SOAP requests.
fn igd_protocol(transport: Transport) -> PortMappingProtocol {
    match transport {
        Transport::Udp => PortMappingProtocol::UDP,
        Transport::Tcp => PortMappingProtocol::TCP,
    }
}

/// Maps (or renews) `transport` port `internal_port` of this host at `external_port`, or at
/// any port if that one is taken. With `undo_if_abandoned`, a mapping that the router grants
/// after this future was dropped is deleted again. Returns the grant and the internal address
/// used.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn map(
    lane: &Lane,
    gateway: &Arc<Gateway>,
    transport: Transport,
    local: Option<Ipv4Addr>,
    internal_port: u16,
    external_port: u16,
    lease: u32,
    undo_if_abandoned: bool,
) -> Result<(Granted, SocketAddrV4), NoMapping> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut gave_up = GaveUp(undo_if_abandoned.then(|| flag.clone()));
    let (lane, gateway) = (lane.clone(), gateway.clone());
    let protocol = igd_protocol(transport);
    let result = smol::unblock(move || {
        let _turn = lane.lock().unwrap_or_else(PoisonError::into_inner);
        let ip = match local {
            Some(ip) => ip,
            None => local_ip_towards(gateway.addr).map_err(|e| {
                log::debug!("port mapping: no local address towards the UPnP router: {e}");
                NoMapping::NoGateway
            })?,
        };
        let internal = SocketAddrV4::new(ip, internal_port);
        let granted = add(&gateway, protocol, internal, external_port, lease)?;
        if flag.load(Ordering::Relaxed) {
            log::debug!("port mapping: UPnP answered after the deadline; deleting the mapping");
            let _ = gateway.remove_port(protocol, granted.external.port());
            return Err(NoMapping::NoGateway);
        }
        Ok((granted, internal))
    })
    .await;
    gave_up.0 = None;
    result
}

/// Deletes the `transport` mapping at `external_port`. A router that no longer has it is fine.
pub(crate) async fn delete(
    lane: &Lane,
    gateway: &Arc<Gateway>,
    transport: Transport,
    external_port: u16,
) {
    let (lane, gateway) = (lane.clone(), gateway.clone());
    let protocol = igd_protocol(transport);
    smol::unblock(move || {
        let _turn = lane.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = gateway.remove_port(protocol, external_port) {
            log::debug!("port mapping: UPnP delete: {e}");
        }
    })
    .await;
}

/// The blocking part of [`map`]: the external address, then the mapping.
fn add(
    gateway: &Gateway,
    protocol: PortMappingProtocol,
    internal: SocketAddrV4,
    external_port: u16,
    lease: u32,
) -> Result<Granted, NoMapping> {
    let ip = match gateway.get_external_ip() {
        Ok(IpAddr::V4(ip)) => ip,
        Ok(IpAddr::V6(_)) => return Err(NoMapping::Invalid(Protocol::Upnp)),
        Err(GetExternalIpError::ActionNotAuthorized) => return Err(refused(ACTION_NOT_AUTHORIZED)),
        Err(GetExternalIpError::RequestError(e)) => return Err(request_failure(&e)),
    };
    let to = SocketAddr::V4(internal);
    let port = match gateway.add_port(protocol, external_port, to, lease, DESCRIPTION) {
        Ok(()) => external_port,
        Err(AddPortError::PortInUse) => {
            log::debug!("port mapping: UPnP external port taken, asking for any");
            gateway
                .add_any_port(protocol, to, lease, DESCRIPTION)
                .map_err(|e| any_port_failure(&e))?
        }
        Err(AddPortError::OnlyPermanentLeasesSupported) => {
            // Old IGDv1 routers: a permanent mapping, refreshed like a leased one and deleted
            // on close all the same.
            log::debug!("port mapping: UPnP router takes only permanent mappings");
            gateway
                .add_port(protocol, external_port, to, 0, DESCRIPTION)
                .map_err(|e| add_port_failure(&e))?;
            external_port
        }
        Err(e) => return Err(add_port_failure(&e)),
    };
    let external = SocketAddrV4::new(ip, port);
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || port == 0 {
        // miniupnpd says 0.0.0.0 when it has no usable external address.
        let _ = gateway.remove_port(protocol, port);
        return Err(NoMapping::Invalid(Protocol::Upnp));
    }
    Ok(Granted {
        external,
        lifetime: lease,
    })
}

/// The source address the kernel picks for datagrams to `to` (no datagram is sent).
fn local_ip_towards(to: SocketAddr) -> io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(to)?;
    match socket.local_addr()?.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(io::ErrorKind::Unsupported.into()),
    }
}

fn refused(code: u16) -> NoMapping {
    NoMapping::Refused {
        protocol: Protocol::Upnp,
        code,
    }
}

/// A SOAP fault is a refusal with its UPnP error code; no answer at all means the router is gone.
fn request_failure(e: &RequestError) -> NoMapping {
    log::debug!("port mapping: UPnP request: {e}");
    match e {
        RequestError::ErrorCode(code, _) => refused(*code),
        _ => NoMapping::NoGateway,
    }
}

fn add_port_failure(e: &AddPortError) -> NoMapping {
    match e {
        AddPortError::ActionNotAuthorized => refused(ACTION_NOT_AUTHORIZED),
        AddPortError::PortInUse => refused(CONFLICT_IN_MAPPING_ENTRY),
        AddPortError::SamePortValuesRequired => refused(SAME_PORT_VALUES_REQUIRED),
        AddPortError::OnlyPermanentLeasesSupported => refused(ONLY_PERMANENT_LEASES_SUPPORTED),
        AddPortError::DescriptionTooLong => refused(STRING_ARGUMENT_TOO_LONG),
        AddPortError::RequestError(e) => request_failure(e),
        AddPortError::InternalPortZeroInvalid | AddPortError::ExternalPortZeroInvalid => {
            refused(INVALID_ARGS)
        }
    }
}

fn any_port_failure(e: &AddAnyPortError) -> NoMapping {
    match e {
        AddAnyPortError::ActionNotAuthorized => refused(ACTION_NOT_AUTHORIZED),
        AddAnyPortError::NoPortsAvailable => refused(NO_PORT_MAPS_AVAILABLE),
        AddAnyPortError::ExternalPortInUse => refused(CONFLICT_IN_MAPPING_ENTRY),
        AddAnyPortError::OnlyPermanentLeasesSupported => refused(ONLY_PERMANENT_LEASES_SUPPORTED),
        AddAnyPortError::DescriptionTooLong => refused(STRING_ARGUMENT_TOO_LONG),
        AddAnyPortError::RequestError(e) => request_failure(e),
        AddAnyPortError::InternalPortZeroInvalid => refused(INVALID_ARGS),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    const SERVICE: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";
    /// The external address the fake router reports.
    pub(crate) const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

    /// A UPnP router's control URL on loopback: answers `GetExternalIPAddress`,
    /// `AddPortMapping` and `DeletePortMapping` with success and records each SOAP request as
    /// (action, body).
    pub(crate) struct FakeIgd {
        pub(crate) gateway: Arc<Gateway>,
        pub(crate) requests: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl FakeIgd {
        pub(crate) fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let log = requests.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    if let Some((action, body)) = read_request(&mut stream) {
                        let reply = reply_to(&action);
                        log.lock().unwrap().push((action, body));
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{reply}",
                            reply.len()
                        );
                    }
                }
            });
            let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let schema = HashMap::from([
                (
                    "AddPortMapping".to_string(),
                    args(&[
                        "NewRemoteHost",
                        "NewExternalPort",
                        "NewProtocol",
                        "NewInternalPort",
                        "NewInternalClient",
                        "NewEnabled",
                        "NewPortMappingDescription",
                        "NewLeaseDuration",
                    ]),
                ),
                (
                    "DeletePortMapping".to_string(),
                    args(&["NewRemoteHost", "NewExternalPort", "NewProtocol"]),
                ),
            ]);
            let gateway = Gateway {
                addr,
                root_url: "/rootDesc.xml".into(),
                control_url: "/ctl/IPConn".into(),
                control_schema_url: "/WANIPCn.xml".into(),
                control_schema: schema,
                service_type: SERVICE.into(),
            };
            Self {
                gateway: Arc::new(gateway),
                requests,
            }
        }

        /// The recorded requests of one action.
        pub(crate) fn bodies(&self, action: &str) -> Vec<String> {
            let requests = self.requests.lock().unwrap();
            let wanted = format!("{SERVICE}#{action}");
            requests
                .iter()
                .filter(|(a, _)| a.trim_matches('"') == wanted)
                .map(|(_, b)| b.clone())
                .collect()
        }
    }

    /// One HTTP request: its SOAPAction header and body.
    fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, String)> {
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("Content-Length")?.parse().ok()?;
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        Some((header("SOAPAction")?, body))
    }

    fn reply_to(action: &str) -> String {
        let name = action.trim_matches('"').rsplit('#').next().unwrap_or("");
        let inner = match name {
            "GetExternalIPAddress" => {
                format!("<NewExternalIPAddress>{EXTERNAL_IP}</NewExternalIPAddress>")
            }
            _ => String::new(),
        };
        format!(
            "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
             <u:{name}Response xmlns:u=\"{SERVICE}\">{inner}</u:{name}Response></s:Body></s:Envelope>"
        )
    }

    /// The text of `<tag>` in a SOAP body.
    pub(crate) fn arg(body: &str, tag: &str) -> Option<String> {
        let open = format!("<{tag}>");
        let start = body.find(&open)? + open.len();
        let end = start + body[start..].find(&format!("</{tag}>"))?;
        Some(body[start..end].to_string())
    }

    #[test]
    fn soap_bodies_name_the_transport() {
        let igd = FakeIgd::start();
        let lane = Lane::default();
        let local = Some(Ipv4Addr::LOCALHOST);
        smol::block_on(async {
            for (transport, port) in [(Transport::Tcp, 4100), (Transport::Udp, 4000)] {
                let (granted, internal) = map(
                    &lane,
                    &igd.gateway,
                    transport,
                    local,
                    port,
                    port,
                    7200,
                    true,
                )
                .await
                .unwrap();
                assert_eq!(granted.external, SocketAddrV4::new(EXTERNAL_IP, port));
                assert_eq!(internal, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
                delete(&lane, &igd.gateway, transport, port).await;
            }
        });
        let adds = igd.bodies("AddPortMapping");
        assert_eq!(adds.len(), 2, "{adds:?}");
        let expect = [("TCP", "4100"), ("UDP", "4000")];
        for (body, (protocol, port)) in adds.iter().zip(expect) {
            assert!(body.contains(&format!("<u:AddPortMapping xmlns:u=\"{SERVICE}\">")));
            assert_eq!(arg(body, "NewProtocol").as_deref(), Some(protocol));
            assert_eq!(arg(body, "NewExternalPort").as_deref(), Some(port));
            assert_eq!(arg(body, "NewInternalPort").as_deref(), Some(port));
            assert_eq!(arg(body, "NewInternalClient").as_deref(), Some("127.0.0.1"));
            assert_eq!(arg(body, "NewLeaseDuration").as_deref(), Some("7200"));
            assert_eq!(
                arg(body, "NewPortMappingDescription").as_deref(),
                Some(DESCRIPTION)
            );
        }
        let deletes = igd.bodies("DeletePortMapping");
        assert_eq!(deletes.len(), 2, "{deletes:?}");
        for (body, (protocol, port)) in deletes.iter().zip(expect) {
            assert_eq!(arg(body, "NewProtocol").as_deref(), Some(protocol));
            assert_eq!(arg(body, "NewExternalPort").as_deref(), Some(port));
        }
    }
}
