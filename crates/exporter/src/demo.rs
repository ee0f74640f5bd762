//! `--demo`: the fake HealthLake and the exporter wired together, so a new user sees live metrics
//! without an AWS account. The exporter is the real one: real SDK client, real HTTP, SigV4-signed
//! with static demo keys, pointed at the fake through `endpoint_url`. It runs as docs/operations.md
//! recommends for production: HealthLake events through SQS (the fake's queue on the same port)
//! show each job change within a second, and polling only reconciles, every minute. The demo
//! announces its address once the first polls are in, so the first look at `/metrics` already
//! shows the seeded history, the failure alert's series included.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

use healthlake_fake::{self as fake, FakeHealthLake};

use crate::aws::ClientOptions;
use crate::config::Config;
use crate::model::unix_now;
use crate::supervisor::{termination_signal, Exporter, StartError};
use crate::web::settings::DEFAULT_LISTEN_ADDRESS;

/// The demo listens on loopback only (it is for the person at this machine), on the exporter's
/// default port.
fn demo_listen_address() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DEFAULT_LISTEN_ADDRESS.port())
}
/// How often the demo's jobs move.
const DEMO_TICK: Duration = Duration::from_secs(5);
/// The reconciliation poll: events make changes show long before it.
const DEMO_RECONCILIATION: &str = "60s";
/// The fake's event queue, fed on every job and datastore change.
const DEMO_QUEUE: &str = "healthlake-events";
/// How long the demo waits for its first polls before it announces its address anyway (they
/// take a few seconds: the first polls are spread over up to 5 s).
const FIRST_POLLS_LIMIT: Duration = Duration::from_secs(20);

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
    // From here on every change the script makes is also an EventBridge event in the queue.
    fake.set_event_queues(&[DEMO_QUEUE]);
    let listen = listen_address.unwrap_or_else(demo_listen_address);
    let endpoint = server.endpoint_url();
    let tick = DEMO_TICK.as_secs();
    let reconcile = DEMO_RECONCILIATION;
    // The demo's configuration is written as a user would write it, so it goes through the same
    // validation as a real file.
    let mut text = format!(
        "[server]\nlisten_address = \"{listen}\"\n\
         [polling]\ninterval = \"{reconcile}\"\ntimeout = \"{tick}s\"\n\
         jobs = [\"export\", \"import\"]\ndatastore_health = true\ndatastore_interval = \"{reconcile}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\
         [events]\nqueue_url = \"{endpoint}/123456789012/{DEMO_QUEUE}\"\nendpoint_url = \"{endpoint}\"\n"
    );
    for ds in datastores {
        text.push_str(&format!(
            "[[datastores]]\nid = \"{}\"\nname = \"{}\"\nregion = \"{}\"\n",
            ds.id, ds.name, ds.region
        ));
    }
    let config = Config::parse(&text, Path::new("(demo)")).map_err(StartError::Config)?;
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
    first_polls(&exporter).await;
    tracing::info!(
        fake_endpoint = %server.endpoint_url(),
        "demo running: jobs change every {}s and show within a second through HealthLake events (polling reconciles every {DEMO_RECONCILIATION}); try: curl http://{address}/metrics",
        DEMO_TICK.as_secs()
    );
    println!("healthlake-exporter demo: metrics at http://{address}/metrics (Ctrl-C to stop)");
    termination_signal().await;
    exporter.shutdown().await;
    script.abort();
    server.shutdown();
    Ok(())
}

/// Waits (at most [`FIRST_POLLS_LIMIT`]) until every feed has been polled once, so that the
/// address is announced when `/metrics` shows the history, not the empty state before it.
async fn first_polls(exporter: &Exporter) {
    let deadline = Instant::now() + FIRST_POLLS_LIMIT;
    while exporter.state().first_polls_pending() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
