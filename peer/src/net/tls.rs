//! TLS 1.3 with Ed25519 self-signed certificates and verifiers that accept exactly one key.
//!
//! The certificate only carries the key: nothing in it is trusted but the key, and the
//! handshake signature is checked against the *expected* key itself (the requester's side) or
//! the key in the certificate (the server's side, which then applies its own policy).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, PeerId};

/// The server name every peer uses: identities are keys, not names.
pub const SERVER_NAME: &str = "peer.ffxiv-p2p.invalid";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The identity's self-signed certificate and its key in rustls form.
pub(crate) fn certificate(
    identity: &Identity,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let der = identity.pkcs8_der();
    let pkcs8 = PrivatePkcs8KeyDer::from(der.to_vec());
    let key_pair = rcgen::KeyPair::try_from(&pkcs8).expect("a valid Ed25519 PKCS#8 key");
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("a valid name");
    let cert = params.self_signed(&key_pair).expect("Ed25519 self-signing");
    (vec![cert.der().clone()], PrivateKeyDer::Pkcs8(pkcs8))
}

/// The Ed25519 key a certificate carries, if it carries one.
pub fn key_of_certificate(cert: &CertificateDer<'_>) -> Option<PeerId> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    PeerId::from_bytes(key.try_into().ok()?).ok()
}

fn verify_ed25519(
    key: &PeerId,
    message: &[u8],
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme == SignatureScheme::ED25519 && key.verify(message, dss.signature()) {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ))
    }
}

/// Accepts a server only if it proves `expected`. Remembers the key it saw instead, so that a
/// failed connection can say which key answered.
#[derive(Debug)]
pub(crate) struct ExpectedServer {
    pub(crate) expected: PeerId,
    pub(crate) seen: Mutex<Option<PeerId>>,
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = key_of_certificate(end_entity);
        *self.seen.lock().expect("not poisoned") = key;
        if key == Some(self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(&self.expected, message, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Accepts any client that proves an Ed25519 key; who may use the connection is decided
/// afterwards by the server's policy, so that a refused client gets a clear close reason
/// instead of a bare handshake failure.
#[derive(Debug)]
pub(crate) struct AnyEd25519Client;

impl ClientCertVerifier for AnyEd25519Client {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match key_of_certificate(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let key = key_of_certificate(cert).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        verify_ed25519(&key, message, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls client config that proves `identity` and accepts only `expected`.
pub(crate) fn client_config(
    identity: &Identity,
    verifier: Arc<ExpectedServer>,
    alpn: Vec<Vec<u8>>,
) -> rustls::ClientConfig {
    let (certs, key) = certificate(identity);
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certs, key)
        .expect("a valid Ed25519 certificate");
    c.alpn_protocols = alpn;
    c
}

/// rustls server config that proves `identity` and requires a client key.
pub(crate) fn server_config(identity: &Identity, alpn: Vec<Vec<u8>>) -> rustls::ServerConfig {
    let (certs, key) = certificate(identity);
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_client_cert_verifier(Arc::new(AnyEd25519Client))
        .with_single_cert(certs, key)
        .expect("a valid Ed25519 certificate");
    c.alpn_protocols = alpn;
    c.max_early_data_size = 0;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_identity_key() {
        let id = Identity::from_seed(&[3; 32]);
        let (certs, _) = certificate(&id);
        assert_eq!(key_of_certificate(&certs[0]), Some(id.id()));
        assert_eq!(
            key_of_certificate(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])),
            None
        );
    }
}
