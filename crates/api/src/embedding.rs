//! Embeddings in requests: JSON float lists or base64 strings of packed little-endian
//! float32 values. Every value must be finite as an f32.

use base64::Engine as _;
use serde_json::Value;

use crate::error::ApiError;

/// Decodes one embedding. `row` is its index in the request, for error messages.
pub fn decode_embedding(
    value: &Value,
    row: usize,
    max_dimension: usize,
) -> Result<Vec<f32>, ApiError> {
    let vector = match value {
        Value::Array(items) => decode_float_list(items, row, max_dimension)?,
        Value::String(text) => decode_base64(text, row, max_dimension)?,
        _ => {
            return Err(ApiError::invalid(format!(
                "Invalid embedding at index {row}: expected a list of numbers or a base64 string"
            )))
        }
    };
    if vector.is_empty() {
        return Err(ApiError::invalid(format!(
            "Invalid embedding at index {row}: embeddings must not be empty"
        )));
    }
    Ok(vector)
}

/// Decodes a list of embeddings that may only be float lists, as in a query.
pub fn decode_float_lists(
    value: &Value,
    max_count: usize,
    max_dimension: usize,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let Value::Array(rows) = value else {
        return Err(ApiError::unprocessable(
            "Invalid query_embeddings: expected a list of embeddings",
        ));
    };
    if rows.len() > max_count {
        return Err(ApiError::invalid(format!(
            "Invalid query_embeddings: {} embeddings exceeds the maximum batch size of {max_count}",
            rows.len()
        )));
    }
    rows.iter()
        .enumerate()
        .map(|(row, item)| match item {
            Value::Array(items) => {
                let vector = decode_float_list(items, row, max_dimension)?;
                if vector.is_empty() {
                    return Err(ApiError::invalid(format!(
                        "Invalid query embedding at index {row}: embeddings must not be empty"
                    )));
                }
                Ok(vector)
            }
            _ => Err(ApiError::unprocessable(format!(
                "Invalid query embedding at index {row}: expected a list of numbers"
            ))),
        })
        .collect()
}

fn decode_float_list(
    items: &[Value],
    row: usize,
    max_dimension: usize,
) -> Result<Vec<f32>, ApiError> {
    check_dimension(items.len(), row, max_dimension)?;
    items
        .iter()
        .map(|item| {
            let value = item.as_f64().ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid embedding at index {row}: every value must be a number"
                ))
            })?;
            finite_f32(value as f32, row)
        })
        .collect()
}

fn decode_base64(text: &str, row: usize, max_dimension: usize) -> Result<Vec<f32>, ApiError> {
    // Four base64 characters carry three bytes, so the length bounds the dimension
    // before any decoding work is done.
    check_dimension(text.len() / 4 * 3 / 4, row, max_dimension)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| {
            ApiError::invalid(format!(
                "Invalid embedding at index {row}: not valid base64"
            ))
        })?;
    if !bytes.len().is_multiple_of(4) {
        return Err(ApiError::invalid(format!(
            "Invalid embedding at index {row}: base64 data of {} bytes is not a whole number of float32 values",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(4)
        .map(|chunk| {
            finite_f32(
                f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                row,
            )
        })
        .collect()
}

fn check_dimension(dimension: usize, row: usize, max_dimension: usize) -> Result<(), ApiError> {
    if dimension > max_dimension {
        return Err(ApiError::invalid(format!(
            "Invalid embedding at index {row}: dimension {dimension} exceeds the maximum of {max_dimension}"
        )));
    }
    Ok(())
}

/// The largest magnitude an embedding value may have. With values bounded so, every
/// squared L2 distance and dot product over the maximum dimension of 65,536 stays
/// below `f32::MAX` (65,536 × (2 × 10^16)^2 ≈ 2.6 × 10^37), so no distance overflows
/// to infinity or NaN. Real embeddings are many orders of magnitude smaller.
pub const MAX_EMBEDDING_MAGNITUDE: f32 = 1e16;

fn finite_f32(value: f32, row: usize) -> Result<f32, ApiError> {
    if !value.is_finite() {
        return Err(ApiError::invalid(format!(
            "Invalid embedding at index {row}: values must be finite float32 numbers (NaN and infinity are rejected)"
        )));
    }
    if value.abs() > MAX_EMBEDDING_MAGNITUDE {
        return Err(ApiError::invalid(format!(
            "Invalid embedding at index {row}: value {value:e} exceeds the maximum magnitude of 1e16"
        )));
    }
    Ok(value)
}

/// Encodes a vector as little-endian f32 bytes, the stored form.
pub fn vector_to_bytes(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Decodes little-endian f32 bytes, the stored form.
pub fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_and_list_agree() {
        let from_base64 = decode_embedding(&json!("AACAPwAAAAAAAAAA"), 0, 16).unwrap();
        let from_list = decode_embedding(&json!([1, 0, 0]), 0, 16).unwrap();
        assert_eq!(from_base64, vec![1.0, 0.0, 0.0]);
        assert_eq!(from_list, from_base64);
    }

    #[test]
    fn non_finite_rejected() {
        let nan = base64::engine::general_purpose::STANDARD.encode(f32::NAN.to_le_bytes());
        let infinity =
            base64::engine::general_purpose::STANDARD.encode(f32::INFINITY.to_le_bytes());
        for value in [
            json!(nan),
            json!(infinity),
            json!([1e39]),
            json!([-1e39]),
            json!([3e38]),
            json!([1e17]),
        ] {
            let error = decode_embedding(&value, 3, 16).unwrap_err();
            assert_eq!(error.status(), 400);
            assert!(error.message.contains("index 3"), "{}", error.message);
        }
    }

    #[test]
    fn malformed_rejected() {
        for value in [
            json!("abc"),
            json!("AAAA"),
            json!([]),
            json!(["x"]),
            json!({}),
            json!(null),
        ] {
            assert!(decode_embedding(&value, 0, 16).is_err(), "{value}");
        }
    }

    #[test]
    fn dimension_capped() {
        assert!(decode_embedding(&json!([0.0, 0.0, 0.0, 0.0, 0.0]), 0, 4).is_err());
        let long = base64::engine::general_purpose::STANDARD.encode([0u8; 40]);
        assert!(decode_embedding(&json!(long), 0, 4).is_err());
    }

    #[test]
    fn stored_form_round_trip() {
        let vector = vec![0.2f32, -1.5, 3.0];
        assert_eq!(
            vector_from_bytes(&vector_to_bytes(&vector)).unwrap(),
            vector
        );
    }
}
