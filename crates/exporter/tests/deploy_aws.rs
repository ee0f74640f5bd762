//! Checks `deploy/aws/healthlake-events.yaml` (the EventBridge rule, queues and IAM for the event
//! consumer) with cfn-lint, and what docs/operations.md ("Seconds, not minutes") promises of it: the rule matches
//! `source: aws.healthlake` only, one queue per replica for every ReplicaCount, visibility of at
//! least 2 × the default `polling.timeout`, a dead-letter queue, a queue policy that lets only
//! that shard's rule send, and exactly the SQS actions the exporter calls.
//!
//! Needed on PATH: cfn-lint (pip: cfn-lint, pinned in .ci/requirements.txt), python3 with PyYAML.
//! A missing tool prints a SKIP line with an install hint; HEALTHLAKE_EXPORTER_REQUIRE_TOOLS=1 (set by
//! .ci/run) makes it a failure instead.

#[path = "common/process.rs"]
mod process;
#[path = "common/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use tools::*;

const CFN_LINT_HINT: &str = "pip install -r .ci/requirements.txt   (cfn-lint)";
const MAX_REPLICAS: usize = 8;

fn template_path() -> PathBuf {
    repo_root().join("deploy/aws/healthlake-events.yaml")
}

fn template() -> Option<Value> {
    let python = require_python_yaml()?;
    Some(yaml_file_to_json(&python, &template_path()))
}

#[test]
fn template_lints_clean_with_cfn_lint() {
    let Some(cfn_lint) = require_tool("cfn-lint", CFN_LINT_HINT) else {
        return;
    };
    assert_lints_clean(
        "cfn-lint",
        std::process::Command::new(&cfn_lint).arg(template_path()),
    );
}

#[test]
fn cfn_lint_catches_a_broken_template() {
    let Some(cfn_lint) = require_tool("cfn-lint", CFN_LINT_HINT) else {
        return;
    };
    let broken = std::fs::read_to_string(template_path())
        .expect("template")
        .replace("Type: AWS::SQS::QueuePolicy", "Type: AWS::SQS::QueuePolice");
    assert_refuses(
        &cfn_lint,
        &[],
        "broken.yaml",
        &broken,
        "an unknown resource type",
    );
}

/// Evaluates the template's conditions for one parameter set (the subset it uses).
fn condition(template: &Value, expr: &Value, params: &BTreeMap<&str, String>) -> bool {
    let param = |v: &Value| -> String {
        match v {
            Value::Object(o) if o.contains_key("Ref") => {
                let name = o["Ref"].as_str().expect("Ref name");
                params.get(name).cloned().unwrap_or_else(|| {
                    template["Parameters"][name]["Default"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| template["Parameters"][name]["Default"].to_string())
                })
            }
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let obj = expr.as_object().expect("condition object");
    let (op, args) = obj.iter().next().expect("one function");
    match op.as_str() {
        "Fn::Equals" => param(&args[0]) == param(&args[1]),
        "Fn::Or" => args
            .as_array()
            .expect("Or list")
            .iter()
            .any(|a| condition(template, a, params)),
        "Fn::Not" => !condition(template, &args[0], params),
        "Condition" => condition(
            template,
            &template["Conditions"][args.as_str().expect("name")],
            params,
        ),
        other => panic!("condition function {other} not understood by this test"),
    }
}

fn created<'a>(
    template: &'a Value,
    params: &BTreeMap<&str, String>,
    kind: &str,
) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .filter(|(_, r)| match r.get("Condition") {
            None => true,
            Some(name) => condition(
                template,
                &template["Conditions"][name.as_str().expect("name")],
                params,
            ),
        })
        .collect()
}

#[test]
fn one_queue_rule_and_policy_per_replica() {
    let Some(t) = template() else { return };
    let max = t["Parameters"]["ReplicaCount"]["MaxValue"]
        .as_u64()
        .expect("MaxValue");
    assert_eq!(max as usize, MAX_REPLICAS);
    for replicas in 1..=MAX_REPLICAS {
        let params = BTreeMap::from([("ReplicaCount", replicas.to_string())]);
        let queues = created(&t, &params, "AWS::SQS::Queue");
        // The shard queues plus the one dead-letter queue.
        assert_eq!(queues.len(), replicas + 1, "ReplicaCount={replicas}");
        let mut names: Vec<String> = queues
            .iter()
            .map(|(_, q)| {
                q["Properties"]["QueueName"]["Fn::Sub"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        names.sort();
        let mut expected: Vec<String> = (0..replicas)
            .map(|i| format!("${{QueueNamePrefix}}-{i}"))
            .collect();
        expected.push("${QueueNamePrefix}-dlq".into());
        expected.sort();
        assert_eq!(names, expected, "ReplicaCount={replicas}");
        assert_eq!(created(&t, &params, "AWS::Events::Rule").len(), replicas);
        assert_eq!(
            created(&t, &params, "AWS::SQS::QueuePolicy").len(),
            replicas
        );
    }
}

#[test]
fn rules_match_the_healthlake_source_only_and_target_their_own_queue() {
    let Some(t) = template() else { return };
    let rules: Vec<_> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Events::Rule")
        .collect();
    assert_eq!(rules.len(), MAX_REPLICAS);
    for (name, rule) in rules {
        let shard = name.strip_prefix("Rule").expect("RuleN");
        assert_eq!(
            rule["Properties"]["EventPattern"],
            json!({ "source": ["aws.healthlake"] }),
            "{name}: no detail-type filter (the documented lists differ)"
        );
        let targets = rule["Properties"]["Targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{name}");
        assert_eq!(
            targets[0]["Arn"]["Fn::GetAtt"],
            json!([format!("Queue{shard}"), "Arn"])
        );
        assert_eq!(
            rule.get("Condition"),
            t["Resources"][format!("Queue{shard}")].get("Condition")
        );
    }
}

#[test]
fn queues_keep_events_hide_them_long_enough_and_dead_letter_poison() {
    let Some(t) = template() else { return };
    let visibility = &t["Parameters"]["VisibilityTimeoutSeconds"];
    // The exporter extends a held message's visibility at half of it: it must cover one call.
    let minimum = healthlake_exporter::events::consumer::MIN_VISIBILITY_TIMEOUT.as_secs() as i64;
    assert_eq!(visibility["MinValue"].as_i64(), Some(minimum));
    assert!(
        visibility["Default"].as_i64().unwrap() >= minimum,
        "VisibilityTimeoutSeconds Default must be >= {minimum}"
    );
    for i in 0..MAX_REPLICAS {
        let q = &t["Resources"][format!("Queue{i}")]["Properties"];
        assert_eq!(
            q["VisibilityTimeout"],
            json!({ "Ref": "VisibilityTimeoutSeconds" })
        );
        assert_eq!(
            q["MessageRetentionPeriod"], 1_209_600,
            "14 days: survives outages"
        );
        assert_eq!(q["ReceiveMessageWaitTimeSeconds"], 20);
        assert_eq!(
            q["RedrivePolicy"]["deadLetterTargetArn"],
            json!({ "Fn::GetAtt": ["DeadLetterQueue", "Arn"] })
        );
        let policy = &t["Resources"][format!("QueuePolicy{i}")]["Properties"];
        assert_eq!(policy["Queues"], json!([{ "Ref": format!("Queue{i}") }]));
        let statements = policy["PolicyDocument"]["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        let st = &statements[0];
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(
            st["Principal"],
            json!({ "Service": "events.amazonaws.com" })
        );
        assert_eq!(st["Action"], "sqs:SendMessage");
        assert_eq!(
            st["Condition"]["ArnEquals"]["aws:SourceArn"],
            json!({ "Fn::GetAtt": [format!("Rule{i}"), "Arn"] }),
            "only this shard's rule may send"
        );
    }
}

#[test]
fn exporter_policy_grants_exactly_the_sqs_calls_it_makes() {
    let Some(t) = template() else { return };
    let policy = &t["Resources"]["ExporterEventsPolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::ManagedPolicy");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0]["Action"],
        json!([
            "sqs:ReceiveMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes"
        ])
    );
    let resource = statements[0]["Resource"]["Fn::Sub"].as_str().unwrap();
    assert!(
        resource.ends_with(":${QueueNamePrefix}-*")
            && resource.starts_with("arn:${AWS::Partition}:sqs:"),
        "scoped to this stack's queues: {resource}"
    );
    let url = t["Outputs"]["QueueUrl"]["Value"]["Fn::Sub"]
        .as_str()
        .unwrap();
    assert!(url.ends_with("/${QueueNamePrefix}-{shard}"), "{url}");
}
