//! HTTPS for the phone book itself: the certificate store the TLS handshake reads, loading
//! PEM files, and the rustls server configuration (TLS 1.2 and 1.3, ring, ALPN `http/1.1`).
//!
//! The certificate can change while the server runs: [`CertStore`] holds an
//! `Arc<CertifiedKey>` that a reload of the files ([`CertStore::reload_files`]) or an ACME
//! renewal ([`crate::acme`]) replaces; handshakes that started keep the one they took. It also
//! answers ACME's TLS-ALPN-01 challenge (RFC 8737): a client that offers only `acme-tls/1`
//! gets the challenge certificate of the name it asks for, and nothing else.
//!
//! ```
//! use pi_server::tls::{CertStore, server_config};
//! let store = std::sync::Arc::new(CertStore::empty());
//! let config = server_config(store.clone()).unwrap();
//! assert_eq!(config.alpn_protocols[0], b"http/1.1");
//! assert!(store.current().is_none()); // handshakes fail until a certificate is set
//! ```

mod der;

pub use der::{Validity, validity};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// ALPN of HTTP/1.1, what clients of the phone book negotiate.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN of ACME's TLS-ALPN-01 validation (RFC 8737).
pub const ALPN_ACME: &[u8] = b"acme-tls/1";
/// Largest certificate or key file read, in bytes.
pub const MAX_PEM_FILE_BYTES: u64 = 256 * 1024;

/// The crypto provider of every TLS configuration here (ring, as the relay's).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate or key file could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsFileError {
    /// The file could not be read.
    Read(PathBuf, io::Error),
    /// The file is larger than [`MAX_PEM_FILE_BYTES`].
    TooLarge(PathBuf),
    /// No PEM `CERTIFICATE` block in the certificate file.
    NoCertificate(PathBuf),
    /// No PEM private key block in the key file.
    NoKey(PathBuf),
    /// The leaf certificate is not a readable X.509 certificate.
    BadCertificate(PathBuf),
    /// The key is of a kind ring cannot use, or does not belong to the certificate.
    KeyRejected(PathBuf, rustls::Error),
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            Self::TooLarge(p) => write!(
                f,
                "{} is larger than {MAX_PEM_FILE_BYTES} bytes: not a PEM certificate or key",
                p.display()
            ),
            Self::NoCertificate(p) => write!(
                f,
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                p.display()
            ),
            Self::NoKey(p) => write!(
                f,
                "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)",
                p.display()
            ),
            Self::BadCertificate(p) => {
                write!(
                    f,
                    "{}: the first certificate is not valid X.509",
                    p.display()
                )
            }
            Self::KeyRejected(p, e) => write!(
                f,
                "{}: the key cannot be used with the certificate ({e})",
                p.display()
            ),
        }
    }
}

impl std::error::Error for TlsFileError {}

impl From<TlsFileError> for io::Error {
    fn from(e: TlsFileError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| TlsFileError::Read(path.into(), e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsFileError::Read(path.into(), e))?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsFileError::TooLarge(path.into()));
    }
    Ok(bytes)
}

/// A certificate chain and key from PEM bytes, checked: the chain parses, the leaf is X.509
/// with a validity period, the key is one ring signs with and matches the leaf.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsFileError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsFileError::NoCertificate(cert_path.into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| TlsFileError::NoCertificate(cert_path.into()))?;
    validity(leaf).ok_or_else(|| TlsFileError::BadCertificate(cert_path.into()))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsFileError::NoKey(key_path.into()))?;
    let ck = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsFileError::KeyRejected(key_path.into(), e))?;
    Ok(Arc::new(ck))
}

/// Reads and checks a certificate chain and its key from PEM files.
pub fn load_files(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsFileError> {
    let cert_pem = read_bounded(cert)?;
    let key_pem = read_bounded(key)?;
    certified_key_from_pem(&cert_pem, &key_pem, cert, key)
}

/// The validity of a certified key's leaf certificate.
pub fn leaf_validity(ck: &CertifiedKey) -> Option<Validity> {
    validity(ck.cert.first()?)
}

/// The certificate the handshakes use, replaceable at run time, and the pending TLS-ALPN-01
/// challenge certificates.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// (DNS name, challenge certificate) while an ACME validation is under way.
    challenges: RwLock<Vec<(String, Arc<CertifiedKey>)>>,
    files: Option<(PathBuf, PathBuf)>,
}

impl CertStore {
    /// A store with no certificate yet (handshakes fail until [`CertStore::set`]).
    pub fn empty() -> Self {
        Self::default()
    }

    /// A store serving the certificate in `cert` and `key` (PEM), which
    /// [`CertStore::reload_files`] reads again.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsFileError> {
        let ck = load_files(cert, key)?;
        Ok(Self {
            current: RwLock::new(Some(ck)),
            challenges: RwLock::default(),
            files: Some((cert.into(), key.into())),
        })
    }

    /// The certificate files, if the store was made from files.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        self.files.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// Reads the files again and serves what they hold from the next handshake on. On error
    /// the certificate served so far stays.
    pub fn reload_files(&self) -> Result<Option<Validity>, TlsFileError> {
        let Some((cert, key)) = &self.files else {
            return Ok(None);
        };
        let ck = load_files(cert, key)?;
        let v = leaf_validity(&ck);
        self.set(ck);
        Ok(v)
    }

    /// Serves `ck` from the next handshake on.
    pub fn set(&self, ck: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(ck);
    }

    /// The certificate served now.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Answers TLS-ALPN-01 handshakes for `name` with `ck` until [`CertStore::clear_challenge`].
    pub fn set_challenge(&self, name: &str, ck: Arc<CertifiedKey>) {
        let mut c = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        c.retain(|(n, _)| n != name);
        c.push((name.to_ascii_lowercase(), ck));
    }

    /// Stops answering TLS-ALPN-01 handshakes for `name`.
    pub fn clear_challenge(&self, name: &str) {
        self.challenges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 section 3: the validation server offers `acme-tls/1` alone; such a
        // handshake gets the challenge certificate or fails, and never sees the real one.
        let acme = hello.alpn().is_some_and(|protocols| {
            let mut n = 0;
            protocols.inspect(|_| n += 1).all(|p| p == ALPN_ACME) && n > 0
        });
        if acme {
            let name = hello.server_name()?;
            let c = self.challenges.read().unwrap_or_else(|p| p.into_inner());
            return c
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, ck)| ck.clone());
        }
        self.current()
    }
}

/// The phone book's TLS configuration: TLS 1.3 and 1.2 with ring, no client certificates,
/// ALPN `http/1.1` (and `acme-tls/1` for validation handshakes), certificates from `store`.
pub fn server_config(store: Arc<CertStore>) -> io::Result<Arc<rustls::ServerConfig>> {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    c.alpn_protocols = vec![ALPN_HTTP11.to_vec(), ALPN_ACME.to_vec()];
    Ok(Arc::new(c))
}

#[cfg(test)]
mod tests;
