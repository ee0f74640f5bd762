//! The preflight (`--check-config --probe`): after the file is valid, one cheap real call per
//! thing the configuration needs, so that a missing IAM action, a datastore in another region,
//! a queue in another account or an endpoint that does not resolve is reported before deploying,
//! with its fix, instead of as `up 0` and a log line in a running pod.
//!
//! It uses the daemon's own clients (`aws::Clients`, `aws::sqs::SqsQueue`): the same credentials
//! chain, `role_arn`s, regions, endpoints, timeouts and per-account request budgets, for the
//! datastores this replica's `--shard` owns. In order: `sts:GetCallerIdentity` with the base
//! credentials and with each role (naming the principal every later fix grants to), then per
//! datastore and job kind one `List…Jobs` with `MaxResults` 1 (a datastore the region does not
//! have is looked for in HealthLake's other regions, to say which one to set),
//! `DescribeFHIRDatastore` where `datastore_health` is on, `ListFHIRDatastores` per
//! `[[discovery]]`, and `GetQueueAttributes` on the event queue (its visibility timeout against
//! the consumer's minimum). Checks run `polling.concurrency` at a time; lines come out in that
//! order as they finish, then a summary.
//!
//! SQS cannot prove `sqs:ReceiveMessage` (nor the delete and visibility actions) without taking
//! messages from the queue: the preflight never receives, and its line says which actions it
//! proved and which it assumes.

mod advice;
mod identity;
mod report;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use tokio::sync::Semaphore;

pub use report::{Check, Status, Summary};

use crate::aws::probe::{self, Service};
use crate::aws::sqs::SqsQueue;
use crate::aws::{
    describe_datastore, AwsTarget, ClientOptions, ClientSettings, Clients, PacedClient,
};
use crate::config::{region_of_queue_url, Config, DatastoreConfig, DiscoveryConfig, EventsConfig};
use crate::events::consumer::MIN_VISIBILITY_TIMEOUT;
use crate::model::{ErrorReason, JobKind, PollError};
use advice::{Endpoint, HealthLakeCall, Place};
use identity::{skipped_because, Identities, Principal, RoleUse};

/// What every check shares.
struct Context {
    clients: Clients,
    base: SdkConfig,
    identities: Identities,
    timeout: Duration,
    max_requests_per_second: f64,
    datastore_health: bool,
    /// `polling.concurrency` checks at a time.
    slots: Semaphore,
}

/// One unit of work; its lines come out together, in configuration order.
enum Task {
    Datastore(DatastoreConfig),
    Discovery(usize, DiscoveryConfig),
    /// The queue client and `[events]`' own target (its endpoint and role).
    Events(Arc<SqsQueue>, AwsTarget),
}

/// Runs every check of `config` (narrowed to its `polling.shard`), passing each line to
/// `report` as soon as it and the lines before it are known. `options` are the daemon's (the
/// defaults outside tests).
pub async fn run(
    config: &Config,
    options: &ClientOptions,
    mut report: impl FnMut(&Check),
) -> Summary {
    let mut summary = Summary::default();
    let mut emit = |check: Check| {
        summary.add(&check);
        report(&check);
    };
    let mut config = config.clone();
    config.retain_shard();
    let clients = match Clients::build(settings_with_region_search(&config), options).await {
        Ok(clients) => clients,
        Err(error) => {
            emit(Check::new(
                Status::Fail,
                "setup",
                "clients",
                error.to_string(),
            ));
            return summary;
        }
    };
    let base = clients.base_config(options).await;
    let queue = match &config.events {
        Some(events) => match events_queue(&config, events, &clients, options).await {
            Ok(queue) => Some(Arc::new(queue)),
            Err(check) => {
                emit(*check);
                None
            }
        },
        None => None,
    };
    let region = first_region(&config, &clients, &base, queue.as_deref());
    let roles = role_uses(&config, &clients, queue.as_deref());
    let identities = Identities::check(&base, region, roles, &mut emit).await;
    let context = Arc::new(Context {
        clients,
        base,
        identities,
        timeout: config.polling.timeout,
        max_requests_per_second: config.polling.max_requests_per_second,
        datastore_health: config.polling.datastore_health,
        slots: Semaphore::new(config.polling.concurrency.max(1)),
    });
    run_in_order(context, tasks(&config, queue), &mut emit).await;
    summary
}

/// The datastores, the discovery entries, then the event queue.
fn tasks(config: &Config, queue: Option<Arc<SqsQueue>>) -> Vec<Task> {
    let datastores = config.datastores.iter().cloned().map(Task::Datastore);
    let discovery = config.discovery.iter().cloned().enumerate();
    let events = queue.zip(config.events.as_ref());
    datastores
        .chain(discovery.map(|(i, d)| Task::Discovery(i, d)))
        .chain(events.map(|(q, e)| Task::Events(q, e.target.clone())))
        .collect()
}

/// Spawns every task at once (each waits for a slot, so `polling.concurrency` run at a time)
/// and passes their lines on in task order, each task's as soon as those before it are done.
async fn run_in_order(context: Arc<Context>, tasks: Vec<Task>, emit: &mut impl FnMut(Check)) {
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|task| tokio::spawn(run_task(Arc::clone(&context), task)))
        .collect();
    for handle in handles {
        match handle.await {
            Ok(checks) => checks.into_iter().for_each(&mut *emit),
            Err(error) => emit(Check::new(
                Status::Fail,
                "preflight",
                "-",
                format!("a check stopped: {error}"),
            )),
        }
    }
}

async fn run_task(context: Arc<Context>, task: Task) -> Vec<Check> {
    let Ok(_slot) = context.slots.acquire().await else {
        return Vec::new();
    };
    match task {
        Task::Datastore(datastore) => check_datastore(&context, &datastore).await,
        Task::Discovery(index, entry) => vec![check_discovery(&context, index, &entry).await],
        Task::Events(queue, target) => vec![check_queue(&context, &queue, &target).await],
    }
}

/// The daemon's client settings, plus each datastore target in HealthLake's other regions (clients
/// are built lazily: only a datastore not found where configured makes calls through them).
fn settings_with_region_search(config: &Config) -> ClientSettings {
    let mut plan = ClientSettings::from(config);
    let searched: BTreeSet<AwsTarget> = config
        .datastores
        .iter()
        .flat_map(|datastore| {
            probe::HEALTHLAKE_REGIONS.map(|region| AwsTarget {
                region: Some(region.to_owned()),
                ..datastore.target.clone()
            })
        })
        .collect();
    plan.users.extend(
        searched
            .into_iter()
            .map(|target| (target, "a datastore's region search".to_owned())),
    );
    plan
}

/// The `[events]` queue client of this replica, or the line saying why there is none.
async fn events_queue(
    config: &Config,
    events: &EventsConfig,
    clients: &Clients,
    options: &ClientOptions,
) -> Result<SqsQueue, Box<Check>> {
    let shard = config.polling.shard;
    let subject = format!("events queue {}", events.queue_url_for(shard));
    let fail = |outcome: String| {
        Box::new(Check::new(
            Status::Fail,
            &subject,
            "sqs:GetQueueAttributes",
            outcome,
        ))
    };
    if shard.count() > 1 && !events.per_shard() {
        let error = crate::supervisor::EventsError::SharedQueue { shard };
        return Err(fail(error.to_string().replace("\n  hint:", "; fix:")));
    }
    SqsQueue::build(events.queue_settings(shard), clients, options)
        .await
        .map_err(|error| fail(error.to_string()))
}

/// The region of the base identity check: the SDK's default, else the first client's.
fn first_region(
    config: &Config,
    clients: &Clients,
    base: &SdkConfig,
    queue: Option<&SqsQueue>,
) -> Option<Region> {
    base.region()
        .cloned()
        .or_else(|| {
            targets(config).find_map(|target| clients.for_target(target).and_then(region_of))
        })
        .or_else(|| queue.and_then(SqsQueue::region))
}

fn targets(config: &Config) -> impl Iterator<Item = &AwsTarget> {
    config
        .datastores
        .iter()
        .map(|d| &d.target)
        .chain(config.discovery.iter().map(|d| &d.target))
}

/// Every `role_arn` in use, with the region its first user signs in.
fn role_uses(config: &Config, clients: &Clients, queue: Option<&SqsQueue>) -> Vec<RoleUse> {
    let mut roles: Vec<RoleUse> = targets(config)
        .filter_map(|target| {
            let role_arn = target.role_arn.clone()?;
            let region = clients.for_target(target).and_then(region_of)?;
            Some(RoleUse {
                role_arn,
                region,
                events: false,
            })
        })
        .collect();
    if let (Some(events), Some(queue)) = (&config.events, queue) {
        if let (Some(role_arn), Some(region)) = (events.target.role_arn.clone(), queue.region()) {
            roles.push(RoleUse {
                role_arn,
                region,
                events: true,
            });
        }
    }
    roles
}

fn region_of(client: &PacedClient) -> Option<Region> {
    client.sdk.config().region().cloned()
}

/// The context of one call: its subject line, who signs, and whether it can be tried at all.
struct Call<'a> {
    subject: String,
    place: Place,
    target: &'a AwsTarget,
    /// Set when the credentials it needs failed: the call is skipped with this reason.
    skip: Option<String>,
}

impl<'a> Call<'a> {
    fn new(context: &Context, subject: String, target: &'a AwsTarget, region: &str) -> Call<'a> {
        let principal = context.identities.of(target.role_arn.as_deref());
        let skip = match principal {
            Principal::Failed { subject } => Some(skipped_because(subject)),
            _ => None,
        };
        Call {
            subject,
            place: Place::new(principal, target.role_arn.as_deref(), region),
            target,
            skip,
        }
    }

    fn skipped(&self, action: &str) -> Option<Check> {
        self.skip
            .as_ref()
            .map(|why| Check::new(Status::Skip, &self.subject, action, why.clone()))
    }

    async fn endpoint(&self, context: &Context) -> Endpoint {
        Endpoint::of(
            Service::HealthLake,
            &self.place.region,
            self.target.endpoint_url.as_deref(),
            "endpoint_url",
            &context.base,
        )
        .await
    }

    async fn failure(
        &self,
        context: &Context,
        call: &HealthLakeCall<'_>,
        error: &PollError,
    ) -> Check {
        let endpoint = self.endpoint(context).await;
        advice::healthlake_failure(
            &self.subject,
            call,
            error,
            &self.place,
            &endpoint,
            context.timeout,
            context.max_requests_per_second,
        )
    }
}

/// The datastore's job listings (one per kind it polls) and, with `datastore_health`, its
/// description.
async fn check_datastore(context: &Context, datastore: &DatastoreConfig) -> Vec<Check> {
    let Some(client) = context.clients.for_target(&datastore.target) else {
        return Vec::new();
    };
    let region = region_of(client).map(|r| r.to_string()).unwrap_or_default();
    let subject = format!("datastore {} in {region}", datastore.id);
    let call = Call::new(context, subject, &datastore.target, &region);
    let kinds = [
        (JobKind::Export, datastore.jobs.export),
        (JobKind::Import, datastore.jobs.import),
    ];
    let mut checks = Vec::new();
    // Where the datastore is, once looked for (the first "not found" looks).
    let mut found_in: Option<Option<String>> = None;
    for (kind, _) in kinds.into_iter().filter(|(_, polled)| *polled) {
        let action = format!("healthlake:{}", kind.operation());
        if let Some(skipped) = call.skipped(&action) {
            checks.push(skipped);
            continue;
        }
        let check = match probe::list_one_job(client, kind, &datastore.id).await {
            Ok(()) => Check::new(Status::Ok, &call.subject, &action, "allowed"),
            Err(error) if error.reason == ErrorReason::NotFound => {
                if found_in.is_none() {
                    found_in = Some(search_regions(context, datastore, kind, &region).await);
                }
                let found = found_in.as_ref().and_then(|f| f.as_deref());
                advice::datastore_not_found(&call.subject, &action, &call.place, found, call.target)
            }
            Err(error) => {
                let grant = HealthLakeCall {
                    action: &action,
                    resource: call.place.datastore_arn(&datastore.id),
                };
                call.failure(context, &grant, &error).await
            }
        };
        checks.push(check);
    }
    if context.datastore_health {
        checks.push(check_describe(context, &call, client, datastore, found_in.flatten()).await);
    }
    checks
}

async fn check_describe(
    context: &Context,
    call: &Call<'_>,
    client: &PacedClient,
    datastore: &DatastoreConfig,
    found_in: Option<String>,
) -> Check {
    let action = "healthlake:DescribeFHIRDatastore";
    if let Some(skipped) = call.skipped(action) {
        return skipped;
    }
    match describe_datastore(client, &datastore.id).await {
        Ok(info) => Check::new(
            Status::Ok,
            &call.subject,
            action,
            format!("allowed (status {})", info.status),
        ),
        Err(error) if error.reason == ErrorReason::NotFound => advice::datastore_not_found(
            &call.subject,
            action,
            &call.place,
            found_in.as_deref(),
            call.target,
        ),
        Err(error) => {
            let grant = HealthLakeCall {
                action,
                resource: call.place.datastore_arn(&datastore.id),
            };
            call.failure(context, &grant, &error).await
        }
    }
}

/// Looks for the datastore with the same credentials and endpoint in HealthLake's other
/// regions, all at once (each call bounded by `polling.timeout`, each region's budget kept):
/// the first region, in [`probe::HEALTHLAKE_REGIONS`] order, whose listing answers.
async fn search_regions(
    context: &Context,
    datastore: &DatastoreConfig,
    kind: JobKind,
    configured_region: &str,
) -> Option<String> {
    let mut searches = tokio::task::JoinSet::new();
    for (order, region) in probe::HEALTHLAKE_REGIONS.into_iter().enumerate() {
        if region == configured_region {
            continue;
        }
        let target = AwsTarget {
            region: Some(region.to_owned()),
            ..datastore.target.clone()
        };
        let Some(client) = context.clients.for_target(&target).cloned() else {
            continue;
        };
        let id = datastore.id.clone();
        searches.spawn(async move {
            let found = probe::list_one_job(&client, kind, &id).await.is_ok();
            (order, region, found)
        });
    }
    let mut found: Vec<(usize, &str)> = Vec::new();
    while let Some(result) = searches.join_next().await {
        if let Ok((order, region, true)) = result {
            found.push((order, region));
        }
    }
    found.into_iter().min().map(|(_, region)| region.to_owned())
}

/// One `ListFHIRDatastores` for a `[[discovery]]` entry.
async fn check_discovery(context: &Context, index: usize, entry: &DiscoveryConfig) -> Check {
    let action = "healthlake:ListFHIRDatastores";
    let Some(client) = context.clients.for_target(&entry.target) else {
        return Check::new(
            Status::Fail,
            &format!("discovery[{index}]"),
            action,
            "no client",
        );
    };
    let region = region_of(client).map(|r| r.to_string()).unwrap_or_default();
    let call = Call::new(
        context,
        format!("discovery[{index}] in {region}"),
        &entry.target,
        &region,
    );
    if let Some(skipped) = call.skipped(action) {
        return skipped;
    }
    match probe::list_one_datastore(client).await {
        Ok(()) => Check::new(Status::Ok, &call.subject, action, "allowed"),
        Err(error) => {
            let grant = HealthLakeCall {
                action,
                // The action has no resource type: it cannot be scoped to datastores.
                resource: "\"*\" (it cannot be scoped to a datastore)".to_owned(),
            };
            call.failure(context, &grant, &error).await
        }
    }
}

/// `GetQueueAttributes` on this replica's event queue, bounded by `polling.timeout`.
async fn check_queue(context: &Context, queue: &SqsQueue, events_target: &AwsTarget) -> Check {
    let url = queue.queue_url();
    let subject = format!("events queue {url}");
    let action = "sqs:GetQueueAttributes";
    let region = queue.region().map(|r| r.to_string()).unwrap_or_default();
    let call = Call::new(context, subject, events_target, &region);
    if let Some(skipped) = call.skipped(action) {
        return skipped;
    }
    let result = match tokio::time::timeout(context.timeout, queue.visibility_timeout()).await {
        Ok(result) => result,
        Err(_) => Err(PollError::new(
            ErrorReason::Timeout,
            "no answer within polling.timeout",
        )),
    };
    match result {
        Ok(visibility) => {
            advice::queue_answered(&call.subject, visibility, MIN_VISIBILITY_TIMEOUT, url)
        }
        Err(error) => {
            let endpoint = Endpoint::of(
                Service::Sqs,
                &region,
                events_target.endpoint_url.as_deref(),
                "events.endpoint_url",
                &context.base,
            )
            .await;
            let facts = advice::Queue {
                url,
                region: &region,
                url_region: region_of_queue_url(url),
            };
            advice::queue_failure(
                &call.subject,
                &facts,
                &error,
                &call.place,
                &endpoint,
                context.timeout,
            )
        }
    }
}
