//! The configuration files together: the TOML file and, with `--web.config.file`,
//! exporter-toolkit's web config file, which then supplies TLS, basic auth and response headers
//! in place of `[server.tls]` and `[server.basic_auth]` (the web module reads its text:
//! `web::toolkit`). Both are read the same bounded way ([`super::read_text`]), in the same read
//! the supervisor runs off the serving path, and a reload re-reads both.

use std::path::{Path, PathBuf};

use super::validate::TlsFiles;
use super::{read_text, Config, ConfigError};
use crate::web::toolkit::{self, CheckFiles};

/// The files a configuration is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFiles {
    /// The TOML file (`--config`).
    pub config: PathBuf,
    /// exporter-toolkit's web config file (`--web.config.file`).
    pub web_config: Option<PathBuf>,
}

impl ConfigFiles {
    /// The TOML file alone.
    pub fn toml(config: impl Into<PathBuf>) -> ConfigFiles {
        ConfigFiles {
            config: config.into(),
            web_config: None,
        }
    }

    /// Reads and validates both files (start and `--check-config`: TLS files are loaded now).
    pub fn load(&self) -> Result<Config, ConfigError> {
        self.load_with(TlsFiles::Check)
    }

    /// Like [`ConfigFiles::load`] for a reload: TLS files are left to the web module, as with
    /// [`Config::load_for_reload`].
    pub fn load_for_reload(&self) -> Result<Config, ConfigError> {
        self.load_with(TlsFiles::Defer)
    }

    fn load_with(&self, tls_files: TlsFiles) -> Result<Config, ConfigError> {
        let text = read_text(&self.config)?;
        let mut config = Config::parse_with(&text, &self.config, tls_files)?;
        if let Some(web_config) = &self.web_config {
            apply(&mut config, &self.config, web_config, tls_files)?;
        }
        Ok(config)
    }
}

/// Replaces the TLS, basic auth and headers of `config` with those of the web config file at
/// `path`. TLS and users are configured in one place: a TOML file that has `[server.tls]` or
/// `[server.basic_auth]` is refused with the web config file.
fn apply(
    config: &mut Config,
    toml: &Path,
    path: &Path,
    tls_files: TlsFiles,
) -> Result<(), ConfigError> {
    let server = &mut config.server;
    let in_toml = match (&server.tls, &server.basic_auth) {
        (Some(_), _) => Some("[server.tls]"),
        (None, Some(_)) => Some("[server.basic_auth]"),
        (None, None) => None,
    };
    if let Some(section) = in_toml {
        return Err(ConfigError::BothWebConfigs {
            toml: toml.to_owned(),
            section,
            web_config: path.to_owned(),
        });
    }
    let text = read_text(path).map_err(|e| web_config_read_error(path, e))?;
    let files = match tls_files {
        TlsFiles::Check => CheckFiles::Now,
        TlsFiles::Defer => CheckFiles::Later,
    };
    let file = toolkit::parse(&text, path, files).map_err(|problem| {
        let mut location = path.display().to_string();
        if let Some((line, column)) = problem.position {
            location = format!("{location}:{line}:{column}");
        }
        ConfigError::Invalid {
            location,
            message: problem.message,
        }
    })?;
    server.tls = file.tls;
    server.basic_auth = file.basic_auth;
    server.headers = file.headers;
    server.web_config_file = Some(path.to_owned());
    Ok(())
}

/// A read error of the web config file, saying which file and which flag, not `--config`'s.
fn web_config_read_error(path: &Path, error: ConfigError) -> ConfigError {
    let problem = match error {
        ConfigError::Read { source, .. } => source.to_string(),
        ConfigError::NotAFile { kind, .. } => format!("it is {kind}, not a regular file"),
        ConfigError::TooLarge { limit_kib, .. } => {
            format!("it is larger than {limit_kib} KiB, the limit for a configuration file")
        }
        ConfigError::NotUtf8 { offset, .. } => {
            format!("it is not valid UTF-8 (first bad byte at offset {offset}); save it as UTF-8")
        }
        other => other.to_string(),
    };
    ConfigError::WebConfigRead {
        path: path.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed when dropped, also when the test fails.
    fn dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("hle-web-config-{name}-"))
            .tempdir()
            .unwrap()
    }

    const HASH: &str = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";

    #[test]
    fn the_web_config_file_supplies_users_and_headers() {
        let temp = dir("supplies");
        let dir = temp.path();
        let toml = dir.join("config.toml");
        std::fs::write(&toml, "[[datastores]]\nid = \"ds\"\n").unwrap();
        let web = dir.join("web.yml");
        std::fs::write(
            &web,
            format!("basic_auth_users:\n  alice: {HASH}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"),
        )
        .unwrap();
        let files = ConfigFiles {
            config: toml.clone(),
            web_config: Some(web.clone()),
        };
        let config = files.load().unwrap();
        assert_eq!(
            config.server.web_config_file.as_deref(),
            Some(web.as_path())
        );
        assert_eq!(
            config
                .server
                .basic_auth
                .unwrap()
                .users
                .keys()
                .collect::<Vec<_>>(),
            ["alice"]
        );
        assert_eq!(config.server.headers.0["X-Content-Type-Options"], "nosniff");
        assert!(ConfigFiles::toml(&toml)
            .load()
            .unwrap()
            .server
            .basic_auth
            .is_none());
    }

    #[test]
    fn read_errors_name_the_web_config_file_and_its_flag() {
        let temp = dir("read");
        let dir = temp.path();
        let toml = dir.join("config.toml");
        std::fs::write(&toml, "[[datastores]]\nid = \"ds\"\n").unwrap();
        for (web, expected) in [
            (dir.join("missing.yml"), "No such file"),
            (dir.to_path_buf(), "it is a directory, not a regular file"),
        ] {
            let message = ConfigFiles {
                config: toml.clone(),
                web_config: Some(web.clone()),
            }
            .load()
            .unwrap_err()
            .to_string();
            assert!(
                message.starts_with(&format!("cannot read web config file {}: ", web.display())),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("--web.config.file"), "{message}");
        }
    }
}
