//! Framing, limits and timeouts over real sockets.

use crate::*;
use phonebook_proto::{ErrorBody, Health, LookupRecord, PlayerName, Visibility};
use std::io::Write;
use std::time::Instant;

#[test]
fn register_lookup_over_keep_alive_and_pipelining() {
    let srv = start(|_| {});
    let mut c = Conn::open(srv.addr());
    let t = register(
        &mut c,
        &reg(&kp(1), "Alice Smith@Gilgamesh", Visibility::Public, vec![]),
    );
    // Three pipelined requests in one write, answered in order on one connection.
    let get = format!(
        "GET /api/lookup/Alice%20Smith@Gilgamesh HTTP/1.1\r\nAuthorization: Bearer {t}\r\n\r\n"
    );
    c.send_raw(format!("{get}GET /api/health HTTP/1.1\r\n\r\n{get}").as_bytes());
    let a = c.read_reply().unwrap();
    let h = c.read_reply().unwrap();
    let b = c.read_reply().unwrap();
    assert_eq!((a.status, h.status, b.status), (200, 200, 200));
    let rec = LookupRecord::from_json_verified(
        &a.body,
        &PlayerName::parse("Alice Smith@Gilgamesh").unwrap(),
    )
    .unwrap();
    assert_eq!(rec.ip.to_string(), "127.0.0.1");
    assert_eq!(Health::from_json(&h.body).unwrap().active_users, 1);
    assert_eq!(a.body, b.body);
    srv.stop().unwrap();
}

/// Signed requests wait for their signature check (in batches) without holding up the
/// order of answers: registrations, a forged one and plain requests pipelined in one write,
/// some of them after the last request's body was cut in two writes.
#[test]
fn pipelined_signed_requests_are_answered_in_order() {
    let srv = start(|_| {});
    let mut c = Conn::open(srv.addr());
    let post = |r: &phonebook_proto::Register| {
        let b = r.to_json();
        format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
    };
    let alice = reg(&kp(1), "Alice Smith@Gilgamesh", Visibility::Public, vec![]);
    let mut forged = reg(&kp(2), "Bob Jones@Gilgamesh", Visibility::Public, vec![]);
    forged.port += 1;
    let carol = reg(&kp(3), "Carol Diaz@Gilgamesh", Visibility::Public, vec![]);
    let health = "GET /api/health HTTP/1.1\r\n\r\n";
    let all = format!(
        "{}{health}{}{}{health}",
        post(&alice),
        post(&forged),
        post(&carol)
    );
    let cut = all.len() - health.len() - 10;
    c.send_raw(&all.as_bytes()[..cut]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send_raw(&all.as_bytes()[cut..]);
    let statuses: Vec<u16> = (0..5).map(|_| c.read_reply().unwrap().status).collect();
    assert_eq!(statuses, [200, 200, 401, 200, 200]);
    // Another connection sees the two good registrations.
    let mut d = Conn::open(srv.addr());
    let h = d.request("GET", "/api/health", "", "");
    assert_eq!(Health::from_json(&h.body).unwrap().active_users, 2);
    srv.stop().unwrap();
}

/// Many connections registering at once (so the checks batch up), one of them forged: each
/// gets its own answer.
#[test]
fn concurrent_registrations_each_get_their_own_verdict() {
    let srv = start(|_| {});
    let addr = srv.addr();
    let mut conns: Vec<(Conn, bool)> = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..24u8 {
        let name = format!("Player Number@World{}", (b'a' + i) as char);
        let mut r = reg(&kp(i + 10), &name, Visibility::Public, vec![]);
        let forged = i % 7 == 3;
        if forged {
            r.timestamp += 1;
        }
        let b = r.to_json();
        bodies.push(format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
        conns.push((Conn::open(addr), forged));
    }
    for ((c, _), b) in conns.iter_mut().zip(&bodies) {
        c.send_raw(b.as_bytes());
    }
    for (c, forged) in &mut conns {
        let rep = c.read_reply().unwrap();
        assert_eq!(
            rep.status,
            if *forged { 401 } else { 200 },
            "{}",
            rep.text()
        );
    }
    let mut d = Conn::open(addr);
    let m = d.request("GET", "/metrics", "", "");
    let text = m.text();
    let count = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap()
    };
    assert_eq!(count("phonebook_signatures_checked_total"), 24);
    assert!(count("phonebook_signature_batches_total") <= 24);
    srv.stop().unwrap();
}

#[test]
fn a_request_split_across_many_writes_is_assembled() {
    let srv = start(|_| {});
    let mut c = Conn::open(srv.addr());
    let body = reg(&kp(1), "Alice Smith@Gilgamesh", Visibility::Public, vec![]).to_json();
    let req = format!(
        "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for chunk in req.as_bytes().chunks(7) {
        c.send_raw(chunk);
        c.s.flush().unwrap();
    }
    assert_eq!(c.read_reply().unwrap().status, 200);
}

#[test]
fn oversized_head_and_body_are_refused_and_closed() {
    let srv = start(|c| {
        c.max_header_bytes = 1024;
        c.max_body_bytes = 1024;
    });
    let mut c = Conn::open(srv.addr());
    let big = "a".repeat(2000);
    c.send_raw(format!("GET /api/health HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_reply().unwrap();
    assert_eq!(r.status, 431);
    assert_eq!(
        ErrorBody::from_json(&r.body).unwrap().error,
        "headers_too_large"
    );
    assert!(c.is_closed());

    let mut c = Conn::open(srv.addr());
    c.send_raw(b"POST /api/register HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    let r = c.read_reply().unwrap();
    assert_eq!((r.status, r.header("Connection")), (413, Some("close")));
    assert!(c.is_closed());

    let mut c = Conn::open(srv.addr());
    let r = c.request(
        "POST",
        "/api/register",
        "",
        "Transfer-Encoding: chunked\r\n",
    );
    assert_eq!(r.status, 411);

    let mut c = Conn::open(srv.addr());
    c.send_raw(b"\x16\x03\x01garbage\r\n\r\n");
    assert_eq!(c.read_reply().unwrap().status, 400);
}

#[test]
fn slow_clients_are_cut_off() {
    let srv = start(|c| {
        c.read_timeout = 1;
        c.idle_timeout = 1;
    });
    // A request that never completes (slowloris).
    let mut slow = Conn::open(srv.addr());
    slow.send_raw(b"GET /api/health HTTP/1.1\r\nX-A: b\r\n");
    // An idle keep-alive connection.
    let mut idle = Conn::open(srv.addr());
    assert_eq!(idle.request("GET", "/api/health", "", "").status, 200);
    let t = Instant::now();
    assert!(slow.is_closed());
    assert!(idle.is_closed());
    // Closed by the sweeper, not by the client's own 10 s read timeout.
    assert!(t.elapsed().as_secs() < 9);
}

#[test]
fn connection_cap_answers_overloaded() {
    let srv = start(|c| c.max_connections = 2);
    let mut a = Conn::open(srv.addr());
    let mut b = Conn::open(srv.addr());
    assert_eq!(a.request("GET", "/api/health", "", "").status, 200);
    assert_eq!(b.request("GET", "/api/health", "", "").status, 200);
    let mut c = Conn::open(srv.addr());
    let r = c.read_reply().unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(ErrorBody::from_json(&r.body).unwrap().error, "overloaded");
    drop(a);
    // The slot frees up once the server sees the close.
    let mut ok = false;
    for _ in 0..100 {
        let mut d = Conn::open(srv.addr());
        d.send_raw(b"GET /api/health HTTP/1.1\r\n\r\n");
        if d.read_reply().is_some_and(|r| r.status == 200) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ok);
}

#[test]
fn http10_closes_and_head_has_no_body() {
    let srv = start(|_| {});
    let mut c = Conn::open(srv.addr());
    c.send_raw(b"HEAD /api/health HTTP/1.1\r\n\r\nGET /api/health HTTP/1.0\r\n\r\n");
    let h = c.read_reply_head_only();
    assert_eq!(h, 200);
    let r = c.read_reply().unwrap();
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    assert!(c.is_closed());
}

#[test]
fn restart_on_the_same_port_despite_time_wait() {
    let srv = start(|_| {});
    let addr = srv.addr();
    let mut c = Conn::open(addr);
    assert_eq!(c.request("GET", "/api/health", "", "").status, 200);
    // The server closes first on stop, so its side of the connection sits in TIME_WAIT.
    srv.stop().unwrap();
    assert!(c.is_closed());
    let again = start(|cfg| cfg.listen = addr);
    let mut c = Conn::open(again.addr());
    assert_eq!(c.request("GET", "/api/health", "", "").status, 200);
}

/// Only HTTP/1.0 and 1.1 are spoken: any other version in the request line gets 505
/// `version_not_supported` (it got 400 before), including the HTTP/2 connection preface; a
/// line with no version at all, or another protocol's name, is a 400.
#[test]
fn other_http_versions_get_505() {
    let srv = start(|_| {});
    let cases: [(&[u8], u16, &str); 8] = [
        (
            b"GET /api/health HTTP/2.0\r\n\r\n",
            505,
            "version_not_supported",
        ),
        (
            b"GET /api/health HTTP/2\r\n\r\n",
            505,
            "version_not_supported",
        ),
        (
            b"GET /api/health HTTP/3\r\n\r\n",
            505,
            "version_not_supported",
        ),
        (
            b"GET /api/health HTTP/0.9\r\n\r\n",
            505,
            "version_not_supported",
        ),
        (
            b"GET /api/health HTTP/1.2\r\n\r\n",
            505,
            "version_not_supported",
        ),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            505,
            "version_not_supported",
        ),
        (b"GET /api/health\r\n\r\n", 400, "bad_request"),
        (b"GET /api/health SPDY/3\r\n\r\n", 400, "bad_request"),
    ];
    for (req, status, code) in cases {
        let mut c = Conn::open(srv.addr());
        c.send_raw(req);
        let r = c.read_reply().unwrap();
        let shown = String::from_utf8_lossy(req);
        assert_eq!(r.status, status, "{shown:?}: {}", r.text());
        assert_eq!(
            ErrorBody::from_json(&r.body).unwrap().error,
            code,
            "{shown:?}"
        );
        assert_eq!(r.header("Connection"), Some("close"), "{shown:?}");
        assert!(c.is_closed(), "{shown:?}");
    }
    srv.stop().unwrap();
}

/// A POST or DELETE without `Content-Length` gets 411 `length_required` and the connection
/// closes (a body that may follow cannot be framed); before, the server read an empty body
/// (400) and then took the body for the next request.
#[test]
fn body_methods_without_content_length_get_411() {
    let srv = start(|_| {});
    let body = reg(&kp(1), "Alice Smith@Gilgamesh", Visibility::Public, vec![]).to_json();
    for req in [
        format!("POST /api/register HTTP/1.1\r\n\r\n{body}"),
        "POST /api/lookup HTTP/1.1\r\n\r\n".to_owned(),
        "DELETE /api/unregister HTTP/1.1\r\n\r\n".to_owned(),
        "POST /api/register HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
        "POST /api/register HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: identity\r\n\r\n{}"
            .to_owned(),
    ] {
        let mut c = Conn::open(srv.addr());
        c.send_raw(req.as_bytes());
        let r = c.read_reply().unwrap();
        assert_eq!(r.status, 411, "{req:?}: {}", r.text());
        assert_eq!(
            ErrorBody::from_json(&r.body).unwrap().error,
            "length_required"
        );
        assert!(c.is_closed(), "{req:?}");
    }
    // With a length, an empty body is a plain 400 and the connection stays usable.
    let mut c = Conn::open(srv.addr());
    let r = c.request("POST", "/api/register", "", "");
    assert_eq!(r.status, 400);
    assert_eq!(c.request("GET", "/api/health", "", "").status, 200);
    srv.stop().unwrap();
}

/// `Expect: 100-continue`: the server answers `100 Continue` as soon as the head is in (a
/// client that waits for it does not stall), then the final answer; a body over the limit gets
/// the 413 instead of the 100.
#[test]
fn expect_100_continue_is_answered() {
    let srv = start(|c| c.max_body_bytes = 1024);
    let mut c = Conn::open(srv.addr());
    let body = reg(&kp(1), "Alice Smith@Gilgamesh", Visibility::Public, vec![]).to_json();
    c.send_raw(
        format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut c.s, &mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send_raw(body.as_bytes());
    assert_eq!(c.read_reply().unwrap().status, 200);
    // Body included at once: the 100 may still come first; the answer follows.
    let body = reg(&kp(2), "Bob Jones@Gilgamesh", Visibility::Public, vec![]).to_json();
    c.send_raw(
        format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_reply().unwrap().status, 200);
    let mut c = Conn::open(srv.addr());
    c.send_raw(
        b"POST /api/register HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(c.read_reply().unwrap().status, 413);
    srv.stop().unwrap();
}
