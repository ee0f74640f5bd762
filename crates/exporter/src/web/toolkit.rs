//! exporter-toolkit's web config file (`--web.config.file`), the YAML file every official
//! Prometheus exporter takes TLS, basic auth and response headers from, so that a team keeps one
//! such file for all its exporters. This module reads its text into the same settings
//! `[server.tls]` and `[server.basic_auth]` make, with the checks those obey; the config module
//! reads the file (bounded, off the serving path) and refuses it next to those TOML sections.
//!
//! What exporter-toolkit offers and this exporter serves differently is refused by name, never
//! silently ignored: inline PEM (`cert`, `key`, `client_ca`: certificates here follow their files
//! as they rotate), `cipher_suites` and `curve_preferences` (rustls' own safe sets),
//! `client_allowed_sans`, `http2: true` (HTTP/1.1 only), `rate_limit`, TLS 1.0 and 1.1, and the
//! `client_auth_type`s that accept a certificate without verifying it. `RequireAndVerifyClientCert`
//! keeps `/healthz` and `/readyz` open for kubelet probes, as `[server.tls] client_ca_file` does.
//!
//! Every problem names the key and the line, never the value: the file holds bcrypt hashes and
//! may hold a pasted password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

use super::auth::{UserProblem, UserRules};
use super::settings::{
    check_response_header, BasicAuthConfig, ClientAuth, ResponseHeaders, TlsConfig, TlsVersion,
};
use super::tls::{self, FileKey};

/// What a web config file sets: each part replaces its `[server]` counterpart.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WebConfigFile {
    pub(crate) tls: Option<TlsConfig>,
    /// `None` also for an empty `basic_auth_users`, which exporter-toolkit takes as "no
    /// authentication".
    pub(crate) basic_auth: Option<BasicAuthConfig>,
    pub(crate) headers: ResponseHeaders,
}

/// A problem in the file: where it is, and what is wrong with which key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Line and column, 1-based, when the parser knows them.
    pub(crate) position: Option<(u64, u64)>,
    /// `key: what is wrong and how to fix it`, without the value.
    pub(crate) message: String,
}

impl Problem {
    fn at(location: &Location, key: &str, message: impl AsRef<str>) -> Problem {
        Problem {
            position: position(location),
            message: format!("{key}: {}", message.as_ref()),
        }
    }
}

fn position(location: &Location) -> Option<(u64, u64)> {
    (location.line() > 0).then(|| (location.line(), location.column()))
}

/// Nodes (mappings, sequences, scalars, aliases replayed) one web config file may hold.
const MAX_NODES: usize = 10_000;

/// Whether [`parse`] reads the TLS files the file names, as `config::validate::TlsFiles` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckFiles {
    /// Start and `--check-config`: the certificate and key must load now.
    Now,
    /// A reload: the web module loads them when the paths changed (see `HttpContext::prepare`).
    Later,
}

/// Reads the text of the web config file at `path` (relative paths in it are taken from its
/// directory, as exporter-toolkit does).
pub(crate) fn parse(text: &str, path: &Path, files: CheckFiles) -> Result<WebConfigFile, Problem> {
    // A web config file is a few dozen nodes: bounds far above that, far below what could take
    // the blocking thread for long (aliases that expand a billion-fold, deep nesting). No
    // snippet of the file in messages: it may show a secret.
    let options = serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! { max_nodes: MAX_NODES, max_depth: 16 },
        alias_limits: serde_saphyr::alias_limits! { max_total_replayed_events: MAX_NODES },
    };
    let raw: RawWebConfig =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| syntax_problem(&e))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    if let Some(limit) = &raw.rate_limit {
        return Err(Problem::at(
            &limit.referenced,
            "rate_limit",
            "not supported: this exporter bounds connections per address instead (server.max_connections_per_ip) and checks passwords in fair turns; remove the key",
        ));
    }
    let tls = match &raw.tls_server_config {
        Some(section) => tls_settings(&section.value, &section.referenced, dir, files)?,
        None => None,
    };
    let headers = match &raw.http_server_config {
        Some(section) => http_settings(&section.value)?,
        None => ResponseHeaders::default(),
    };
    let basic_auth = match raw.basic_auth_users {
        Some(users) => basic_auth_users(users.value)?,
        None => None,
    };
    Ok(WebConfigFile {
        tls,
        basic_auth,
        headers,
    })
}

/// The file as written. Keys exporter-toolkit has but this exporter does not serve are listed,
/// to be refused by name; any other key is refused by the parser.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<Spanned<RawTls>>,
    http_server_config: Option<Spanned<RawHttp>>,
    basic_auth_users: Option<Spanned<Entries>>,
    rate_limit: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<String>>,
    client_auth_type: Option<Spanned<String>>,
    min_version: Option<Spanned<String>>,
    max_version: Option<Spanned<String>>,
    /// Ignored by Go since 1.18, and so here: rustls always prefers its own order.
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<Spanned<bool>>,
    cert: Option<Spanned<IgnoredAny>>,
    key: Option<Spanned<IgnoredAny>>,
    client_ca: Option<Spanned<IgnoredAny>>,
    cipher_suites: Option<Spanned<IgnoredAny>>,
    curve_preferences: Option<Spanned<IgnoredAny>>,
    client_allowed_sans: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<Spanned<bool>>,
    headers: Option<Spanned<Entries>>,
}

/// A mapping of names to strings (users to hashes, headers to values), in file order, each with
/// its place. Plain scalars are taken as written (`X-XSS-Protection: 0` is the string "0").
struct Entries(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    entries.push((name, map.next_value::<Spanned<String>>()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// Keys of `tls_server_config` this exporter refuses, and why.
fn unsupported_tls_keys(raw: &RawTls) -> [(&'static str, Option<&Location>, &'static str); 6] {
    fn at(v: &Option<Spanned<IgnoredAny>>) -> Option<&Location> {
        v.as_ref().map(|s| &s.referenced)
    }
    const FILES: &str = "inline PEM is not supported: certificates here are files, re-read as they rotate; write it to a file and use";
    [
        ("cert", at(&raw.cert), FILES),
        ("key", at(&raw.key), FILES),
        ("client_ca", at(&raw.client_ca), FILES),
        ("cipher_suites", at(&raw.cipher_suites), "not supported: rustls offers only its own safe cipher suites (TLS 1.3's and TLS 1.2's ECDHE AEAD suites); remove the key"),
        ("curve_preferences", at(&raw.curve_preferences), "not supported: rustls picks among its own safe key exchange groups (X25519, P-256, P-384); remove the key"),
        ("client_allowed_sans", at(&raw.client_allowed_sans), "not supported: any client certificate signed by client_ca_file is accepted; give the clients you trust their own CA instead"),
    ]
}

/// `tls_server_config`: `None` when it sets none of the keys that turn TLS on, as in
/// exporter-toolkit (a section with only `min_version` serves plain HTTP).
fn tls_settings(
    raw: &RawTls,
    section: &Location,
    dir: &Path,
    files: CheckFiles,
) -> Result<Option<TlsConfig>, Problem> {
    for (key, at, why) in unsupported_tls_keys(raw) {
        if let Some(at) = at {
            let file_key = match key {
                "cert" | "key" => format!(" {key}_file"),
                "client_ca" => " client_ca_file".to_owned(),
                _ => String::new(),
            };
            return Err(Problem::at(
                at,
                &format!("tls_server_config.{key}"),
                format!("{why}{file_key}"),
            ));
        }
    }
    let client_auth = client_auth(raw)?;
    let min_version = tls_version(&raw.min_version, "min_version", TlsVersion::Tls12)?;
    let max_version = tls_version(&raw.max_version, "max_version", TlsVersion::Tls13)?;
    if let (Some(max), true) = (&raw.max_version, max_version < min_version) {
        return Err(Problem::at(
            &max.referenced,
            "tls_server_config.max_version",
            "is older than min_version; make max_version at least min_version (TLS12 or TLS13)",
        ));
    }
    let enabled = raw.cert_file.is_some()
        || raw.key_file.is_some()
        || raw.client_ca_file.is_some()
        || client_auth.is_some();
    if !enabled {
        return Ok(None);
    }
    let cert_file = file_path(&raw.cert_file, "cert_file", section, dir)?;
    let key_file = file_path(&raw.key_file, "key_file", section, dir)?;
    let client_ca_file = match &raw.client_ca_file {
        Some(_) => Some(file_path(
            &raw.client_ca_file,
            "client_ca_file",
            section,
            dir,
        )?),
        None => None,
    };
    let config = TlsConfig {
        client_ca_file,
        client_auth: client_auth.unwrap_or_default(),
        min_version,
        max_version,
        ..TlsConfig::new(cert_file, key_file)
    };
    check_client_ca(raw, client_auth, section)?;
    if files == CheckFiles::Now {
        tls::check_files(&config).map_err(|e| {
            let value = match e.file_key() {
                FileKey::Cert => &raw.cert_file,
                FileKey::Key => &raw.key_file,
                FileKey::ClientCa => &raw.client_ca_file,
            };
            let at = value.as_ref().map_or(section, |v| &v.referenced);
            Problem {
                position: position(at),
                message: e.toolkit_message(),
            }
        })?;
    }
    Ok(Some(config))
}

/// `client_auth_type`: `None` for none (or `NoClientCert`); the types that accept a certificate
/// without verifying it are refused (anyone can make a certificate, and rustls does not offer
/// them): `RequestClientCert`, `RequireAnyClientCert` and its old name `RequireClientCert`.
fn client_auth(raw: &RawTls) -> Result<Option<ClientAuth>, Problem> {
    let Some(value) = &raw.client_auth_type else {
        return Ok(None);
    };
    const KEY: &str = "tls_server_config.client_auth_type";
    const USE: &str = "use RequireAndVerifyClientCert with client_ca_file (/healthz and /readyz stay open for kubelet probes), or basic_auth_users";
    match value.value.as_str() {
        "" | "NoClientCert" => Ok(None),
        "RequireAndVerifyClientCert" => Ok(Some(ClientAuth::Required)),
        "VerifyClientCertIfGiven" => Ok(Some(ClientAuth::IfGiven)),
        name @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            Err(Problem::at(
                &value.referenced,
                KEY,
                format!("{name} accepts a client certificate without verifying it, so it protects nothing (anyone can make a certificate), and rustls does not offer it; {USE}"),
            ))
        }
        _ => Err(Problem::at(
            &value.referenced,
            KEY,
            "is not a client_auth_type this exporter serves; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        )),
    }
}

/// A CA without a type that verifies against it, or such a type without a CA, is refused (the
/// first as exporter-toolkit does; the second would verify against nothing).
fn check_client_ca(
    raw: &RawTls,
    client_auth: Option<ClientAuth>,
    section: &Location,
) -> Result<(), Problem> {
    match (&raw.client_ca_file, client_auth, &raw.client_auth_type) {
        (Some(ca), None, _) => Err(Problem::at(
            &ca.referenced,
            "tls_server_config.client_ca_file",
            "is set but client_auth_type is NoClientCert (the default), so it would not be used; set client_auth_type: RequireAndVerifyClientCert",
        )),
        (None, Some(_), auth_type) => Err(Problem::at(
            auth_type.as_ref().map_or(section, |t| &t.referenced),
            "tls_server_config.client_auth_type",
            "verifies client certificates, but no client_ca_file says against which CAs; add client_ca_file",
        )),
        _ => Ok(()),
    }
}

/// `min_version` or `max_version`: TLS12 or TLS13.
fn tls_version(
    value: &Option<Spanned<String>>,
    key: &str,
    default: TlsVersion,
) -> Result<TlsVersion, Problem> {
    let Some(value) = value else {
        return Ok(default);
    };
    let problem = match value.value.as_str() {
        "TLS12" => return Ok(TlsVersion::Tls12),
        "TLS13" => return Ok(TlsVersion::Tls13),
        "TLS10" | "TLS11" => "TLS 1.0 and 1.1 are deprecated (RFC 8996) and rustls does not offer them; use TLS12 (the default for min_version) or TLS13",
        _ => "is not a TLS version; use TLS12 or TLS13",
    };
    Err(Problem::at(
        &value.referenced,
        &format!("tls_server_config.{key}"),
        problem,
    ))
}

/// A path from the file, required, relative ones taken from the file's directory.
fn file_path(
    value: &Option<Spanned<String>>,
    key: &str,
    section: &Location,
    dir: &Path,
) -> Result<PathBuf, Problem> {
    let key = format!("tls_server_config.{key}");
    let Some(value) = value else {
        return Err(Problem::at(
            section,
            &key,
            "is missing; TLS needs cert_file and key_file (PEM files)",
        ));
    };
    if value.value.trim().is_empty() {
        return Err(Problem::at(
            &value.referenced,
            &key,
            "must not be empty; give the path of a PEM file",
        ));
    }
    let path = Path::new(&value.value);
    Ok(if path.is_relative() && !dir.as_os_str().is_empty() {
        dir.join(path)
    } else {
        path.to_owned()
    })
}

/// `http_server_config`: `http2: false` is what this exporter does anyway; `headers` as
/// exporter-toolkit allows them.
fn http_settings(raw: &RawHttp) -> Result<ResponseHeaders, Problem> {
    if let Some(http2) = raw.http2.as_ref().filter(|h| h.value) {
        return Err(Problem::at(
            &http2.referenced,
            "http_server_config.http2",
            "not supported: this exporter serves HTTP/1.1 only (what Prometheus scrapes with); set http2: false or remove the key",
        ));
    }
    let mut headers = BTreeMap::new();
    for (name, value) in raw.headers.iter().flat_map(|h| &h.value.0) {
        let set = check_response_header(&name.value, &value.value).map_err(|message| {
            let key = if super::settings::ALLOWED_RESPONSE_HEADERS
                .iter()
                .any(|(n, _)| *n == name.value)
            {
                format!("http_server_config.headers.{}", name.value)
            } else {
                "http_server_config.headers".to_owned()
            };
            Problem::at(&value.referenced, &key, message)
        })?;
        if set {
            headers.insert(name.value.clone(), value.value.clone());
        }
    }
    Ok(ResponseHeaders(headers))
}

/// `basic_auth_users`, under the same rules as `[server.basic_auth]`; empty means none.
fn basic_auth_users(users: Entries) -> Result<Option<BasicAuthConfig>, Problem> {
    let mut rules = UserRules::default();
    let mut checked = BTreeMap::new();
    for (name, hash) in users.0 {
        rules
            .check(&name.value, &hash.value)
            .map_err(|problem| match problem {
                UserProblem::Name(message) => {
                    Problem::at(&hash.referenced, "basic_auth_users", message)
                }
                UserProblem::Hash(message) => Problem::at(
                    &hash.referenced,
                    &format!("basic_auth_users.{}", name.value),
                    message,
                ),
            })?;
        checked.insert(name.value, hash.value);
    }
    Ok((!checked.is_empty()).then_some(BasicAuthConfig { users: checked }))
}

/// The parser's error as a problem: an unknown key is named when it is spelled like a key, and
/// anything quoted in the parser's message is left out (it may be a value).
fn syntax_problem(error: &serde_saphyr::Error) -> Problem {
    let position = error.location().as_ref().and_then(position);
    let text = error.to_string();
    let text = match text.find(" at line ") {
        Some(at) => &text[..at],
        None => text.as_str(),
    };
    let message = if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let section = section_of_fields(rest);
        let key = if is_plain_key(name) {
            format!("`{section}{name}`")
        } else {
            "a key (its name is not shown, in case it holds a secret)".to_owned()
        };
        format!("{key} is not a key of exporter-toolkit's web config file; check its spelling (see docs/security.md, \"exporter-toolkit's web config file\")")
    } else if text.starts_with("duplicate mapping key") {
        "a key appears twice in one mapping; keep one".to_owned()
    } else if text.contains("null into string") {
        "a key has no value; give it one, or remove it".to_owned()
    } else if text.starts_with("budget breached")
        || text.contains("recursion limit")
        || text.contains("alias replay")
    {
        format!("too large or too deeply nested for a web config file (at most {MAX_NODES} values, aliases expanded, and 16 levels)")
    } else {
        format!(
            "not a web config file: {}; it must be YAML as exporter-toolkit's docs/web-configuration.md describes",
            redact_quoted(text)
        )
    };
    Problem { position, message }
}

/// Where an unknown field was, from the fields the parser expected instead.
fn section_of_fields(expected: &str) -> &'static str {
    if expected.contains("cert_file") {
        "tls_server_config."
    } else if expected.contains("http2") {
        "http_server_config."
    } else {
        ""
    }
}

/// A key as YAML files spell one (`cert_file`, `X-Frame-Options`): safe to repeat.
fn is_plain_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `text` with every `"…"`, `'…'` and `` `…` `` replaced by `(value not shown)`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            for next in chars.by_ref() {
                if next == c {
                    break;
                }
            }
            out.push_str("(value not shown)");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_later(text: &str) -> Result<WebConfigFile, Problem> {
        parse(text, Path::new("/etc/exporter/web.yml"), CheckFiles::Later)
    }

    fn problem(text: &str) -> String {
        let problem = parse_later(text).expect_err(text);
        match problem.position {
            Some((line, column)) => format!("{line}:{column}: {}", problem.message),
            None => problem.message,
        }
    }

    const HASH: &str = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";

    #[test]
    fn the_toolkit_keys_map_onto_the_server_settings() {
        let text = format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n  prefer_server_cipher_suites: true\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    X-XSS-Protection: 0\n    Content-Security-Policy: \"\"\nbasic_auth_users:\n  alice: {HASH}\n  bob: '{HASH}'\n"
        );
        let file = parse_later(&text).unwrap();
        let tls = file.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/exporter/tls/server.crt"));
        assert_eq!(tls.key_file, Path::new("/abs/server.key"));
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/exporter/ca.crt"))
        );
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert!(tls.requires_client_certificate());
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls13, TlsVersion::Tls13)
        );
        let headers: Vec<(&str, &str)> = file
            .headers
            .0
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [("X-Frame-Options", "deny"), ("X-XSS-Protection", "0")]
        );
        let users = file.basic_auth.unwrap().users;
        assert_eq!(users.keys().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(users["bob"], HASH);
    }

    #[test]
    fn verify_if_given_and_plain_http_follow_exporter_toolkit() {
        let text = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.crt\n  client_auth_type: VerifyClientCertIfGiven\n";
        let tls = parse_later(text).unwrap().tls.unwrap();
        assert_eq!(tls.client_auth, ClientAuth::IfGiven);
        assert!(!tls.requires_client_certificate());
        // Only versions: TLS stays off, as in exporter-toolkit. An empty file sets nothing.
        assert_eq!(
            parse_later("tls_server_config:\n  min_version: TLS13\n").unwrap(),
            WebConfigFile::default()
        );
        assert_eq!(parse_later("").unwrap(), WebConfigFile::default());
        assert_eq!(
            parse_later("basic_auth_users: {}\n").unwrap(),
            WebConfigFile::default()
        );
    }

    #[test]
    fn what_rustls_cannot_honour_safely_is_refused_by_name() {
        let tls = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n";
        let ca = "  client_ca_file: ca.crt\n";
        for (text, expected) in [
            (format!("{tls}  min_version: TLS10\n"), "4:16: tls_server_config.min_version: TLS 1.0 and 1.1 are deprecated"),
            (format!("{tls}  max_version: TLS11\n"), "4:16: tls_server_config.max_version: TLS 1.0 and 1.1"),
            (format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"), "5:16: tls_server_config.max_version: is older than min_version"),
            (format!("{tls}  min_version: SSL3\n"), "tls_server_config.min_version: is not a TLS version; use TLS12 or TLS13"),
            (format!("{tls}{ca}  client_auth_type: RequestClientCert\n"), "5:21: tls_server_config.client_auth_type: RequestClientCert accepts a client certificate without verifying it"),
            (format!("{tls}{ca}  client_auth_type: RequireAnyClientCert\n"), "tls_server_config.client_auth_type: RequireAnyClientCert accepts"),
            (format!("{tls}  client_auth_type: RequireClientCert\n"), "tls_server_config.client_auth_type: RequireClientCert accepts"),
            (format!("{tls}  client_auth_type: Sometimes\n"), "tls_server_config.client_auth_type: is not a client_auth_type this exporter serves; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            (format!("{tls}{ca}"), "4:19: tls_server_config.client_ca_file: is set but client_auth_type is NoClientCert"),
            (format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"), "4:21: tls_server_config.client_auth_type: verifies client certificates, but no client_ca_file"),
            ("tls_server_config:\n  key_file: a.key\n".to_owned(), "2:3: tls_server_config.cert_file: is missing"),
            ("tls_server_config:\n  cert_file: ''\n  key_file: a.key\n".to_owned(), "2:14: tls_server_config.cert_file: must not be empty"),
        ] {
            let got = problem(&text);
            assert!(got.starts_with(expected) || got.contains(expected), "{text:?}\nexpected: {expected}\ngot: {got}");
        }
    }

    #[test]
    fn each_unsupported_key_is_refused_by_name() {
        let tls = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n";
        for (text, key) in [
            (format!("{tls}  cert: |\n    -----BEGIN CERTIFICATE-----\n"), "tls_server_config.cert: inline PEM is not supported"),
            (format!("{tls}  key: secret-pem\n"), "tls_server_config.key: inline PEM is not supported: certificates here are files, re-read as they rotate; write it to a file and use key_file"),
            (format!("{tls}  client_ca: pem\n"), "tls_server_config.client_ca: inline PEM is not supported: certificates here are files, re-read as they rotate; write it to a file and use client_ca_file"),
            (format!("{tls}  cipher_suites:\n    - TLS_AES_128_GCM_SHA256\n"), "tls_server_config.cipher_suites: not supported"),
            (format!("{tls}  curve_preferences: [X25519]\n"), "4:22: tls_server_config.curve_preferences: not supported"),
            (format!("{tls}  client_allowed_sans: [a.example]\n"), "tls_server_config.client_allowed_sans: not supported"),
            ("http_server_config:\n  http2: true\n".to_owned(), "2:10: http_server_config.http2: not supported: this exporter serves HTTP/1.1 only"),
            ("rate_limit:\n  interval: 1s\n  burst: 5\n".to_owned(), "rate_limit: not supported"),
            ("basic_auth_excluded_paths: [/metrics]\n".to_owned(), "1:1: `basic_auth_excluded_paths` is not a key of exporter-toolkit's web config file"),
            (format!("{tls}  key_fil: a.key\n"), "4:3: `tls_server_config.key_fil` is not a key"),
            ("http_server_config:\n  header:\n    X-Frame-Options: deny\n".to_owned(), "`http_server_config.header` is not a key"),
        ] {
            let got = problem(&text);
            assert!(got.contains(key), "{text:?}\nexpected: {key}\ngot: {got}");
        }
        // http2: false is what this exporter does: accepted.
        assert!(parse_later("http_server_config:\n  http2: false\n").is_ok());
    }

    #[test]
    fn headers_are_limited_as_exporter_toolkit_limits_them() {
        let header = |name: &str, value: &str| {
            problem(&format!(
                "http_server_config:\n  headers:\n    {name}: {value}\n"
            ))
        };
        assert!(header("X-Frame-Options", "allow-from-everywhere").starts_with(
            "3:22: http_server_config.headers.X-Frame-Options: has a value exporter-toolkit does not allow for X-Frame-Options; use deny or sameorigin"
        ));
        assert!(header("X-Content-Type-Options", "sniff")
            .contains("X-Content-Type-Options: has a value exporter-toolkit does not allow for X-Content-Type-Options; use nosniff"));
        assert!(header("X-Frame-Options", "DENY").contains("use deny or sameorigin"));
        assert!(header("Server", "x").contains(
            "http_server_config.headers: `Server` cannot be set; exporter-toolkit allows only Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy"
        ));
        assert!(header("x-frame-options", "deny").contains(
            "header names are matched exactly, as in exporter-toolkit; write it X-Frame-Options"
        ));
        assert!(header("\"Set-Cookie: a=b\"", "x").contains("this name cannot be set (not shown"));
        assert!(header("Content-Security-Policy", "\"a\\nb\"").contains("not a valid header value"));
    }

    /// Every problem names the key and the line, never the value: hashes, passwords pasted by
    /// mistake, and PEM blocks stay out of messages (they go to the log and `/-/reload` too).
    #[test]
    fn problems_never_repeat_the_value() {
        const SECRET: &str = "Zq7SecretMarker";
        let tls = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n";
        for text in [
            format!("basic_auth_users:\n  alice: {SECRET}\n"),
            format!("basic_auth_users:\n  alice: $2y$10${SECRET}\n"),
            format!("basic_auth_users:\n  \"alice:{SECRET}\": {HASH}\n"),
            format!("basic_auth_users:\n  alice: {HASH}\n  alice: {SECRET}\n"),
            format!("basic_auth_users:\n  alice: [{SECRET}]\n"),
            format!("basic_auth_users: {SECRET}\n"),
            format!("basic_auth_users:\n  alice: '{SECRET}\n"),
            format!("basic_auth_users:\n  alice: \"{SECRET}\n"),
            format!("\"{SECRET}:pw\": 1\n"),
            format!("{SECRET}\n"),
            format!("{tls}  key: {SECRET}\n"),
            format!("{tls}  client_auth_type: {SECRET}\n"),
            format!("{tls}  min_version: {SECRET}\n"),
            format!("http_server_config:\n  headers:\n    X-Frame-Options: {SECRET}\n"),
            format!("http_server_config:\n  headers:\n    \"{SECRET}: x\": x\n"),
            format!("http_server_config:\n  http2: {SECRET}\n"),
            format!("http_server_config:\n  headers:\n    X-XSS-Protection: [{SECRET}]\n"),
            format!("basic_auth_users:\n  alice: {HASH}\n  bob: $2y$04$aaaaaaaaaaaaaaaaaaaaaa{SECRET}aaaaaaaaaaaaaaaa\n"),
        ] {
            let problem = parse_later(&text).expect_err(&text);
            assert!(
                !problem.message.contains(SECRET) && !problem.message.contains("Zq7"),
                "{text:?}: {}",
                problem.message
            );
            assert!(problem.position.is_some(), "{text:?}: no line in {problem:?}");
        }
    }

    /// A file within the 1 MiB limit cannot exhaust the stack or the CPU: deep nesting and
    /// aliases that expand a billion-fold are refused by the parser's budget, at once.
    #[test]
    fn hostile_yaml_is_refused_quickly() {
        let deep = format!("rate_limit: {}\n", "[".repeat(100_000));
        let mut laughs = "rate_limit:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
        }
        for text in [deep, laughs] {
            let started = std::time::Instant::now();
            let problem = parse_later(&text).expect_err("refused");
            assert!(
                problem
                    .message
                    .starts_with("too large or too deeply nested"),
                "{problem:?}"
            );
            // Coarse, for a loaded CI machine: an expansion would take far longer (or all memory).
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            assert!(problem.position.is_some(), "{problem:?}");
        }
    }

    #[test]
    fn users_obey_the_same_rules_as_server_basic_auth() {
        let other_cost = "$2y$04$Ap3u1H7KbYkq.Y1n8NcBBuKq3HnG3mNK1y9lO0zUqJqjR5g5vD1yW";
        for (text, expected) in [
            (format!("basic_auth_users:\n  alice: {HASH}\n  bob: {other_cost}\n"), "3:8: basic_auth_users.bob: has bcrypt cost 4 while other users have 10; give every user the same cost"),
            ("basic_auth_users:\n  alice: $2y$13$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n".to_owned(), "2:10: basic_auth_users.alice: has bcrypt cost 13; use a cost from 04 to 12"),
            ("basic_auth_users:\n  alice: hunter2\n".to_owned(), "2:10: basic_auth_users.alice: is not a bcrypt hash"),
            (format!("basic_auth_users:\n  \"alice:pw\": {HASH}\n"), "2:15: basic_auth_users: the user name on this line is empty or contains `:`"),
        ] {
            let got = problem(&text);
            assert!(got.starts_with(expected), "{text:?}\nexpected: {expected}\ngot: {got}");
        }
    }
}
