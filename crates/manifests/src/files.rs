//! Reading manifests from files and directories.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::report::InputError;
use crate::yaml::MAX_SOURCE_BYTES;
use crate::Source;

/// Reads every path: a file whatever its name, a directory by walking it for files
/// ending in `.yaml` or `.yml`. The walk goes into subdirectories, follows symbolic
/// links to files but not to directories (so a link cannot make it loop), and visits
/// entries in name order, so reports list files in a stable order. Returns the
/// sources read and an error for each path or file that could not be read.
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Source>, Vec<InputError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => walk_directory(path, &mut sources, &mut errors),
            Ok(_) => read_into(path, &mut sources, &mut errors),
            Err(error) => errors.push(input_error(path, format!("cannot read it: {error}"))),
        }
    }
    (sources, errors)
}

fn walk_directory(root: &Path, sources: &mut Vec<Source>, errors: &mut Vec<InputError>) {
    // Paths still to visit, popped from the end: each directory's entries are pushed
    // in reverse name order, so the walk visits them depth first in name order. The
    // root was named on the command line, so a link to it is followed.
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = if path == root {
            fs::metadata(&path)
        } else {
            fs::symlink_metadata(&path)
        };
        let Ok(metadata) = metadata else {
            errors.push(input_error(&path, "cannot read its metadata".to_string()));
            continue;
        };
        if !metadata.is_dir() {
            if is_yaml_name(&path) && fs::metadata(&path).is_ok_and(|target| target.is_file()) {
                read_into(&path, sources, errors);
            }
            continue;
        }

        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(error) => {
                errors.push(input_error(
                    &path,
                    format!("cannot list the directory: {error}"),
                ));
                continue;
            }
        };
        let mut children = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => children.push(entry.path()),
                Err(error) => errors.push(input_error(
                    &path,
                    format!("cannot list the directory: {error}"),
                )),
            }
        }
        children.sort();
        pending.extend(children.into_iter().rev());
    }
}

fn is_yaml_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension == "yaml" || extension == "yml")
}

fn read_into(path: &Path, sources: &mut Vec<Source>, errors: &mut Vec<InputError>) {
    match read_text(path) {
        Ok(text) => sources.push(Source {
            name: path.display().to_string(),
            text,
        }),
        Err(message) => errors.push(input_error(path, message)),
    }
}

/// Reads a file of at most [`MAX_SOURCE_BYTES`] bytes of UTF-8 text.
fn read_text(path: &Path) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|error| format!("cannot read it: {error}"))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_SOURCE_BYTES).unwrap_or(u64::MAX) + 1;
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read it: {error}"))?;
    if bytes.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "the file is larger than the limit of {MAX_SOURCE_BYTES} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        )
    })
}

fn input_error(path: &Path, message: String) -> InputError {
    InputError {
        file: path.display().to_string(),
        message,
    }
}
