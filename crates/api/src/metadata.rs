//! Metadata values of records and collections.
//!
//! A value is a bool, a 64-bit integer, a 64-bit float, a string, a non-empty array of
//! one of those scalar types, or a sparse vector. Integers and floats stay distinct so
//! that `{"n": 1}` reads back as an integer and `{"n": 1.0}` as a float.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Metadata of one record or collection, ordered by key.
pub type Metadata = BTreeMap<String, MetadataValue>;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    BoolArray(Vec<bool>),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
    StrArray(Vec<String>),
    SparseVector(SparseVector),
}

/// A sparse vector stored as metadata: `{"#type": "sparse_vector", ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
    pub tokens: Option<Vec<String>>,
}

impl MetadataValue {
    /// Converts the value back to JSON, keeping integers and floats distinct.
    pub fn to_json(&self) -> Value {
        match self {
            MetadataValue::Bool(b) => Value::Bool(*b),
            MetadataValue::Int(i) => Value::from(*i),
            MetadataValue::Float(f) => float_to_json(*f),
            MetadataValue::Str(s) => Value::String(s.clone()),
            MetadataValue::BoolArray(items) => items.iter().map(|b| Value::Bool(*b)).collect(),
            MetadataValue::IntArray(items) => items.iter().map(|i| Value::from(*i)).collect(),
            MetadataValue::FloatArray(items) => items.iter().map(|f| float_to_json(*f)).collect(),
            MetadataValue::StrArray(items) => {
                items.iter().map(|s| Value::String(s.clone())).collect()
            }
            MetadataValue::SparseVector(sparse) => {
                let mut object = Map::new();
                object.insert("#type".into(), Value::String("sparse_vector".into()));
                object.insert(
                    "indices".into(),
                    sparse.indices.iter().map(|i| Value::from(*i)).collect(),
                );
                object.insert(
                    "values".into(),
                    sparse
                        .values
                        .iter()
                        .map(|v| float_to_json(f64::from(*v)))
                        .collect(),
                );
                if let Some(tokens) = &sparse.tokens {
                    object.insert(
                        "tokens".into(),
                        tokens.iter().map(|t| Value::String(t.clone())).collect(),
                    );
                }
                Value::Object(object)
            }
        }
    }
}

/// Serializes a finite float. Values are validated finite on input, so the `Null`
/// branch is unreachable for stored data.
fn float_to_json(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Converts metadata to a JSON object.
pub fn metadata_to_json(metadata: &Metadata) -> Value {
    Value::Object(
        metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.to_json()))
            .collect(),
    )
}

/// Limits on metadata size, checked while decoding.
#[derive(Debug, Clone)]
pub struct MetadataLimits {
    pub max_keys: usize,
    pub max_key_bytes: usize,
    pub max_string_bytes: usize,
    pub max_array_items: usize,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        MetadataLimits {
            max_keys: 256,
            max_key_bytes: 256,
            max_string_bytes: 64 * 1024,
            max_array_items: 4096,
        }
    }
}

/// Whether a metadata object may carry `null` values, which delete keys on update and
/// upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullValues {
    Reject,
    /// Kept as `None` so the write path removes the key.
    DeleteKey,
}

/// A decoded metadata object whose `None` values mean "delete this key".
pub type MetadataUpdate = BTreeMap<String, Option<MetadataValue>>;

/// Decodes one metadata object. `what` names the object in error messages, for example
/// "metadata of record 3".
pub fn decode_metadata(
    value: &Value,
    nulls: NullValues,
    limits: &MetadataLimits,
    what: &str,
) -> Result<MetadataUpdate, ApiError> {
    let Value::Object(object) = value else {
        return Err(ApiError::unprocessable(format!(
            "Invalid {what}: expected a JSON object"
        )));
    };
    if object.len() > limits.max_keys {
        return Err(ApiError::invalid(format!(
            "Invalid {what}: {} keys exceeds the limit of {}",
            object.len(),
            limits.max_keys
        )));
    }

    let mut decoded = MetadataUpdate::new();
    for (key, item) in object {
        validate_metadata_key(key, limits, what)?;
        if item.is_null() {
            match nulls {
                NullValues::DeleteKey => {
                    decoded.insert(key.clone(), None);
                    continue;
                }
                NullValues::Reject => {
                    return Err(ApiError::invalid(format!(
                        "Invalid {what}: the value of key [{key}] is null; null is allowed only in update and upsert"
                    )));
                }
            }
        }
        let decoded_value = decode_metadata_value(item, limits)
            .map_err(|reason| ApiError::invalid(format!("Invalid {what}: key [{key}] {reason}")))?;
        decoded.insert(key.clone(), Some(decoded_value));
    }
    Ok(decoded)
}

/// Decodes a metadata object that may not delete keys.
pub fn decode_metadata_strict(
    value: &Value,
    limits: &MetadataLimits,
    what: &str,
) -> Result<Metadata, ApiError> {
    let decoded = decode_metadata(value, NullValues::Reject, limits, what)?;
    Ok(decoded
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect())
}

fn validate_metadata_key(key: &str, limits: &MetadataLimits, what: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid(format!(
            "Invalid {what}: metadata keys must not be empty"
        )));
    }
    if key.len() > limits.max_key_bytes {
        return Err(ApiError::invalid(format!(
            "Invalid {what}: a metadata key of {} bytes exceeds the limit of {} bytes",
            key.len(),
            limits.max_key_bytes
        )));
    }
    if key.starts_with('$') || key.starts_with('#') {
        return Err(ApiError::invalid(format!(
            "Invalid {what}: metadata key [{}] must not start with '$' or '#'",
            printable(key)
        )));
    }
    if key == "chroma:document" {
        return Err(ApiError::invalid(format!(
            "Invalid {what}: metadata key [chroma:document] is reserved"
        )));
    }
    if key.contains('\0') {
        return Err(ApiError::invalid(format!(
            "Invalid {what}: metadata keys must not contain NUL characters"
        )));
    }
    Ok(())
}

/// Decodes a metadata value, or returns the reason it is invalid.
fn decode_metadata_value(value: &Value, limits: &MetadataLimits) -> Result<MetadataValue, String> {
    match value {
        Value::Bool(b) => Ok(MetadataValue::Bool(*b)),
        Value::Number(number) => decode_number(number),
        Value::String(s) => {
            check_string(s, limits)?;
            Ok(MetadataValue::Str(s.clone()))
        }
        Value::Array(items) => decode_array(items, limits),
        Value::Object(object) => decode_sparse_vector(object, limits),
        Value::Null => Err("is null".into()),
    }
}

fn decode_number(number: &serde_json::Number) -> Result<MetadataValue, String> {
    if let Some(i) = number.as_i64() {
        return Ok(MetadataValue::Int(i));
    }
    if number.is_u64() {
        return Err("is an integer beyond the signed 64-bit range".into());
    }
    match number.as_f64() {
        Some(f) if f.is_finite() => Ok(MetadataValue::Float(f)),
        _ => Err("is not a finite number".into()),
    }
}

fn check_string(s: &str, limits: &MetadataLimits) -> Result<(), String> {
    if s.len() > limits.max_string_bytes {
        return Err(format!(
            "has a string of {} bytes, over the limit of {} bytes",
            s.len(),
            limits.max_string_bytes
        ));
    }
    Ok(())
}

fn decode_array(items: &[Value], limits: &MetadataLimits) -> Result<MetadataValue, String> {
    if items.is_empty() {
        return Err("is an empty array; arrays must have at least one item".into());
    }
    if items.len() > limits.max_array_items {
        return Err(format!(
            "has {} array items, over the limit of {}",
            items.len(),
            limits.max_array_items
        ));
    }

    let mixed = || "is an array of mixed types; array items must all have one type".to_string();
    match &items[0] {
        Value::Bool(_) => items
            .iter()
            .map(|item| item.as_bool().ok_or_else(mixed))
            .collect::<Result<_, _>>()
            .map(MetadataValue::BoolArray),
        Value::String(_) => items
            .iter()
            .map(|item| {
                let s = item.as_str().ok_or_else(mixed)?;
                check_string(s, limits)?;
                Ok(s.to_string())
            })
            .collect::<Result<_, String>>()
            .map(MetadataValue::StrArray),
        Value::Number(first) if first.is_i64() => items
            .iter()
            .map(|item| match item {
                Value::Number(n) if n.is_i64() => Ok(n.as_i64().unwrap_or_default()),
                Value::Number(n) if n.is_u64() => {
                    Err("has an integer beyond the signed 64-bit range".to_string())
                }
                _ => Err(mixed()),
            })
            .collect::<Result<_, _>>()
            .map(MetadataValue::IntArray),
        Value::Number(_) => items
            .iter()
            .map(|item| match item {
                Value::Number(n) if n.is_f64() => match n.as_f64() {
                    Some(f) if f.is_finite() => Ok(f),
                    _ => Err("has a number that is not finite".to_string()),
                },
                _ => Err(mixed()),
            })
            .collect::<Result<_, _>>()
            .map(MetadataValue::FloatArray),
        _ => Err("is an array of a type other than bool, integer, float or string".into()),
    }
}

fn decode_sparse_vector(
    object: &Map<String, Value>,
    limits: &MetadataLimits,
) -> Result<MetadataValue, String> {
    if object.get("#type").and_then(Value::as_str) != Some("sparse_vector") {
        return Err("is a nested object; only sparse vectors may be objects".into());
    }
    for key in object.keys() {
        if !matches!(key.as_str(), "#type" | "indices" | "values" | "tokens") {
            return Err(format!(
                "is a sparse vector with unknown field [{}]",
                printable(key)
            ));
        }
    }

    let indices = object
        .get("indices")
        .and_then(Value::as_array)
        .ok_or("is a sparse vector without an indices array")?;
    let values = object
        .get("values")
        .and_then(Value::as_array)
        .ok_or("is a sparse vector without a values array")?;
    if indices.len() != values.len() {
        return Err(format!(
            "is a sparse vector with {} indices and {} values",
            indices.len(),
            values.len()
        ));
    }
    if indices.len() > limits.max_array_items {
        return Err(format!(
            "is a sparse vector of {} entries, over the limit of {}",
            indices.len(),
            limits.max_array_items
        ));
    }

    let indices = indices
        .iter()
        .map(|index| {
            index
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("is a sparse vector with an index that is not a 32-bit unsigned integer")
        })
        .collect::<Result<Vec<u32>, _>>()?;
    if indices.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err("is a sparse vector whose indices are not strictly ascending".into());
    }
    let values = values
        .iter()
        .map(|value| match value.as_f64() {
            Some(f) if f.is_finite() && (f as f32).is_finite() => Ok(f as f32),
            _ => Err("is a sparse vector with a value that is not a finite float"),
        })
        .collect::<Result<Vec<f32>, _>>()?;
    let tokens = match object.get("tokens") {
        None | Some(Value::Null) => None,
        Some(Value::Array(tokens)) => {
            if tokens.len() != indices.len() {
                return Err("is a sparse vector whose tokens and indices differ in length".into());
            }
            Some(
                tokens
                    .iter()
                    .map(|token| {
                        let s = token
                            .as_str()
                            .ok_or("is a sparse vector with a token that is not a string")?;
                        check_string(s, limits)?;
                        Ok(s.to_string())
                    })
                    .collect::<Result<Vec<String>, String>>()?,
            )
        }
        Some(_) => return Err("is a sparse vector whose tokens are not an array".into()),
    };

    Ok(MetadataValue::SparseVector(SparseVector {
        indices,
        values,
        tokens,
    }))
}

/// Shortens and escapes a client-supplied string for an error message.
pub fn printable(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = value
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > MAX_CHARS {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(value: Value) -> Result<Metadata, ApiError> {
        decode_metadata_strict(&value, &MetadataLimits::default(), "metadata")
    }

    #[test]
    fn int_and_float_stay_distinct() {
        let metadata = decode(json!({"i": 1, "f": 1.0})).unwrap();
        assert_eq!(metadata["i"], MetadataValue::Int(1));
        assert_eq!(metadata["f"], MetadataValue::Float(1.0));
        assert_eq!(
            metadata_to_json(&metadata).to_string(),
            r#"{"f":1.0,"i":1}"#
        );
    }

    #[test]
    fn arrays_must_be_homogeneous() {
        assert_eq!(
            decode(json!({"a": [1, 2]})).unwrap()["a"],
            MetadataValue::IntArray(vec![1, 2])
        );
        assert!(decode(json!({"a": [1, "x"]})).is_err());
        assert!(decode(json!({"a": [1, 2.5]})).is_err());
        assert!(decode(json!({"a": []})).is_err());
    }

    #[test]
    fn nested_objects_rejected() {
        let error = decode(json!({"a": {"b": 1}})).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn reserved_keys_rejected() {
        for key in ["", "$and", "#document", "chroma:document"] {
            assert!(
                decode(json!({ key: 1 })).is_err(),
                "key {key:?} was accepted"
            );
        }
    }

    #[test]
    fn integer_beyond_i64_rejected() {
        assert!(decode(json!({"a": u64::MAX})).is_err());
    }

    #[test]
    fn null_deletes_only_when_allowed() {
        assert!(decode(json!({"a": null})).is_err());
        let update = decode_metadata(
            &json!({"a": null}),
            NullValues::DeleteKey,
            &MetadataLimits::default(),
            "metadata",
        )
        .unwrap();
        assert_eq!(update["a"], None);
    }

    #[test]
    fn sparse_vector_round_trip() {
        let value =
            json!({"s": {"#type": "sparse_vector", "indices": [1, 5], "values": [0.5, 1.0]}});
        let metadata = decode(value.clone()).unwrap();
        assert_eq!(metadata_to_json(&metadata), value);
    }
}
