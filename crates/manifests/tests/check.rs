//! Checks the shipped deploy/ manifests, one bad example per rule, and the reading of
//! files, directories and multi-document streams.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ravelin_manifests::files::read_paths;
use ravelin_manifests::{
    check, Report, Rule, Source, EXIT_CLEAN, EXIT_FINDINGS, EXIT_INVALID_INPUT,
};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn check_paths(paths: &[PathBuf]) -> Report {
    let (sources, errors) = read_paths(paths);
    let mut report = check(&sources);
    report.errors.splice(0..0, errors);
    report
}

fn rules_of(report: &Report) -> BTreeSet<Rule> {
    report.findings.iter().map(|finding| finding.rule).collect()
}

#[test]
fn deploy_directory_is_clean() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let report = check_paths(&[deploy]);

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.findings.is_empty(), "{}", report.to_text());
    let names: Vec<(&str, &str)> = report
        .workloads
        .iter()
        .map(|entry| (entry.kind.as_str(), entry.name.as_str()))
        .collect();
    assert_eq!(names, [("Deployment", "ravelin")]);
    assert_eq!(report.exit_status(), EXIT_CLEAN);
}

#[test]
fn each_bad_example_trips_only_its_rule() {
    for rule in Rule::ALL {
        let path = data(&format!("bad/{}.yaml", rule.id()));
        let report = check_paths(std::slice::from_ref(&path));

        assert!(
            report.errors.is_empty(),
            "{}: {:?}",
            path.display(),
            report.errors
        );
        assert_eq!(report.workloads.len(), 1, "{}", path.display());
        assert!(
            !report.findings.is_empty(),
            "{} has no finding",
            path.display()
        );
        assert_eq!(
            rules_of(&report),
            BTreeSet::from([rule]),
            "{}:\n{}",
            path.display(),
            report.to_text()
        );
        assert_eq!(report.exit_status(), EXIT_FINDINGS);
    }
}

#[test]
fn bad_examples_cover_exactly_the_rules() {
    let mut names: Vec<String> = fs::read_dir(data("bad"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = Rule::ALL
        .iter()
        .map(|rule| format!("{}.yaml", rule.id()))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn secret_values_stay_out_of_reports() {
    let report = check_paths(&[data("bad/secret-env.yaml")]);
    let text = report.to_text();
    let json = report.to_json();
    for output in [&text, &json] {
        assert!(!output.contains("an-api-key-written"), "{output}");
        assert!(output.contains("QDRANT__SERVICE__API_KEY"), "{output}");
    }
    assert!(!text.contains("READ_ONLY_API_KEY"), "{text}");
    assert!(!text.contains("TOKENIZERS_PARALLELISM"), "{text}");
}

#[test]
fn lists_anchors_and_merge_keys_are_followed() {
    let report = check_paths(&[data("good/list-and-anchors.yaml")]);

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.findings.is_empty(), "{}", report.to_text());
    assert_eq!(report.documents, 4);
    let entry = &report.workloads[..];
    assert_eq!(
        entry.len(),
        1,
        "only the StatefulSet runs a vector database"
    );
    assert_eq!(entry[0].kind, "StatefulSet");
    assert_eq!(entry[0].location.document, 4);
}

#[test]
fn policies_count_across_files() {
    // capabilities.yaml has a NetworkPolicy for app=chroma in namespace vectors.
    let alone = check_paths(&[data("bad/network-policy.yaml")]);
    assert!(rules_of(&alone).contains(&Rule::NetworkPolicy));

    let together = check_paths(&[
        data("bad/network-policy.yaml"),
        data("bad/capabilities.yaml"),
    ]);
    assert!(
        !rules_of(&together).contains(&Rule::NetworkPolicy),
        "{}",
        together.to_text()
    );
}

#[test]
fn namespaces_must_match() {
    let workload = fs::read_to_string(data("bad/network-policy.yaml")).unwrap();
    let workload = workload.split("\n---\n").next().unwrap().to_string();
    let policy = |namespace: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n{namespace}spec:\n  podSelector: {{}}\n"
        )
    };
    let cases = [
        ("  namespace: vectors\n", false),
        ("  namespace: other\n", true),
        ("", true),
    ];
    for (namespace, flagged) in cases {
        let sources = [
            Source {
                name: "workload.yaml".into(),
                text: workload.clone(),
            },
            Source {
                name: "policy.yaml".into(),
                text: policy(namespace),
            },
        ];
        let report = check(&sources);
        assert_eq!(
            rules_of(&report).contains(&Rule::NetworkPolicy),
            flagged,
            "policy namespace {namespace:?}"
        );
    }
}

#[test]
fn directories_are_walked_for_yaml_files() {
    let root = tempfile::tempdir().unwrap();
    let nested = root.path().join("a/b");
    fs::create_dir_all(&nested).unwrap();
    let bad = fs::read_to_string(data("bad/host-path.yaml")).unwrap();
    fs::write(nested.join("one.yml"), &bad).unwrap();
    fs::write(root.path().join("two.yaml"), &bad).unwrap();
    fs::write(root.path().join("notes.txt"), "not: [yaml").unwrap();
    // A link back to the root would make a naive walk loop forever.
    std::os::unix::fs::symlink(root.path(), nested.join("loop")).unwrap();

    let report = check_paths(&[root.path().to_path_buf()]);

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.files, 2);
    let files: Vec<String> = report
        .workloads
        .iter()
        .map(|entry| entry.location.file.clone())
        .collect();
    assert_eq!(
        files,
        [
            nested.join("one.yml").display().to_string(),
            root.path().join("two.yaml").display().to_string(),
        ]
    );
}

#[test]
fn invalid_yaml_is_an_input_error() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("broken.yaml");
    fs::write(&path, "apiVersion: v1\nkind: Pod\nspec: [unclosed\n").unwrap();

    let report = check_paths(&[path.clone(), data("bad/host-path.yaml")]);

    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].file, path.display().to_string());
    assert!(
        report.errors[0].message.starts_with("invalid YAML at line"),
        "{:?}",
        report.errors
    );
    assert_eq!(report.files, 1, "the valid file is still checked");
    assert_eq!(report.exit_status(), EXIT_INVALID_INPUT);
}

#[test]
fn unreadable_inputs_are_errors() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing.yaml");
    let binary = root.path().join("binary.yaml");
    fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();

    let report = check_paths(&[missing.clone(), binary.clone()]);

    let messages: Vec<(&str, &str)> = report
        .errors
        .iter()
        .map(|error| (error.file.as_str(), error.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0].0, missing.display().to_string());
    assert!(messages[0].1.starts_with("cannot read it"), "{messages:?}");
    assert_eq!(messages[1].0, binary.display().to_string());
    assert!(messages[1].1.contains("not UTF-8"), "{messages:?}");
    assert_eq!(report.exit_status(), EXIT_INVALID_INPUT);
}

#[test]
fn duplicate_keys_are_input_errors() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: chroma\nspec:\n  hostNetwork: false\n  hostNetwork: true\n";
    let report = check(&[Source {
        name: "dup.yaml".into(),
        text: text.into(),
    }]);
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].message.contains("duplicate key"),
        "{:?}",
        report.errors
    );
}

#[test]
fn json_report_shape() {
    let report = check_paths(&[data("bad/non-root.yaml")]);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();

    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "documents",
            "errors",
            "files",
            "findings",
            "format_version",
            "workloads"
        ]
    );
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["files"], 1);
    assert_eq!(json["documents"], 2);
    assert_eq!(json["errors"], serde_json::json!([]));

    let workload = &json["workloads"][0];
    assert_eq!(
        workload,
        &serde_json::json!({
            "file": data("bad/non-root.yaml").display().to_string(),
            "document": 1,
            "line": 2,
            "kind": "Deployment",
            "namespace": "vectors",
            "name": "chroma",
        })
    );

    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1);
    let finding = findings[0].as_object().unwrap();
    let mut finding_keys: Vec<&str> = finding.keys().map(String::as_str).collect();
    finding_keys.sort_unstable();
    assert_eq!(
        finding_keys,
        [
            "container",
            "document",
            "file",
            "fix",
            "kind",
            "line",
            "message",
            "name",
            "namespace",
            "rule"
        ]
    );
    assert_eq!(finding["rule"], "non-root");
    assert_eq!(finding["container"], "chroma");
    assert_eq!(finding["message"], "runs as root: runAsUser is 0");
    assert_eq!(finding["fix"], Rule::NonRoot.fix());
}

#[test]
fn no_vector_database_is_clean() {
    let report = check(&[Source {
        name: "web.yaml".into(),
        text: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n    - name: web\n      image: nginx\n".into(),
    }]);
    assert!(report.workloads.is_empty());
    assert_eq!(report.exit_status(), EXIT_CLEAN);
    assert!(report
        .to_text()
        .starts_with("No vector database workloads found"));
}
