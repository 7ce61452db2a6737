//! The phone-book client against a scripted HTTP server on 127.0.0.1:0: retries, Retry-After,
//! several phone books. (The real pi-server is exercised in tests/tests/peer_e2e.rs.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peer::phonebook::{PhoneBookConfig, PhoneBookError};
use peer::{Identity, PhoneBook, PlayerName, Visibility};

const OK: &str = r#"{"success":true,"ip":"127.0.0.1","port":5000,"expiresIn":3600,"reregisterIn":3000,"token":"t"}"#;

/// Answers each request with the next scripted (status, extra headers, body), one connection
/// per request; counts requests.
fn scripted(replies: Vec<(u16, &'static str, &'static str)>) -> (String, Arc<AtomicUsize>) {
    scripted_notifying(replies, None)
}

/// Like [`scripted`], also sending on `notify` after each request it answers.
fn scripted_notifying(
    replies: Vec<(u16, &'static str, &'static str)>,
    notify: Option<smol::channel::Sender<()>>,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(Mutex::new(replies.into_iter()));
    let c = count.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten().take(32) {
            let mut buf = vec![0u8; 8192];
            let mut have = 0;
            while let Ok(n) = s.read(&mut buf[have..]) {
                if n == 0 {
                    break;
                }
                have += n;
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                let Ok(httparse::Status::Complete(head)) = req.parse(&buf[..have]) else {
                    continue;
                };
                let len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| {
                        std::str::from_utf8(h.value).unwrap().parse().unwrap()
                    });
                if have < head + len {
                    continue;
                }
                c.fetch_add(1, Ordering::SeqCst);
                let (status, extra, body) =
                    replies.lock().unwrap().next().unwrap_or((500, "", "{}"));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes());
                if let Some(tx) = &notify {
                    let _ = tx.try_send(());
                }
                break;
            }
        }
    });
    (url, count)
}

fn client(urls: Vec<String>) -> PhoneBook {
    let config = PhoneBookConfig {
        urls,
        backoff_base: Duration::from_millis(5),
        ..Default::default()
    };
    PhoneBook::new(
        &Identity::generate(),
        PlayerName::parse("Tataru Taru@Gilgamesh").unwrap(),
        config,
    )
    .unwrap()
}

#[test]
fn overloaded_phone_book_is_retried_after_its_retry_after() {
    let (url, count) = scripted(vec![
        (
            503,
            "Retry-After: 0\r\n",
            r#"{"error":"overloaded","message":"x"}"#,
        ),
        (200, "", OK),
    ]);
    let answer = smol::block_on(client(vec![url]).register(5000, Visibility::Public, &[])).unwrap();
    assert_eq!(answer.reregister_in, 3000);
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn a_retry_after_beyond_the_limit_fails_at_once_with_the_code() {
    let (url, count) = scripted(vec![(
        429,
        "Retry-After: 3600\r\n",
        r#"{"error":"rate_limited","message":"x"}"#,
    )]);
    let err =
        smol::block_on(client(vec![url]).register(5000, Visibility::Public, &[])).unwrap_err();
    assert!(
        matches!(&err, PhoneBookError::Rejected { status: 429, code } if code == "rate_limited"),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_quota_refusal_is_not_retried() {
    // pi-server answers an address or key over its quota with 429 `quota_exceeded` and no
    // Retry-After: only a record expiring lifts it, so retrying only adds load.
    let (url, count) = scripted(vec![
        (429, "", r#"{"error":"quota_exceeded","message":"x"}"#),
        (200, "", OK),
    ]);
    let err =
        smol::block_on(client(vec![url]).register(5000, Visibility::Public, &[])).unwrap_err();
    assert!(
        matches!(&err, PhoneBookError::Rejected { status: 429, code } if code == "quota_exceeded"),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn registration_succeeds_if_one_of_several_phone_books_accepts() {
    let (down, _) = scripted(vec![(500, "", "{}"); 8]);
    let (up, count) = scripted(vec![(200, "", OK)]);
    let book = client(vec![down, up]);
    smol::block_on(book.register(5000, Visibility::Public, &[])).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn lookups_need_a_registration_first() {
    let (url, _) = scripted(vec![]);
    let err = smol::block_on(
        client(vec![url]).lookup(&PlayerName::parse("Krile Baldesion@Gilgamesh").unwrap()),
    )
    .unwrap_err();
    assert!(matches!(err, PhoneBookError::NotRegistered), "{err}");
}

#[test]
fn registration_is_renewed_at_the_phone_books_reregister_time() {
    const SOON: &str = r#"{"success":true,"ip":"127.0.0.1","port":5000,"expiresIn":10,"reregisterIn":1,"token":"t"}"#;
    let (tx, rx) = smol::channel::unbounded();
    let (url, count) = scripted_notifying(vec![(200, "", SOON); 3], Some(tx));
    let book = Arc::new(client(vec![url]));
    smol::block_on(async {
        let _keeper = book.keep_registered(5000, Visibility::Public, vec![]);
        rx.recv().await.unwrap(); // the registration
        rx.recv().await.unwrap(); // its renewal, due about a second later
    });
    assert!(count.load(Ordering::SeqCst) >= 2);
}

#[test]
fn a_name_held_by_another_key_is_a_typed_key_conflict_that_says_when_it_frees() {
    let conflict = r#"{"error":"key_conflict","message":"this name is bound to another key"}"#;
    let (url, count) = scripted(vec![(409, "", conflict), (409, "", conflict)]);
    let book = client(vec![url]);
    let err = smol::block_on(book.register(5000, Visibility::Public, &[])).unwrap_err();
    match &err {
        PhoneBookError::KeyConflict { name, frees_within } => {
            assert_eq!(name.as_str(), "Tataru Taru@Gilgamesh");
            assert_eq!(*frees_within, peer::phonebook::KEY_BINDING_DEFAULT);
            assert_eq!(frees_within.as_secs(), 25 * 3600);
        }
        other => panic!("expected a key conflict, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("Tataru Taru@Gilgamesh")
            && text.contains("bound to another key")
            && text.contains("about 25 h"),
        "{text}"
    );
    // An unregistration with the wrong key is the same conflict.
    let err = smol::block_on(book.unregister()).unwrap_err();
    assert!(matches!(err, PhoneBookError::KeyConflict { .. }), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 2, "a conflict is not retried");
}

#[test]
fn a_request_cut_short_never_reads_the_answer_meant_for_it() {
    // The first connection answers its request only after the client's timeout; the answer
    // (reregisterIn 1111) must not be taken for the retry's, which a new connection gets
    // (reregisterIn 2222). A client that kept the first connection read 1111.
    const LATE: &str = r#"{"success":true,"ip":"127.0.0.1","port":5000,"expiresIn":3600,"reregisterIn":1111,"token":"late"}"#;
    const RETRY: &str = r#"{"success":true,"ip":"127.0.0.1","port":5000,"expiresIn":3600,"reregisterIn":2222,"token":"retry"}"#;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (i, s) in listener.incoming().flatten().take(2).enumerate() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 8192];
                let mut have = 0;
                // Both answers are kept-alive, so a client may read the next one on this
                // connection.
                loop {
                    let n = s.read(&mut buf[have..]).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).into_owned();
                    let Some(head) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..head]
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if have < head + 4 + len {
                        continue;
                    }
                    have = 0;
                    let body = if i == 0 {
                        std::thread::sleep(Duration::from_millis(600));
                        LATE
                    } else {
                        RETRY
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes());
                }
            });
        }
    });
    let config = PhoneBookConfig {
        urls: vec![url],
        backoff_base: Duration::from_millis(5),
        request_timeout: Duration::from_millis(300),
        max_attempts: 2,
        ..Default::default()
    };
    let book = PhoneBook::new(
        &Identity::generate(),
        PlayerName::parse("Tataru Taru@Gilgamesh").unwrap(),
        config,
    )
    .unwrap();
    let answer = smol::block_on(book.register(5000, Visibility::Public, &[]))
        .expect("the retry on a new connection is answered");
    assert_eq!(
        answer.reregister_in, 2222,
        "took the cancelled request's answer"
    );
}
