//! Build facts for `healthlake_exporter_build_info`: the source revision and the rustc version.
//!
//! The revision comes from `HEALTHLAKE_EXPORTER_REVISION` when set (the release workflow and the
//! Dockerfile pass it: an image build has no `.git`), else from `git rev-parse` when the source is a
//! git checkout, else "unknown". The rustc version is what `$RUSTC --version` prints.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HEALTHLAKE_EXPORTER_REVISION");
    let revision = std::env::var("HEALTHLAKE_EXPORTER_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!(
        "cargo:rustc-env=HEALTHLAKE_EXPORTER_REVISION={}",
        revision.trim()
    );

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        // "rustc 1.95.0 (59807616e 2026-04-14)" → "1.95.0"
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HEALTHLAKE_EXPORTER_RUSTC_VERSION={version}");
}

/// The checkout's commit (12 hex digits), rebuilding when HEAD moves.
fn git_revision() -> Option<String> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&manifest)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|out| out.trim().to_owned())
            .filter(|out| !out.is_empty())
    };
    // HEAD names the branch (in a worktree's own git dir); the branch's ref and packed-refs (in
    // the common dir) move with each commit.
    let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
    let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or_else(|| git_dir.clone());
    let (git_dir, common) = (Path::new(&git_dir), Path::new(&manifest).join(common));
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    println!(
        "cargo:rerun-if-changed={}",
        common.join("packed-refs").display()
    );
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            println!(
                "cargo:rerun-if-changed={}",
                common.join(reference).display()
            );
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
