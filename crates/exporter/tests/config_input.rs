//! The configuration file as untrusted input (issue 18, findings 5 and 6): only a regular file
//! (symlinks followed) of at most 1 MiB is read, never a FIFO or a device, and a reload reads it
//! off the threads that serve HTTP. Run against the binary, as a user (or a kubelet swapping a
//! ConfigMap's `..data` symlink) meets it.

#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{run_to_end, Spawned};
use common::{TestDir, EXPORTER_BIN as BIN};

/// Generous: on a loaded 2-core machine a probe may take a second; a frozen server never answers.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A file just over the 1 MiB limit, valid TOML throughout.
fn oversized(dir: &Path, base: &str) -> PathBuf {
    let path = dir.join("big.toml");
    let mut text = base.to_owned();
    while text.len() <= 1024 * 1024 {
        text.push_str("# a configuration is a few KiB; this one is padded past the limit\n");
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Points the symlink `link` at `target` in one step, as the kubelet swaps `..data`.
fn swap_link(link: &Path, target: &Path) {
    let next = link.with_extension("next");
    let _ = std::fs::remove_file(&next);
    std::os::unix::fs::symlink(target, &next).unwrap();
    std::fs::rename(&next, link).unwrap();
}

/// The binary, with its data segment capped at 512 MiB: before the fix, reading `/dev/zero`
/// fails there instead of eating the test machine's memory.
fn exporter_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("HEALTHLAKE_EXPORTER_CONFIG")
        .env("AWS_ACCESS_KEY_ID", "AKIDCONFIGINPUT")
        .env("AWS_SECRET_ACCESS_KEY", "config-input-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 512 << 20,
                rlim_max: 512 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Runs `--check-config` on `path`; (exit code, stderr), or a failure if it has not ended in 20 s
/// (a read of a FIFO would block forever).
fn check_config(path: &Path) -> (i32, String) {
    let output = run_to_end(
        &mut exporter_command(&["--check-config", "--config", path.to_str().unwrap()]),
        Duration::from_secs(20),
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_refuses_a_fifo_a_device_and_an_oversized_file_with_exit_2() {
    let scratch = TestDir::new("config-input");
    let dir = scratch.path();
    let fifo = dir.join("fifo.toml");
    mkfifo(&fifo);
    let link = dir.join("config.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let big = oversized(dir, "[[datastores]]\nid = \"ds1\"\n");
    let cases = [
        (
            fifo.as_path(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            Path::new("/dev/zero"),
            "it is a character device, not a regular file",
        ),
        (
            link.as_path(),
            "it is a character device, not a regular file",
        ),
        (
            big.as_path(),
            "it is larger than 1024 KiB, the limit for a configuration file",
        ),
    ];
    for (path, reason) in cases {
        let (code, stderr) = check_config(path);
        assert_eq!(code, 2, "{}: {stderr}", path.display());
        let expected = format!(
            "error: cannot read config file {}: {reason}",
            path.display()
        );
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(stderr.contains("hint:"), "{stderr}");
        assert!(
            !stderr.contains("# a configuration"),
            "no content echoed: {stderr}"
        );
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) =
        tokio::time::timeout(PROBE_LIMIT, common::http_request(addr, "GET", path, &[]))
            .await
            .unwrap_or_else(|_| panic!("GET {path} did not answer within {PROBE_LIMIT:?}"));
    (status, body)
}

async fn reload_successful(addr: SocketAddr) -> f64 {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    common::Metrics::parse(&body).value("healthlake_exporter_config_last_reload_successful")
}

/// `POST /-/reload` of a config symlink swapped to a FIFO, to `/dev/zero` and to an oversized
/// file: each is refused (500 naming the file and the reason, the reload gauge 0) while
/// `/healthz` and `/metrics` keep answering; the good file reloads again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_a_fifo_a_device_or_an_oversized_file_is_refused_and_never_blocks_serving() {
    let (fake, server) = common::start_fake().await;
    fake.add_datastore("ds1");
    let scratch = TestDir::new("config-input");
    let dir = scratch.path();
    let text = common::config_text(&server.endpoint_url(), "", &[("ds1", "one")])
        .replace("[server]\n", "[server]\nenable_reload = true\n");
    let good = dir.join("good.toml");
    std::fs::write(&good, &text).unwrap();
    let link = dir.join("config.toml");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let big = oversized(dir, &text);

    let mut child = Spawned::spawn(
        exporter_command(&["--config", link.to_str().unwrap(), "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let started = child
        .stderr()
        .line_with("healthlake-exporter started", Duration::from_secs(30));
    let addr = listen_address(&started);
    common::eventually(Duration::from_secs(30), "/readyz 200", || async {
        (get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;

    let cases = [
        (
            fifo.as_path(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            Path::new("/dev/zero"),
            "it is a character device, not a regular file",
        ),
        (big.as_path(), "it is larger than 1024 KiB"),
    ];
    for (target, reason) in cases {
        swap_link(&link, target);
        let reload = tokio::spawn(async move { common::post_reload(addr).await });
        // Serving goes on while the reload is handled.
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
        assert_eq!(get(addr, "/metrics").await.0, 200);
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), reload)
            .await
            .unwrap_or_else(|_| panic!("POST /-/reload of {} never answered", target.display()))
            .unwrap();
        assert_eq!(status, 500, "{}: {body}", target.display());
        let expected = format!("cannot read config file {}: {reason}", link.display());
        assert!(body.contains(&expected), "expected {expected:?} in {body}");
        assert_eq!(reload_successful(addr).await, 0.0, "{}", target.display());
        assert_eq!(get(addr, "/healthz").await.0, 200);

        swap_link(&link, &good);
        let (status, _, body) = common::post_reload(addr).await;
        assert_eq!(status, 200, "the good file again: {body}");
        assert_eq!(reload_successful(addr).await, 1.0);
    }
}

/// The address in the "healthlake-exporter started" log line (JSON format).
fn listen_address(started: &str) -> SocketAddr {
    let rest = started
        .split("\"listen_address\":\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no listen_address in {started}"));
    rest.split('"').next().unwrap().parse().unwrap()
}
