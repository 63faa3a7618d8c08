//! Key discovery: recording in the schema each metadata key and value type that the
//! collection stores, as Chroma 1.5.9's single-node server does on every write.
//!
//! A discovered entry is a copy of the defaults for its value type, and nothing changes
//! the defaults after creation, so discovery never changes which filters are allowed.
//! It only makes the stored keys visible in the schema that clients read.

use super::{Schema, ValueTypes};
use crate::metadata::MetadataValue;

/// Metadata keys with this prefix are reserved by Chroma and never discovered.
const RESERVED_PREFIX: &str = "chroma:";

/// The value type a stored metadata value belongs to. Arrays belong to the type of
/// their elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueKind {
    String,
    Int,
    Float,
    Bool,
    SparseVector,
}

impl ValueKind {
    pub fn of(value: &MetadataValue) -> ValueKind {
        match value {
            MetadataValue::Str(_) | MetadataValue::StrArray(_) => ValueKind::String,
            MetadataValue::Int(_) | MetadataValue::IntArray(_) => ValueKind::Int,
            MetadataValue::Float(_) | MetadataValue::FloatArray(_) => ValueKind::Float,
            MetadataValue::Bool(_) | MetadataValue::BoolArray(_) => ValueKind::Bool,
            MetadataValue::SparseVector(_) => ValueKind::SparseVector,
        }
    }
}

impl Schema {
    /// Returns true when `key` already has an entry for `kind`, or is never discovered.
    pub fn has_key_kind(&self, key: &str, kind: ValueKind) -> bool {
        if key.starts_with(RESERVED_PREFIX) {
            return true;
        }
        self.keys
            .get(key)
            .is_some_and(|types| has_kind(types, kind))
    }

    /// Adds the default indexes of `kind` under `key` when the key has no entry for that
    /// value type and the defaults have one. Returns true when the schema changed.
    pub fn discover_key(&mut self, key: &str, kind: ValueKind) -> bool {
        if self.has_key_kind(key, kind) || !has_kind(&self.defaults, kind) {
            return false;
        }
        let defaults = &self.defaults;
        let types = self.keys.entry(key.to_string()).or_default();
        match kind {
            ValueKind::String => types.string = defaults.string.clone(),
            ValueKind::Int => types.int = defaults.int.clone(),
            ValueKind::Float => types.float = defaults.float.clone(),
            ValueKind::Bool => types.boolean = defaults.boolean.clone(),
            ValueKind::SparseVector => types.sparse_vector = defaults.sparse_vector.clone(),
        }
        true
    }
}

fn has_kind(types: &ValueTypes, kind: ValueKind) -> bool {
    match kind {
        ValueKind::String => types.string.is_some(),
        ValueKind::Int => types.int.is_some(),
        ValueKind::Float => types.float.is_some(),
        ValueKind::Bool => types.boolean.is_some(),
        ValueKind::SparseVector => types.sparse_vector.is_some(),
    }
}
