//! Staying reachable while serving: keep-alives to the phone books (so they can forward punch
//! requests and relay calls to us), a listening connection at each friend's peer relay, a port mapped on our router (UPnP IGD, NAT-PMP or PCP) and
//! the signed address candidates published from both, kept up to date. One call for the CLI's
//! `serve` and for [`Node`](crate::Node).

use std::sync::Arc;
use std::time::Duration;

use phonebook_proto::Candidate;

use crate::net::portmap::{Mapping, PortMapConfig, PortMapper, Status};
use crate::net::traversal::{Discovery, Traversal};

/// How long start-up waits for the phone books' UDP services before publishing candidates.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// What [`Reach::start`] found.
#[derive(Debug, Clone)]
pub struct Reached {
    /// How our NAT maps.
    pub discovery: Discovery,
    /// The candidates published.
    pub candidates: Vec<Candidate>,
    /// The port mapped on our router, if any.
    pub mapping: Option<Mapping>,
    /// Why none was mapped (`None` with port mapping off).
    pub mapper_status: Option<Status>,
}

/// The tasks that keep us reachable; dropping them stops them (call [`Reach::close`] to also
/// remove the router's mapping now rather than when its lease ends).
#[derive(Debug)]
pub struct Reach {
    tasks: Vec<smol::Task<()>>,
    mapper: Option<Arc<PortMapper>>,
}

impl Reach {
    /// Starts keep-alives, maps a port unless `portmap` is off (or the socket is on loopback),
    /// publishes candidates (waiting
    /// at most [`PUBLISH_WAIT`] for the phone books) and follows the mapping's changes.
    pub async fn start(traversal: &Arc<Traversal>, portmap: bool) -> (Reach, Reached) {
        let mut tasks = Vec::new();
        // Keep-alives first: until a phone book holds our mapping it cannot tell us that a
        // player wants to connect.
        let again = traversal.clone();
        tasks.push(traversal.keep_alive(move |observed| again.update_reflexive(observed)));
        // Friends' peer relays cannot call us: a listening connection at each.
        tasks.push(traversal.hold_peer_relays());
        let endpoint = traversal.endpoint();
        // A socket on loopback cannot be forwarded to (and tests stay off the real network).
        let mapper = match (portmap, endpoint.local_addr()) {
            (true, Ok(local)) if !local.ip().is_loopback() => {
                Some(PortMapper::start(local, PortMapConfig::default(), endpoint.spawner()).await)
            }
            _ => None,
        };
        let mapping = mapper.as_ref().and_then(|m| m.mapping());
        let (discovery, candidates) = traversal
            .publish_candidates(mapping.map(|m| m.external), PUBLISH_WAIT)
            .await;
        let mapper_status = mapper.as_ref().map(|m| m.status());
        let mapper = mapper.map(Arc::new);
        if let Some(m) = &mapper {
            let (watched, t) = (m.clone(), traversal.clone());
            tasks.push(endpoint.spawner().spawn(async move {
                let mut seen = watched.status();
                loop {
                    seen = watched.changed(&seen).await;
                    t.update_mapped(watched.mapping().map(|m| m.external));
                }
            }));
        }
        (
            Reach { tasks, mapper },
            Reached {
                discovery,
                candidates,
                mapping,
                mapper_status,
            },
        )
    }

    /// Stops the tasks and removes the router's mapping.
    pub async fn close(self) {
        drop(self.tasks);
        if let Some(m) = self.mapper.and_then(Arc::into_inner) {
            m.close().await;
        }
    }
}
