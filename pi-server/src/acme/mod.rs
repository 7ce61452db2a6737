//! An ACME client (RFC 8555) inside the phone book: it obtains and renews the HTTPS
//! certificate of `acme-domain`, validated with TLS-ALPN-01 (RFC 8737) on the phone book's own
//! listener, so no port 80 and no other program are needed.
//!
//! It does not support other challenges, wildcard names, several names per certificate,
//! external account binding or revocation.
//!
//! The loop (`run`, started by the server): with no certificate, or less than a third of its lifetime left
//! ([`renewal_due`]), or when asked (SIGHUP), it orders a certificate; meanwhile the old one is
//! served. A failure is logged at warn, counted in `/metrics`
//! (`phonebook_acme_failures_in_a_row`, `phonebook_tls_certificate_expiry_days`) and retried
//! after [`retry_delay`] (1 minute doubling to 6 hours, to 15 minutes while there is no
//! certificate at all). The account key
//! (`account.key`), the certificate (`certificate.pem`) and its key (`certificate.key`) are
//! kept in `acme-dir` (or beside the snapshot), written durably, mode 0600.
//!
//! Decisions that depend on time are sans-IO functions of `now` ([`renewal_due`],
//! [`next_check`], [`retry_delay`]); `order` and `run` are the edge.

mod http;
mod jws;

pub use http::{Client, EXCHANGE_TIMEOUT, MAX_RESPONSE_BYTES, Response, parse_response, split_url};
pub use jws::{AccountKey, b64url};

use crate::config::Config;
use crate::server::Shared;
use crate::tls::{CertStore, Validity, certified_key_from_pem, leaf_validity};
use futures_lite::FutureExt as _;
use phonebook_proto::json::{Limits, Value};
use rustls::pki_types::pem::PemObject as _;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File of the account key in the ACME directory.
pub const ACCOUNT_KEY_FILE: &str = "account.key";
/// File of the certificate chain.
pub const CERT_FILE: &str = "certificate.pem";
/// File of the certificate's private key.
pub const CERT_KEY_FILE: &str = "certificate.key";
/// First delay after a failed order; doubles per failure.
pub const RETRY_MIN: Duration = Duration::from_secs(60);
/// Longest delay between attempts while failing, with a certificate still served.
pub const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// Longest delay while there is no certificate at all (HTTPS is down until one comes; a
/// hobbyist fixing DNS or port forwarding should not wait hours). Four attempts an hour stay
/// under Let's Encrypt's limit of five failed validations per name and hour.
pub const RETRY_MAX_WITHOUT_CERT: Duration = Duration::from_secs(15 * 60);
/// Longest sleep between two looks at the certificate (a clock that jumped is noticed).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// Most polls of an authorization or order before the attempt fails.
pub const MAX_POLLS: u32 = 30;
/// Delay between polls when the server gives no `Retry-After`.
pub const POLL_DELAY: Duration = Duration::from_secs(1);
/// Longest `Retry-After` honoured while polling.
pub const MAX_POLL_DELAY: Duration = Duration::from_secs(10);
/// Times a request is sent again after `badNonce` (RFC 8555 section 6.5).
pub const MAX_BAD_NONCE_RETRIES: u32 = 3;

/// Whether a certificate valid over `v` should be renewed at `now` (Unix seconds): less than
/// a third of its lifetime is left (Let's Encrypt's advice: day 60 of 90).
pub fn renewal_due(v: Validity, now: i64) -> bool {
    let lifetime = (v.not_after - v.not_before).max(0);
    now >= v.not_after - lifetime / 3
}

/// How long to sleep before the next look at a certificate valid over `v`, at `now`.
pub fn next_check(v: Validity, now: i64) -> Duration {
    let lifetime = (v.not_after - v.not_before).max(0);
    let due = v.not_after - lifetime / 3;
    Duration::from_secs((due - now).max(1) as u64).min(CHECK_INTERVAL)
}

/// The delay after `failures` failed orders in a row (at least one); `serving`: a
/// certificate (perhaps expired) is still served.
pub fn retry_delay(failures: u32, serving: bool) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    let max = if serving {
        RETRY_MAX
    } else {
        RETRY_MAX_WITHOUT_CERT
    };
    RETRY_MIN.saturating_mul(1 << shift).min(max)
}

/// Why an order failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcmeError {
    /// Network, TLS or HTTP framing (the server is unreachable or spoke garbage).
    Io(io::Error),
    /// The server refused a request (`type` and `detail` of its problem document).
    Refused {
        /// What we asked.
        step: &'static str,
        /// HTTP status.
        status: u16,
        /// Problem type, such as `urn:ietf:params:acme:error:rateLimited`.
        kind: String,
        /// The server's explanation.
        detail: String,
    },
    /// An answer lacked something RFC 8555 requires.
    Malformed(&'static str),
    /// The server could not validate the challenge (its explanation).
    Invalid(String),
    /// No final answer after [`MAX_POLLS`] polls.
    Timeout(&'static str),
    /// Keys, CSR or certificate could not be made or used.
    Crypto(String),
    /// Storing the key or certificate failed.
    Store(io::Error),
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "ACME server unreachable: {e}"),
            Self::Refused {
                step,
                status,
                kind,
                detail,
            } => write!(f, "ACME server refused {step}: {status} {kind}: {detail}"),
            Self::Malformed(what) => write!(f, "ACME answer malformed: {what}"),
            Self::Invalid(why) => write!(f, "validation failed: {why}"),
            Self::Timeout(what) => write!(f, "{what} still pending after {MAX_POLLS} polls"),
            Self::Crypto(e) => write!(f, "key or certificate: {e}"),
            Self::Store(e) => write!(f, "cannot store the key or certificate: {e}"),
        }
    }
}

impl std::error::Error for AcmeError {}

impl From<io::Error> for AcmeError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn crypto(e: impl fmt::Display) -> AcmeError {
    AcmeError::Crypto(e.to_string())
}

/// Everything the ACME loop needs, checked at start.
#[derive(Debug)]
pub struct Manager {
    domain: String,
    contact: Option<String>,
    directory: String,
    dir: PathBuf,
    client: Client,
    account: AccountKey,
}

impl Manager {
    /// Checks the settings, makes the ACME directory (mode 0700) and loads or creates the
    /// account key. Errors name the setting at fault.
    pub fn new(config: &Config) -> io::Result<Self> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let domain = config
            .acme_domain
            .clone()
            .ok_or_else(|| bad("acme-domain is not set".into()))?;
        let dir = match (&config.acme_dir, &config.snapshot) {
            (Some(d), _) => d.clone(),
            (None, Some(s)) => match s.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            (None, None) => {
                return Err(bad(
                    "acme-domain needs acme-dir (or snapshot) to keep the account key and \
                     certificate across restarts"
                        .into(),
                ));
            }
        };
        create_private_dir(&dir).map_err(|e| bad(format!("acme-dir {}: {e}", dir.display())))?;
        let client = Client::new(config.acme_ca_root.as_deref())?;
        let key_path = dir.join(ACCOUNT_KEY_FILE);
        let account = match std::fs::read(&key_path) {
            Ok(pem) => {
                let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem)
                    .map_err(|_| bad(format!("{}: not a PKCS#8 PEM key", key_path.display())))?;
                AccountKey::from_pkcs8(der.secret_pkcs8_der())
                    .map_err(|_| bad(format!("{}: not a P-256 key", key_path.display())))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let k = AccountKey::generate().map_err(|_| io::Error::other("no randomness"))?;
                write_private(&key_path, pem("PRIVATE KEY", k.pkcs8()).as_bytes())?;
                log::info!("ACME account key created in {}", key_path.display());
                k
            }
            Err(e) => return Err(bad(format!("{}: {e}", key_path.display()))),
        };
        Ok(Self {
            domain,
            contact: config.acme_contact.clone(),
            directory: config.acme_directory.clone(),
            dir,
            client,
            account,
        })
    }

    /// The certificate stored by an earlier run, if both files load and match; a broken pair
    /// is logged and a new certificate ordered.
    pub fn stored_certificate(&self) -> Option<Arc<CertifiedKey>> {
        let (c, k) = (self.dir.join(CERT_FILE), self.dir.join(CERT_KEY_FILE));
        if !c.exists() {
            return None;
        }
        match crate::tls::load_files(&c, &k) {
            Ok(ck) if covers(&ck, &self.domain) => Some(ck),
            Ok(_) => {
                log::warn!(
                    "stored ACME certificate is not for {} (acme-domain changed?), ordering a \
                     new one",
                    self.domain
                );
                None
            }
            Err(e) => {
                log::warn!("stored ACME certificate unusable, ordering a new one: {e}");
                None
            }
        }
    }

    /// Orders a certificate, validates it over TLS-ALPN-01 through `store`'s challenge slot,
    /// stores it durably and returns it (the caller swaps it in).
    pub async fn order(&self, store: &CertStore) -> Result<Arc<CertifiedKey>, AcmeError> {
        let mut s = Session::start(self).await?;
        let payload = match &self.contact {
            Some(c) => format!(
                r#"{{"termsOfServiceAgreed":true,"contact":[{}]}}"#,
                jws::json_str(&format!("mailto:{c}"))
            ),
            None => r#"{"termsOfServiceAgreed":true}"#.to_owned(),
        };
        let new_account = s.dir_url("newAccount")?;
        let r = s.post("newAccount", &new_account, &payload, false).await?;
        s.kid = Some(
            r.location
                .ok_or(AcmeError::Malformed("newAccount: no Location"))?,
        );

        let new_order = s.dir_url("newOrder")?;
        let payload = format!(
            r#"{{"identifiers":[{{"type":"dns","value":{}}}]}}"#,
            jws::json_str(&self.domain)
        );
        let r = s.post("newOrder", &new_order, &payload, true).await?;
        let order_url = r
            .location
            .clone()
            .ok_or(AcmeError::Malformed("newOrder: no Location"))?;
        let order = json(&r.body)?;
        let authzs = str_array(&order, "authorizations")?;
        let finalize = str_field(&order, "finalize")?;
        for authz in authzs {
            let result = self.authorize(&mut s, &authz, store).await;
            store.clear_challenge(&self.domain);
            result?;
        }

        let key = rcgen::KeyPair::generate().map_err(crypto)?;
        let csr = rcgen::CertificateParams::new(vec![self.domain.clone()])
            .map_err(crypto)?
            .serialize_request(&key)
            .map_err(crypto)?;
        let payload = format!(r#"{{"csr":"{}"}}"#, b64url(csr.der()));
        s.post("finalize", &finalize, &payload, true).await?;
        let mut cert_url = None;
        for _ in 0..MAX_POLLS {
            let r = s.post("order", &order_url, "", true).await?;
            let o = json(&r.body)?;
            match str_field(&o, "status")?.as_str() {
                "valid" => {
                    cert_url = Some(str_field(&o, "certificate")?);
                    break;
                }
                "invalid" => return Err(AcmeError::Invalid("order became invalid".into())),
                _ => poll_wait(r.retry_after).await,
            }
        }
        let cert_url = cert_url.ok_or(AcmeError::Timeout("order"))?;
        let r = s.post("certificate", &cert_url, "", true).await?;
        let key_pem = key.serialize_pem();
        let ck = certified_key_from_pem(
            &r.body,
            key_pem.as_bytes(),
            Path::new("ACME certificate"),
            Path::new("its key"),
        )
        .map_err(crypto)?;
        // Key first: a crash between the two leaves a pair that does not match, which the
        // next start refuses and orders again, never a certificate without its key. On a
        // blocking thread: fsync on an SD card can take a while, and connections go on.
        let dir = self.dir.clone();
        let chain = r.body;
        smol::unblock(move || {
            write_private(&dir.join(CERT_KEY_FILE), key_pem.as_bytes())?;
            write_private(&dir.join(CERT_FILE), &chain)
        })
        .await
        .map_err(AcmeError::Store)?;
        Ok(ck)
    }

    async fn authorize(
        &self,
        s: &mut Session<'_>,
        authz_url: &str,
        store: &CertStore,
    ) -> Result<(), AcmeError> {
        let r = s.post("authorization", authz_url, "", true).await?;
        let a = json(&r.body)?;
        if str_field(&a, "status")? == "valid" {
            return Ok(());
        }
        let challenges = match field(&a, "challenges") {
            Some(Value::Array(c)) => c,
            _ => return Err(AcmeError::Malformed("authorization: no challenges")),
        };
        let ch = challenges
            .iter()
            .find(|c| matches!(field(c, "type"), Some(Value::Str(t)) if t == "tls-alpn-01"))
            .ok_or(AcmeError::Malformed("no tls-alpn-01 challenge offered"))?;
        let url = str_field(ch, "url")?;
        let token = str_field(ch, "token")?;
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AcmeError::Malformed("challenge token not base64url"));
        }
        let key_auth = format!("{token}.{}", self.account.thumbprint());
        store.set_challenge(&self.domain, challenge_cert(&self.domain, &key_auth)?);
        s.post("challenge", &url, "{}", true).await?;
        for _ in 0..MAX_POLLS {
            let r = s.post("authorization", authz_url, "", true).await?;
            let a = json(&r.body)?;
            match str_field(&a, "status")?.as_str() {
                "valid" => return Ok(()),
                "pending" | "processing" => poll_wait(r.retry_after).await,
                other => {
                    let why = problem_of_challenges(&a).unwrap_or_else(|| other.to_owned());
                    return Err(AcmeError::Invalid(why));
                }
            }
        }
        Err(AcmeError::Timeout("authorization"))
    }
}

/// Whether the leaf certificate of `ck` is valid for `domain` (its SAN names it).
pub fn covers(ck: &CertifiedKey, domain: &str) -> bool {
    let Some(leaf) = ck.cert.first() else {
        return false;
    };
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(leaf) else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(domain) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge (RFC 8737 section 3):
/// the name as its only SAN and the critical `acmeIdentifier` extension holding SHA-256 of
/// the key authorization.
pub fn challenge_cert(domain: &str, key_auth: &str) -> Result<Arc<CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(crypto)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(crypto)?;
    let digest = Sha256::digest(key_auth.as_bytes());
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(&digest));
    let cert = params.self_signed(&key).map_err(crypto)?;
    // Not through `CertifiedKey::from_der`: its key check parses the certificate with webpki,
    // which refuses the critical extension it does not know.
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = crate::tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(crypto)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// One order's conversation: the directory, the current nonce and the account URL.
struct Session<'a> {
    m: &'a Manager,
    directory: Value,
    nonce: Option<String>,
    kid: Option<String>,
}

impl<'a> Session<'a> {
    async fn start(m: &'a Manager) -> Result<Session<'a>, AcmeError> {
        let r = m.client.request("GET", &m.directory, None).await?;
        if r.status != 200 {
            return Err(refused("directory", &r));
        }
        Ok(Session {
            m,
            directory: json(&r.body)?,
            nonce: None,
            kid: None,
        })
    }

    fn dir_url(&self, name: &'static str) -> Result<String, AcmeError> {
        str_field(&self.directory, name).map_err(|_| AcmeError::Malformed("directory incomplete"))
    }

    async fn fresh_nonce(&mut self) -> Result<String, AcmeError> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let url = self.dir_url("newNonce")?;
        let r = self.m.client.request("HEAD", &url, None).await?;
        r.nonce
            .ok_or(AcmeError::Malformed("newNonce: no Replay-Nonce"))
    }

    /// A signed POST (`payload` empty: POST-as-GET); with `kid`, signed with the account URL.
    async fn post(
        &mut self,
        step: &'static str,
        url: &str,
        payload: &str,
        kid: bool,
    ) -> Result<http::Response, AcmeError> {
        let mut tries = 0;
        loop {
            let nonce = self.fresh_nonce().await?;
            let kid = if kid { self.kid.as_deref() } else { None };
            let body = self
                .m
                .account
                .sign(url, &nonce, kid, payload)
                .map_err(|_| AcmeError::Crypto("signing failed".into()))?;
            let r = self
                .m
                .client
                .request("POST", url, Some(body.as_bytes()))
                .await?;
            self.nonce = r.nonce.clone();
            if (200..300).contains(&r.status) {
                return Ok(r);
            }
            let e = refused(step, &r);
            let bad_nonce = matches!(&e, AcmeError::Refused { kind, .. }
                if kind == "urn:ietf:params:acme:error:badNonce");
            tries += 1;
            if !bad_nonce || tries > MAX_BAD_NONCE_RETRIES {
                return Err(e);
            }
        }
    }
}

async fn poll_wait(retry_after: Option<u64>) {
    let d = retry_after.map_or(POLL_DELAY, Duration::from_secs);
    async_io::Timer::after(d.clamp(Duration::from_millis(200), MAX_POLL_DELAY)).await;
}

fn refused(step: &'static str, r: &http::Response) -> AcmeError {
    let doc = json(&r.body).ok();
    let get = |n| {
        doc.as_ref()
            .and_then(|d| str_field(d, n).ok())
            .unwrap_or_default()
    };
    AcmeError::Refused {
        step,
        status: r.status,
        kind: get("type"),
        detail: get("detail").chars().take(300).collect(),
    }
}

/// The error of the first challenge that has one (why validation failed).
fn problem_of_challenges(authz: &Value) -> Option<String> {
    let Some(Value::Array(cs)) = field(authz, "challenges") else {
        return None;
    };
    cs.iter().find_map(|c| {
        let e = field(c, "error")?;
        Some(format!(
            "{}: {}",
            str_field(e, "type").unwrap_or_default(),
            str_field(e, "detail")
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        ))
    })
}

/// ACME answers, read with the strict reader under generous limits.
fn json(body: &[u8]) -> Result<Value, AcmeError> {
    let limits = Limits {
        max_depth: 16,
        max_values: 16_384,
        max_string: 64 * 1024,
    };
    phonebook_proto::json::parse(body, limits).map_err(|_| AcmeError::Malformed("not JSON"))
}

fn field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    match v {
        Value::Object(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v),
        _ => None,
    }
}

fn str_field(v: &Value, name: &str) -> Result<String, AcmeError> {
    match field(v, name) {
        Some(Value::Str(s)) => Ok(s.clone()),
        _ => Err(AcmeError::Malformed("a required string is missing")),
    }
}

fn str_array(v: &Value, name: &str) -> Result<Vec<String>, AcmeError> {
    match field(v, name) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(AcmeError::Malformed(
                    "a list of strings holds something else",
                )),
            })
            .collect(),
        _ => Err(AcmeError::Malformed("a required list is missing")),
    }
}

/// `der` as a PEM block of `label`.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = phonebook_proto::b64::encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one whole:
/// a temporary file (mode 0600) in the same directory, fsync, rename, fsync of the directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = path.with_file_name(format!(
        "{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The renewal loop (see the module doc); runs until the server stops. `asked` forces an
/// order now (SIGHUP, [`crate::server::TlsReload`]).
pub(crate) async fn run(shared: Rc<Shared>, m: Manager, asked: async_channel::Receiver<()>) {
    let Some(store) = shared.tls.as_ref().map(|t| t.store.clone()) else {
        return;
    };
    let mut failures = 0u32;
    let mut forced = false;
    loop {
        let current = store.current().as_deref().and_then(leaf_validity);
        let now = unix_now();
        let wanted = forced || current.is_none_or(|v| renewal_due(v, now));
        let wait = if wanted {
            log::info!(
                "ACME: ordering a certificate for {} from {}",
                m.domain,
                m.directory
            );
            match m.order(&store).await {
                Ok(ck) => {
                    let v = leaf_validity(&ck);
                    store.set(ck);
                    failures = 0;
                    forced = false;
                    let mut app = shared.app.borrow_mut();
                    app.metrics.tls.reloads += 1;
                    app.metrics.tls.acme_failures_in_a_row = 0;
                    app.metrics.tls.cert_not_after = v.map(|v| v.not_after);
                    if let Some(v) = v {
                        log::info!(
                            "ACME: new certificate for {}, valid for {} days",
                            m.domain,
                            (v.not_after - unix_now()) / 86_400
                        );
                    }
                    v.map_or(CHECK_INTERVAL, |v| next_check(v, unix_now()))
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = retry_delay(failures, current.is_some());
                    let mut app = shared.app.borrow_mut();
                    app.metrics.tls.acme_failures += 1;
                    app.metrics.tls.acme_failures_in_a_row = u64::from(failures);
                    let left = current.map_or("no certificate yet".to_owned(), |v| {
                        format!(
                            "the current one expires in {} days",
                            (v.not_after - now) / 86_400
                        )
                    });
                    log::warn!(
                        "ACME: renewal for {} failed ({failures} in a row; {left}), retry in \
                         {} s: {e}",
                        m.domain,
                        delay.as_secs()
                    );
                    delay
                }
            }
        } else {
            current.map_or(RETRY_MIN, |v| next_check(v, now))
        };
        let by_request = async { asked.recv().await.is_ok() }
            .or(async {
                async_io::Timer::after(wait).await;
                false
            })
            .await;
        if by_request {
            log::info!("ACME: renewal requested");
            forced = true;
        }
    }
}

#[cfg(test)]
mod tests;
