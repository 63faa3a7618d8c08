//! Evaluation of parsed clauses against one record.
//!
//! Recursion follows the clause tree, whose depth the parser bounds by
//! [`FilterLimits::max_depth`](super::FilterLimits::max_depth).

use std::cmp::Ordering;

use crate::metadata::{Metadata, MetadataValue};

use super::{
    DocumentCondition, MetadataCondition, Number, Scalar, ScalarSet, Where, WhereDocument,
};

impl Where {
    /// Tests one record's metadata and document against this clause.
    pub fn matches(&self, metadata: &Metadata, document: Option<&str>) -> bool {
        match self {
            Where::And(children) => children
                .iter()
                .all(|child| child.matches(metadata, document)),
            Where::Or(children) => children
                .iter()
                .any(|child| child.matches(metadata, document)),
            Where::Metadata { key, condition } => condition.matches(metadata.get(key)),
            Where::Document(condition) => condition.matches(document),
        }
    }
}

impl WhereDocument {
    /// Tests one record's document, `None` when the record has none.
    pub fn matches(&self, document: Option<&str>) -> bool {
        match self {
            WhereDocument::And(children) => children.iter().all(|child| child.matches(document)),
            WhereDocument::Or(children) => children.iter().any(|child| child.matches(document)),
            WhereDocument::Condition(condition) => condition.matches(document),
        }
    }
}

impl DocumentCondition {
    /// Tests one record's document, `None` when the record has none.
    pub fn matches(&self, document: Option<&str>) -> bool {
        match self {
            DocumentCondition::Contains(text) => document_contains(document, text),
            DocumentCondition::NotContains(text) => !document_contains(document, text),
            DocumentCondition::Regex(regex) => document.is_some_and(|doc| regex.is_match(doc)),
            DocumentCondition::NotRegex(regex) => !document.is_some_and(|doc| regex.is_match(doc)),
        }
    }
}

/// Returns true when the record has a document with `text` as a substring. Every
/// document contains the empty text, as in Chroma 1.5.9's local server.
fn document_contains(document: Option<&str>, text: &str) -> bool {
    document.is_some_and(|doc| doc.contains(text))
}

impl MetadataCondition {
    /// Tests the value stored under the clause's key, `None` when the key is missing.
    pub fn matches(&self, value: Option<&MetadataValue>) -> bool {
        match self {
            MetadataCondition::Eq(operand) => value.is_some_and(|value| equals(value, operand)),
            MetadataCondition::Ne(operand) => !value.is_some_and(|value| equals(value, operand)),
            MetadataCondition::Gt(bound) => orders_as(value, *bound, Ordering::is_gt),
            MetadataCondition::Gte(bound) => orders_as(value, *bound, Ordering::is_ge),
            MetadataCondition::Lt(bound) => orders_as(value, *bound, Ordering::is_lt),
            MetadataCondition::Lte(bound) => orders_as(value, *bound, Ordering::is_le),
            MetadataCondition::In(set) => value.is_some_and(|value| set_contains(set, value)),
            MetadataCondition::NotIn(set) => !value.is_some_and(|value| set_contains(set, value)),
            MetadataCondition::Contains(operand) => {
                value.is_some_and(|value| array_contains(value, operand))
            }
            MetadataCondition::NotContains(operand) => {
                !value.is_some_and(|value| array_contains(value, operand))
            }
        }
    }
}

/// Returns the value as a number when it is an int or a float. A bool is not a number.
fn as_number(value: &MetadataValue) -> Option<Number> {
    match value {
        MetadataValue::Int(int) => Some(Number::Int(*int)),
        MetadataValue::Float(float) => Some(Number::Float(*float)),
        _ => None,
    }
}

/// Returns true when a scalar value equals the operand. Values of another type, arrays
/// and sparse vectors equal nothing.
fn equals(value: &MetadataValue, operand: &Scalar) -> bool {
    match (value, operand) {
        (MetadataValue::Bool(value), Scalar::Bool(operand)) => value == operand,
        (MetadataValue::Str(value), Scalar::Str(operand)) => value == operand,
        (_, Scalar::Number(operand)) => {
            as_number(value).is_some_and(|value| value.numeric_eq(*operand))
        }
        _ => false,
    }
}

/// Returns true when the value is a number and its order to `bound` passes `accept`.
fn orders_as(
    value: Option<&MetadataValue>,
    bound: Number,
    accept: impl Fn(Ordering) -> bool,
) -> bool {
    value
        .and_then(as_number)
        .and_then(|value| value.numeric_cmp(bound))
        .is_some_and(accept)
}

fn set_contains(set: &ScalarSet, value: &MetadataValue) -> bool {
    match (set, value) {
        (ScalarSet::Bool(members), MetadataValue::Bool(value)) => members.contains(value),
        (ScalarSet::Str(members), MetadataValue::Str(value)) => members.contains(value),
        (ScalarSet::Number(members), value) => {
            as_number(value).is_some_and(|value| members.contains(value))
        }
        _ => false,
    }
}

/// Returns true when the value is an array with an element equal to the operand. Int and
/// float elements compare by value, as `$eq` does.
fn array_contains(value: &MetadataValue, operand: &Scalar) -> bool {
    match (value, operand) {
        (MetadataValue::BoolArray(items), Scalar::Bool(operand)) => items.contains(operand),
        (MetadataValue::StrArray(items), Scalar::Str(operand)) => items.contains(operand),
        (MetadataValue::IntArray(items), Scalar::Number(operand)) => items
            .iter()
            .any(|item| Number::Int(*item).numeric_eq(*operand)),
        (MetadataValue::FloatArray(items), Scalar::Number(operand)) => items
            .iter()
            .any(|item| Number::Float(*item).numeric_eq(*operand)),
        _ => false,
    }
}
