//! The binary: parse the command line, start logging (`logging`), run the library, map errors to exit codes
//! (0 ok, 1 could not start, 2 invalid configuration or usage, 3 a preflight check failed).

// Functions stay short here too (the threshold is in clippy.toml at the workspace root).
#![warn(clippy::too_many_lines)]

use std::process::ExitCode;

use clap::Parser;
use healthlake_exporter::aws::ClientOptions;
use healthlake_exporter::cli::Cli;
use healthlake_exporter::config::ConfigFiles;
use healthlake_exporter::{Exporter, Overrides, StartError};
use tokio::runtime::Runtime;

const EXIT_START_FAILED: u8 = 1;
const EXIT_BAD_CONFIG: u8 = 2;
const EXIT_PREFLIGHT_FAILED: u8 = 3;

fn main() -> ExitCode {
    healthlake_exporter::poll::memory::limit_arenas();
    let cli = Cli::parse();
    healthlake_exporter::logging::init(cli.log_format);

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
        return demo(&runtime, &cli);
    }
    let overrides = Overrides {
        listen_address: cli.listen_address,
        shard: cli.shard,
    };
    let files = ConfigFiles {
        config: cli.config.clone(),
        web_config: cli.web_config_file.clone(),
    };
    if cli.check_config {
        return check_config(&runtime, &cli, &files, overrides);
    }
    serve(&runtime, files, overrides)
}

/// `--demo`: the exporter against an in-process fake (only in builds with the `demo` feature).
fn demo(runtime: &Runtime, cli: &Cli) -> ExitCode {
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
        let _ = (runtime, cli);
        eprintln!("error: this build has no --demo: it was built without the `demo` feature (cargo build --features demo)");
        ExitCode::from(EXIT_BAD_CONFIG)
    }
}

/// `--check-config`: validate and summarise the files, then with `--probe` run the preflight
/// checks against AWS.
fn check_config(
    runtime: &Runtime,
    cli: &Cli,
    files: &ConfigFiles,
    overrides: Overrides,
) -> ExitCode {
    let mut config = match files.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    overrides.apply(&mut config);
    match &cli.web_config_file {
        Some(web) => println!(
            "{} and {} are valid\n{}",
            cli.config.display(),
            web.display(),
            config.summary()
        ),
        None => println!("{} is valid\n{}", cli.config.display(), config.summary()),
    }
    if !cli.probe {
        return ExitCode::SUCCESS;
    }
    let summary = runtime.block_on(healthlake_exporter::preflight::run(
        &config,
        &ClientOptions::default(),
        |check| println!("{check}"),
    ));
    println!("{summary}");
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PREFLIGHT_FAILED)
    }
}

/// The daemon: serve until SIGTERM or SIGINT, reloading on SIGHUP.
fn serve(runtime: &Runtime, files: ConfigFiles, overrides: Overrides) -> ExitCode {
    runtime.block_on(async {
        let started = Exporter::start_from_files(files, overrides, ClientOptions::default()).await;
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
