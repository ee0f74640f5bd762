//! healthlake-exporter: Amazon HealthLake FHIR export and import jobs as Prometheus metrics.
//!
//! The flow is one-way: config → HealthLake clients → pollers → State → metrics → HTTP. The scrape
//! path never waits on AWS: `/metrics` encodes what State holds now. `main.rs` only parses the
//! command line and maps errors to exit codes.
//!
//! # The data path, and a glossary
//!
//! A datastore's numbers travel one way: **config → feeds → listings → state → snapshot →
//! families → exposition**. The configuration names datastores; each is polled as a few feeds;
//! a poll of a job feed is a listing, merged page by page into State; a scrape copies State into
//! a snapshot; the families read the snapshot; the encoder writes the exposition. One type is each
//! concept, named after it:
//!
//! | concept | the type | what it is |
//! |---|---|---|
//! | config | [`config::Config`] | The validated configuration file (`[polling]`, `[[datastores]]`, `[[discovery]]`, `[server]`, `[events]`); a datastore's entry is a [`config::DatastoreConfig`]. |
//! | datastore | [`state::Datastore`] | One HealthLake datastore as State knows it: its `datastore_id`/`datastore_name` labels and its [`state::Record`] (one entry per feed). HealthLake's own description of it is a [`model::DatastoreInfo`]. |
//! | feed | [`state::Feed`] | One thing polled of a datastore, with its own health: its export jobs, its import jobs, or its description (the `feed` label of the `healthlake_feed_…` families; discovery and events are feeds of the exporter). A job feed's state is a [`state::JobFeed`], the description feed's a [`state::DatastoreFeed`]. |
//! | job | [`model::Job`] | One export or import job as a listing returns it ([`model::JobKind`] says which). The newest are kept for their series as the compact [`model::RecentJob`]. |
//! | poll plan | [`state::PollPlan`] | What the next poll of a job feed asks for: a full listing or the window ([`state::Listing`]), and whether it follows the stragglers ([`state::Follow`]). Made by the feed's history. |
//! | listing | [`state::ListingMerge`] | One poll's `ListFHIR…Jobs` pages (fetched by [`aws::list_jobs`], page by page) staged into a job feed as they arrive and committed at the end; a listing that fails half-way changes nothing. |
//! | history / window | [`state::History`] | A job feed's settled history: the window (jobs submitted after the settled point, listed by every poll), the stragglers, and the settled counts. |
//! | snapshot | [`metrics::Snapshot`] | What the families read, copied out of State at one moment (per datastore under its record lock, which is then released). |
//! | family | [`metrics::Family`] | One metric family as a table entry: name (written once), help, type, unit, labels and the function that writes its samples from a snapshot. |
//! | exposition | [`metrics::MetricsCache`] | The text or OpenMetrics body of `/metrics` ([`metrics::Format`]), made of per-datastore pieces encoded once per change and streamed as a [`metrics::MetricsBody`]; [`metrics::render_uncached`] is the reference it must equal. |
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
