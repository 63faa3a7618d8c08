//! Checks Kubernetes manifests of vector database workloads for missing security
//! controls: the engine behind `ravelin check-manifests`.
//!
//! [`check`] takes YAML sources (multi-document streams, `kind: List` objects
//! included), finds every workload that runs a vector database and reports each
//! missing control as a [`Finding`]:
//!
//! - a workload is a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
//!   ReplicationController, Job or CronJob ([`workload`]);
//! - it runs a vector database when an image of its containers or init containers has
//!   `ravelin`, `chroma` or `qdrant` in its repository path, or when the object or its
//!   pod template has the label `app.kubernetes.io/component: vector-database` or
//!   `app.kubernetes.io/name` set to `ravelin`, `chroma`, `chromadb` or `qdrant`;
//! - the controls are the [`Rule`]s, checked for every container and init container
//!   or once for the pod. The NetworkPolicy rule looks for a policy among all the
//!   sources checked together, so pass a workload's policies in the same call.
//!
//! YAML is read as Kubernetes reads it (YAML 1.1 booleans and integers, merge keys),
//! but duplicate keys are an error ([`yaml`]). A source that is not valid YAML
//! becomes an [`InputError`] and none of its objects are checked.
//!
//! The module [`files`] reads files and directories. The rest of the crate does no I/O.

pub mod files;
pub mod image;
pub mod network_policy;
pub mod objects;
pub mod report;
pub mod rules;
pub mod secrets;
pub mod workload;
pub mod yaml;

pub use report::{
    Finding, InputError, Location, Report, WorkloadEntry, EXIT_CLEAN, EXIT_FINDINGS,
    EXIT_INVALID_INPUT,
};
pub use rules::Rule;

use network_policy::IngressPolicy;
use objects::{collect_objects, Object};
use workload::Workload;

/// A YAML stream to check.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name that findings and errors use for the source, usually its path.
    pub name: String,
    pub text: String,
}

/// Checks the vector database workloads in `sources` and reports what each lacks.
pub fn check(sources: &[Source]) -> Report {
    let mut report = Report {
        format_version: report::JSON_FORMAT_VERSION,
        ..Report::default()
    };

    let mut parsed = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        match yaml::parse_stream(&source.text) {
            Ok(documents) => {
                report.files += 1;
                report.documents += documents.len();
                parsed.push((index, documents));
            }
            Err(error) => report.errors.push(InputError {
                file: source.name.clone(),
                message: format!("invalid YAML at {error}"),
            }),
        }
    }

    let mut objects: Vec<Object> = Vec::new();
    for (index, documents) in &parsed {
        collect_objects(*index, documents, &mut objects);
    }
    let policies: Vec<IngressPolicy> = objects
        .iter()
        .filter_map(IngressPolicy::from_object)
        .collect();

    for object in &objects {
        let Some(workload) = Workload::from_object(object) else {
            continue;
        };
        if !workload.runs_vector_database() {
            continue;
        }
        let entry = WorkloadEntry {
            location: Location {
                file: sources[object.source].name.clone(),
                document: object.document,
                line: object.line,
            },
            kind: object.kind.to_string(),
            namespace: object.namespace.map(str::to_string),
            name: object.name.clone(),
        };
        check_workload(&workload, &policies, &entry, &mut report.findings);
        report.workloads.push(entry);
    }
    report
}

/// Adds the findings of one workload: pod rules first, then each container's.
fn check_workload(
    workload: &Workload,
    policies: &[IngressPolicy],
    entry: &WorkloadEntry,
    findings: &mut Vec<Finding>,
) {
    let mut add = |container: Option<&str>, rule: Rule, message: String| {
        findings.push(Finding {
            workload: entry.clone(),
            container: container.map(str::to_string),
            rule,
            message,
            fix: rule.fix(),
        });
    };

    for rule in Rule::ALL
        .into_iter()
        .filter(|rule| !rule.is_per_container())
    {
        if let Some(message) = rules::check_pod(rule, workload, policies) {
            add(None, rule, message);
        }
    }
    for container in &workload.containers {
        for rule in Rule::ALL.into_iter().filter(|rule| rule.is_per_container()) {
            if let Some(message) = rules::check_container(rule, workload, container) {
                add(Some(&container.name), rule, message);
            }
        }
    }
}
