//! The binary: parse the command line, start logging, run the library, map errors to exit codes
//! (0 ok, 1 could not start, 2 invalid configuration or usage).

use std::process::ExitCode;

use clap::Parser;
use healthlake_exporter::aws::ClientOptions;
use healthlake_exporter::cli::{Cli, LogFormat};
use healthlake_exporter::config::Config;
use healthlake_exporter::{Exporter, Overrides, StartError};
use tracing_subscriber::EnvFilter;

const EXIT_START_FAILED: u8 = 1;
const EXIT_BAD_CONFIG: u8 = 2;

/// AWS SDK crates whose debug and trace output may carry request details; capped at info so that
/// no RUST_LOG setting makes the exporter log signed headers or credentials.
const SDK_LOG_CAPS: &[&str] = &[
    "aws_config=info",
    "aws_credential_types=info",
    "aws_runtime=info",
    "aws_sigv4=info",
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
    "aws_smithy_http_client=info",
    "aws_sdk_healthlake=info",
    "aws_sdk_sts=info",
    "aws_sdk_ssooidc=info",
    "aws_sdk_sso=info",
    "hyper=info",
    "hyper_util=info",
];

fn main() -> ExitCode {
    healthlake_exporter::poll::memory::limit_arenas();
    let cli = Cli::parse();
    init_logging(cli.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };

    if cli.demo {
        #[cfg(feature = "demo")]
        return match runtime.block_on(healthlake_exporter::demo::run(cli.listen_address)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_START_FAILED)
            }
        };
        #[cfg(not(feature = "demo"))]
        {
            eprintln!("error: this build has no --demo: it was built without the `demo` feature (cargo build --features demo)");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    }

    let overrides = Overrides {
        listen_address: cli.listen_address,
        shard: cli.shard,
    };

    if cli.check_config {
        return match Config::load(&cli.config) {
            Ok(mut config) => {
                overrides.apply(&mut config);
                println!("{} is valid\n{}", cli.config.display(), config.summary());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        };
    }

    runtime.block_on(async {
        let started =
            Exporter::start_from_file_with(&cli.config, overrides, ClientOptions::default()).await;
        match started {
            Ok(exporter) => {
                exporter.run_until_terminated().await;
                ExitCode::SUCCESS
            }
            Err(error @ StartError::Config(_)) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_START_FAILED)
            }
        }
    })
}

fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for cap in SDK_LOG_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
