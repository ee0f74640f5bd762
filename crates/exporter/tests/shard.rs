//! Scale-out across replicas: `polling.shard` / `--shard i/n` as a user sets it, and two replicas
//! sharing one config file against the fake HealthLake, which between them must report every
//! configured datastore exactly once. The hashing itself is unit tested in `src/shard.rs`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::process::run_to_end;
use common::*;
use healthlake_exporter::config::shard::{owner, Shard};
use healthlake_exporter::{Exporter, Overrides};
use healthlake_fake::FakeJob;

const BIN: &str = EXPORTER_BIN;
const WAIT: Duration = Duration::from_secs(30);

/// Runs the binary with `args` and extra env vars; (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("HEALTHLAKE_EXPORTER_CONFIG")
        .env_remove("HEALTHLAKE_EXPORTER_SHARD");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = run_to_end(&mut command, Duration::from_secs(60));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("ds-{k:02}")).collect()
}

fn datastores_toml(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("[[datastores]]\nid = \"{id}\"\n"))
        .collect()
}

#[test]
fn an_impossible_shard_on_the_command_line_exits_2_and_says_how_to_write_one() {
    let dir = TestDir::new("shard");
    let config = dir.write("cli-ok.toml", datastores_toml(&ids(3)));
    let config = config.to_str().unwrap();
    for (args, env, expected) in [
        (
            vec!["--shard", "3/2", "--check-config", "--config", config],
            vec![],
            "has an index not below the count; indexes run from 0 to COUNT - 1",
        ),
        (
            vec!["--shard", "0/0", "--config", config],
            vec![],
            "has a count out of range; use 1 to 1000 replicas",
        ),
        (
            vec!["--check-config", "--config", config],
            vec![("HEALTHLAKE_EXPORTER_SHARD", "/3")],
            "has no index before the \"/\"; write \"INDEX/COUNT\"",
        ),
    ] {
        let (code, stdout, stderr) = run(&args, &env);
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("--shard") && stderr.contains(expected),
            "{args:?} {env:?}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // The same mistake in the file names the key and the line.
    let bad = dir.write(
        "bad-shard.toml",
        format!("[polling]\nshard = \"2/2\"\n{}", datastores_toml(&ids(1))),
    );
    let (code, _, stderr) = run(&["--check-config", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("bad-shard.toml:2:9: polling.shard: has an index not below the count"),
        "{stderr}"
    );
}

#[test]
fn check_config_shows_what_a_shard_owns_and_the_flag_wins_over_the_file() {
    let all = ids(35);
    let dir = TestDir::new("shard");
    let config = dir.write(
        "check.toml",
        format!("[polling]\nshard = \"0/5\"\n{}", datastores_toml(&all)),
    );
    let config = config.to_str().unwrap();
    for (args, env, shard) in [
        (vec!["--check-config", "--config", config], vec![], "0/5"),
        (
            vec!["--check-config", "--config", config, "--shard", "1/2"],
            vec![("HEALTHLAKE_EXPORTER_SHARD", "0/3")],
            "1/2",
        ),
        (
            vec!["--check-config", "--config", config],
            vec![("HEALTHLAKE_EXPORTER_SHARD", "2/3")],
            "2/3",
        ),
    ] {
        let shard: Shard = shard.parse().unwrap();
        let owned = all.iter().filter(|id| shard.owns(id)).count();
        let (code, stdout, stderr) = run(&args, &env);
        assert_eq!(code, 0, "{stderr}");
        let line = format!("shard            {shard}: {owned} of 35 datastores");
        assert!(stdout.contains(&line), "expected {line:?} in\n{stdout}");
        assert!(stdout.contains("datastores       35"), "{stdout}");
        let first = &all[0];
        assert!(
            stdout.contains(&format!(
                "  {first}  name={first}  region=(SDK default chain)  shard={}/{}",
                owner(first, shard.count()),
                shard.count()
            )),
            "each datastore's shard is listed:\n{stdout}"
        );
    }

    // The default, 0/1, says nothing about shards.
    let plain = dir.write("plain.toml", datastores_toml(&all));
    let (code, stdout, _) = run(
        &["--check-config", "--config", plain.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("\nshard ") && !stdout.contains("shard="),
        "{stdout}"
    );
}

/// `healthlake_feed_up{feed="export"}` series of one scrape, by datastore id.
async fn up_series(exporter: &Exporter) -> BTreeMap<String, f64> {
    let metrics = scrape(exporter.local_addr()).await;
    metrics
        .series("healthlake_feed_up", &[("feed", "export")])
        .into_iter()
        .map(|(key, value)| {
            let id = key
                .split("datastore_id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no datastore_id in {key}"))
                .to_owned();
            (id, value)
        })
        .collect()
}

async fn ready(exporter: &Exporter) {
    eventually(WAIT, "/readyz 200", || async {
        let (status, _, _) = http_request(exporter.local_addr(), "GET", "/readyz", &[]).await;
        (status == 200).then_some(())
    })
    .await
}

/// Waits until every datastore the exporter reports is up, and returns them.
async fn all_up(exporter: &Exporter, expected: usize) -> BTreeMap<String, f64> {
    eventually(WAIT, &format!("{expected} datastores up"), || async {
        let up = up_series(exporter).await;
        (up.len() == expected && up.values().all(|v| *v == 1.0)).then_some(up)
    })
    .await
}

#[tokio::test]
async fn two_replicas_report_every_datastore_exactly_once_also_after_a_reload() {
    let (fake, server) = start_fake().await;
    let mut all = ids(20);
    for id in &all {
        fake.add_job(
            id,
            FakeJob::new(format!("{id}-job"), "COMPLETED", 1000.0).ended(2000.0),
        );
    }
    let pairs: Vec<(&str, &str)> = all.iter().map(|id| (id.as_str(), id.as_str())).collect();
    let text = config_text(&server.endpoint_url(), "", &pairs);
    let dir = TestDir::new("shard");
    let path = dir.write("replicas.toml", text);

    // Both replicas read the same file, as the pods of a StatefulSet do; only --shard differs.
    let mut replicas = Vec::new();
    for index in 0..2 {
        let overrides = Overrides {
            listen_address: None,
            shard: Some(Shard::new(index, 2).unwrap()),
        };
        let exporter = Exporter::start_from_file_with(&path, overrides, test_options())
            .await
            .expect("replica starts");
        replicas.push(exporter);
    }
    let owned: Vec<usize> = (0..2u32)
        .map(|i| all.iter().filter(|id| owner(id, 2) == i).count())
        .collect();
    assert!(
        owned.iter().all(|n| *n > 0),
        "both shards own datastores: {owned:?}"
    );

    let check = |up: &[BTreeMap<String, f64>], all: &[String]| {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, series) in up.iter().enumerate() {
            for id in series.keys() {
                assert_eq!(
                    owner(id, 2),
                    index as u32,
                    "{id} reported by replica {index}"
                );
                *seen.entry(id.as_str()).or_default() += 1;
            }
        }
        let expected: BTreeMap<&str, usize> = all.iter().map(|id| (id.as_str(), 1)).collect();
        assert_eq!(seen, expected, "every configured datastore exactly once");
    };
    let mut up = Vec::new();
    for (index, exporter) in replicas.iter().enumerate() {
        ready(exporter).await;
        up.push(all_up(exporter, owned[index]).await);
    }
    check(&up, &all);

    // A reload keeps the --shard override: the new datastores land on exactly one replica each.
    all.extend(["ds-20", "ds-21", "ds-22", "ds-23"].map(str::to_owned));
    for id in &all[20..] {
        fake.add_job(
            id,
            FakeJob::new(format!("{id}-job"), "FAILED", 1000.0).ended(1500.0),
        );
    }
    let pairs: Vec<(&str, &str)> = all.iter().map(|id| (id.as_str(), id.as_str())).collect();
    std::fs::write(
        &path,
        config_text(&server.endpoint_url(), "shard = \"0/1\"", &pairs),
    )
    .unwrap();
    let mut up = Vec::new();
    for (index, exporter) in replicas.iter().enumerate() {
        exporter
            .reload_handle()
            .reload()
            .await
            .expect("reload applies");
        let owns = all.iter().filter(|id| owner(id, 2) == index as u32).count();
        up.push(all_up(exporter, owns).await);
    }
    check(&up, &all);

    for exporter in replicas {
        exporter.shutdown().await;
    }
}

#[tokio::test]
async fn a_replica_whose_shard_owns_nothing_starts_is_ready_and_serves_its_own_health() {
    let (_fake, server) = start_fake().await;
    // One datastore, three replicas: two of them own nothing.
    let id = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4";
    let empty = (0..3).find(|i| *i != owner(id, 3)).unwrap();
    let text = config_text(
        &server.endpoint_url(),
        &format!("shard = \"{empty}/3\""),
        &[(id, "prod")],
    );
    let dir = TestDir::new("shard");
    let path = dir.write("empty-shard.toml", text);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .expect("an empty shard still starts");
    assert!(exporter.state().datastores().is_empty());
    ready(&exporter).await;
    let metrics = scrape(exporter.local_addr()).await;
    assert!(
        metrics
            .series("healthlake_feed_up", &[("feed", "export")])
            .is_empty(),
        "{}",
        metrics.text
    );
    assert!(
        !metrics
            .series("healthlake_exporter_build_info", &[])
            .is_empty(),
        "{}",
        metrics.text
    );
    let (status, _, body) = http_request(exporter.local_addr(), "GET", "/healthz", &[]).await;
    assert_eq!(status, 200, "{body}");
    exporter.shutdown().await;
}
