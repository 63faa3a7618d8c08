//! The `base64_embedding` harness: embeddings sent as base64 strings.

use base64::Engine as _;
use serde_json::Value;

use super::assert_client_error;
use crate::embedding::{
    decode_embedding, vector_from_bytes, vector_to_bytes, MAX_EMBEDDING_MAGNITUDE,
};
use crate::limits::Limits;

/// A small maximum dimension, so that inputs of a few bytes reach the dimension check.
const SMALL_MAX_DIMENSION: usize = 3;

/// The row index passed to the decoder, which every error message must name.
const ROW: usize = 7;

/// Decodes `input` three ways, each with the default maximum dimension and with
/// [`SMALL_MAX_DIMENSION`]:
///
/// - `input` as the packed float32 values that a base64 string carries. The string is
///   built from them, so the decoder's result is known exactly.
/// - `input`, if it is UTF-8, as the base64 string itself. An accepted string must be
///   the canonical encoding of the decoded values.
/// - `input`, if it is JSON, as the embedding value of a request (a float list or a
///   base64 string).
///
/// # Panics
///
/// When the decoder panics, returns a vector with a value that is not finite or is
/// above [`MAX_EMBEDDING_MAGNITUDE`], or disagrees with the expected result.
pub fn check_base64_embedding(input: &[u8]) {
    let text = std::str::from_utf8(input).ok();
    let json = serde_json::from_slice::<Value>(input).ok();

    for max_dimension in [Limits::default().max_dimension, SMALL_MAX_DIMENSION] {
        check_payload(input, max_dimension);
        if let Some(text) = text {
            check_text(text, max_dimension);
        }
        if let Some(value) = &json {
            match decode_embedding(value, ROW, max_dimension) {
                Ok(vector) => check_vector(&vector, max_dimension),
                Err(error) => check_error(&error),
            }
        }
    }
}

/// Encodes `payload` as base64 and checks that the decoder returns exactly its float32
/// values, or an error exactly when a rule rejects them.
fn check_payload(payload: &[u8], max_dimension: usize) {
    let text = base64::engine::general_purpose::STANDARD.encode(payload);
    let result = decode_embedding(&Value::String(text), ROW, max_dimension);

    let acceptable = !payload.is_empty()
        && payload.len().is_multiple_of(4)
        && payload.len() / 4 <= max_dimension
        && vector_from_bytes(payload).is_some_and(|values| {
            values
                .iter()
                .all(|value| value.is_finite() && value.abs() <= MAX_EMBEDDING_MAGNITUDE)
        });
    match result {
        Ok(vector) => {
            assert!(acceptable, "the decoder accepted {payload:?} as {vector:?}");
            assert_eq!(
                vector_to_bytes(&vector),
                payload,
                "the decoded values differ from the encoded ones"
            );
        }
        Err(error) => {
            assert!(
                !acceptable,
                "the decoder rejected valid values {payload:?}: {}",
                error.message
            );
            check_error(&error);
        }
    }
}

/// Decodes `text` as a base64 embedding and checks that an accepted string is the
/// canonical encoding of what it decoded to.
fn check_text(text: &str, max_dimension: usize) {
    match decode_embedding(&Value::String(text.to_string()), ROW, max_dimension) {
        Ok(vector) => {
            check_vector(&vector, max_dimension);
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(vector_to_bytes(&vector));
            assert_eq!(
                encoded, text,
                "the decoder accepted a string that is not the canonical encoding"
            );
        }
        Err(error) => check_error(&error),
    }
}

fn check_vector(vector: &[f32], max_dimension: usize) {
    assert!(!vector.is_empty(), "an empty embedding was decoded");
    assert!(
        vector.len() <= max_dimension,
        "an embedding of dimension {} was decoded with a maximum of {max_dimension}",
        vector.len()
    );
    for value in vector {
        assert!(
            value.is_finite() && value.abs() <= MAX_EMBEDDING_MAGNITUDE,
            "the embedding value {value:e} was decoded"
        );
    }
}

fn check_error(error: &crate::ApiError) {
    assert_client_error(error);
    assert!(
        error.message.contains(&format!("index {ROW}")),
        "an embedding error does not name the row: {}",
        error.message
    );
}
