//! Runs `ravelin check-manifests` on deploy/ and on the bad examples of the manifests
//! crate, for its exit statuses and output.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn run(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ravelin"))
        .arg("check-manifests")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn deploy_exits_zero() {
    let output = run(&[&repo("deploy")]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.starts_with("No findings: 1 vector database workload"),
        "{stdout}"
    );
}

#[test]
fn findings_exit_one() {
    let bad = repo("crates/manifests/tests/data/bad");
    let output = run(&[&bad]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[non-root] runs as root: runAsUser is 0"),
        "{stdout}"
    );
    assert!(stdout.contains("    fix: "), "{stdout}");
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn invalid_yaml_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: Pod\nspec: {containers: [\n").unwrap();

    let output = run(&[&broken, &repo("deploy")]);

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}: invalid YAML at line ",
            broken.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 input was not checked"), "{stderr}");
}

#[test]
fn missing_path_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let output = run(&[&missing]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read it"));
}

#[test]
fn json_format_is_one_document() {
    let bad = repo("crates/manifests/tests/data/bad/seccomp.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_ravelin"))
        .args(["check-manifests", "--format", "json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["findings"][0]["rule"], "seccomp");
    assert_eq!(report["findings"][0]["kind"], "Pod");
    assert_eq!(report["findings"].as_array().unwrap().len(), 1);
}

#[test]
fn no_path_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_ravelin"))
        .arg("check-manifests")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("<PATH>"));
}
