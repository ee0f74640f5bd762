//! `[server]` checks: the connection cap, the TLS files and basic auth users. They read files
//! (certificates, keys, bcrypt hashes) and resolve paths against the config file's directory,
//! which no other section does, so they live apart from the polling and datastore checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::super::raw::{RawBasicAuth, RawServer, RawTls};
use super::super::ConfigError;
use super::{TlsFiles, Validator};
use crate::web::settings::{
    default_max_connections_per_ip, parse_allowed_host, BasicAuthConfig, ServerConfig, TlsConfig,
    DEFAULT_MAX_CONNECTIONS, MAX_MAX_CONNECTIONS, MAX_RELOAD_ALLOWED_HOSTS,
};
use crate::web::{auth, tls};

impl Validator<'_> {
    /// The rest of `[server]`: the connection cap, TLS files (read and checked now, so that
    /// `--check-config` and a reload catch a wrong path or a key that does not match) and basic
    /// auth users.
    pub(super) fn server(
        &self,
        listen_address: SocketAddr,
        raw: RawServer,
    ) -> Result<ServerConfig, ConfigError> {
        let RawServer {
            max_connections,
            max_connections_per_ip,
            enable_reload,
            reload_allowed_hosts,
            tls,
            basic_auth,
            ..
        } = raw;
        let max_connections = self.count(
            max_connections,
            "server.max_connections",
            DEFAULT_MAX_CONNECTIONS,
            1..=MAX_MAX_CONNECTIONS,
        )?;
        let max_connections_per_ip = self.count(
            max_connections_per_ip,
            "server.max_connections_per_ip",
            default_max_connections_per_ip(max_connections),
            0..=MAX_MAX_CONNECTIONS,
        )?;
        let reload_allowed_hosts = self.allowed_hosts(reload_allowed_hosts)?;
        let tls = tls.map(|raw| self.tls(raw)).transpose()?;
        let basic_auth = basic_auth.map(|raw| self.basic_auth(raw)).transpose()?;
        Ok(ServerConfig {
            listen_address,
            max_connections,
            max_connections_per_ip,
            enable_reload: enable_reload.unwrap_or(false),
            reload_allowed_hosts,
            tls,
            basic_auth,
            ..ServerConfig::default()
        })
    }

    /// `[server.tls]`: the files, read and checked now unless a reload defers them to the web
    /// module.
    fn tls(&self, raw: RawTls) -> Result<TlsConfig, ConfigError> {
        let file = |value: &Spanned<String>, key: &str| {
            self.file_path(value)
                .map_err(|m| self.error(Some(value.span()), key, m))
        };
        let cert_file = file(&raw.cert_file, "server.tls.cert_file")?;
        let key_file = file(&raw.key_file, "server.tls.key_file")?;
        let config = TlsConfig {
            client_ca_file: match &raw.client_ca_file {
                Some(v) => Some(file(v, "server.tls.client_ca_file")?),
                None => None,
            },
            ..TlsConfig::new(cert_file, key_file)
        };
        let checked = match self.tls_files {
            TlsFiles::Check => tls::check_files(&config),
            TlsFiles::Defer => Ok(()),
        };
        if let Err(e) = checked {
            let span = match e.file_key() {
                tls::FileKey::Cert => raw.cert_file.span(),
                tls::FileKey::Key => raw.key_file.span(),
                tls::FileKey::ClientCa => raw
                    .client_ca_file
                    .as_ref()
                    .map_or(raw.cert_file.span(), Spanned::span),
            };
            return Err(ConfigError::at(
                self.path,
                self.text,
                Some(span),
                e.to_string(),
            ));
        }
        Ok(config)
    }

    /// `[server.basic_auth]`: at least one user, each name and bcrypt hash checked.
    fn basic_auth(&self, raw: RawBasicAuth) -> Result<BasicAuthConfig, ConfigError> {
        if raw.users.get_ref().is_empty() {
            return Err(self.error(
                Some(raw.users.span()),
                "server.basic_auth.users",
                "no users; add one like `alice = \"$2y$10$...\"`, or remove [server.basic_auth] to serve without credentials",
            ));
        }
        let mut users = std::collections::BTreeMap::new();
        let mut rules = auth::UserRules::default();
        for (name, hash) in raw.users.into_inner() {
            rules
                .check(&name, hash.get_ref())
                .map_err(|problem| match problem {
                    auth::UserProblem::Name(message) => {
                        self.error(Some(hash.span()), "server.basic_auth.users", message)
                    }
                    auth::UserProblem::Hash(message) => self.error(
                        Some(hash.span()),
                        &format!("server.basic_auth.users.{name}"),
                        message,
                    ),
                })?;
            users.insert(name, hash.into_inner());
        }
        Ok(BasicAuthConfig { users })
    }

    /// `server.reload_allowed_hosts`: DNS names, bounded in number.
    fn allowed_hosts(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<String>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let key = "server.reload_allowed_hosts";
        if raw.get_ref().len() > MAX_RELOAD_ALLOWED_HOSTS {
            return Err(self.error(
                Some(raw.span()),
                key,
                format!(
                    "lists {} names; at most {MAX_RELOAD_ALLOWED_HOSTS} are allowed",
                    raw.get_ref().len()
                ),
            ));
        }
        raw.into_inner()
            .into_iter()
            .enumerate()
            .map(|(index, name)| {
                parse_allowed_host(name.get_ref())
                    .map_err(|m| self.error(Some(name.span()), &format!("{key}[{index}]"), m))
            })
            .collect()
    }

    /// A path from the file, relative ones taken from the config file's directory (as Prometheus'
    /// web config does), so that the config works wherever the exporter is started from.
    fn file_path(&self, value: &Spanned<String>) -> Result<PathBuf, String> {
        let text = value.get_ref();
        if text.trim().is_empty() {
            return Err("must not be empty; give the path of a PEM file".to_owned());
        }
        let path = Path::new(text);
        Ok(match self.path.parent() {
            Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_owned(),
        })
    }
}
