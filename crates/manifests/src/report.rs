//! The result of a check, as text for people and as JSON for programs.

use serde::Serialize;

use crate::rules::Rule;

/// Version of the JSON document [`Report::to_json`] writes. It changes only when a
/// field is removed or changes meaning.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// Exit status when every vector database workload has every control.
pub const EXIT_CLEAN: u8 = 0;
/// Exit status when any finding was reported.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status when an input could not be read or is not valid YAML.
pub const EXIT_INVALID_INPUT: u8 = 2;

/// The outcome of checking a set of files.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Version of this document's layout.
    pub format_version: u32,
    /// Files read and parsed.
    pub files: usize,
    /// YAML documents in those files.
    pub documents: usize,
    /// The vector database workloads that were checked.
    pub workloads: Vec<WorkloadEntry>,
    /// Missing controls, ordered by file, document, container and rule.
    pub findings: Vec<Finding>,
    /// Inputs that could not be read or parsed; nothing in them was checked.
    pub errors: Vec<InputError>,
}

/// The position of an object in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    /// The 1-based position of the YAML document in the file.
    pub document: usize,
    /// The 1-based line the object starts on.
    pub line: usize,
}

/// A checked workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadEntry {
    #[serde(flatten)]
    pub location: Location,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// One missing control.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub workload: WorkloadEntry,
    /// The container, or `None` for a rule about the whole pod.
    pub container: Option<String>,
    pub rule: Rule,
    pub message: String,
    pub fix: &'static str,
}

/// An input that could not be read or parsed.
#[derive(Debug, Clone, Serialize)]
pub struct InputError {
    pub file: String,
    pub message: String,
}

impl Report {
    pub fn exit_status(&self) -> u8 {
        if !self.errors.is_empty() {
            EXIT_INVALID_INPUT
        } else if !self.findings.is_empty() {
            EXIT_FINDINGS
        } else {
            EXIT_CLEAN
        }
    }

    /// Renders the findings and a summary line as text. Input errors are not included;
    /// the caller prints them on standard error.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for finding in &self.findings {
            let entry = &finding.workload;
            let name = match &entry.namespace {
                Some(namespace) => format!("{namespace}/{}", entry.name),
                None => entry.name.clone(),
            };
            let target = match &finding.container {
                Some(container) => format!("container {container}"),
                None => "pod".to_string(),
            };
            text.push_str(&format!(
                "{}: document {} (line {}): {} {name}, {target}: [{}] {}\n    fix: {}\n",
                entry.location.file,
                entry.location.document,
                entry.location.line,
                entry.kind,
                finding.rule.id(),
                finding.message,
                finding.fix,
            ));
        }

        let workloads = self.workloads.len();
        let scanned = format!(
            "{} {} with {} {}",
            self.files,
            plural(self.files, "file", "files"),
            self.documents,
            plural(self.documents, "document", "documents"),
        );
        let summary = if workloads == 0 {
            format!("No vector database workloads found in {scanned}; nothing was checked.")
        } else if self.findings.is_empty() {
            format!(
                "No findings: {workloads} vector database {} in {scanned} {} every control.",
                plural(workloads, "workload", "workloads"),
                plural(workloads, "has", "have"),
            )
        } else {
            let flagged = self
                .workloads
                .iter()
                .filter(|entry| {
                    self.findings
                        .iter()
                        .any(|finding| finding.workload.location == entry.location)
                })
                .count();
            format!(
                "{} {} in {flagged} of {workloads} vector database {} ({scanned}).",
                self.findings.len(),
                plural(self.findings.len(), "finding", "findings"),
                plural(workloads, "workload", "workloads"),
            )
        };
        text.push_str(&summary);
        text.push('\n');
        text
    }

    /// Renders the report as a pretty-printed JSON document with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("a report serializes to JSON");
        json.push('\n');
        json
    }
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 {
        one
    } else {
        many
    }
}
