//! Response bodies. Serialized with serde so that f32 values print in their shortest
//! f32 form (0.2 as `0.2`, not as the f64 widening `0.20000000298023224`).

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::metadata::{Metadata, MetadataValue};
use crate::requests::Include;

impl Serialize for MetadataValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MetadataValue::Bool(b) => serializer.serialize_bool(*b),
            MetadataValue::Int(i) => serializer.serialize_i64(*i),
            MetadataValue::Float(f) => serializer.serialize_f64(*f),
            MetadataValue::Str(s) => serializer.serialize_str(s),
            MetadataValue::BoolArray(items) => items.serialize(serializer),
            MetadataValue::IntArray(items) => items.serialize(serializer),
            MetadataValue::FloatArray(items) => items.serialize(serializer),
            MetadataValue::StrArray(items) => items.serialize(serializer),
            MetadataValue::SparseVector(sparse) => {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("#type", "sparse_vector")?;
                map.serialize_entry("indices", &sparse.indices)?;
                map.serialize_entry("values", &sparse.values)?;
                if let Some(tokens) = &sparse.tokens {
                    map.serialize_entry("tokens", tokens)?;
                }
                map.end()
            }
        }
    }
}

/// One record's fields as a get or query returns them.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub id: String,
    pub embedding: Option<Vec<f32>>,
    pub document: Option<String>,
    pub metadata: Option<Metadata>,
    pub uri: Option<String>,
}

/// The body of a get: flat columns. Columns outside `include` are `null`.
#[derive(Debug, Serialize)]
pub struct GetResponse {
    pub ids: Vec<String>,
    pub embeddings: Option<Vec<Vec<f32>>>,
    pub documents: Option<Vec<Option<String>>>,
    pub uris: Option<Vec<Option<String>>>,
    pub metadatas: Option<Vec<Option<Metadata>>>,
    #[serde(serialize_with = "serialize_include")]
    pub include: Include,
}

impl GetResponse {
    /// Builds the columns listed in `include` from records in result order.
    pub fn new(records: Vec<RecordView>, include: Include) -> GetResponse {
        let columns = Columns::from_records(records, &include);
        GetResponse {
            ids: columns.ids,
            embeddings: columns.embeddings,
            documents: columns.documents,
            uris: columns.uris,
            metadatas: columns.metadatas,
            include,
        }
    }
}

/// The body of a query: one inner list per query embedding.
#[derive(Debug, Serialize)]
pub struct QueryResponse {
    pub ids: Vec<Vec<String>>,
    pub embeddings: Option<Vec<Vec<Vec<f32>>>>,
    pub documents: Option<Vec<Vec<Option<String>>>>,
    pub uris: Option<Vec<Vec<Option<String>>>>,
    pub metadatas: Option<Vec<Vec<Option<Metadata>>>>,
    pub distances: Option<Vec<Vec<f32>>>,
    #[serde(serialize_with = "serialize_include")]
    pub include: Include,
}

impl QueryResponse {
    /// Builds the body from each query's records and distances, nearest first.
    pub fn new(results: Vec<Vec<(RecordView, f32)>>, include: Include) -> QueryResponse {
        use crate::requests::IncludeField;

        let mut response = QueryResponse {
            ids: Vec::with_capacity(results.len()),
            embeddings: include.contains(IncludeField::Embeddings).then(Vec::new),
            documents: include.contains(IncludeField::Documents).then(Vec::new),
            uris: include.contains(IncludeField::Uris).then(Vec::new),
            metadatas: include.contains(IncludeField::Metadatas).then(Vec::new),
            distances: include.contains(IncludeField::Distances).then(Vec::new),
            include: Include(Vec::new()),
        };
        for result in results {
            let (records, distances): (Vec<RecordView>, Vec<f32>) = result.into_iter().unzip();
            let columns = Columns::from_records(records, &include);
            response.ids.push(columns.ids);
            push_column(&mut response.embeddings, columns.embeddings);
            push_column(&mut response.documents, columns.documents);
            push_column(&mut response.uris, columns.uris);
            push_column(&mut response.metadatas, columns.metadatas);
            if let Some(all) = &mut response.distances {
                all.push(distances);
            }
        }
        response.include = include;
        response
    }
}

fn push_column<T>(target: &mut Option<Vec<T>>, column: Option<T>) {
    if let (Some(target), Some(column)) = (target, column) {
        target.push(column);
    }
}

struct Columns {
    ids: Vec<String>,
    embeddings: Option<Vec<Vec<f32>>>,
    documents: Option<Vec<Option<String>>>,
    uris: Option<Vec<Option<String>>>,
    metadatas: Option<Vec<Option<Metadata>>>,
}

impl Columns {
    fn from_records(records: Vec<RecordView>, include: &Include) -> Columns {
        use crate::requests::IncludeField;

        let mut columns = Columns {
            ids: Vec::with_capacity(records.len()),
            embeddings: include.contains(IncludeField::Embeddings).then(Vec::new),
            documents: include.contains(IncludeField::Documents).then(Vec::new),
            uris: include.contains(IncludeField::Uris).then(Vec::new),
            metadatas: include.contains(IncludeField::Metadatas).then(Vec::new),
        };
        for record in records {
            columns.ids.push(record.id);
            if let Some(embeddings) = &mut columns.embeddings {
                embeddings.push(record.embedding.unwrap_or_default());
            }
            if let Some(documents) = &mut columns.documents {
                documents.push(record.document);
            }
            if let Some(uris) = &mut columns.uris {
                uris.push(record.uri);
            }
            if let Some(metadatas) = &mut columns.metadatas {
                metadatas.push(record.metadata);
            }
        }
        columns
    }
}

fn serialize_include<S: Serializer>(include: &Include, serializer: S) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(include.0.len()))?;
    for field in &include.0 {
        seq.serialize_element(field.name())?;
    }
    seq.end()
}

/// A collection as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionResponse {
    pub id: String,
    pub name: String,
    pub configuration_json: Value,
    pub schema: Option<Value>,
    pub metadata: Option<Metadata>,
    pub dimension: Option<u64>,
    pub tenant: String,
    pub database: String,
    pub log_position: i64,
    pub version: i64,
}

/// A tenant as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResponse {
    pub name: String,
    pub resource_name: Option<String>,
}

/// A database as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseResponse {
    pub id: String,
    pub name: String,
    pub tenant: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::IncludeField;

    fn record(id: &str) -> RecordView {
        RecordView {
            id: id.into(),
            embedding: Some(vec![0.2, 1.0]),
            document: None,
            metadata: Some(Metadata::from([(
                "n".to_string(),
                MetadataValue::Float(2.0),
            )])),
            uri: None,
        }
    }

    #[test]
    fn get_response_nulls_excluded_columns() {
        let response = GetResponse::new(vec![record("a")], Include(vec![IncludeField::Metadatas]));
        let json: Value = serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
        assert_eq!(json["ids"], serde_json::json!(["a"]));
        assert_eq!(json["embeddings"], Value::Null);
        assert_eq!(json["documents"], Value::Null);
        assert_eq!(json["include"], serde_json::json!(["metadatas"]));
    }

    #[test]
    fn floats_keep_their_form() {
        let response = GetResponse::new(
            vec![record("a")],
            Include(vec![IncludeField::Embeddings, IncludeField::Metadatas]),
        );
        let text = serde_json::to_string(&response).unwrap();
        assert!(text.contains("[0.2,1.0]"), "{text}");
        assert!(text.contains(r#"{"n":2.0}"#), "{text}");
    }

    #[test]
    fn query_response_nests_per_query() {
        let include = Include(vec![IncludeField::Distances, IncludeField::Documents]);
        let response = QueryResponse::new(vec![vec![(record("a"), 0.5)], vec![]], include);
        let json: Value = serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
        assert_eq!(json["ids"], serde_json::json!([["a"], []]));
        assert_eq!(json["distances"], serde_json::json!([[0.5], []]));
        assert_eq!(json["documents"], serde_json::json!([[null], []]));
        assert_eq!(json["metadatas"], Value::Null);
    }
}
