//! A relay client that misbehaves (issue 11, "bad input and faults"), spoken raw over TLS to a
//! real pi-server's relay: a token that is not ours, a first frame that is not a Hello, an
//! oversized frame, garbage, more sessions than allowed. Each is refused with its reason,
//! counted in `/metrics`, and the honest players on the same relay are not affected.

use std::time::Duration;

use peer::PlayerName;
use peer::net::relay::RelayBook;
use phonebook_proto::LookupId;
use phonebook_proto::relay::{CloseReason, Frame, RefuseReason, TOKEN_LEN};
use pi_server::server::TestServer;
use smol::io::AsyncWriteExt;

mod common;
use common::raw_relay::*;

fn phone_book(max_sessions: u32) -> TestServer {
    common::relay_phone_book(|c| c.relay_max_sessions = max_sessions)
}

fn relay_bytes_in(pb: &TestServer) -> u64 {
    common::metric(pb, "phonebook_relay_bytes_total{direction=\"in\"} ")
}

fn refusals(pb: &TestServer, reason: &str) -> u64 {
    common::metric(
        pb,
        &format!("phonebook_relay_refusals_total{{reason=\"{reason}\"}} "),
    )
}

/// An honest pair still gets a session through the relay: the target listens, the requester
/// opens, the target accepts, and a datagram goes through.
async fn honest_session_works(url: &str, tag: &str) {
    let target_name = format!("Honest Target{tag}@World");
    let (_, target) = player(url, &target_name).await;
    let (_, requester) = player(url, &format!("Honest Asker{tag}@World")).await;
    let mut t = welcomed(&target).await;
    listen(&mut t).await;
    let mut r = welcomed(&requester).await;
    send(
        &mut r,
        &Frame::Open {
            session: 1,
            target: LookupId::of(&PlayerName::parse(&target_name).unwrap()),
        },
    )
    .await;
    let ticket = until(&mut t, |f| match f {
        Frame::Incoming { ticket, .. } => Some(*ticket),
        _ => None,
    })
    .await
    .expect("the target is told");
    send(&mut t, &Frame::Accept { session: 9, ticket }).await;
    assert!(
        until(&mut r, |f| matches!(f, Frame::Opened { session: 1 })
            .then_some(()))
        .await
        .is_some()
    );
    send(
        &mut r,
        &Frame::Data {
            session: 1,
            payload: b"quic packet",
        },
    )
    .await;
    let got = until(&mut t, |f| match f {
        Frame::Data { session, payload } => Some((*session, payload.to_vec())),
        _ => None,
    })
    .await
    .expect("the datagram arrives");
    assert_eq!(got, (9, b"quic packet".to_vec()));
}

#[test]
fn a_token_that_is_not_ours_is_refused_and_counted() {
    let pb = phone_book(16);
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let (_, relay) = player(&url, "Real Player@World").await;
        let before = refusals(&pb, "unauthenticated");
        let mut forged = relay.clone();
        forged.token[TOKEN_LEN - 1] ^= 1;
        let mut tls = connect(&forged).await;
        send(
            &mut tls,
            &Frame::Hello {
                token: forged.token,
            },
        )
        .await;
        assert_eq!(refused(&mut tls).await, Some(RefuseReason::Unauthenticated));
        assert_eq!(refusals(&pb, "unauthenticated"), before + 1);
        honest_session_works(&url, "a").await;
    });
}

#[test]
fn a_first_frame_other_than_hello_and_garbage_are_cut_off_with_a_reason() {
    let pb = phone_book(16);
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let (_, relay) = player(&url, "Rude Player@World").await;
        let before = refusals(&pb, "protocol");
        let mut tls = connect(&relay).await;
        send(&mut tls, &Frame::Listen).await;
        assert_eq!(refused(&mut tls).await, Some(RefuseReason::Protocol));
        // After a good Hello: an unknown frame type.
        let mut tls = welcomed(&relay).await;
        write_raw(&mut tls, &[0xEE, 0, 1, 0]).await;
        assert_eq!(refused(&mut tls).await, Some(RefuseReason::Protocol));
        // A peer relay's frames (Join, OpenKey) are not spoken here.
        let mut tls = welcomed(&relay).await;
        send(&mut tls, &Frame::Join).await;
        assert_eq!(refused(&mut tls).await, Some(RefuseReason::Protocol));
        assert!(refusals(&pb, "protocol") >= before + 3);
        honest_session_works(&url, "b").await;
    });
}

#[test]
fn an_oversized_frame_is_cut_off_before_its_body_is_read() {
    let pb = phone_book(16);
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let (_, relay) = player(&url, "Big Sender@World").await;
        let mut tls = welcomed(&relay).await;
        // A Data header announcing 65,535 bytes (MAX_BODY is 1,504), and no body.
        let mut data = Vec::new();
        Frame::Data {
            session: 1,
            payload: b"x",
        }
        .encode(&mut data);
        write_raw(&mut tls, &[data[0], 0xFF, 0xFF]).await;
        assert_eq!(refused(&mut tls).await, Some(RefuseReason::Protocol));
        honest_session_works(&url, "c").await;
    });
}

#[test]
fn sessions_beyond_the_limit_are_closed_and_the_others_stay() {
    let pb = phone_book(2);
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let (_, target) = player(&url, "Busy Target@World").await;
        let (_, requester) = player(&url, "Greedy Asker@World").await;
        let mut t = welcomed(&target).await;
        listen(&mut t).await;
        let before = refusals(&pb, "limit");
        let mut r = welcomed(&requester).await;
        for session in 1..=3 {
            send(
                &mut r,
                &Frame::Open {
                    session,
                    target: LookupId::of(&PlayerName::parse("Busy Target@World").unwrap()),
                },
            )
            .await;
        }
        let closed = until(&mut r, |f| match f {
            Frame::Close { session, reason } => Some((*session, *reason)),
            _ => None,
        })
        .await;
        assert_eq!(closed, Some((3, CloseReason::Limit)));
        assert_eq!(refusals(&pb, "limit"), before + 1);
        // The two within the limit still open.
        for session in [10, 11] {
            let ticket = until(&mut t, |f| match f {
                Frame::Incoming { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .await
            .expect("the target is told of both sessions within the limit");
            // The target numbers its sessions itself.
            send(&mut t, &Frame::Accept { session, ticket }).await;
        }
        let mut opened = 0;
        while opened < 2 {
            if until(&mut r, |f| matches!(f, Frame::Opened { .. }).then_some(()))
                .await
                .is_none()
            {
                break;
            }
            opened += 1;
        }
        assert_eq!(opened, 2, "both sessions within the limit opened");
    });
}

/// Hello and Welcome over a TCP connection from `source`; `None` if refused (with the reason).
async fn welcomed_from(
    source: std::net::IpAddr,
    relay: &RelayBook,
) -> Result<Tls, Option<RefuseReason>> {
    let mut tls = tls_over(relay, tcp_from(source, relay)).await;
    send(&mut tls, &Frame::Hello { token: relay.token }).await;
    let answer = until(&mut tls, |f| match f {
        Frame::Welcome { .. } => Some(None),
        Frame::Refused { reason } => Some(Some(*reason)),
        _ => None,
    })
    .await;
    match answer {
        Some(None) => Ok(tls),
        Some(Some(r)) => Err(Some(r)),
        None => Err(None),
    }
}

#[test]
fn connections_beyond_the_total_or_one_addresss_share_are_refused_as_full() {
    // 8 connections in all, so at most 4 (the floor) from one address.
    let pb = common::relay_phone_book(|c| c.relay_max_connections = 8);
    let url = format!("http://{}", pb.addr());
    let ip = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
    smol::block_on(async {
        let (_, relay) = player(&url, "Many Conns@World").await;
        let before = refusals(&pb, "full");
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(
                welcomed_from(ip(2), &relay)
                    .await
                    .expect("within the share"),
            );
        }
        let fifth = welcomed_from(ip(2), &relay).await.err();
        assert_eq!(fifth, Some(Some(RefuseReason::Full)), "one address's share");
        assert_eq!(refusals(&pb, "full"), before + 1);
        // Other addresses still get in, up to the total.
        for _ in 0..4 {
            held.push(welcomed_from(ip(3), &relay).await.expect("another address"));
        }
        let ninth = welcomed_from(ip(4), &relay).await.err();
        assert_eq!(ninth, Some(Some(RefuseReason::Full)), "the total");
        assert_eq!(refusals(&pb, "full"), before + 2);
        // Closing connections frees their places.
        drop(held);
        let mut again = None;
        for _ in 0..50 {
            if let Ok(t) = welcomed_from(ip(2), &relay).await {
                again = Some(t);
                break;
            }
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        assert!(again.is_some(), "a freed place is given again");
        drop(again);
        smol::Timer::after(Duration::from_millis(300)).await;
        honest_session_works(&url, "e").await;
    });
}

#[test]
fn a_flooding_client_is_paced_to_its_rate_and_others_still_pass() {
    // 100 kB/s per connection; the total is left at its default (2.5 MB/s).
    const RATE: u64 = 100_000;
    let pb = common::relay_phone_book(|c| c.relay_rate = RATE as u32);
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let (_, target) = player(&url, "Flood Target@World").await;
        let (_, flooder) = player(&url, "Flood Er@World").await;
        let mut t = welcomed(&target).await;
        listen(&mut t).await;
        let mut f = welcomed(&flooder).await;
        send(
            &mut f,
            &Frame::Open {
                session: 1,
                target: LookupId::of(&PlayerName::parse("Flood Target@World").unwrap()),
            },
        )
        .await;
        let ticket = until(&mut t, |f| match f {
            Frame::Incoming { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .await
        .unwrap();
        send(&mut t, &Frame::Accept { session: 2, ticket }).await;
        assert!(
            until(&mut f, |x| matches!(x, Frame::Opened { .. }).then_some(()))
                .await
                .is_some()
        );
        let mut packet = Vec::new();
        Frame::Data {
            session: 1,
            payload: &[0xAB; 1400],
        }
        .encode(&mut packet);
        let batch: Vec<u8> = packet.repeat(40);
        let before = relay_bytes_in(&pb);
        let started = std::time::Instant::now();
        // Flood for 1.5 s (TCP blocks the writer once the relay stops reading), and meanwhile
        // an honest pair passes its datagram.
        let flood = async {
            loop {
                if f.tls.write_all(&batch).await.is_err() {
                    return;
                }
            }
        };
        let honest = async {
            honest_session_works(&url, "f").await;
            smol::Timer::after(Duration::from_millis(1500)).await;
        };
        smol::future::or(honest, flood).await;
        let elapsed = started.elapsed().as_secs_f64();
        let read = relay_bytes_in(&pb) - before;
        // What the relay read: the burst (a quarter second of the rate, at least 64 KiB), the
        // rate over the time, one read chunk beyond, and the honest pair's few frames.
        let bound = 65_536 + (RATE as f64 * elapsed) as u64 + 65_536 + 4_096;
        assert!(
            read <= bound,
            "the flooder was read at {read} bytes in {elapsed:.2} s (at most {bound})"
        );
        assert!(read > 65_536, "the flood reached the relay: {read} bytes");
    });
}
