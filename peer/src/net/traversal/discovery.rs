//! Address discovery: ask a phone book's UDP service, from the QUIC socket, which address it
//! sees us at; ask its second port too, and compare, to learn whether our NAT maps per
//! destination (a symmetric NAT, whose reflexive address is of no use to other players).

use std::net::SocketAddr;

use phonebook_proto::udp::Message;

use super::{Traversal, random8};

/// How our NAT chose the public port for the QUIC socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingBehaviour {
    /// The same public address toward two destinations: other players can reach the
    /// reflexive address once our NAT lets them in (cone NATs, or no NAT at all).
    EndpointIndependent,
    /// Another public port per destination (symmetric NAT): the reflexive address works for
    /// the phone book only; punching still works toward cone NATs.
    DestinationDependent,
    /// Only one answer (the phone book has no second port, or it did not answer).
    Unknown,
}

/// What discovery learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// Our address as the phone book sees it (personal data), if it answered.
    pub reflexive: Option<SocketAddr>,
    /// Our address as the phone book's second port sees it.
    pub reflexive_alt: Option<SocketAddr>,
    /// The NAT's mapping behaviour.
    pub mapping: MappingBehaviour,
}

impl Discovery {
    /// Whether our NAT (if any) keeps one public address for the QUIC socket.
    pub fn independent(&self) -> bool {
        self.mapping == MappingBehaviour::EndpointIndependent
    }
}

/// The behaviour that two answers show.
pub fn classify(first: Option<SocketAddr>, second: Option<SocketAddr>) -> MappingBehaviour {
    match (first, second) {
        (Some(a), Some(b)) if a == b => MappingBehaviour::EndpointIndependent,
        (Some(_), Some(_)) => MappingBehaviour::DestinationDependent,
        _ => MappingBehaviour::Unknown,
    }
}

impl Traversal {
    /// One binding request to `to`: the observed address and the service's second port.
    pub async fn binding(&self, to: SocketAddr) -> Option<(SocketAddr, u16)> {
        let txid = random8();
        let bytes = Message::BindingRequest { txid }.encode(&[0; 16]);
        match self.ask(to, u64::from_be_bytes(txid), &bytes).await? {
            (
                from,
                Message::BindingAnswer {
                    observed, alt_port, ..
                },
            ) if from == to => Some((super::super::control::canonical(observed), alt_port)),
            _ => None,
        }
    }

    /// Discovers our reflexive address and mapping behaviour through the phone book's UDP
    /// service at `to` (its main port, then its second port).
    pub async fn discover_at(&self, to: SocketAddr) -> Discovery {
        let Some((first, alt_port)) = self.binding(to).await else {
            return Discovery {
                reflexive: None,
                reflexive_alt: None,
                mapping: MappingBehaviour::Unknown,
            };
        };
        let second = if alt_port != 0 && alt_port != to.port() {
            self.binding(SocketAddr::new(to.ip(), alt_port))
                .await
                .map(|(a, _)| a)
        } else {
            None
        };
        self.set_reflexive(first);
        Discovery {
            reflexive: Some(first),
            reflexive_alt: second,
            mapping: classify(Some(first), second),
        }
    }

    /// [`Traversal::discover_at`] with the first phone book we are registered with that
    /// answers; no answer from any: nothing learned.
    pub async fn discover(&self) -> Discovery {
        let books = self.books();
        for book in books.iter() {
            let d = self.discover_at(book.addr).await;
            if d.reflexive.is_some() {
                return d;
            }
        }
        if !books.is_empty() {
            self.note_silent_round();
        }
        Discovery {
            reflexive: None,
            reflexive_alt: None,
            mapping: MappingBehaviour::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let a: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        let b: SocketAddr = "198.51.100.1:4001".parse().unwrap();
        assert_eq!(
            classify(Some(a), Some(a)),
            MappingBehaviour::EndpointIndependent
        );
        assert_eq!(
            classify(Some(a), Some(b)),
            MappingBehaviour::DestinationDependent
        );
        assert_eq!(classify(Some(a), None), MappingBehaviour::Unknown);
        assert_eq!(classify(None, None), MappingBehaviour::Unknown);
    }
}
