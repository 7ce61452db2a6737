//! A relay client spoken raw over TLS (frames of `phonebook_proto::relay`), for tests that
//! drive a real pi-server's relay frame by frame.

use std::sync::Arc;
use std::time::Duration;

use peer::net::relay::RelayBook;
use peer::net::relay::client::tls_config;
use peer::phonebook::PhoneBookConfig;
use peer::{Identity, PhoneBook, PlayerName, Visibility};
use phonebook_proto::relay::{Frame, RefuseReason};
use rustls::pki_types::ServerName;
use smol::io::{AsyncReadExt, AsyncWriteExt};

/// A raw relay connection and the bytes read but not decoded yet.
pub struct Tls {
    pub tls: futures_rustls::client::TlsStream<smol::net::TcpStream>,
    pub buf: Vec<u8>,
}

/// A registered player: its phone-book client (whose relay book holds its token).
pub async fn player(url: &str, name: &str) -> (Arc<Identity>, RelayBook) {
    let (identity, book) = registered(url, name, Visibility::Public).await;
    let relay = book.relay_books().pop().expect("the relay is announced");
    (identity, relay)
}

/// A player registered at `url` as `name` with `visibility`: its identity and phone-book
/// client (whose relay and UDP books hold its token).
pub async fn registered(
    url: &str,
    name: &str,
    visibility: Visibility,
) -> (Arc<Identity>, PhoneBook) {
    let identity = Arc::new(Identity::generate());
    let book = PhoneBook::new(
        &identity,
        PlayerName::parse(name).unwrap(),
        PhoneBookConfig {
            urls: vec![url.to_owned()],
            ..Default::default()
        },
    )
    .unwrap();
    book.register(7000, visibility, &[]).await.unwrap();
    (identity, book)
}

pub async fn connect(relay: &RelayBook) -> Tls {
    let tcp = smol::net::TcpStream::connect(relay.addr).await.unwrap();
    tls_over(relay, tcp).await
}

/// A TCP connection to the relay from `source` (any 127.0.0.0/8 address is loopback).
pub fn tcp_from(source: std::net::IpAddr, relay: &RelayBook) -> smol::net::TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::new(source, 0).into())
        .unwrap();
    s.connect(&relay.addr.into()).unwrap();
    let std: std::net::TcpStream = s.into();
    smol::Async::new(std).unwrap().into()
}

pub async fn tls_over(relay: &RelayBook, tcp: smol::net::TcpStream) -> Tls {
    let connector = futures_rustls::TlsConnector::from(Arc::new(tls_config(relay.pin)));
    let name = ServerName::try_from(relay.host.clone())
        .unwrap_or_else(|_| ServerName::IpAddress(relay.addr.ip().into()));
    Tls {
        tls: connector
            .connect(name, tcp)
            .await
            .expect("TLS to the relay"),
        buf: Vec::new(),
    }
}

pub async fn write_raw(tls: &mut Tls, bytes: &[u8]) {
    tls.tls.write_all(bytes).await.unwrap();
    tls.tls.flush().await.unwrap();
}

pub async fn send(tls: &mut Tls, frame: &Frame<'_>) {
    let mut out = Vec::new();
    frame.encode(&mut out);
    write_raw(tls, &out).await;
}

/// Reads frames until one that `want` takes, or the end of the connection (`None`); gives up
/// (a hang detector) after 10 s.
pub async fn until<T>(tls: &mut Tls, want: impl Fn(&Frame<'_>) -> Option<T>) -> Option<T> {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok(Some((f, used))) = Frame::decode(&tls.buf) {
                let got = want(&f);
                tls.buf.drain(..used);
                if got.is_some() {
                    return got;
                }
            }
            match tls.tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => tls.buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    smol::future::or(read, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        panic!("the relay neither answered nor closed");
    })
    .await
}

pub async fn refused(tls: &mut Tls) -> Option<RefuseReason> {
    until(tls, |f| match f {
        Frame::Refused { reason } => Some(*reason),
        _ => None,
    })
    .await
}

pub async fn welcomed(relay: &RelayBook) -> Tls {
    let mut tls = connect(relay).await;
    send(&mut tls, &Frame::Hello { token: relay.token }).await;
    assert!(
        until(&mut tls, |f| matches!(f, Frame::Welcome { .. })
            .then_some(()))
        .await
        .is_some(),
        "welcomed"
    );
    tls
}

/// Sends Listen, then a Ping: the relay handles a connection's frames in order, so its Pong
/// shows the Listen is in place.
pub async fn listen(tls: &mut Tls) {
    send(tls, &Frame::Listen).await;
    send(tls, &Frame::Ping { nonce: [7; 8] }).await;
    assert!(
        until(tls, |f| matches!(f, Frame::Pong { nonce: [7, ..] })
            .then_some(()))
        .await
        .is_some(),
        "pong after listen"
    );
}
