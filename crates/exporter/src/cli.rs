//! The command line. Flags follow the Prometheus exporter conventions, with env fallbacks so that
//! a Kubernetes manifest can set them without rewriting the container's arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::config::shard::Shard;

#[derive(Debug, Parser)]
#[command(
    name = "healthlake-exporter",
    version,
    about = "Prometheus exporter for Amazon HealthLake FHIR export jobs",
    long_about = "Polls ListFHIRExportJobs for each configured HealthLake datastore and serves job counts by \
                  status and job durations on /metrics.\n\nTry it without an AWS account: healthlake-exporter --demo"
)]
pub struct Cli {
    /// Path of the TOML configuration file.
    #[arg(
        long,
        env = "HEALTHLAKE_EXPORTER_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,

    /// Address to listen on (HOST:PORT); overrides `server.listen_address`. `--web.listen-address`
    /// is the same flag, under the name every Prometheus exporter uses.
    #[arg(
        long,
        visible_alias = "web.listen-address",
        env = "HEALTHLAKE_EXPORTER_LISTEN_ADDRESS",
        value_parser = parse_listen_address
    )]
    pub listen_address: Option<SocketAddr>,

    /// exporter-toolkit's web config file (YAML: tls_server_config, basic_auth_users,
    /// http_server_config.headers), as every official Prometheus exporter takes it; replaces
    /// `[server.tls]` and `[server.basic_auth]`, which must then be absent. Re-read on reload.
    #[arg(
        long = "web.config.file",
        env = "HEALTHLAKE_EXPORTER_WEB_CONFIG_FILE",
        value_name = "PATH",
        conflicts_with = "demo"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Poll only shard INDEX of COUNT replicas sharing one config file (e.g. 1/3); overrides
    /// `polling.shard`. Each datastore belongs to exactly one shard, by a stable hash of its id.
    #[arg(
        long,
        env = "HEALTHLAKE_EXPORTER_SHARD",
        value_name = "INDEX/COUNT",
        value_parser = parse_shard,
        conflicts_with = "demo"
    )]
    pub shard: Option<Shard>,

    /// Load and validate the configuration, print a summary, and exit 0 (valid) or 2 (invalid).
    #[arg(long, conflicts_with = "demo")]
    pub check_config: bool,

    /// With --check-config: then make one cheap real AWS call per thing the file needs (STS
    /// identity and roles, each datastore's job listings and description, discovery, the event
    /// queue) with the daemon's credentials, roles, regions, endpoints and --shard; print one line
    /// per check with the fix, and exit 0 (all ok), 2 (invalid file) or 3 (a check failed).
    #[arg(long, requires = "check_config")]
    pub probe: bool,

    /// Start a fake HealthLake on loopback with three demo datastores and export its jobs; no AWS
    /// account needed. Listens on 127.0.0.1:9469 unless --listen-address says otherwise.
    #[arg(long)]
    pub demo: bool,

    /// Log line format (the level comes from RUST_LOG, default info).
    #[arg(long, env = "HEALTHLAKE_EXPORTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse::<Shard>().map_err(|e| {
        format!("{e}; run replica i of n with --shard i/n (or HEALTHLAKE_EXPORTER_SHARD=i/n)")
    })
}

fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    crate::web::settings::parse_listen_address(text)
}
