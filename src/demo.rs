//! `--demo`: the fake HealthLake and the exporter wired together, so a new user sees live metrics
//! without an AWS account. The exporter is the real one: real SDK client, real HTTP, SigV4-signed
//! with static demo keys, pointed at the fake through `endpoint_url`.

use std::net::SocketAddr;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

use crate::config::{AwsTarget, Config, DatastoreConfig, PollingConfig, ServerConfig};
use crate::fake::{self, FakeHealthLake};
use crate::healthlake::ClientOptions;
use crate::poller::unix_now;
use crate::{Exporter, StartError};

/// The demo listens on loopback only: it is for the person at this machine.
pub const DEMO_LISTEN_ADDRESS: &str = "127.0.0.1:9469";
/// How often the demo's jobs move and how often the exporter polls them.
const DEMO_TICK: Duration = Duration::from_secs(5);

/// Starts the fake and the exporter and serves until SIGTERM/SIGINT.
pub async fn run(listen_address: Option<SocketAddr>) -> Result<(), StartError> {
    let fake = FakeHealthLake::new();
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a literal socket address");
    let server = fake
        .serve(loopback)
        .await
        .map_err(|source| StartError::Bind {
            address: loopback,
            source,
        })?;
    let datastores = fake::scenario::seed_demo(&fake, unix_now());
    let regions = ["us-east-1", "us-east-1", "us-west-2"];
    let config = Config {
        server: ServerConfig {
            listen_address: listen_address.unwrap_or_else(|| {
                DEMO_LISTEN_ADDRESS
                    .parse()
                    .expect("a literal socket address")
            }),
            ..ServerConfig::default()
        },
        polling: PollingConfig {
            interval: DEMO_TICK,
            timeout: DEMO_TICK,
            concurrency: 8,
            job_series_limit: 100,
            max_attempts: crate::config::DEFAULT_MAX_ATTEMPTS,
            max_requests_per_second: crate::config::DEFAULT_MAX_REQUESTS_PER_SECOND,
            max_pages: crate::config::DEFAULT_MAX_PAGES,
            full_resync_interval: crate::config::DEFAULT_FULL_RESYNC_INTERVAL,
            shard: crate::shard::Shard::ALL,
        },
        datastores: datastores
            .into_iter()
            .zip(regions.iter().cycle())
            .map(|((id, name), region)| DatastoreConfig {
                id,
                name,
                target: AwsTarget {
                    region: Some((*region).to_owned()),
                    endpoint_url: Some(server.endpoint_url()),
                    role_arn: None,
                },
            })
            .collect(),
    };
    let options = ClientOptions {
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDDEMOEXAMPLE",
            "demo-secret-not-a-real-key",
            None,
            None,
            "healthlake-exporter-demo",
        ))),
        max_attempts: None,
    };
    let script = tokio::spawn(fake::scenario::run_demo_script(fake.clone(), DEMO_TICK));
    let exporter = Exporter::start(config, options).await?;
    let address = exporter.local_addr();
    tracing::info!(
        fake_endpoint = %server.endpoint_url(),
        "demo running: jobs change every {}s; try: curl http://{address}/metrics",
        DEMO_TICK.as_secs()
    );
    println!("healthlake-exporter demo: metrics at http://{address}/metrics (Ctrl-C to stop)");
    crate::termination_signal().await;
    exporter.shutdown().await;
    script.abort();
    server.shutdown();
    Ok(())
}
