//! `ravelin check-manifests`: checks Kubernetes manifests of vector database
//! workloads for missing security controls (see the `manifests` crate for the rules).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

/// Output format of the report.
#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Checks the files and directories in `paths` and prints the report on standard
/// output, and input errors on standard error. Returns [`manifests::EXIT_CLEAN`],
/// [`manifests::EXIT_FINDINGS`] or [`manifests::EXIT_INVALID_INPUT`].
pub fn run(paths: &[PathBuf], format: ReportFormat) -> ExitCode {
    let (sources, read_errors) = manifests::files::read_paths(paths);
    let mut report = manifests::check(&sources);
    report.errors.splice(0..0, read_errors);

    for error in &report.errors {
        eprintln!("error: {}: {}", error.file, error.message);
    }
    let failed = report.errors.len();
    if failed > 0 {
        let inputs = if failed == 1 {
            "input was"
        } else {
            "inputs were"
        };
        eprintln!(
            "error: {failed} {inputs} not checked; fix or leave them out (render Helm charts and Kustomize overlays to plain YAML first)"
        );
    }

    match format {
        ReportFormat::Text => print!("{}", report.to_text()),
        ReportFormat::Json => print!("{}", report.to_json()),
    }
    ExitCode::from(report.exit_status())
}
