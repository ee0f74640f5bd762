//! Reading the configuration files off the async workers, within a deadline: a start or a reload
//! must never block the threads that serve `/metrics`, and a hung filesystem must not pile up
//! blocked reads (the one that timed out is handed back so that the next waits for it).

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, ConfigFiles};

/// A read of the configuration file on the blocking pool.
pub(super) type ConfigRead = JoinHandle<Result<Config, ConfigError>>;

/// How long reading and validating the configuration file may take: a regular file of at most
/// `MAX_CONFIG_FILE_BYTES` takes milliseconds; longer means a hung filesystem.
const CONFIG_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the configuration files (the TOML file, and the web config file when given) with `load`
/// on the blocking pool, never on the async workers that serve HTTP, within
/// [`CONFIG_READ_TIMEOUT`]. On a timeout the read goes on in the background; it is handed back so
/// that the caller can wait for it before reading again.
pub(super) async fn load_off_thread(
    files: &ConfigFiles,
    load: fn(&ConfigFiles) -> Result<Config, ConfigError>,
) -> Result<Config, (ConfigError, Option<ConfigRead>)> {
    load_within(files, load, CONFIG_READ_TIMEOUT).await
}

async fn load_within(
    files: &ConfigFiles,
    load: fn(&ConfigFiles) -> Result<Config, ConfigError>,
    limit: Duration,
) -> Result<Config, (ConfigError, Option<ConfigRead>)> {
    let owned = files.clone();
    let path = files.config.as_path();
    let mut read = tokio::task::spawn_blocking(move || load(&owned));
    match tokio::time::timeout(limit, &mut read).await {
        Ok(Ok(loaded)) => loaded.map_err(|e| (e, None)),
        Ok(Err(failed)) => Err((
            ConfigError::Read {
                path: path.to_owned(),
                source: std::io::Error::other(format!("the reading task failed: {failed}")),
            },
            None,
        )),
        Err(_) => Err((
            ConfigError::ReadTimedOut {
                path: path.to_owned(),
                seconds: limit.as_secs_f64(),
            },
            Some(read),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A read that outlasts its limit is refused with the file named, and handed back running,
    /// so that the next reload waits for it instead of starting another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_hangs_is_refused_and_handed_back() {
        fn hung(_: &ConfigFiles) -> Result<Config, ConfigError> {
            std::thread::sleep(Duration::from_millis(500));
            Config::parse("[[datastores]]\nid = \"ds\"\n", Path::new("t.toml"))
        }
        let files = ConfigFiles::toml("/etc/healthlake-exporter/config.toml");
        let started = std::time::Instant::now();
        let (error, read) = load_within(&files, hung, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(
            error.to_string().lines().next().unwrap(),
            "cannot read config file /etc/healthlake-exporter/config.toml: reading it took longer than 0.05 s (a hung network filesystem?)"
        );
        let read = read.expect("the read in flight is handed back");
        assert!(!read.is_finished());
        assert!(read.await.unwrap().is_ok(), "and it ends on its own");
    }
}
