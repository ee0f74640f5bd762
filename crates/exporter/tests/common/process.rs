//! Child processes of a test (the exporter binary, the ecosystem tools): killed and reaped when
//! the test ends, also when it fails; their output read with a deadline, so a child that hangs
//! fails the test instead of blocking it; signals sent with `libc::kill`, not a `kill` binary.
//!
//! Standalone (only `std` and `libc`), so that the deployment tests can include it with `#[path]`
//! next to `tools.rs`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running child process. Dropping it kills (SIGKILL) and reaps the process, whatever the test
/// did before, so a failing test leaves no process behind.
pub struct Spawned {
    child: Child,
    what: String,
    stdout: Option<Lines>,
    stderr: Option<Lines>,
}

impl Spawned {
    /// Starts `command` with stdin closed; a piped stdout or stderr is read by a thread of its
    /// own into [`Lines`] (so the child never blocks on a full pipe).
    pub fn spawn(command: &mut Command) -> Self {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {what}: {e}"));
        let stdout = child.stdout.take().map(Lines::read_from);
        let stderr = child.stderr.take().map(Lines::read_from);
        Spawned {
            child,
            what,
            stdout,
            stderr,
        }
    }

    /// The piped stdout.
    pub fn stdout(&mut self) -> &mut Lines {
        self.stdout.as_mut().expect("stdout was not piped")
    }

    /// The piped stderr.
    pub fn stderr(&mut self) -> &mut Lines {
        self.stderr.as_mut().expect("stderr was not piped")
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own unreaped child and a valid signal number.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            sent,
            0,
            "kill({}, {signal}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Whether the process has exited (then its status), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit, at most `limit`; past it the test fails (and Drop kills).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a child writes to one pipe, read by a thread and taken here with a deadline.
pub struct Lines {
    lines: Receiver<Vec<u8>>,
    /// Everything taken so far, for failure messages.
    seen: String,
    /// Whether the pipe has been read to its end.
    ended: bool,
}

impl Lines {
    fn read_from(pipe: impl Read + Send + 'static) -> Self {
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if send.send(line).is_err() => return,
                    Ok(_) => {}
                }
            }
        });
        Lines {
            lines,
            seen: String::new(),
            ended: false,
        }
    }

    /// The next line (with its newline, as bytes) by `deadline`; `None` once the pipe has ended.
    /// Past the deadline the test fails, showing what the child wrote.
    pub fn next_by(&mut self, deadline: Instant, waiting_for: &str) -> Option<Vec<u8>> {
        if self.ended {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push_str(&String::from_utf8_lossy(&line));
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                None
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "no {waiting_for} from the child by the deadline; it wrote:\n{}",
                self.tail()
            ),
        }
    }

    /// Reads until a line contains `needle` (at most `limit`); returns everything read by this
    /// call, that line last. Fails if the output ends or the time runs out first.
    pub fn until(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut read = String::new();
        loop {
            let what = format!("line containing {needle:?}");
            let Some(line) = self.next_by(deadline, &what) else {
                panic!(
                    "the output ended before a {what}; it wrote:\n{}",
                    self.tail()
                );
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            read.push_str(&line);
            if line.contains(needle) {
                return read;
            }
        }
    }

    /// The first line (from here) that contains `needle`.
    pub fn line_with(&mut self, needle: &str, limit: Duration) -> String {
        let read = self.until(needle, limit);
        read.lines().last().unwrap_or_default().to_owned()
    }

    /// Everything up to the end of the output (the child exited or closed the pipe), at most
    /// `limit`.
    pub fn rest(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut read = String::new();
        while let Some(line) = self.next_by(deadline, "end of output") {
            read.push_str(&String::from_utf8_lossy(&line));
        }
        read
    }

    /// Lines already written, without waiting.
    pub fn ready(&mut self) -> Vec<Vec<u8>> {
        let lines: Vec<Vec<u8>> = self.lines.try_iter().collect();
        for line in &lines {
            self.seen.push_str(&String::from_utf8_lossy(line));
        }
        lines
    }

    /// The last few KiB taken, for failure messages.
    fn tail(&self) -> &str {
        let mut start = self.seen.len().saturating_sub(8 * 1024);
        while !self.seen.is_char_boundary(start) {
            start += 1;
        }
        &self.seen[start..]
    }
}

/// Runs `command` to its end, with stdin closed and stdout and stderr captured, for at most
/// `limit`: a process still running then is killed and the test fails.
pub fn run_to_end(command: &mut Command, limit: Duration) -> Output {
    run_with_input(command, &[], limit)
}

/// [`run_to_end`], writing `input` to the process's stdin first.
pub fn run_with_input(command: &mut Command, input: &[u8], limit: Duration) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    // A thread of its own: a child that does not read its input must not block the test.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = collect(child.stdout.take().expect("stdout piped"));
    let stderr = collect(child.stderr.take().expect("stderr piped"));
    let mut child = Killed(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a pipe to its end on a thread of its own.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Kills and reaps the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
