//! Fuzzing harnesses for the decoders that take untrusted request bytes.
//!
//! Each harness takes arbitrary bytes, runs one decoder on them and checks what it
//! returns: a decoded value must respect the [`Limits`](crate::Limits) it was decoded
//! with, and an error must be a client error (400 or 422) with a bounded message. A
//! harness panics when a check fails, so a fuzzer reports the input as a crash.
//!
//! The cargo-fuzz targets in `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs`
//! both call these functions, so a corpus file checks the same things in both.
//!
//! - [`check_request_decode`]: a request body through `parse_json` and every request
//!   decoder.
//! - [`check_filter_parse`]: a `where` and `where_document` pair, parsed and evaluated
//!   against sample records.
//! - [`check_base64_embedding`]: base64 embedding strings and the float32 values they
//!   carry.

mod embedding;
mod filter;
mod requests;

pub use embedding::check_base64_embedding;
pub use filter::check_filter_parse;
pub use requests::check_request_decode;

use crate::error::ApiError;

/// Maximum length of a decoder's error message, in bytes. Decoders quote client
/// input through `printable`, which keeps 64 characters, or only after checking its
/// length, so a longer message means that some decoder echoes unbounded input.
const MAX_ERROR_MESSAGE_BYTES: usize = 2048;

/// Maximum length of an invalid-regex error message, in bytes. It ends with the regex
/// crate's diagnostic, which repeats the whole pattern with a line-number prefix on
/// every line. For a pattern of newlines that is 7 bytes per pattern byte (measured with
/// regex 1.13.2), and a pattern has at most 4096 bytes by default (`max_regex_bytes`).
const MAX_REGEX_ERROR_MESSAGE_BYTES: usize = MAX_ERROR_MESSAGE_BYTES + 8 * 4096;

/// Checks that a decoder rejected its input as a client error with a bounded message.
fn assert_client_error(error: &ApiError) {
    assert!(
        matches!(error.status(), 400 | 422),
        "a decoder returned status {} for client input: {}",
        error.status(),
        error.message
    );
    assert!(
        !error.message.is_empty(),
        "a decoder returned an empty error message"
    );

    let max_bytes = if error.message.contains(": invalid regex [") {
        MAX_REGEX_ERROR_MESSAGE_BYTES
    } else {
        MAX_ERROR_MESSAGE_BYTES
    };
    assert!(
        error.message.len() <= max_bytes,
        "an error message of {} bytes exceeds {max_bytes} bytes: {}",
        error.message.len(),
        crate::metadata::printable(&error.message)
    );
}
