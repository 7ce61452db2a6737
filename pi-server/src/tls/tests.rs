use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let p = std::env::temp_dir().join(format!(
            "pb-tls-{tag}-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn files_load_and_reload_swaps_the_certificate() {
    let d = Dir::new("reload");
    let (c1, k1) = self_signed("one.example");
    let cert = d.write("c.pem", c1.as_bytes());
    let key = d.write("k.pem", k1.as_bytes());
    let store = CertStore::from_files(&cert, &key).unwrap();
    let first = store.current().unwrap();
    let (c2, k2) = self_signed("two.example");
    d.write("c.pem", c2.as_bytes());
    d.write("k.pem", k2.as_bytes());
    assert!(store.reload_files().unwrap().is_some());
    let second = store.current().unwrap();
    assert_ne!(first.cert[0], second.cert[0]);
    // A broken file on reload keeps the certificate served so far.
    d.write("k.pem", b"garbage");
    assert!(matches!(store.reload_files(), Err(TlsFileError::NoKey(_))));
    assert_eq!(store.current().unwrap().cert[0], second.cert[0]);
}

#[test]
fn bad_files_give_clear_errors() {
    let d = Dir::new("bad");
    let (c1, k1) = self_signed("one.example");
    let (_, k2) = self_signed("two.example");
    let cert = d.write("c.pem", c1.as_bytes());
    let key = d.write("k.pem", k1.as_bytes());
    let other_key = d.write("k2.pem", k2.as_bytes());
    let garbage = d.write("g.pem", b"hello\n");
    let fake = d.write(
        "f.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let big = d.write("big.pem", &vec![b'a'; MAX_PEM_FILE_BYTES as usize + 1]);
    let missing = d.0.join("missing.pem");
    let e = |c: &Path, k: &Path| load_files(c, k).unwrap_err();
    assert!(matches!(e(&missing, &key), TlsFileError::Read(..)));
    assert!(e(&missing, &key).to_string().contains("missing.pem"));
    assert!(matches!(e(&garbage, &key), TlsFileError::NoCertificate(_)));
    assert!(matches!(e(&fake, &key), TlsFileError::BadCertificate(_)));
    assert!(matches!(e(&cert, &garbage), TlsFileError::NoKey(_)));
    assert!(matches!(e(&cert, &cert), TlsFileError::NoKey(_)));
    assert!(matches!(
        e(&cert, &other_key),
        TlsFileError::KeyRejected(..)
    ));
    assert!(matches!(e(&big, &key), TlsFileError::TooLarge(_)));
    assert!(e(&cert, &other_key).to_string().contains("k2.pem"));
    assert!(load_files(&cert, &key).is_ok());
}

#[test]
fn challenge_certificate_only_for_acme_alpn() {
    let (c, k) = self_signed("pb.example");
    let real =
        certified_key_from_pem(c.as_bytes(), k.as_bytes(), Path::new("c"), Path::new("k")).unwrap();
    let (c, k) = self_signed("pb.example");
    let challenge =
        certified_key_from_pem(c.as_bytes(), k.as_bytes(), Path::new("c"), Path::new("k")).unwrap();
    let store = Arc::new(CertStore::empty());
    store.set(real.clone());
    store.set_challenge("pb.example", challenge.clone());
    let config = server_config(store.clone()).unwrap();

    // Handshake in memory with a client offering `alpn` and see which leaf it got.
    let leaf = |alpn: &[&[u8]]| {
        #[derive(Debug)]
        struct Any;
        impl rustls::client::danger::ServerCertVerifier for Any {
            fn verify_server_cert(
                &self,
                _: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let mut cc = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Any))
            .with_no_client_auth();
        cc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let mut client =
            rustls::ClientConnection::new(Arc::new(cc), "pb.example".try_into().unwrap()).unwrap();
        let mut server = rustls::ServerConnection::new(config.clone()).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                server.read_tls(&mut &buf[..]).unwrap();
                if server.process_new_packets().is_err() {
                    return None;
                }
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                client.read_tls(&mut &buf[..]).unwrap();
                if client.process_new_packets().is_err() {
                    return None;
                }
            }
        }
        Some((
            client.peer_certificates()?[0].clone(),
            client.alpn_protocol().map(<[u8]>::to_vec),
        ))
    };
    let (got, alpn) = leaf(&[ALPN_ACME]).unwrap();
    assert_eq!(got, challenge.cert[0]);
    assert_eq!(alpn.as_deref(), Some(ALPN_ACME));
    let (got, alpn) = leaf(&[ALPN_HTTP11]).unwrap();
    assert_eq!(got, real.cert[0]);
    assert_eq!(alpn.as_deref(), Some(ALPN_HTTP11));
    assert_eq!(leaf(&[]).unwrap().0, real.cert[0]);
    assert_eq!(leaf(&[ALPN_ACME, ALPN_HTTP11]).unwrap().0, real.cert[0]);
    store.clear_challenge("PB.example");
    assert!(
        leaf(&[ALPN_ACME]).is_none(),
        "no challenge: the handshake fails"
    );
}
