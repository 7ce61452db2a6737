//! The traversal layer on loopback: control datagrams share the QUIC socket, connection
//! attempts race candidates under a deadline, and failures say why.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use peer::net::traversal::{PathKind, Target, Traversal, TraversalConfig};
use peer::{ConnectError, Endpoint, EndpointConfig, Identity};
use phonebook_proto::udp::Message;
use phonebook_proto::{Candidate, CandidateKind};

use crate::common::{loopback, memory_seeder};

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(f)
}

#[test]
fn control_datagrams_leave_quic_alone_and_reach_the_traversal_queue() {
    let seeder = memory_seeder(
        &[b"x".to_vec()],
        peer::transfer::manifest::DEFAULT_CHUNK_SIZE,
    );
    let rx = seeder.endpoint.take_control().expect("queue not taken yet");
    assert!(seeder.endpoint.take_control().is_none(), "taken once only");
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let punch = Message::Punch { nonce: [7; 8] }.encode(&[0; 16]);
    probe.send_to(&punch, seeder.addr()).unwrap();
    // Garbage that is neither QUIC nor ours goes to QUIC, which drops it.
    probe.send_to(&[0x00; 40], seeder.addr()).unwrap();
    let got = block_on(async {
        smol::future::or(async { rx.rx.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(5)).await;
            None
        })
        .await
    })
    .expect("the punch arrives on the control queue");
    assert_eq!(got.bytes, punch);
    assert_eq!(got.from, probe.local_addr().unwrap());
    assert!(rx.rx.is_empty(), "only our messages are diverted");
    // QUIC on the same socket still works.
    let client = Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap();
    let conn = block_on(client.connect(seeder.addr(), seeder.endpoint.identity().id()));
    assert!(conn.is_ok(), "{conn:?}");
}

fn traversal(timeout: Duration) -> Arc<Traversal> {
    let config = EndpointConfig {
        connect_timeout: timeout,
        ..loopback()
    };
    let endpoint = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &config).unwrap());
    Traversal::start(endpoint, None, TraversalConfig::default()).unwrap()
}

#[test]
fn candidates_race_and_the_one_that_answers_wins() {
    let seeder = memory_seeder(
        &[b"x".to_vec()],
        peer::transfer::manifest::DEFAULT_CHUNK_SIZE,
    );
    let t = traversal(Duration::from_secs(5));
    // A dead LAN candidate first, the live address reported by the phone book last.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let target = Target::from_parts(
        None,
        seeder.endpoint.identity().id(),
        &[Candidate::new(CandidateKind::Lan, dead_addr)],
        seeder.addr(),
    );
    let c = block_on(t.connect(&target)).expect("connects over the live address");
    assert_eq!(c.addr, seeder.addr());
    assert_eq!(c.kind, PathKind::Reported);
    assert_eq!(c.conn.peer(), seeder.endpoint.identity().id());
    // The dead address got punches: the attempt announced itself there too.
    dead.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = dead
        .recv_from(&mut buf)
        .expect("punches reach every candidate");
    assert!(matches!(
        Message::decode(&buf[..n]),
        Ok(Message::Punch { .. })
    ));
}

#[test]
fn an_unreachable_peer_fails_within_the_deadline_with_a_reason() {
    let t = traversal(Duration::from_millis(600));
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let key = Identity::generate().id();
    let err = block_on(t.connect(&Target::given(addr, key))).unwrap_err();
    match err {
        ConnectError::NoDirectPath { tried } => assert_eq!(tried, vec![addr]),
        other => panic!("expected NoDirectPath, got {other:?}"),
    }
}

#[test]
fn a_wrong_key_ends_the_attempt_at_once() {
    let seeder = memory_seeder(
        &[b"x".to_vec()],
        peer::transfer::manifest::DEFAULT_CHUNK_SIZE,
    );
    let t = traversal(Duration::from_secs(30));
    let wrong = Identity::generate().id();
    // Waiting for the deadline would end in NoDirectPath: WrongKey means the attempt stopped
    // at the first definitive answer.
    let err = block_on(t.connect(&Target::given(seeder.addr(), wrong))).unwrap_err();
    assert!(matches!(err, ConnectError::WrongKey { .. }), "{err:?}");
}
