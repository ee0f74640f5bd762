//! healthlake-exporter: Amazon HealthLake FHIR export and import jobs as Prometheus metrics.
//!
//! The flow is one-way: config → HealthLake clients → pollers → State → metrics → HTTP. The scrape
//! path never waits on AWS: `/metrics` encodes what State holds now. `main.rs` only parses the
//! command line and maps errors to exit codes.
//!
//! Modules, and the direction of their dependencies (each imports only modules below it):
//!
//! ```text
//! supervisor          Exporter: start, reload, signals; owns the configuration and the pollers
//! config  poll  events  web
//!                     the file and its checks · polling tasks and discovery · SQS event
//!                     consumer (refreshes through poll) · the HTTP endpoint
//! state  metrics  aws what is known per datastore · its exposition · the only SDK user
//! model               the domain types every layer shares (a leaf)
//! ```
//!
//! `logging` (log lines that the text they carry cannot forge or flood) is used by `main.rs` only.
//! `preflight` (`--check-config --probe`: one cheap real call per thing a configuration needs,
//! through `aws`, with the fix of each failure) sits beside `supervisor`, and is used by `main.rs`.
//!
//! `config` imports the settings types of `web` and `aws` (each owns its settings and their
//! checks), never the reverse; `state` and `aws` receive what they need from a configuration as
//! their own types (`state::Roster`, `aws::ClientSettings`, `aws::sqs::QueueSettings`). Nothing
//! imports this crate root.

// Functions stay short (the threshold is in clippy.toml at the workspace root).
#![warn(clippy::too_many_lines)]

pub mod aws;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod events;
pub mod files;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod poll;
pub mod preflight;
pub mod state;
mod supervisor;
pub mod web;

pub use supervisor::{
    termination_signal, EventsError, Exporter, Overrides, ReloadError, ReloadHandle, StartError,
};
