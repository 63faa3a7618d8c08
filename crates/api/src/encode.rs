//! Decoded requests encoded back to Chroma's JSON, so that the gateway forwards
//! requests rebuilt from validated values and never the bytes a client sent.
//!
//! Each `encode` is the inverse of the matching `decode`: decoding an encoded request
//! with the same limits yields an equal value (the round-trip property tests in
//! `tests/round_trip.rs` check this). The JSON is not always the one the client sent:
//!
//! - Record embeddings go out as base64 strings of little-endian float32 values, which
//!   Chroma accepts on add, upsert and update and which keep every bit. Query
//!   embeddings, which Chroma takes only as number lists, go out as lists.
//! - The shorthand `{"key": value}` goes out as `{"key": {"$eq": value}}`.
//! - An `$in` or `$nin` list goes out sorted and without duplicates, whole floats as
//!   integers, and with its floats before its integers, because Chroma 1.5.9 accepts
//!   a list of both only when it starts with a float.
//! - A new collection's settings go out as the configuration when the schema is the
//!   one the configuration implies, else as the schema alone, because Chroma rejects a
//!   request that sets both. Default settings go out as `null`, so Chroma applies its
//!   own defaults.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::config::CollectionConfiguration;
use crate::filter::{
    DocumentCondition, Filter, MetadataCondition, Number, Scalar, ScalarSet, Where, WhereDocument,
};
use crate::metadata::{metadata_to_json, MetadataUpdate};
use crate::requests::{
    CreateCollection, CreateNamed, DeleteRecords, GetRecords, Include, QueryRecords, RecordBatch,
    UpdateCollection,
};
use crate::schema::Schema;

impl CreateNamed {
    pub fn encode(&self) -> Value {
        json!({ "name": self.name })
    }
}

impl CreateCollection {
    pub fn encode(&self) -> Value {
        let derived = Schema::from_configuration(&self.configuration);
        let (configuration, schema) = if self.schema != derived {
            (Value::Null, self.schema.to_json())
        } else if self.configuration == CollectionConfiguration::default() {
            (Value::Null, Value::Null)
        } else {
            (self.configuration.to_json(), Value::Null)
        };
        json!({
            "name": self.name,
            "metadata": self.metadata.as_ref().map(metadata_to_json),
            "configuration": configuration,
            "schema": schema,
            "get_or_create": self.get_or_create,
        })
    }
}

impl UpdateCollection {
    pub fn encode(&self) -> Value {
        json!({
            "new_name": self.new_name,
            "new_metadata": self.new_metadata.as_ref().map(metadata_to_json),
            "new_configuration": self.new_configuration,
        })
    }
}

impl RecordBatch {
    pub fn encode(&self) -> Value {
        let embeddings = self.embeddings.as_ref().map(|embeddings| {
            embeddings
                .iter()
                .map(|embedding| Value::String(encode_base64(embedding)))
                .collect::<Vec<Value>>()
        });
        let metadatas = self.metadatas.as_ref().map(|metadatas| {
            metadatas
                .iter()
                .map(|row| row.as_ref().map_or(Value::Null, metadata_update_to_json))
                .collect::<Vec<Value>>()
        });
        json!({
            "ids": self.ids,
            "embeddings": embeddings,
            "documents": self.documents,
            "metadatas": metadatas,
            "uris": self.uris,
        })
    }
}

impl DeleteRecords {
    pub fn encode(&self) -> Value {
        let (where_clause, where_document) = self.filter.encode();
        let mut object = json!({
            "ids": self.ids,
            "where": where_clause,
            "where_document": where_document,
        });
        // Sent only when set, so a Chroma that predates the field still accepts the
        // request.
        if let (Some(limit), Some(object)) = (self.limit, object.as_object_mut()) {
            object.insert("limit".into(), json!(limit));
        }
        object
    }
}

impl GetRecords {
    pub fn encode(&self) -> Value {
        let (where_clause, where_document) = self.filter.encode();
        json!({
            "ids": self.ids,
            "where": where_clause,
            "where_document": where_document,
            "limit": self.limit,
            "offset": self.offset,
            "include": self.include.encode(),
        })
    }
}

impl QueryRecords {
    pub fn encode(&self) -> Value {
        let (where_clause, where_document) = self.filter.encode();
        let query_embeddings: Vec<Value> = self
            .query_embeddings
            .iter()
            .map(|embedding| {
                embedding
                    .iter()
                    .map(|value| float(f64::from(*value)))
                    .collect()
            })
            .collect();
        json!({
            "ids": self.ids,
            "query_embeddings": query_embeddings,
            "n_results": self.n_results,
            "where": where_clause,
            "where_document": where_document,
            "include": self.include.encode(),
        })
    }
}

impl Include {
    pub fn encode(&self) -> Value {
        self.0
            .iter()
            .map(|field| Value::from(field.name()))
            .collect()
    }
}

impl Filter {
    /// Returns the `where` and `where_document` values, `null` for an absent part.
    pub fn encode(&self) -> (Value, Value) {
        (
            self.where_clause
                .as_ref()
                .map_or(Value::Null, Where::encode),
            self.where_document
                .as_ref()
                .map_or(Value::Null, WhereDocument::encode),
        )
    }
}

impl Where {
    pub fn encode(&self) -> Value {
        match self {
            Where::And(children) => {
                json!({ "$and": children.iter().map(Where::encode).collect::<Vec<_>>() })
            }
            Where::Or(children) => {
                json!({ "$or": children.iter().map(Where::encode).collect::<Vec<_>>() })
            }
            Where::Metadata { key, condition } => single(key, condition.encode()),
            Where::Document(condition) => single("#document", condition.encode()),
        }
    }
}

impl MetadataCondition {
    /// Returns the operator expression, such as `{"$gt": 2}`.
    pub fn encode(&self) -> Value {
        let (operator, operand) = match self {
            MetadataCondition::Eq(scalar) => ("$eq", scalar.encode()),
            MetadataCondition::Ne(scalar) => ("$ne", scalar.encode()),
            MetadataCondition::Gt(number) => ("$gt", number.encode()),
            MetadataCondition::Gte(number) => ("$gte", number.encode()),
            MetadataCondition::Lt(number) => ("$lt", number.encode()),
            MetadataCondition::Lte(number) => ("$lte", number.encode()),
            MetadataCondition::In(set) => ("$in", set.encode()),
            MetadataCondition::NotIn(set) => ("$nin", set.encode()),
            MetadataCondition::Contains(scalar) => ("$contains", scalar.encode()),
            MetadataCondition::NotContains(scalar) => ("$not_contains", scalar.encode()),
        };
        single(operator, operand)
    }
}

impl WhereDocument {
    pub fn encode(&self) -> Value {
        match self {
            WhereDocument::And(children) => {
                json!({ "$and": children.iter().map(WhereDocument::encode).collect::<Vec<_>>() })
            }
            WhereDocument::Or(children) => {
                json!({ "$or": children.iter().map(WhereDocument::encode).collect::<Vec<_>>() })
            }
            WhereDocument::Condition(condition) => condition.encode(),
        }
    }
}

impl DocumentCondition {
    /// Returns the operator expression, such as `{"$contains": "text"}`.
    pub fn encode(&self) -> Value {
        match self {
            DocumentCondition::Contains(text) => single("$contains", Value::from(text.as_str())),
            DocumentCondition::NotContains(text) => {
                single("$not_contains", Value::from(text.as_str()))
            }
            DocumentCondition::Regex(regex) => single("$regex", Value::from(regex.as_str())),
            DocumentCondition::NotRegex(regex) => single("$not_regex", Value::from(regex.as_str())),
        }
    }
}

impl Scalar {
    pub fn encode(&self) -> Value {
        match self {
            Scalar::Bool(value) => Value::Bool(*value),
            Scalar::Number(number) => number.encode(),
            Scalar::Str(text) => Value::from(text.as_str()),
        }
    }
}

impl Number {
    pub fn encode(&self) -> Value {
        match self {
            Number::Int(value) => Value::from(*value),
            Number::Float(value) => float(*value),
        }
    }
}

impl ScalarSet {
    pub fn encode(&self) -> Value {
        match self {
            ScalarSet::Bool(values) => values.iter().map(|value| Value::Bool(*value)).collect(),
            ScalarSet::Str(values) => values
                .iter()
                .map(|value| Value::from(value.as_str()))
                .collect(),
            ScalarSet::Number(numbers) => numbers
                .floats()
                .iter()
                .map(|value| float(*value))
                .chain(numbers.ints().iter().map(|value| Value::from(*value)))
                .collect(),
        }
    }
}

/// Returns `{key: value}`.
fn single(key: &str, value: Value) -> Value {
    let mut object = Map::with_capacity(1);
    object.insert(key.to_string(), value);
    Value::Object(object)
}

/// Returns a finite float as a JSON number. Decoded values are finite, so the `null`
/// branch is never taken for them.
fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

fn metadata_update_to_json(update: &MetadataUpdate) -> Value {
    Value::Object(
        update
            .iter()
            .map(|(key, value)| {
                let value = value
                    .as_ref()
                    .map_or(Value::Null, crate::metadata::MetadataValue::to_json);
                (key.clone(), value)
            })
            .collect(),
    )
}

/// Returns an embedding as base64 of packed little-endian float32 values.
pub fn encode_base64(embedding: &[f32]) -> String {
    let bytes: Vec<u8> = embedding
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
