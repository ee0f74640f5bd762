//! Event-driven refreshes: HealthLake's EventBridge events, delivered through SQS, make the
//! exporter list a datastore at once instead of at its next poll, so a failed job shows within
//! seconds while polling drops to reconciliation. An event only says "look now": the refresh is
//! the same incremental listing a poll does, so the listing stays the single source of truth.
//!
//! `message` classifies one SQS message and finds the followed datastores it names; `coalesce`
//! turns messages into refreshes (one per datastore at a time, at most one start per
//! `polling.timeout`) and says when a message may be deleted; `held` keeps the messages being
//! handled hidden (visibility extended while their refresh waits and runs); `consumer` is the
//! loop (receive, refresh, extend, delete); `refresh` makes a refresh the same listing a poll is.

pub mod coalesce;
pub mod consumer;
pub mod held;
pub mod message;
pub mod refresh;
