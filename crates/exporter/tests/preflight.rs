//! The preflight as a user runs it: `healthlake-exporter --check-config --probe`, the real binary
//! against the fake HealthLake, SQS and STS on loopback, with one failure of each kind it can
//! name. Each test asserts the exact lines (reason and fix) and the exit code. Nothing leaves
//! loopback: every endpoint is the fake's (STS through `AWS_ENDPOINT_URL_STS`), a closed loopback
//! port, or a host name the resolver refuses without asking a DNS server (a label longer than
//! 63 bytes, under the reserved `.invalid`); and every run is killed after a deadline.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::run_to_end;
use common::TestDir;
use healthlake_fake::{
    FakeDatastore, FakeQueue, Fault, SqsOperation, StsAction, LIST_FHIR_EXPORT_JOBS_TARGET,
};

const BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");
/// A run that has not ended by then is killed and fails its test.
const DEADLINE: Duration = Duration::from_secs(60);

/// A configuration file `name` holding `text`, in a directory removed when the returned guard
/// drops (also when the test fails).
fn temp_config(name: &str, text: &str) -> (TestDir, PathBuf) {
    let dir = TestDir::new("preflight");
    let path = dir.write(name, text);
    (dir, path)
}

/// What a run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs the binary with static keys and STS pointed at `sts` (never the machine's profile,
/// IMDS or AWS).
async fn run(args: &[&str], sts: &str) -> Run {
    run_with(args, sts, true).await
}

/// [`run`], with or without the static keys (without: the whole chain finds nothing). Waits for
/// the child without blocking the runtime that serves the fake, and kills it after
/// [`DEADLINE`].
async fn run_with(args: &[&str], sts: &str, keys: bool) -> Run {
    let started = Instant::now();
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if keys {
        command
            .env("AWS_ACCESS_KEY_ID", "AKIDPREFLIGHT")
            .env("AWS_SECRET_ACCESS_KEY", "preflight-secret");
    }
    // Empty AWS config and credentials files: the SDK reads no profile of the machine's.
    let aws_files = TestDir::new("preflight-aws");
    command
        .env("AWS_ENDPOINT_URL_STS", sts)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", aws_files.write("aws-config", ""))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            aws_files.write("aws-credentials", ""),
        )
        .env("RUST_LOG", "error");
    // On the blocking pool: the fake answering it runs on this test's runtime. `run_to_end` kills
    // the child at the deadline, and also when this test fails first (its guard).
    let output = tokio::task::spawn_blocking(move || run_to_end(&mut command, DEADLINE))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The preflight's lines: everything after the `--check-config` summary.
fn probe_lines(stdout: &str) -> Vec<String> {
    let is_check = |l: &str| {
        ["ok ", "warn ", "FAIL ", "skip "]
            .iter()
            .any(|s| l.starts_with(s))
    };
    stdout
        .lines()
        .skip_while(|l| !is_check(l))
        .map(str::to_owned)
        .collect()
}

/// A loopback port with nothing listening: bound, then closed.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The head of every config: the fake everywhere, one attempt, a short timeout.
fn config_head(url: &str, polling: &str) -> String {
    format!(
        "[polling]\ntimeout = \"5s\"\nmax_attempts = 1\n{polling}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\n"
    )
}

fn probe_args(path: &std::path::Path) -> Vec<String> {
    [
        "--check-config",
        "--probe",
        "--config",
        path.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn probe(path: &std::path::Path, sts: &str) -> Run {
    let args = probe_args(path);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, sts).await
}

/// The issue's first-deploy failures, one datastore each: access denied, a datastore of another
/// region, an id no region has, throttled, nothing listening at the endpoint, an endpoint whose
/// host does not resolve, a queue that does not exist. Each line names the reason and the fix;
/// the run exits 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_named_with_its_fix() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    for id in ["dsok", "dsdenied", "dsthrottled"] {
        fake.add_datastore(id);
    }
    fake.set_datastore("dswest", FakeDatastore::new("west").in_region("us-east-1"));
    fake.set_fault_for(
        LIST_FHIR_EXPORT_JOBS_TARGET,
        "dsdenied",
        Some(Fault::AccessDenied),
    );
    fake.set_fault_for(
        LIST_FHIR_EXPORT_JOBS_TARGET,
        "dsthrottled",
        Some(Fault::Throttling),
    );
    let refused = format!("http://127.0.0.1:{}", closed_port());
    // A label over 63 bytes: the resolver refuses the name itself, no DNS query is sent.
    let unresolvable = format!("http://{}.invalid", "x".repeat(64));
    let text = format!(
        r#"{}[[datastores]]
id = "dsok"
[[datastores]]
id = "dsdenied"
[[datastores]]
id = "dswest"
region = "us-west-2"
[[datastores]]
id = "dsmissing"
[[datastores]]
id = "dsthrottled"
[[datastores]]
id = "dsrefused"
endpoint_url = "{refused}"
[[datastores]]
id = "dsdns"
endpoint_url = "{unresolvable}"
[events]
queue_url = "{url}/123456789012/missing"
endpoint_url = "{url}"
"#,
        config_head(&url, "")
    );
    let (_dir, path) = temp_config("failures.toml", &text);
    let run = probe(&path, &url).await;
    // The report as a user sees it: `cargo test --test preflight each_failure -- --nocapture`.
    println!("{}", run.stdout);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(run
        .stdout
        .starts_with(&format!("{} is valid\n", path.display())));
    let expected = [
        "ok   identity: sts:GetCallerIdentity: arn:aws:iam::123456789012:user/healthlake-exporter (account 123456789012)".to_owned(),
        "ok   datastore dsok in us-east-1: healthlake:ListFHIRExportJobs: allowed".to_owned(),
        "FAIL datastore dsdenied in us-east-1: healthlake:ListFHIRExportJobs: access denied (HTTP 403 AccessDeniedException: User is not authorized to perform: healthlake:ListFHIRExportJobs); fix: allow healthlake:ListFHIRExportJobs on arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/dsdenied to the user healthlake-exporter in account 123456789012".to_owned(),
        "FAIL datastore dswest in us-west-2: healthlake:ListFHIRExportJobs: not found in us-west-2, but in us-east-1; fix: set region = \"us-east-1\" on this datastore (a [[datastores]] entry's region wins over [aws].region)".to_owned(),
        format!("FAIL datastore dsmissing in us-east-1: healthlake:ListFHIRExportJobs: not found in us-east-1, nor in another HealthLake region of account 123456789012 through {url}; fix: check the id: it is the last part of the datastore's ARN (aws healthlake list-fhir-datastores --region us-east-1); a datastore of another region needs that region's endpoint_url"),
        "FAIL datastore dsthrottled in us-east-1: healthlake:ListFHIRExportJobs: throttled, so the permission is not proven (HTTP 429 ThrottlingException: Rate exceeded); fix: run the preflight again in a minute; HealthLake's request quota of account 123456789012 in us-east-1 is shared with your other tools (the exporter keeps to polling.max_requests_per_second, 5/s)".to_owned(),
        format!("FAIL datastore dsrefused in us-east-1: healthlake:ListFHIRExportJobs: nothing accepts connections at {refused} (connection refused); fix: check the host and port of endpoint_url"),
        format!("FAIL datastore dsdns in us-east-1: healthlake:ListFHIRExportJobs: the host of {unresolvable} does not resolve (DNS); fix: check endpoint_url: a VPC endpoint's name is its DNS name (vpce-….vpce.amazonaws.com), or enable its private DNS and remove endpoint_url"),
        format!("FAIL events queue {url}/123456789012/missing: sqs:GetQueueAttributes: no such queue in us-east-1 (HTTP 400 AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.); fix: check events.queue_url: the CloudFormation stack's QueueUrl output (deploy/aws/healthlake-events.yaml), with {{shard}} where each replica has its own queue"),
        "preflight: 9 checks: 2 ok, 7 failed: fix the FAIL lines above, then run the preflight again".to_owned(),
    ];
    assert_eq!(probe_lines(&run.stdout), expected, "stderr: {}", run.stderr);
    // The wrong-region datastore was asked for in us-west-2 first, signed for that region.
    let regions: Vec<Option<String>> = fake
        .requests()
        .into_iter()
        .filter(|r| r.datastore_id.as_deref() == Some("dswest"))
        .map(|r| r.region)
        .collect();
    assert_eq!(regions.first(), Some(&Some("us-west-2".to_owned())));
    assert!(!run.stderr.contains("preflight-secret") && !run.stderr.contains("Signature="));
}

/// Everything a configuration can need, all allowed: the principal named by the fake STS, a
/// role assumed through it, both job kinds, descriptions, discovery and the event queue. One
/// call per check, each asking for one item; no message received. Exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_allowed_exits_0_with_one_call_per_check() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    fake.add_datastore("dsone");
    fake.add_datastore("dstwo");
    fake.set_caller_arn("arn:aws:sts::123456789012:assumed-role/app-pod-role/botocore-session-1");
    fake.create_queue("events");
    fake.send_message("events", "{\"detail-type\":\"untouched\"}");
    let text = format!(
        r#"{}[[datastores]]
id = "dsone"
[[datastores]]
id = "dstwo"
role_arn = "arn:aws:iam::210987654321:role/reader"
[[discovery]]
[events]
queue_url = "{url}/123456789012/events"
endpoint_url = "{url}"
"#,
        config_head(
            &url,
            "jobs = [\"export\", \"import\"]\ndatastore_health = true"
        )
    );
    let (_dir, path) = temp_config("allowed.toml", &text);
    let run = probe(&path, &url).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let mut expected = vec![
        "ok   identity: sts:GetCallerIdentity: arn:aws:sts::123456789012:assumed-role/app-pod-role/botocore-session-1 (account 123456789012)".to_owned(),
        "ok   role arn:aws:iam::210987654321:role/reader: sts:AssumeRole: assumed as arn:aws:sts::210987654321:assumed-role/reader/healthlake-exporter".to_owned(),
    ];
    for id in ["dsone", "dstwo"] {
        expected.extend([
            format!("ok   datastore {id} in us-east-1: healthlake:ListFHIRExportJobs: allowed"),
            format!("ok   datastore {id} in us-east-1: healthlake:ListFHIRImportJobs: allowed"),
            format!("ok   datastore {id} in us-east-1: healthlake:DescribeFHIRDatastore: allowed (status ACTIVE)"),
        ]);
    }
    expected.extend([
        "ok   discovery[0] in us-east-1: healthlake:ListFHIRDatastores: allowed".to_owned(),
        format!("ok   events queue {url}/123456789012/events: sqs:GetQueueAttributes: allowed; VisibilityTimeout 30s (at least 10s); not proven: sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage, which SQS cannot test without receiving messages: grant them as deploy/iam-policy-all-features.json does"),
        "preflight: 10 checks: 10 ok: the daemon can reach everything it needs".to_owned(),
    ]);
    assert_eq!(probe_lines(&run.stdout), expected, "stderr: {}", run.stderr);
    for (operation, id) in [
        ("HealthLake.ListFHIRExportJobs", "dsone"),
        ("HealthLake.ListFHIRImportJobs", "dstwo"),
        ("HealthLake.DescribeFHIRDatastore", "dsone"),
        ("HealthLake.ListFHIRDatastores", ""),
    ] {
        assert_eq!(fake.request_count_for(operation, id), 1, "{operation} {id}");
    }
    assert!(fake
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("HealthLake.List"))
        .all(|r| r.max_results == Some(1)));
    assert_eq!(
        fake.sts_request_count(StsAction::AssumeRole),
        2,
        "the check's and the client's own"
    );
    assert_eq!(fake.sqs_request_count(SqsOperation::ReceiveMessage), 0);
    assert_eq!(fake.queue_stats("events").deliveries, 0);
}

/// Credentials and permissions around the principal: an AssumeRole refused (its datastore's
/// calls are skipped, not failed one by one), a description and a discovery denied, a queue in
/// another account denied (the fix names its access policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_cross_account_queues_get_their_own_fix() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    fake.add_datastore("dsone");
    fake.set_caller_arn("arn:aws:sts::123456789012:assumed-role/app-pod-role/botocore-session-1");
    fake.set_sts_fault_for(StsAction::AssumeRole, Some(Fault::AccessDenied));
    fake.set_fault_for("DescribeFHIRDatastore", "dsone", Some(Fault::AccessDenied));
    fake.set_list_datastores_fault(Some(Fault::AccessDenied));
    fake.create_queue("events");
    fake.set_sqs_fault_for(SqsOperation::GetQueueAttributes, Some(Fault::AccessDenied));
    let text = format!(
        r#"{}[[datastores]]
id = "dsone"
[[datastores]]
id = "dstwo"
role_arn = "arn:aws:iam::210987654321:role/reader"
[[discovery]]
region = "eu-west-1"
[events]
queue_url = "{url}/999999999999/events"
endpoint_url = "{url}"
"#,
        config_head(&url, "datastore_health = true")
    );
    let (_dir, path) = temp_config("roles.toml", &text);
    let run = probe(&path, &url).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let role = "arn:aws:iam::210987654321:role/reader";
    let expected = [
        "ok   identity: sts:GetCallerIdentity: arn:aws:sts::123456789012:assumed-role/app-pod-role/botocore-session-1 (account 123456789012)".to_owned(),
        format!("FAIL role {role}: sts:AssumeRole: cannot assume the role (STS refused the AssumeRole: AccessDenied: User: arn:aws:sts::123456789012:assumed-role/app-pod-role/botocore-session-1 is not authorized to perform: sts:AssumeRole on resource: {role}); fix: allow the role app-pod-role in account 123456789012 sts:AssumeRole on {role}, and let the role's trust policy trust it"),
        "ok   datastore dsone in us-east-1: healthlake:ListFHIRExportJobs: allowed".to_owned(),
        "FAIL datastore dsone in us-east-1: healthlake:DescribeFHIRDatastore: access denied (HTTP 403 AccessDeniedException: User is not authorized to perform: healthlake:DescribeFHIRDatastore); fix: allow healthlake:DescribeFHIRDatastore on arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/dsone to the role app-pod-role in account 123456789012".to_owned(),
        format!("skip datastore dstwo in us-east-1: healthlake:ListFHIRExportJobs: not tried: the credentials of role {role} failed (see above)"),
        format!("skip datastore dstwo in us-east-1: healthlake:DescribeFHIRDatastore: not tried: the credentials of role {role} failed (see above)"),
        "FAIL discovery[0] in eu-west-1: healthlake:ListFHIRDatastores: access denied (HTTP 403 AccessDeniedException: User is not authorized to perform: healthlake:ListFHIRDatastores); fix: allow healthlake:ListFHIRDatastores on \"*\" (it cannot be scoped to a datastore) to the role app-pod-role in account 123456789012".to_owned(),
        format!("FAIL events queue {url}/999999999999/events: sqs:GetQueueAttributes: access denied (HTTP 403 AccessDenied: Access to the resource https://sqs.us-east-1.amazonaws.com/ is denied.); fix: allow sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage on arn:aws:sqs:us-east-1:999999999999:events to the role app-pod-role in account 123456789012; the queue is in account 999999999999 and the exporter runs in account 123456789012: the queue's access policy must allow the role app-pod-role in account 123456789012 as well"),
        "preflight: 8 checks: 2 ok, 4 failed, 2 skipped: fix the FAIL lines above, then run the preflight again".to_owned(),
    ];
    assert_eq!(probe_lines(&run.stdout), expected, "stderr: {}", run.stderr);
    assert_eq!(
        fake.request_count_for("ListFHIRExportJobs", "dstwo"),
        0,
        "skipped, never sent"
    );
}

/// `--shard` narrows the checks to the replica's datastores and queue, as the daemon would; a
/// queue's visibility timeout below the consumer's minimum fails with the command that fixes
/// it; a queue shared by shards is refused as the daemon refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_queue_and_visibility_follow_the_daemon() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    let ids = ["ds0", "ds1", "ds2", "ds3", "ds4", "ds5"];
    for id in ids {
        fake.add_datastore(id);
    }
    let owned: Vec<&str> = ids
        .into_iter()
        .filter(|id| healthlake_exporter::config::shard::owner(id, 2) == 1)
        .collect();
    assert!(!owned.is_empty() && owned.len() < ids.len());
    fake.create_queue_with(
        "events-1",
        FakeQueue {
            visibility_timeout: Duration::from_secs(5),
            ..FakeQueue::default()
        },
    );
    let datastores: String = ids
        .iter()
        .map(|id| format!("[[datastores]]\nid = \"{id}\"\n"))
        .collect();
    let sharded = format!(
        "{}{datastores}[events]\nqueue_url = \"{url}/123456789012/events-{{shard}}\"\nendpoint_url = \"{url}\"\n",
        config_head(&url, "")
    );
    let (_dir, path) = temp_config("sharded.toml", &sharded);
    let args = probe_args(&path);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--shard", "1/2"]);
    let outcome = run(&args, &url).await;
    assert_eq!(outcome.code, 3, "{}\n{}", outcome.stdout, outcome.stderr);
    let queue = format!("{url}/123456789012/events-1");
    let mut expected = vec!["ok   identity: sts:GetCallerIdentity: arn:aws:iam::123456789012:user/healthlake-exporter (account 123456789012)".to_owned()];
    expected.extend(owned.iter().map(|id| {
        format!("ok   datastore {id} in us-east-1: healthlake:ListFHIRExportJobs: allowed")
    }));
    expected.push(format!("FAIL events queue {queue}: sqs:GetQueueAttributes: allowed, but the queue's VisibilityTimeout is 5s, below the 10s the consumer needs to keep a message hidden while its refresh runs; fix: aws sqs set-queue-attributes --queue-url {queue} --attributes VisibilityTimeout=30"));
    expected.push(format!("preflight: {} checks: {} ok, 1 failed: fix the FAIL lines above, then run the preflight again", owned.len() + 2, owned.len() + 1));
    assert_eq!(
        probe_lines(&outcome.stdout),
        expected,
        "stderr: {}",
        outcome.stderr
    );
    for id in ids {
        let asked = fake.request_count_for("ListFHIRExportJobs", id);
        assert_eq!(asked, usize::from(owned.contains(&id)), "{id}");
    }

    let shared = sharded.replace("events-{shard}", "events");
    let (_dir, path) = temp_config("shared.toml", &shared);
    let args = probe_args(&path);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--shard", "1/2"]);
    let outcome = run(&args, &url).await;
    assert_eq!(outcome.code, 3);
    let line = probe_lines(&outcome.stdout)
        .into_iter()
        .find(|l| l.starts_with("FAIL events"))
        .expect("an events line");
    assert_eq!(line, format!("FAIL events queue {url}/123456789012/events: sqs:GetQueueAttributes: [events] queue_url has no {{shard}} but this replica is shard 1/2: replicas sharing one queue would take each other's events; fix: give each replica its own queue (deploy/aws/healthlake-events.yaml, ReplicaCount) and write {{shard}} in queue_url"));
}

/// No credentials at all: one FAIL that says how to give the exporter an identity, and every
/// call that needs them skipped (not failed one by one, not sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_fail_once_and_skip_the_rest() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    fake.add_datastore("dsone");
    let text = format!("{}[[datastores]]\nid = \"dsone\"\n", config_head(&url, ""));
    let (_dir, path) = temp_config("nocredentials.toml", &text);
    let args = probe_args(&path);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_with(&args, &url, false).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let lines = probe_lines(&run.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("FAIL identity: sts:GetCallerIdentity: no usable AWS credentials (could not load AWS credentials: "),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with("; fix: give the exporter an identity: on EKS, IRSA (the eks.amazonaws.com/role-arn annotation on its ServiceAccount) or an EKS Pod Identity association; elsewhere AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role"), "{}", lines[0]);
    assert_eq!(lines[1], "skip datastore dsone in us-east-1: healthlake:ListFHIRExportJobs: not tried: the credentials of identity failed (see above)");
    assert_eq!(lines[2], "preflight: 2 checks: 0 ok, 1 failed, 1 skipped: fix the FAIL lines above, then run the preflight again");
    assert!(
        fake.requests().is_empty(),
        "nothing sent without credentials"
    );
}

/// STS unreachable while the credentials load: a warning (the daemon needs STS only for a
/// role_arn or IRSA), the other checks go on, and their fixes say "the exporter's role" since
/// no principal could be named. Exit 0 when nothing else failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_unreachable_is_a_warning_and_the_checks_go_on() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    fake.add_datastore("dsone");
    let sts = format!("http://127.0.0.1:{}", closed_port());
    let text = format!("{}[[datastores]]\nid = \"dsone\"\n", config_head(&url, ""));
    let (_dir, path) = temp_config("nosts.toml", &text);
    let args = probe_args(&path);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run(&args, &sts).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        probe_lines(&run.stdout),
        [
            format!("warn identity: sts:GetCallerIdentity: the principal could not be named: nothing accepts connections at {sts} (connection refused); fix: check the host and port of AWS_ENDPOINT_URL_STS; STS is needed only for role_arn and IRSA, so the checks below go on"),
            "ok   datastore dsone in us-east-1: healthlake:ListFHIRExportJobs: allowed".to_owned(),
            "preflight: 2 checks: 1 ok, 1 warning: the daemon can reach everything it needs".to_owned(),
        ]
    );
}

/// The probes keep to `polling.max_requests_per_second`, through the daemon's request budget:
/// six listings at 2 per second take at least 2.5 s (a lower bound: a loaded machine only makes
/// it slower).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_keep_to_the_request_budget() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    let ids = ["ds0", "ds1", "ds2", "ds3", "ds4", "ds5"];
    let mut text = config_head(&url, "max_requests_per_second = 2");
    for id in ids {
        fake.add_datastore(id);
        text.push_str(&format!("[[datastores]]\nid = \"{id}\"\n"));
    }
    let (_dir, path) = temp_config("budget.toml", &text);
    let run = probe(&path, &url).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(fake.request_count_for("ListFHIRExportJobs", ""), 0);
    assert_eq!(
        ids.iter()
            .map(|id| fake.request_count_for("ListFHIRExportJobs", id))
            .sum::<usize>(),
        6
    );
    assert!(
        run.elapsed >= Duration::from_millis(2500),
        "{:?}",
        run.elapsed
    );
}

/// `--check-config` alone asks AWS nothing, as before; `--probe` needs it; an invalid file
/// exits 2 before any probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_alone_is_unchanged_and_probe_needs_it() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    fake.add_datastore("dsone");
    let text = format!("{}[[datastores]]\nid = \"dsone\"\n", config_head(&url, ""));
    let (_dir, path) = temp_config("plain.toml", &text);
    let config = path.to_str().unwrap();
    let plain = run(&["--check-config", "--config", config], &url).await;
    assert_eq!(plain.code, 0);
    assert!(probe_lines(&plain.stdout).is_empty(), "{}", plain.stdout);
    assert!(fake.requests().is_empty());
    assert_eq!(fake.sts_request_count(StsAction::GetCallerIdentity), 0);

    let alone = run(&["--probe", "--config", config], &url).await;
    assert_eq!(alone.code, 2);
    assert!(alone.stderr.contains("--check-config"), "{}", alone.stderr);

    let (_bad_dir, bad) = temp_config(
        "bad.toml",
        &text.replace("timeout = \"5s\"", "timeout = \"soon\""),
    );
    let invalid = run(
        &[
            "--check-config",
            "--probe",
            "--config",
            bad.to_str().unwrap(),
        ],
        &url,
    )
    .await;
    assert_eq!(invalid.code, 2);
    assert!(invalid.stdout.is_empty(), "{}", invalid.stdout);
    assert!(
        invalid.stderr.contains("polling.timeout: not a duration"),
        "{}",
        invalid.stderr
    );
    assert!(fake.requests().is_empty());
}

/// An endpoint's error text (control characters, a huge message) is escaped and cut: it cannot
/// forge a line of the report or flood it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_cannot_forge_or_flood_the_report() {
    let (fake, server) = common::start_fake().await;
    let url = server.endpoint_url();
    fake.add_datastore("dsone");
    let hostile = format!(
        "denied\nok   datastore forged: all good\u{1b}[2J{}",
        "x".repeat(100_000)
    );
    fake.set_fault("dsone", Some(Fault::AccessDeniedWith(hostile)));
    let text = format!("{}[[datastores]]\nid = \"dsone\"\n", config_head(&url, ""));
    let (_dir, path) = temp_config("hostile.toml", &text);
    let run = probe(&path, &url).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let lines = probe_lines(&run.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[1].starts_with("FAIL datastore dsone in us-east-1: healthlake:ListFHIRExportJobs: access denied (HTTP 403 AccessDeniedException: denied\\u{a}ok   datastore forged: all good\\u{1b}[2Jxxx"),
        "{}",
        lines[1]
    );
    assert!(lines[1].len() < 2000, "{} bytes", lines[1].len());
    assert!(!run.stdout.contains('\u{1b}'));
}
