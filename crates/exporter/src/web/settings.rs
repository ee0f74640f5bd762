//! The `[server]` settings the web module serves with: listen address, connection caps, reload
//! switch and allowed hosts, TLS files, basic auth users and response headers. The config module
//! builds them from the TOML file, or TLS, users and headers from exporter-toolkit's web config
//! file (`toolkit`), and checks them with the checks the web module owns (`tls::check_files`,
//! `auth::UserRules`, `parse_listen_address`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Where the exporter listens when neither the file nor `--listen-address` says otherwise: 9469 is
/// free in Prometheus' default port allocations list, so it does not collide with other exporters.
pub(crate) const DEFAULT_LISTEN_ADDRESS: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9469);
/// Enough for several Prometheus replicas, probes and a person with curl; small enough that idle
/// connections cannot exhaust file descriptors.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 64;
pub(crate) const MAX_MAX_CONNECTIONS: usize = 10_000;
/// Names `server.reload_allowed_hosts` may list.
pub(crate) const MAX_RELOAD_ALLOWED_HOSTS: usize = 64;

/// `server.max_connections_per_ip` when the file does not say: a quarter of `max_connections`
/// (16 of 64). Plenty for Prometheus (one connection per target and replica), and two or three
/// addresses holding slots they do not use still leave room for everyone else.
pub(crate) fn default_max_connections_per_ip(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// `[server]`: where and how the endpoint is served.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen_address: SocketAddr,
    /// Connections held open at once; see the `web` module docs for what happens at the cap.
    pub max_connections: usize,
    /// Connections one source address may hold at once; 0 = no per-address limit.
    pub max_connections_per_ip: usize,
    /// `POST /-/reload` re-reads the file (off by default: anyone who can reach the endpoint
    /// could otherwise trigger reloads; SIGHUP always works).
    pub enable_reload: bool,
    /// Host names (lowercase, no port) a `POST /-/reload` may be addressed to, besides IP
    /// addresses and `localhost`: a web page whose DNS name was rebound to this endpoint sends
    /// its own name, and is refused.
    pub reload_allowed_hosts: Vec<String>,
    /// `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `None`: no credentials asked for.
    pub basic_auth: Option<BasicAuthConfig>,
    /// Headers added to every response (`http_server_config.headers` of the web config file).
    pub headers: ResponseHeaders,
    /// Set: TLS, basic auth and headers came from this exporter-toolkit web config file
    /// (`--web.config.file`) rather than from `[server.tls]` and `[server.basic_auth]`.
    pub web_config_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen_address: DEFAULT_LISTEN_ADDRESS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: default_max_connections_per_ip(DEFAULT_MAX_CONNECTIONS),
            enable_reload: false,
            reload_allowed_hosts: Vec::new(),
            tls: None,
            basic_auth: None,
            headers: ResponseHeaders::default(),
            web_config_file: None,
        }
    }
}

/// `[server.tls]` (or `tls_server_config`): paths already resolved against the config file's
/// directory and checked to hold a matching certificate and key (and CA certificates) when the
/// config was validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: client certificates are verified against these CAs; [`TlsConfig::client_auth`] says
    /// whether routes need one.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: whether every route but the probes needs a client certificate.
    pub client_auth: ClientAuth,
    /// The oldest TLS version offered (rustls offers 1.2 and 1.3).
    pub min_version: TlsVersion,
    /// The newest TLS version offered, at least `min_version`.
    pub max_version: TlsVersion,
}

/// What a client certificate is for, with `client_ca_file`. A certificate a client presents is
/// always verified against the CAs, so a client with a bad one fails the handshake; the two
/// differ only for a client that presents none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every route but the probes `/healthz` and `/readyz` answers `403` without a certificate
    /// (`[server.tls] client_ca_file`, exporter-toolkit's `RequireAndVerifyClientCert`).
    #[default]
    Required,
    /// A client without a certificate is served as if no CA were configured (exporter-toolkit's
    /// `VerifyClientCertIfGiven`).
    IfGiven,
}

/// A TLS protocol version rustls serves. TLS 1.0 and 1.1 (deprecated by RFC 8996) are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsConfig {
    /// A certificate and key, TLS 1.2 and 1.3, no client certificates.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> TlsConfig {
        TlsConfig {
            cert_file,
            key_file,
            client_ca_file: None,
            client_auth: ClientAuth::Required,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
        }
    }

    /// Whether routes other than the probes need a verified client certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.client_ca_file.is_some() && self.client_auth == ClientAuth::Required
    }
}

/// `[server.basic_auth]`: user name → bcrypt hash. `Debug` leaves the hashes out: a hash is not a
/// password, but it lets whoever reads it guess passwords offline.
#[derive(Clone, PartialEq)]
pub struct BasicAuthConfig {
    pub users: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for BasicAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthConfig")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Response headers an operator may add, as exporter-toolkit allows them: only these five
/// (security headers for a browser that opens the endpoint), each with its allowed values where
/// the header has a fixed set (`None`: any value). Names are matched exactly, as exporter-toolkit
/// does, so one web config file behaves the same with every exporter.
pub(crate) const ALLOWED_RESPONSE_HEADERS: [(&str, Option<&[&str]>); 5] = [
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Headers added to every response, probes and errors included: name (one of
/// `ALLOWED_RESPONSE_HEADERS`) → value, checked by `check_response_header`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeaders(pub std::collections::BTreeMap<String, String>);

/// Checks one `http_server_config.headers` entry: `Ok(true)` to set it, `Ok(false)` for a blank
/// value, which exporter-toolkit takes as "unset". Messages never repeat the value, and name the header only
/// when it is spelled like one.
pub(crate) fn check_response_header(name: &str, value: &str) -> Result<bool, String> {
    let allowed = ALLOWED_RESPONSE_HEADERS.iter().find(|(n, _)| *n == name);
    let Some((_, values)) = allowed else {
        let names = ALLOWED_RESPONSE_HEADERS.map(|(n, _)| n).join(", ");
        let same_but_case = ALLOWED_RESPONSE_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        return Err(match same_but_case {
            Some((spelled, _)) => format!(
                "header names are matched exactly, as in exporter-toolkit; write it {spelled}"
            ),
            None if is_header_name(name) => {
                format!("`{name}` cannot be set; exporter-toolkit allows only {names}")
            }
            None => format!(
                "this name cannot be set (not shown, it is not a header name); exporter-toolkit allows only {names}"
            ),
        });
    };
    if value.trim().is_empty() {
        return Ok(false);
    }
    if let Some(values) = values {
        if !values.contains(&value) {
            return Err(format!(
                "has a value exporter-toolkit does not allow for {name}; use {}",
                values.join(" or ")
            ));
        }
    }
    if hyper::header::HeaderValue::from_str(value).is_err() {
        return Err(
            "is not a valid header value: use visible ASCII characters, without line breaks or control characters"
                .to_owned(),
        );
    }
    Ok(true)
}

/// A header name as RFC 9110 spells one (a token), safe to repeat in a message.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `HOST:PORT` where HOST is an IP address (`0.0.0.0`, `127.0.0.1`, `[::]`).
pub(crate) fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        "is not an IP address and port; write it like \"0.0.0.0:9469\", \"127.0.0.1:9469\" or \"[::]:9469\"".to_owned()
    })
}

/// Checks one `server.reload_allowed_hosts` entry: a DNS name (letters, digits, `-` and `.`, at
/// most 253 characters), without scheme or port. Returns it lowercased, without a trailing dot.
/// The message never repeats the value.
pub(crate) fn parse_allowed_host(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if name.is_empty() || name.len() > 253 || !labels_ok {
        return Err("is not a host name; list DNS names like \"healthlake-exporter.monitoring.svc\", without a scheme, port or path (IP addresses and localhost are always allowed)".to_owned());
    }
    Ok(name)
}
