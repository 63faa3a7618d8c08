//! Replays the committed fuzz corpora in `fuzz/corpus/` through the checks that the
//! cargo-fuzz targets run, so that plain `cargo test` on stable re-runs every seed and
//! every crash input that fuzzing found.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ravelin_api::fuzzing;

/// Returns the files of one target's corpus, sorted, and fails when there are none.
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&directory).unwrap_or_else(|error| {
        panic!(
            "cannot read the corpus directory {}: {error}",
            directory.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus directory {} has no files",
        directory.display()
    );
    files
}

/// Runs `check` on every corpus file of `target` and fails naming each file that
/// panics. The panic messages appear in the test output above the failure.
fn replay(target: &str, check: fn(&[u8])) {
    let mut failures = Vec::new();
    for path in corpus_files(target) {
        let input = std::fs::read(&path).expect("a readable corpus file");
        if panic::catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "corpus files that fail the {target} checks: {failures:#?}"
    );
}

#[test]
fn request_decode_corpus() {
    replay("request_decode", fuzzing::check_request_decode);
}

#[test]
fn filter_parse_corpus() {
    replay("filter_parse", fuzzing::check_filter_parse);
}

#[test]
fn base64_embedding_corpus() {
    replay("base64_embedding", fuzzing::check_base64_embedding);
}
