use super::*;

const DAY: i64 = 86_400;

#[test]
fn renewal_at_two_thirds_of_the_lifetime() {
    let v = Validity {
        not_before: 0,
        not_after: 90 * DAY,
    };
    assert!(!renewal_due(v, 0));
    assert!(!renewal_due(v, 60 * DAY - 1));
    assert!(renewal_due(v, 60 * DAY));
    assert!(renewal_due(v, 100 * DAY));
    assert_eq!(
        next_check(v, 59 * DAY),
        Duration::from_secs(DAY as u64).min(CHECK_INTERVAL)
    );
    assert_eq!(next_check(v, 0), CHECK_INTERVAL);
    assert_eq!(next_check(v, 61 * DAY), Duration::from_secs(1));
    // A backwards period (garbage) is due at once rather than never.
    let weird = Validity {
        not_before: 10 * DAY,
        not_after: 0,
    };
    assert!(renewal_due(weird, 0));
}

#[test]
fn retry_backs_off_to_a_cap() {
    assert_eq!(retry_delay(1, true), RETRY_MIN);
    assert_eq!(retry_delay(2, true), RETRY_MIN * 2);
    assert_eq!(retry_delay(3, true), RETRY_MIN * 4);
    assert_eq!(retry_delay(100, true), RETRY_MAX);
    assert_eq!(retry_delay(u32::MAX, true), RETRY_MAX);
    assert_eq!(retry_delay(0, true), RETRY_MIN);
    // Without any certificate: never more than 15 minutes, at most 4 failures an hour.
    assert_eq!(retry_delay(4, false), RETRY_MIN * 8);
    assert_eq!(retry_delay(5, false), RETRY_MAX_WITHOUT_CERT);
    assert_eq!(retry_delay(100, false), RETRY_MAX_WITHOUT_CERT);
}

#[test]
fn challenge_certificate_carries_the_key_authorization_digest() {
    let ck = challenge_cert("pb.example.org", "token.thumb").unwrap();
    let der = ck.cert[0].as_ref();
    let digest = Sha256::digest(b"token.thumb");
    // id-pe-acmeIdentifier 1.3.6.1.5.5.7.1.31, critical, OCTET STRING of the digest.
    let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
    let at = der.windows(oid.len()).position(|w| w == oid).unwrap();
    let after = &der[at + oid.len()..];
    assert_eq!(&after[..3], &[0x01, 0x01, 0xff], "critical");
    assert!(after.windows(32).any(|w| w == digest.as_slice()));
    assert!(der.windows(14).any(|w| w == b"pb.example.org"));
}

#[test]
fn manager_needs_a_place_for_its_files() {
    let config = Config {
        acme_domain: Some("pb.example.org".into()),
        ..Config::default()
    };
    let e = Manager::new(&config).unwrap_err().to_string();
    assert!(e.contains("acme-dir"), "{e}");
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    let dir = std::env::temp_dir().join(format!("pb-acme-{:x}", u64::from_le_bytes(b)));
    let config = Config {
        acme_dir: Some(dir.clone()),
        ..config
    };
    let m = Manager::new(&config).unwrap();
    let thumb = m.account.thumbprint();
    assert!(m.stored_certificate().is_none());
    // The account key survives a restart.
    let m2 = Manager::new(&config).unwrap();
    assert_eq!(m2.account.thumbprint(), thumb);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(ACCOUNT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A stored certificate is used only if it names acme-domain.
    let store = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join(CERT_KEY_FILE), key.serialize_pem()).unwrap();
        std::fs::write(dir.join(CERT_FILE), cert.pem()).unwrap();
    };
    store("other.example.org");
    assert!(m2.stored_certificate().is_none());
    store("pb.example.org");
    assert!(m2.stored_certificate().is_some());
    std::fs::write(dir.join(CERT_FILE), b"garbage").unwrap();
    assert!(m2.stored_certificate().is_none());
    // A garbage key file is a clear error, not a new identity.
    std::fs::write(dir.join(ACCOUNT_KEY_FILE), b"junk").unwrap();
    let e = Manager::new(&config).unwrap_err().to_string();
    assert!(e.contains("account.key"), "{e}");
    // A garbage extra root is a clear error.
    std::fs::remove_file(dir.join(ACCOUNT_KEY_FILE)).unwrap();
    std::fs::write(dir.join("root.pem"), b"junk").unwrap();
    let e = Manager::new(&Config {
        acme_ca_root: Some(dir.join("root.pem")),
        ..config
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("acme-ca-root"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
