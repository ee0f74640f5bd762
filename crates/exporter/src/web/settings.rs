//! The `[server]` settings the web module serves with: listen address, connection caps, reload
//! switch and allowed hosts, TLS files and basic auth users. The config module builds them from the file and checks them with the checks
//! the web module owns (`tls::check_files`, `auth::check_bcrypt_hash`, [`parse_listen_address`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the exporter listens when neither the file nor `--listen-address` says otherwise: 9469 is
/// free in Prometheus' default port allocations list, so it does not collide with other exporters.
pub(crate) const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9469";
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen_address: SocketAddr::from(([0, 0, 0, 0], 9469)),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: default_max_connections_per_ip(DEFAULT_MAX_CONNECTIONS),
            enable_reload: false,
            reload_allowed_hosts: Vec::new(),
            tls: None,
            basic_auth: None,
        }
    }
}

/// `[server.tls]`: paths already resolved against the config file's directory and checked to hold
/// a matching certificate and key (and CA certificates) when the config was validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by one of these CAs (except on the probe
    /// routes `/healthz` and `/readyz`).
    pub client_ca_file: Option<PathBuf>,
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
