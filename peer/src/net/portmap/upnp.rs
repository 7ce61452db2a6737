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
use super::{DESCRIPTION, NoMapping, Protocol};

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

/// Maps (or renews) UDP `internal_port` of this host at `external_port`, or at any port if
/// that one is taken. With `undo_if_abandoned`, a mapping that the router grants after this
/// future was dropped is deleted again. Returns the grant and the internal address used.
pub(crate) async fn map(
    lane: &Lane,
    gateway: &Arc<Gateway>,
    local: Option<Ipv4Addr>,
    internal_port: u16,
    external_port: u16,
    lease: u32,
    undo_if_abandoned: bool,
) -> Result<(Granted, SocketAddrV4), NoMapping> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut gave_up = GaveUp(undo_if_abandoned.then(|| flag.clone()));
    let (lane, gateway) = (lane.clone(), gateway.clone());
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
        let granted = add(&gateway, internal, external_port, lease)?;
        if flag.load(Ordering::Relaxed) {
            log::debug!("port mapping: UPnP answered after the deadline; deleting the mapping");
            let _ = gateway.remove_port(PortMappingProtocol::UDP, granted.external.port());
            return Err(NoMapping::NoGateway);
        }
        Ok((granted, internal))
    })
    .await;
    gave_up.0 = None;
    result
}

/// Deletes the mapping at `external_port`. A router that no longer has it is fine.
pub(crate) async fn delete(lane: &Lane, gateway: &Arc<Gateway>, external_port: u16) {
    let (lane, gateway) = (lane.clone(), gateway.clone());
    smol::unblock(move || {
        let _turn = lane.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = gateway.remove_port(PortMappingProtocol::UDP, external_port) {
            log::debug!("port mapping: UPnP delete: {e}");
        }
    })
    .await;
}

/// The blocking part of [`map`]: the external address, then the mapping.
fn add(
    gateway: &Gateway,
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
    let udp = PortMappingProtocol::UDP;
    let to = SocketAddr::V4(internal);
    let port = match gateway.add_port(udp, external_port, to, lease, DESCRIPTION) {
        Ok(()) => external_port,
        Err(AddPortError::PortInUse) => {
            log::debug!("port mapping: UPnP external port taken, asking for any");
            gateway
                .add_any_port(udp, to, lease, DESCRIPTION)
                .map_err(|e| any_port_failure(&e))?
        }
        Err(AddPortError::OnlyPermanentLeasesSupported) => {
            // Old IGDv1 routers: a permanent mapping, refreshed like a leased one and deleted
            // on close all the same.
            log::debug!("port mapping: UPnP router takes only permanent mappings");
            gateway
                .add_port(udp, external_port, to, 0, DESCRIPTION)
                .map_err(|e| add_port_failure(&e))?;
            external_port
        }
        Err(e) => return Err(add_port_failure(&e)),
    };
    let external = SocketAddrV4::new(ip, port);
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || port == 0 {
        // miniupnpd says 0.0.0.0 when it has no usable external address.
        let _ = gateway.remove_port(udp, port);
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
