//! The configuration file as untrusted input (issue 18, findings 5 and 6): only a regular file
//! (symlinks followed) of at most 1 MiB is read, never a FIFO or a device, and a reload reads it
//! off the threads that serve HTTP. Run against the binary, as a user (or a kubelet swapping a
//! ConfigMap's `..data` symlink) meets it.

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");
/// Generous: on a loaded 2-core machine a probe may take a second; a frozen server never answers.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hle-config-input-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

/// Kills the child when the test ends, whatever happened (a hung read would keep it forever).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `--check-config` on `path`; (exit code, stderr), or a panic if it has not ended in 20 s.
fn check_config(path: &Path) -> (i32, String) {
    let child = exporter_command(&["--check-config", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "--check-config --config {} hangs",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_config_refuses_a_fifo_a_device_and_an_oversized_file_with_exit_2() {
    let dir = scratch("check");
    let fifo = dir.join("fifo.toml");
    mkfifo(&fifo);
    let link = dir.join("config.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let big = oversized(&dir, "[[datastores]]\nid = \"ds1\"\n");
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
    std::fs::remove_dir_all(&dir).unwrap();
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
    let dir = scratch("reload");
    let text = common::config_text(&server.endpoint_url(), "", &[("ds1", "one")])
        .replace("[server]\n", "[server]\nenable_reload = true\n");
    let good = dir.join("good.toml");
    std::fs::write(&good, &text).unwrap();
    let link = dir.join("config.toml");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let big = oversized(&dir, &text);

    let child = exporter_command(&["--config", link.to_str().unwrap(), "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr = listen_address(&mut stderr);
    // Keep the pipe drained so the exporter never blocks on its log.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
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
        let reload = tokio::spawn(async move {
            common::http_request(addr, "POST", "/-/reload", &[("Content-Length", "0")]).await
        });
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
        let (status, _, body) =
            common::http_request(addr, "POST", "/-/reload", &[("Content-Length", "0")]).await;
        assert_eq!(status, 200, "the good file again: {body}");
        assert_eq!(reload_successful(addr).await, 1.0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The address from the "healthlake-exporter started" log line (JSON format).
fn listen_address(stderr: &mut impl BufRead) -> SocketAddr {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "the exporter ended before it started");
        if let Some(rest) = line
            .contains("healthlake-exporter started")
            .then(|| line.split("\"listen_address\":\"").nth(1))
            .flatten()
        {
            return rest.split('"').next().unwrap().parse().unwrap();
        }
    }
}
