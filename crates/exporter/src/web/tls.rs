//! Optional TLS for the HTTP endpoint: rustls with the aws-lc-rs provider the AWS SDK already
//! links (no second crypto library), and certificates that follow their files.
//!
//! cert-manager and Kubernetes secret mounts replace certificate files in place, weeks before the
//! old certificate expires, and nobody restarts an exporter for that. So the server certificate is
//! chosen per handshake by [`ReloadingCert`], which looks at the files again at most every few
//! seconds and switches to their new content once it parses and the key matches. A half-written
//! or broken pair keeps the previous certificate in service and is logged once, not per handshake.
//!
//! The client CA (mutual TLS) is read once at startup: rustls' verifier is built from it, and CA
//! bundles change rarely enough that a restart is the documented way to change one.
//!
//! With a client CA the handshake still admits clients without a certificate, verifying every
//! certificate that is presented. Such clients reach only `/healthz` and `/readyz` (the HTTP layer
//! answers 403 elsewhere), because kubelet probes cannot present client certificates, and a pod
//! whose probes fail is never ready.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use super::settings::{TlsConfig, TlsVersion};
use crate::state::State;

/// How often, at most, the certificate files are looked at again (only when a handshake happens).
pub(crate) const DEFAULT_CERT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Which `[server.tls]` key an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKey {
    Cert,
    Key,
    ClientCa,
}

impl FileKey {
    fn name(self) -> &'static str {
        match self {
            FileKey::Cert => "server.tls.cert_file",
            FileKey::Key => "server.tls.key_file",
            FileKey::ClientCa => "server.tls.client_ca_file",
        }
    }

    /// The key as exporter-toolkit's web config file names it.
    pub(crate) fn toolkit_name(self) -> &'static str {
        match self {
            FileKey::Cert => "tls_server_config.cert_file",
            FileKey::Key => "tls_server_config.key_file",
            FileKey::ClientCa => "tls_server_config.client_ca_file",
        }
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with the TLS files. Each message names the key, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}\n  hint: check the path and that the exporter's user may read it", path.display())]
    Read {
        key: FileKey,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {} holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` block){detail}", path.display())]
    NoCertificate {
        key: FileKey,
        path: PathBuf,
        detail: String,
    },
    #[error("{key}: {} holds no PEM private key (expected `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`){detail}", path.display())]
    NoKey {
        key: FileKey,
        path: PathBuf,
        detail: String,
    },
    #[error("{key}: the private key in {} cannot be used: {reason}\n  hint: use an RSA, ECDSA (P-256/P-384) or Ed25519 key", path.display())]
    BadKey {
        key: FileKey,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: the private key in {} does not belong to the certificate in {}\n  hint: the two files must come from the same issuance (tls.key and tls.crt of one Secret)", key_path.display(), cert_path.display())]
    Mismatch {
        key: FileKey,
        key_path: PathBuf,
        cert_path: PathBuf,
    },
    #[error("{key}: {} holds a certificate that cannot be a trust anchor: {reason}", path.display())]
    BadCa {
        key: FileKey,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

impl TlsError {
    /// The message with the key named as exporter-toolkit's web config file names it
    /// (`tls_server_config.cert_file` for `server.tls.cert_file`).
    pub(crate) fn toolkit_message(&self) -> String {
        let message = self.to_string();
        let key = self.file_key();
        match message.strip_prefix(&format!("{key}: ")) {
            Some(rest) => format!("{}: {rest}", key.toolkit_name()),
            None => message,
        }
    }

    /// The `[server.tls]` key the error is about (for config error locations).
    pub(crate) fn file_key(&self) -> FileKey {
        match self {
            TlsError::Read { key, .. }
            | TlsError::NoCertificate { key, .. }
            | TlsError::NoKey { key, .. }
            | TlsError::BadKey { key, .. }
            | TlsError::Mismatch { key, .. }
            | TlsError::BadCa { key, .. } => *key,
            TlsError::Setup(_) => FileKey::Cert,
        }
    }
}

/// The crypto provider: aws-lc-rs, as the AWS SDK's HTTP client uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks every file of `[server.tls]`: the config validation step.
pub(crate) fn check_files(config: &TlsConfig) -> Result<(), TlsError> {
    let provider = provider();
    load_pair(&config.cert_file, &config.key_file, &provider)?;
    if let Some(ca) = &config.client_ca_file {
        load_client_roots(ca)?;
    }
    Ok(())
}

/// A TLS acceptor for the endpoint, built from the checked config.
pub struct Tls {
    acceptor: TlsAcceptor,
    client_auth: bool,
    cert: Arc<ReloadingCert>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate, key and client CA; `check_interval` bounds how often the
    /// certificate files are looked at again.
    /// Every load of the certificate files is noted in `state`'s certificate status.
    pub fn new(
        config: &TlsConfig,
        check_interval: Duration,
        state: Arc<State>,
    ) -> Result<Tls, TlsError> {
        let provider = provider();
        let resolver = Arc::new(ReloadingCert::new(
            config.cert_file.clone(),
            config.key_file.clone(),
            check_interval,
            Arc::clone(&provider),
            Some(state),
        )?);
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&protocol_versions(config))
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match &config.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = load_client_roots(ca)?;
                // A certificate a client presents is always verified; one that presents none
                // gets through the handshake and is refused by the routes that need one, so
                // that the probes stay open (`ClientAuth`).
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::BadCa {
                            key: FileKey::ClientCa,
                            path: ca.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_cert_resolver(Arc::clone(&resolver) as _);
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            client_auth: config.requires_client_certificate(),
            cert: resolver,
        })
    }

    /// Looks at the certificate files now (a reload): returns whether the pair in service is the
    /// files' current content, i.e. false while the files hold a pair that cannot be used.
    pub(crate) fn refresh_now(&self) -> bool {
        self.cert.refresh_now()
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Whether clients must present a certificate from `client_ca_file` for protected routes.
    pub(crate) fn client_auth(&self) -> bool {
        self.client_auth
    }
}

/// The versions from `min_version` to `max_version` (validation keeps min <= max; were it not,
/// the newest alone).
fn protocol_versions(config: &TlsConfig) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let versions: Vec<_> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (config.min_version..=config.max_version).contains(v))
    .map(|(_, supported)| supported)
    .collect();
    if versions.is_empty() {
        vec![&rustls::version::TLS13]
    } else {
        versions
    }
}

/// The largest certificate, key or CA bundle file read: a PEM chain is a few KiB, a large CA bundle
/// a few hundred; a FIFO or a device is refused like a too-large file (see `crate::files`).
const MAX_PEM_FILE_BYTES: u64 = 4 * 1024 * 1024;

fn read(key: FileKey, path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::files::read_bounded(path, MAX_PEM_FILE_BYTES).map_err(|problem| TlsError::Read {
        key,
        path: path.to_owned(),
        source: problem.into_io(),
    })
}

fn pem_detail(error: Option<rustls::pki_types::pem::Error>) -> String {
    match error {
        Some(e) => format!(": the PEM is damaged ({e})"),
        None => String::new(),
    }
}

fn parse_certs(
    key: FileKey,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        match item {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                return Err(TlsError::NoCertificate {
                    key,
                    path: path.to_owned(),
                    detail: pem_detail(Some(e)),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_owned(),
            detail: String::new(),
        });
    }
    Ok(certs)
}

fn parse_pair(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs = parse_certs(FileKey::Cert, cert_path, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        key: FileKey::Key,
        path: key_path.to_owned(),
        // The PEM parser's detail may quote a line of the key file: say only that it is damaged.
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => String::new(),
            _ => ": the PEM is damaged".to_owned(),
        },
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            key: FileKey::Key,
            key_path: key_path.to_owned(),
            cert_path: cert_path.to_owned(),
        },
        other => TlsError::BadKey {
            key: FileKey::Key,
            path: key_path.to_owned(),
            reason: other.to_string(),
        },
    })
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(FileKey::Cert, cert_path)?;
    let key_pem = read(FileKey::Key, key_path)?;
    parse_pair(cert_path, &cert_pem, key_path, &key_pem, provider)
}

fn load_client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bytes = read(FileKey::ClientCa, path)?;
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(FileKey::ClientCa, path, &bytes)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            key: FileKey::ClientCa,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A fingerprint of both files' contents: cheaper to keep than the key bytes, and exact where
/// modification times are coarse or lie (a rewrite within the same second).
fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert_pem.len() as u64).to_be_bytes());
    hasher.update(cert_pem);
    hasher.update(key_pem);
    hasher.finalize().into()
}

/// Serves the certificate in `cert_path`/`key_path`, picking up new file contents.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    check_interval: Duration,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
    state: Option<Arc<State>>,
}

struct Current {
    key: Arc<CertifiedKey>,
    /// Fingerprint of the files `key` came from.
    loaded: [u8; 32],
    checked: Instant,
    /// The last problem logged, so that a broken pair is reported once, not per handshake.
    reported: Option<String>,
}

/// Notes each load of the files (`healthlake_exporter_tls_certificate_load_successful`).
fn note(state: Option<&Arc<State>>, ok: bool) {
    if let Some(state) = state {
        state.certificate_status().set(Some(ok));
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    pub fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        check_interval: Duration,
        provider: Arc<CryptoProvider>,
        state: Option<Arc<State>>,
    ) -> Result<Self, TlsError> {
        let cert_pem = read(FileKey::Cert, &cert_path)?;
        let key_pem = read(FileKey::Key, &key_path)?;
        let key = parse_pair(&cert_path, &cert_pem, &key_path, &key_pem, &provider)?;
        Ok(ReloadingCert {
            current: Mutex::new(Current {
                key: Arc::new(key),
                loaded: fingerprint(&cert_pem, &key_pem),
                checked: Instant::now(),
                reported: None,
            }),
            cert_path,
            key_path,
            check_interval,
            provider,
            state,
        })
    }

    /// Looks at the files now, whatever the check interval; true when they hold the pair served.
    pub fn refresh_now(&self) -> bool {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.checked = Instant::now();
        self.refresh(&mut current)
    }

    /// The certificate to serve now, after looking at the files if they are due a look.
    fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still a valid key.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.checked.elapsed() >= self.check_interval {
            current.checked = Instant::now();
            self.refresh(&mut current);
        }
        Arc::clone(&current.key)
    }

    fn refresh(&self, current: &mut Current) -> bool {
        let read_both = read(FileKey::Cert, &self.cert_path)
            .and_then(|cert| read(FileKey::Key, &self.key_path).map(|key| (cert, key)));
        let outcome = read_both.and_then(|(cert_pem, key_pem)| {
            let print = fingerprint(&cert_pem, &key_pem);
            if print == current.loaded {
                return Ok(None);
            }
            parse_pair(
                &self.cert_path,
                &cert_pem,
                &self.key_path,
                &key_pem,
                &self.provider,
            )
            .map(|key| Some((key, print)))
        });
        match outcome {
            Ok(None) => {
                // The files hold the pair in service (again).
                current.reported = None;
                note(self.state.as_ref(), true);
                true
            }
            Ok(Some((key, print))) => {
                current.key = Arc::new(key);
                current.loaded = print;
                current.reported = None;
                tracing::info!(
                    cert_file = %self.cert_path.display(),
                    key_file = %self.key_path.display(),
                    "TLS certificate files changed: serving the new certificate"
                );
                note(self.state.as_ref(), true);
                true
            }
            Err(error) => {
                let message = error.to_string();
                if current.reported.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        %error,
                        "TLS certificate files changed but cannot be used (yet): still serving the previous certificate"
                    );
                    current.reported = Some(message);
                }
                note(self.state.as_ref(), false);
                false
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate path swapped to a FIFO (or a device) is refused at once, never read: a
    /// reload must not block on it.
    #[test]
    fn a_fifo_or_a_device_in_place_of_a_pem_file_is_refused_at_once() {
        let temp = tempfile::Builder::new()
            .prefix("hle-tls-")
            .tempdir()
            .unwrap();
        let dir = temp.path();
        let fifo = dir.join("tls.crt");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            match read(FileKey::Cert, path) {
                Err(TlsError::Read { source, .. }) => assert!(
                    source.to_string().contains("not a regular file"),
                    "{source}"
                ),
                other => panic!("{} was not refused: {other:?}", path.display()),
            }
        }
    }
}
