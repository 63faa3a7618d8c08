//! Test-only sandbox probe, built with the `sandbox-probe` feature.
//!
//! On SIGUSR2 the server reads one escape attempt from `DATA_DIR/sandbox-probe.request`
//! (see [`sandbox::probe::Attempt`] for the syntax), runs it on a blocking thread,
//! and writes the outcome to `DATA_DIR/sandbox-probe.result`: `allowed` when the
//! attempt succeeded, or `denied: ERROR` with the OS error. The attempts that seccomp
//! traps end the process instead, with the alert on stderr.

use std::path::{Path, PathBuf};

use sandbox::probe::Attempt;

/// The file a test writes the attempt to.
const REQUEST_FILE: &str = "sandbox-probe.request";
/// The file the outcome is written to, replaced by rename.
const RESULT_FILE: &str = "sandbox-probe.result";

/// Runs a probe on every SIGUSR2 until the runtime stops.
pub fn run_on_sigusr2(data_dir: PathBuf) {
    tracing::warn!(
        "this binary has the sandbox-probe test feature: SIGUSR2 runs sandbox escape attempts; never deploy it"
    );
    let mut signals =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()) {
            Ok(signals) => signals,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGUSR2; the sandbox probe is off");
                return;
            }
        };
    tokio::spawn(async move {
        while signals.recv().await.is_some() {
            let data_dir = data_dir.clone();
            let outcome = tokio::task::spawn_blocking(move || probe(&data_dir)).await;
            if let Err(error) = outcome {
                tracing::error!(%error, "the sandbox probe task failed");
            }
        }
    });
}

fn probe(data_dir: &Path) {
    let request = match std::fs::read_to_string(data_dir.join(REQUEST_FILE)) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(%error, "cannot read the sandbox probe request");
            return;
        }
    };
    let outcome = match request.parse::<Attempt>() {
        Ok(attempt) => {
            tracing::info!(?attempt, "running a sandbox probe");
            match attempt.run() {
                Ok(()) => "allowed".to_string(),
                Err(error) => format!("denied: {error}"),
            }
        }
        Err(error) => format!("invalid: {error}"),
    };
    tracing::info!(%outcome, "sandbox probe finished");

    let staging = data_dir.join(format!("{RESULT_FILE}.tmp"));
    let written = std::fs::write(&staging, format!("{outcome}\n"))
        .and_then(|()| std::fs::rename(&staging, data_dir.join(RESULT_FILE)));
    if let Err(error) = written {
        tracing::error!(%error, "cannot write the sandbox probe result");
    }
}
