//! The file as written: serde shapes with every key optional but `datastores`, unknown keys
//! rejected, and spans kept for error locations. `validate` turns them into a `Config`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) polling: RawPolling,
    #[serde(default)]
    pub(super) aws: RawTarget,
    pub(super) datastores: Option<Spanned<Vec<RawDatastore>>>,
    pub(super) discovery: Option<Vec<RawDiscovery>>,
    pub(super) events: Option<Spanned<super::events::RawEvents>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen_address: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_connections_per_ip: Option<Spanned<i64>>,
    pub(super) enable_reload: Option<bool>,
    pub(super) reload_allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) tls: Option<RawTls>,
    pub(super) basic_auth: Option<RawBasicAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: Spanned<String>,
    pub(super) key_file: Spanned<String>,
    pub(super) client_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    pub(super) users: Spanned<BTreeMap<String, Spanned<String>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolling {
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) job_series_limit: Option<Spanned<i64>>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) max_requests_per_second: Option<Spanned<Number>>,
    pub(super) max_pages: Option<Spanned<i64>>,
    pub(super) full_resync_interval: Option<Spanned<String>>,
    pub(super) ended_job_window: Option<Spanned<String>>,
    pub(super) shard: Option<Spanned<String>>,
    pub(super) jobs: Option<Spanned<Vec<String>>>,
    pub(super) datastore_health: Option<bool>,
    pub(super) datastore_interval: Option<Spanned<String>>,
    pub(super) job_name_label: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub(super) region: Option<Spanned<String>>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) role_arn: Option<Spanned<String>>,
    pub(super) name_prefix: Option<Spanned<String>>,
    pub(super) status: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<String>>,
}

/// TOML has integers and floats; a rate may be written as either.
#[derive(Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(super) enum Number {
    Integer(i64),
    Float(f64),
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) region: Option<Spanned<String>>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) role_arn: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatastore {
    pub(super) id: Spanned<String>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) region: Option<Spanned<String>>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) role_arn: Option<Spanned<String>>,
    pub(super) jobs: Option<Spanned<Vec<String>>>,
}
