//! `peer netcheck`: what this network lets through, in words a player understands.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use peer::PhoneBook;
use peer::net::portmap::Status;
use peer::net::traversal::local;
use peer::net::traversal::{MappingBehaviour, Traversal};

/// Runs every check (a few seconds) and returns the report.
pub async fn run(traversal: &Arc<Traversal>, book: &PhoneBook, portmap: Option<Status>) -> String {
    let mut r = String::new();
    let d = traversal.discover().await;
    let observed = traversal.keep_alive_once().await;
    let reachable = if observed.is_some() {
        traversal
            .reachable_by_phonebook(book.name(), Duration::from_secs(2))
            .await
    } else {
        false
    };
    let v6 = local::global_v6();
    let port = traversal
        .endpoint()
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(0);
    let lan = book
        .udp_books()
        .first()
        .and_then(|b| local::source_toward(b.addr.ip()));

    let udp = traversal.udp_works();
    let _ = writeln!(
        r,
        "UDP:            {}",
        if udp {
            "works (the phone book answered over UDP)"
        } else {
            "BLOCKED: the phone book never answered over UDP; this network lets no UDP out or in"
        }
    );
    if let Some(a) = d.reflexive {
        let _ = writeln!(
            r,
            "public address: {a} (how the phone book sees this computer)"
        );
    }
    let nat = match (d.reflexive, d.mapping) {
        (None, _) => "unknown (no answer)".to_owned(),
        (Some(a), _) if Some(a.ip()) == lan => "none: this computer has a public address".into(),
        (Some(_), MappingBehaviour::EndpointIndependent) => {
            "cone NAT: your router keeps one public port for the game's port, so other \
             players can reach you once both sides send (hole punching)"
                .into()
        }
        (Some(_), MappingBehaviour::DestinationDependent) => {
            "symmetric NAT: your router picks a new public port for every destination; \
             direct connections work with players behind friendlier routers only"
                .into()
        }
        (Some(_), MappingBehaviour::Unknown) => {
            "behind a NAT; its kind is unknown (the phone book has no second port)".into()
        }
    };
    let _ = writeln!(r, "NAT:            {nat}");
    let mapped = matches!(portmap, Some(Status::Mapped(_)));
    let _ = writeln!(
        r,
        "port mapping:   {}",
        match portmap {
            Some(Status::Mapped(m)) => format!(
                "yes: your router forwards {} to this computer ({}); anyone can reach you",
                m.external, m.protocol
            ),
            Some(Status::Unmapped(why)) => format!("no ({why})"),
            None => "not tried (--no-portmap)".into(),
        }
    );
    let _ = writeln!(
        r,
        "IPv6:           {}",
        v6.map_or("none".to_owned(), |ip| format!(
            "{ip} (players with IPv6 can reach you directly if your firewall allows)"
        ))
    );
    let _ = writeln!(
        r,
        "phone book can reach you: {}",
        if reachable {
            "yes (it can tell you when a player wants to connect)"
        } else {
            "NO (connection requests cannot reach this computer)"
        }
    );
    let good =
        udp && (mapped || (reachable && d.mapping != MappingBehaviour::DestinationDependent));
    let _ = writeln!(
        r,
        "verdict:        {}",
        if good {
            "good: other players can connect to you directly"
        } else if udp {
            "limited: some players cannot connect to you directly"
        } else {
            "poor: no direct connections; a relay is needed"
        }
    );
    if !good {
        let lan_text = lan.map_or("this computer".to_owned(), |ip| ip.to_string());
        let _ = writeln!(
            r,
            "to fix it:      enable UPnP on your router, or forward UDP port {port} on your \
             router to {lan_text} port {port} (your router's manual calls it 'port forwarding' \
             or 'virtual server'); start the peer with --listen [::]:{port} so the port stays \
             the same"
        );
    }
    r
}
