//! Two phone-book instances over one Redis (issue 13): a punch request or a relay session that
//! reaches the instance a target does **not** keep alive with or listen on still finds it,
//! through the messages instances exchange over Redis pub/sub (pi-server's `bus` module). The
//! lookup rules hold across instances: a target the requester may not see is unknown, and
//! nothing reaches it.
//!
//! Needs `redis-server` (skipped with a message without it; `PB_REQUIRE_REDIS=1` fails
//! instead: `.ci/redis-test.sh` sets it).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use peer::{PlayerName, Visibility};
use phonebook_proto::LookupId;
use phonebook_proto::relay::{CloseReason, Frame};
use phonebook_proto::udp::{self, Message, PunchStatus, TokenParts};
use pi_server::server::TestServer;

mod common;
use common::raw_relay::*;

fn instance(url: &str, prefix: &str) -> TestServer {
    common::relay_phone_book(|c| {
        c.redis_url = Some(url.to_owned());
        c.redis_prefix = prefix.to_owned();
    })
}

/// A Redis and two instances over it, subscribed to each other's messages.
struct Two {
    _redis: pb_tests::redis_server::Redis,
    a: TestServer,
    b: TestServer,
    url_a: String,
    url_b: String,
}

/// `None` (after saying why) without redis-server.
fn two_instances() -> Option<Two> {
    let redis = pb_tests::redis_server::Redis::start()?;
    let (a, b) = (instance(&redis.url(), "two"), instance(&redis.url(), "two"));
    bus_up(&[&a, &b]);
    let (url_a, url_b) = (
        format!("http://{}", a.addr()),
        format!("http://{}", b.addr()),
    );
    Some(Two {
        _redis: redis,
        a,
        b,
        url_a,
        url_b,
    })
}

/// Both instances subscribed to each other's messages.
fn bus_up(pbs: &[&TestServer]) {
    let until = Instant::now() + Duration::from_secs(20);
    while !pbs
        .iter()
        .all(|pb| common::metric(pb, "phonebook_redis_bus_up ") == 1)
    {
        assert!(Instant::now() < until, "the bus did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn udp_metric(pb: &TestServer, outcome: &str) -> u64 {
    common::metric(
        pb,
        &format!("phonebook_udp_datagrams_total{{outcome=\"{outcome}\"}} "),
    )
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The next datagram on `s` and its source (`None` after the read timeout).
fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 512];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

/// Sends a keep-alive for `token` from `s` to `to` and waits for its answer.
fn keep_alive(s: &UdpSocket, to: SocketAddr, token: &TokenParts, counter: u64) {
    let ka = Message::KeepAlive {
        auth: token.auth,
        counter,
    }
    .encode(&token.key);
    s.send_to(&ka, to).unwrap();
    let (bytes, _) = recv(s).expect("a keep-alive answer");
    assert!(matches!(
        Message::decode(&bytes),
        Ok(Message::KeepAliveAnswer { .. })
    ));
}

fn udp_token(book: &peer::PhoneBook) -> (SocketAddr, TokenParts) {
    let b = book.udp_books().pop().expect("a UDP book");
    (b.addr, b.token)
}

/// Waits until `book` (registered at another instance) finds `name`: the record crossed.
async fn until_found(book: &peer::PhoneBook, name: &str) {
    let name = PlayerName::parse(name).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while book.lookup(&name).await.is_err() {
        assert!(
            Instant::now() < until,
            "{name} never reached the other instance"
        );
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_punch_request_at_one_instance_is_forwarded_by_the_one_the_target_keeps_alive_with() {
    let Some(Two {
        _redis,
        a,
        b,
        url_a,
        url_b,
    }) = two_instances()
    else {
        return;
    };
    smol::block_on(async {
        let target = "Punch Target@World";
        let hidden = "Hidden Target@World";
        let (_, t_book) = registered(&url_b, target, Visibility::Public).await;
        let (_, h_book) = registered(&url_b, hidden, Visibility::Friends).await;
        let (r_id, r_book) = registered(&url_a, "Punch Asker@World", Visibility::Public).await;
        until_found(&r_book, target).await;

        // The targets keep alive with B only.
        let (t_sock, h_sock) = (socket(), socket());
        let (b_udp, t_token) = udp_token(&t_book);
        keep_alive(&t_sock, b_udp, &t_token, 1);
        let (_, h_token) = udp_token(&h_book);
        keep_alive(&h_sock, b_udp, &h_token, 1);

        // The asker asks A.
        let r_sock = socket();
        let (a_udp, r_token) = udp_token(&r_book);
        assert_ne!(a_udp, b_udp);
        let ask = |counter: u64, name: &str, nonce: [u8; 8]| {
            let req = Message::PunchRequest {
                auth: r_token.auth,
                counter,
                nonce,
                target: LookupId::of(&PlayerName::parse(name).unwrap()),
                extra: [None, None],
            }
            .encode(&r_token.key);
            r_sock.send_to(&req, a_udp).unwrap();
            let (bytes, _) = recv(&r_sock).expect("a punch answer");
            match Message::decode(&bytes) {
                Ok(Message::PunchAnswer { status, .. }) => status,
                other => panic!("not a punch answer: {other:?}"),
            }
        };
        assert_eq!(ask(1, target, [5; 8]), PunchStatus::Forwarded);
        let (fwd, from) = recv(&t_sock).expect("the forward reaches the target");
        assert_eq!(
            from, b_udp,
            "sent by the instance the target keeps alive with"
        );
        assert!(
            udp::tag_ok(&t_token.key, &fwd),
            "tagged with the target's token"
        );
        match Message::decode(&fwd) {
            Ok(Message::PunchForward {
                nonce,
                requester,
                addrs,
            }) => {
                assert_eq!(nonce, [5; 8]);
                assert_eq!(requester.as_bytes(), r_id.id().as_bytes());
                assert_eq!(addrs[0], Some(r_sock.local_addr().unwrap()));
            }
            other => panic!("not a forward: {other:?}"),
        }
        // A friends-only target the asker is not a friend of: unknown, and nothing reaches it.
        assert_eq!(ask(2, hidden, [6; 8]), PunchStatus::Unknown);
        h_sock
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert!(recv(&h_sock).is_none(), "nothing reaches a hidden target");
    });
    assert_eq!(udp_metric(&a, "punch_handed_over"), 1);
    assert_eq!(udp_metric(&b, "punch_forwarded"), 1);
    assert_eq!(udp_metric(&a, "punch_unknown"), 1);
}

#[test]
fn a_relay_session_is_bridged_to_the_instance_the_target_listens_on_or_keeps_alive_with() {
    let Some(Two {
        _redis,
        a,
        b,
        url_a,
        url_b,
    }) = two_instances()
    else {
        return;
    };
    smol::block_on(async {
        let listener = "Relay Listener@World";
        let caller = "Relay Callee@World";
        let hidden = "Relay Hidden@World";
        let (_, l_book) = registered(&url_b, listener, Visibility::Public).await;
        let (_, c_book) = registered(&url_b, caller, Visibility::Public).await;
        let (_, _h_book) = registered(&url_b, hidden, Visibility::Friends).await;
        let (r_id, r_book) = registered(&url_a, "Relay Asker@World", Visibility::Public).await;
        until_found(&r_book, listener).await;
        until_found(&r_book, caller).await;
        let relay_of = |book: &peer::PhoneBook| book.relay_books().pop().expect("a relay");

        // The target listens at B's relay; the asker opens at A's.
        let mut t = welcomed(&relay_of(&l_book)).await;
        listen(&mut t).await;
        let mut r = welcomed(&relay_of(&r_book)).await;
        assert_ne!(relay_of(&r_book).addr, relay_of(&l_book).addr);
        let open = |session: u32, name: &str| Frame::Open {
            session,
            target: LookupId::of(&PlayerName::parse(name).unwrap()),
        };
        send(&mut r, &open(1, listener)).await;
        let (ticket, requester) = until(&mut t, |f| match f {
            Frame::Incoming { ticket, requester } => Some((*ticket, *requester)),
            _ => None,
        })
        .await
        .expect("the target is told at B");
        assert_eq!(requester.as_bytes(), r_id.id().as_bytes());
        send(&mut t, &Frame::Accept { session: 9, ticket }).await;
        until(&mut r, |f| {
            matches!(f, Frame::Opened { session: 1 }).then_some(())
        })
        .await
        .expect("opened at A");
        // Datagrams cross both ways, with each side's own session number.
        for i in 0..20u8 {
            let payload = [i; 1200];
            send(
                &mut r,
                &Frame::Data {
                    session: 1,
                    payload: &payload,
                },
            )
            .await;
            let got = until(&mut t, |f| match f {
                Frame::Data { session, payload } => Some((*session, payload.to_vec())),
                _ => None,
            })
            .await
            .expect("data reaches the target");
            assert_eq!(got, (9, payload.to_vec()));
            send(
                &mut t,
                &Frame::Data {
                    session: 9,
                    payload: b"answer",
                },
            )
            .await;
            let back = until(&mut r, |f| match f {
                Frame::Data { session, payload } => Some((*session, payload.to_vec())),
                _ => None,
            })
            .await
            .expect("data reaches the asker");
            assert_eq!(back, (1, b"answer".to_vec()));
        }
        // The target closes: the asker hears it.
        send(
            &mut t,
            &Frame::Close {
                session: 9,
                reason: CloseReason::Normal,
            },
        )
        .await;
        let closed = until(&mut r, |f| match f {
            Frame::Close { session: 1, reason } => Some(*reason),
            _ => None,
        })
        .await;
        assert_eq!(closed, Some(CloseReason::Normal));

        // A target that does not listen anywhere but keeps alive with B gets B's UDP call,
        // comes to B's relay and accepts there.
        let c_sock = socket();
        let (b_udp, c_token) = udp_token(&c_book);
        keep_alive(&c_sock, b_udp, &c_token, 1);
        send(&mut r, &open(2, caller)).await;
        let (call, from) = recv(&c_sock).expect("a relay call");
        assert_eq!(from, b_udp);
        assert!(udp::tag_ok(&c_token.key, &call));
        let Ok(Message::RelayCall { ticket, .. }) = Message::decode(&call) else {
            panic!("not a relay call");
        };
        let mut c = welcomed(&relay_of(&c_book)).await;
        send(&mut c, &Frame::Accept { session: 4, ticket }).await;
        until(&mut r, |f| {
            matches!(f, Frame::Opened { session: 2 }).then_some(())
        })
        .await
        .expect("opened through the call");
        send(
            &mut c,
            &Frame::Data {
                session: 4,
                payload: b"hi",
            },
        )
        .await;
        let got = until(&mut r, |f| match f {
            Frame::Data { session, payload } => Some((*session, payload.to_vec())),
            _ => None,
        })
        .await;
        assert_eq!(got, Some((2, b"hi".to_vec())));
        // The asker leaves: the target hears `gone`.
        drop(r);
        let gone = until(&mut c, |f| match f {
            Frame::Close { session: 4, reason } => Some(*reason),
            _ => None,
        })
        .await;
        assert_eq!(gone, Some(CloseReason::Gone));

        // A hidden target is unknown at once, as on one instance.
        let mut r2 = welcomed(&relay_of(&r_book)).await;
        send(&mut r2, &open(3, hidden)).await;
        let shut = until(&mut r2, |f| match f {
            Frame::Close { session: 3, reason } => Some(*reason),
            _ => None,
        })
        .await;
        assert_eq!(shut, Some(CloseReason::Unknown));
    });
    assert!(common::metric(&a, "phonebook_relay_sessions_total ") >= 2);
    // Every bridge is let go once its session ended.
    let until = Instant::now() + Duration::from_secs(10);
    while common::metric(&a, "phonebook_relay_bridges ")
        + common::metric(&b, "phonebook_relay_bridges ")
        > 0
    {
        assert!(Instant::now() < until, "bridges were not let go");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn after_redis_restarts_the_instances_find_each_others_peers_again() {
    let Some(Two {
        _redis: mut redis,
        a,
        b,
        url_a,
        url_b,
    }) = two_instances()
    else {
        return;
    };
    let target = "Restart Target@World";
    let (t_book, r_book) = smol::block_on(async {
        let (_, t_book) = registered(&url_b, target, Visibility::Public).await;
        let (_, r_book) = registered(&url_a, "Restart Asker@World", Visibility::Public).await;
        until_found(&r_book, target).await;
        (t_book, r_book)
    });
    let t_sock = socket();
    let (b_udp, t_token) = udp_token(&t_book);
    keep_alive(&t_sock, b_udp, &t_token, 1);
    t_sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let r_sock = socket();
    let (a_udp, r_token) = udp_token(&r_book);

    redis.restart();
    // Punch requests at A until one is forwarded by B again (each with a growing counter).
    let until = Instant::now() + Duration::from_secs(30);
    let mut counter = 0;
    loop {
        assert!(
            Instant::now() < until,
            "no forward through the bus after Redis restarted"
        );
        counter += 1;
        let req = Message::PunchRequest {
            auth: r_token.auth,
            counter,
            nonce: [9; 8],
            target: LookupId::of(&PlayerName::parse(target).unwrap()),
            extra: [None, None],
        }
        .encode(&r_token.key);
        r_sock.send_to(&req, a_udp).unwrap();
        let _ = recv(&r_sock);
        if let Some((fwd, from)) = recv(&t_sock)
            && from == b_udp
            && matches!(Message::decode(&fwd), Ok(Message::PunchForward { .. }))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(common::metric(&a, "phonebook_redis_reconnects_total ") >= 1);
    assert!(common::metric(&b, "phonebook_redis_reconnects_total ") >= 1);
    bus_up(&[&a, &b]);
}
