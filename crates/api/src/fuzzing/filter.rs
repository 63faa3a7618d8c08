//! The `filter_parse` harness: `where` and `where_document` parsing and evaluation.
//!
//! A parsed filter is evaluated against fixed sample records and against records built
//! from its own operands, so that both outcomes of most clauses occur. Three oracles
//! check each evaluation:
//!
//! - Negation: swapping every operator for its negated form (`$eq` and `$ne`, `$in` and
//!   `$nin`, `$contains` and `$not_contains`, `$regex` and `$not_regex`) and `$and` for
//!   `$or` must flip the result, as the filter grammar documents.
//! - Leaf identities: `$gt` is the complement of `$lte` on numbers, `$eq` matches what
//!   a one-value `$in` matches, and `$contains` matches an array when `$eq` matches one
//!   of its elements.
//! - Document text: `$contains` agrees with `str::contains`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::assert_client_error;
use crate::filter::{
    DocumentCondition, Filter, FilterLimits, MetadataCondition, Number, NumberSet, Scalar,
    ScalarSet, Where, WhereDocument,
};
use crate::metadata::{Metadata, MetadataValue, SparseVector};
use crate::requests::parse_json;

/// Maximum number of sample documents taken from a filter's `$contains` and
/// `$not_contains` texts, which bounds the work per input.
const MAX_DERIVED_DOCUMENTS: usize = 4;

/// Parses `input` as JSON holding a filter, then parses and evaluates the filter with
/// [`FilterLimits::default`].
///
/// An object with a `where` or `where_document` key supplies those two values. Any
/// other JSON value is tried as a `where` clause, then as a `where_document` clause.
///
/// # Panics
///
/// When parsing or evaluation panics, when a parse error is not a 400 with Chroma's
/// message prefix, or when an evaluation oracle disagrees.
pub fn check_filter_parse(input: &[u8]) {
    let Ok(value) = parse_json(input) else {
        return;
    };
    let limits = FilterLimits::default();

    let fields = value
        .as_object()
        .filter(|object| object.contains_key("where") || object.contains_key("where_document"));
    match fields {
        Some(object) => check_parse(object.get("where"), object.get("where_document"), &limits),
        None => {
            check_parse(Some(&value), None, &limits);
            check_parse(None, Some(&value), &limits);
        }
    }
}

fn check_parse(
    where_clause: Option<&Value>,
    where_document: Option<&Value>,
    limits: &FilterLimits,
) {
    match Filter::parse(where_clause, where_document, limits) {
        Ok(filter) => check_filter(&filter, limits),
        Err(error) => {
            assert_client_error(&error);
            assert_eq!(
                error.status(),
                400,
                "a filter error is not 400: {}",
                error.message
            );
            assert!(
                error.message.starts_with("Invalid where clause")
                    || error.message.starts_with("Invalid where document clause"),
                "a filter error lacks Chroma's prefix: {}",
                error.message
            );
        }
    }
}

/// Checks a parsed filter against its limits and evaluates it against sample records.
/// The request harness calls this for the filters of get, query and delete.
pub(super) fn check_filter(filter: &Filter, limits: &FilterLimits) {
    let mut clauses = 0;
    if let Some(clause) = &filter.where_clause {
        check_where_limits(clause, 1, &mut clauses, limits);
    }
    if let Some(clause) = &filter.where_document {
        check_document_limits(clause, 1, &mut clauses, limits);
    }
    assert!(
        clauses <= limits.max_clauses,
        "a parsed filter has {clauses} clauses"
    );

    let records = sample_metadata(filter);
    let documents = sample_documents(filter);
    let negated_where = filter.where_clause.as_ref().and_then(negate_where);
    let negated_document = filter.where_document.as_ref().map(negate_document);

    for metadata in &records {
        for document in documents.iter().map(Option::as_deref) {
            let where_matches = filter
                .where_clause
                .as_ref()
                .map(|clause| clause.matches(metadata, document));
            let document_matches = filter
                .where_document
                .as_ref()
                .map(|clause| clause.matches(document));
            assert_eq!(
                filter.matches(Some(metadata), document),
                where_matches.unwrap_or(true) && document_matches.unwrap_or(true),
                "Filter::matches is not the conjunction of its parts"
            );

            if let (Some(matched), Some(negated)) = (where_matches, &negated_where) {
                assert_ne!(
                    matched,
                    negated.matches(metadata, document),
                    "where {negated:?} is not the complement of {:?} on {metadata:?}, document {document:?}",
                    filter.where_clause
                );
            }
            if let (Some(matched), Some(negated)) = (document_matches, &negated_document) {
                assert_ne!(
                    matched,
                    negated.matches(document),
                    "where_document {negated:?} is not the complement on document {document:?}"
                );
            }
            if let Some(clause) = &filter.where_clause {
                check_leaves(clause, metadata, document);
            }
        }
    }

    for document in documents.iter().map(Option::as_deref) {
        assert_eq!(
            filter.matches(None, document),
            filter.matches(Some(&Metadata::new()), document),
            "missing metadata does not behave as an empty map"
        );
    }
}

fn check_where_limits(clause: &Where, depth: usize, clauses: &mut usize, limits: &FilterLimits) {
    assert!(
        depth <= limits.max_depth,
        "a parsed filter has depth {depth}"
    );
    *clauses += 1;
    match clause {
        Where::And(children) | Where::Or(children) => {
            assert!(!children.is_empty(), "a parsed $and or $or is empty");
            for child in children {
                check_where_limits(child, depth + 1, clauses, limits);
            }
        }
        Where::Metadata { condition, .. } => match condition {
            MetadataCondition::In(set) | MetadataCondition::NotIn(set) => {
                let len = match set {
                    ScalarSet::Bool(members) => members.len(),
                    ScalarSet::Number(members) => members.len(),
                    ScalarSet::Str(members) => members.len(),
                };
                assert!(
                    (1..=limits.max_in_values).contains(&len),
                    "a parsed $in list has {len} values"
                );
            }
            _ => {}
        },
        Where::Document(condition) => check_document_condition_limits(condition, limits),
    }
}

fn check_document_limits(
    clause: &WhereDocument,
    depth: usize,
    clauses: &mut usize,
    limits: &FilterLimits,
) {
    assert!(
        depth <= limits.max_depth,
        "a parsed filter has depth {depth}"
    );
    *clauses += 1;
    match clause {
        WhereDocument::And(children) | WhereDocument::Or(children) => {
            assert!(!children.is_empty(), "a parsed $and or $or is empty");
            for child in children {
                check_document_limits(child, depth + 1, clauses, limits);
            }
        }
        WhereDocument::Condition(condition) => check_document_condition_limits(condition, limits),
    }
}

fn check_document_condition_limits(condition: &DocumentCondition, limits: &FilterLimits) {
    if let DocumentCondition::Regex(regex) | DocumentCondition::NotRegex(regex) = condition {
        assert!(
            regex.as_str().len() <= limits.max_regex_bytes,
            "a parsed regex has {} bytes",
            regex.as_str().len()
        );
    }
}

/// Returns the clause with every operator negated and `$and` and `$or` swapped, or
/// `None` when it has an order comparison, whose complement (a smaller or equal number,
/// a missing key or another type) no single operator expresses.
fn negate_where(clause: &Where) -> Option<Where> {
    let negated = match clause {
        Where::And(children) => {
            Where::Or(children.iter().map(negate_where).collect::<Option<_>>()?)
        }
        Where::Or(children) => {
            Where::And(children.iter().map(negate_where).collect::<Option<_>>()?)
        }
        Where::Metadata { key, condition } => Where::Metadata {
            key: key.clone(),
            condition: negate_metadata_condition(condition)?,
        },
        Where::Document(condition) => Where::Document(negate_document_condition(condition)),
    };
    Some(negated)
}

fn negate_metadata_condition(condition: &MetadataCondition) -> Option<MetadataCondition> {
    let negated = match condition {
        MetadataCondition::Eq(operand) => MetadataCondition::Ne(operand.clone()),
        MetadataCondition::Ne(operand) => MetadataCondition::Eq(operand.clone()),
        MetadataCondition::In(set) => MetadataCondition::NotIn(set.clone()),
        MetadataCondition::NotIn(set) => MetadataCondition::In(set.clone()),
        MetadataCondition::Contains(operand) => MetadataCondition::NotContains(operand.clone()),
        MetadataCondition::NotContains(operand) => MetadataCondition::Contains(operand.clone()),
        MetadataCondition::Gt(_)
        | MetadataCondition::Gte(_)
        | MetadataCondition::Lt(_)
        | MetadataCondition::Lte(_) => return None,
    };
    Some(negated)
}

fn negate_document(clause: &WhereDocument) -> WhereDocument {
    match clause {
        WhereDocument::And(children) => {
            WhereDocument::Or(children.iter().map(negate_document).collect())
        }
        WhereDocument::Or(children) => {
            WhereDocument::And(children.iter().map(negate_document).collect())
        }
        WhereDocument::Condition(condition) => {
            WhereDocument::Condition(negate_document_condition(condition))
        }
    }
}

fn negate_document_condition(condition: &DocumentCondition) -> DocumentCondition {
    match condition {
        DocumentCondition::Contains(text) => DocumentCondition::NotContains(text.clone()),
        DocumentCondition::NotContains(text) => DocumentCondition::Contains(text.clone()),
        DocumentCondition::Regex(regex) => DocumentCondition::NotRegex(regex.clone()),
        DocumentCondition::NotRegex(regex) => DocumentCondition::Regex(regex.clone()),
    }
}

/// Checks the leaf identities of every clause in `clause` on one record.
fn check_leaves(clause: &Where, metadata: &Metadata, document: Option<&str>) {
    match clause {
        Where::And(children) | Where::Or(children) => {
            for child in children {
                check_leaves(child, metadata, document);
            }
        }
        Where::Metadata { key, condition } => {
            check_metadata_condition(condition, metadata.get(key));
        }
        Where::Document(condition) => check_document_condition(condition, document),
    }
}

fn check_metadata_condition(condition: &MetadataCondition, value: Option<&MetadataValue>) {
    let matched = condition.matches(value);
    let is_number = matches!(value, Some(MetadataValue::Int(_) | MetadataValue::Float(_)));
    let complement = match condition {
        MetadataCondition::Gt(bound) => Some(MetadataCondition::Lte(*bound)),
        MetadataCondition::Gte(bound) => Some(MetadataCondition::Lt(*bound)),
        MetadataCondition::Lt(bound) => Some(MetadataCondition::Gte(*bound)),
        MetadataCondition::Lte(bound) => Some(MetadataCondition::Gt(*bound)),
        _ => None,
    };
    if let Some(complement) = complement {
        assert_eq!(
            matched,
            is_number && !complement.matches(value),
            "{condition:?} is not the complement of {complement:?} on {value:?}"
        );
    }

    match condition {
        MetadataCondition::Eq(operand) => {
            let single = MetadataCondition::In(single_value_set(operand));
            assert_eq!(
                matched,
                single.matches(value),
                "{condition:?} and {single:?} disagree on {value:?}"
            );
        }
        MetadataCondition::In(ScalarSet::Number(set)) => {
            let expected = value.and_then(as_number).is_some_and(|number| {
                let ints = set.ints().iter().map(|int| Number::Int(*int));
                let floats = set.floats().iter().map(|float| Number::Float(*float));
                ints.chain(floats).any(|member| member.numeric_eq(number))
            });
            assert_eq!(
                matched, expected,
                "{condition:?} disagrees with a linear search on {value:?}"
            );
        }
        MetadataCondition::Contains(operand) => {
            let element_equal = MetadataCondition::Eq(operand.clone());
            let expected = value.map(array_elements).is_some_and(|elements| {
                elements
                    .iter()
                    .any(|element| element_equal.matches(Some(element)))
            });
            assert_eq!(
                matched, expected,
                "{condition:?} disagrees with $eq on the elements of {value:?}"
            );
        }
        _ => {}
    }
}

fn check_document_condition(condition: &DocumentCondition, document: Option<&str>) {
    let matched = condition.matches(document);
    let expected = match condition {
        DocumentCondition::Contains(text) => {
            document.is_some_and(|doc| doc.contains(text.as_str()))
        }
        DocumentCondition::NotContains(text) => {
            !document.is_some_and(|doc| doc.contains(text.as_str()))
        }
        DocumentCondition::Regex(regex) => document.is_some_and(|doc| regex.is_match(doc)),
        DocumentCondition::NotRegex(regex) => !document.is_some_and(|doc| regex.is_match(doc)),
    };
    assert_eq!(
        matched, expected,
        "{condition:?} disagrees with a direct test of {document:?}"
    );
}

fn single_value_set(operand: &Scalar) -> ScalarSet {
    match operand {
        Scalar::Bool(value) => ScalarSet::Bool(BTreeSet::from([*value])),
        Scalar::Number(number) => ScalarSet::Number(NumberSet::new([*number])),
        Scalar::Str(text) => ScalarSet::Str(BTreeSet::from([text.clone()])),
    }
}

fn as_number(value: &MetadataValue) -> Option<Number> {
    match value {
        MetadataValue::Int(int) => Some(Number::Int(*int)),
        MetadataValue::Float(float) => Some(Number::Float(*float)),
        _ => None,
    }
}

/// Returns the elements of an array value as scalar values, and nothing for a scalar.
fn array_elements(value: &MetadataValue) -> Vec<MetadataValue> {
    match value {
        MetadataValue::BoolArray(items) => items.iter().copied().map(MetadataValue::Bool).collect(),
        MetadataValue::IntArray(items) => items.iter().copied().map(MetadataValue::Int).collect(),
        MetadataValue::FloatArray(items) => {
            items.iter().copied().map(MetadataValue::Float).collect()
        }
        MetadataValue::StrArray(items) => items.iter().cloned().map(MetadataValue::Str).collect(),
        _ => Vec::new(),
    }
}

/// Returns fixed sample records with values at the edges of the comparison rules, and
/// two records built from the filter's operands: one with each operand as a scalar under
/// its key, and one with each operand in a one-element array.
fn sample_metadata(filter: &Filter) -> Vec<Metadata> {
    let mut records = fixed_metadata();
    let mut scalars = Metadata::new();
    let mut arrays = Metadata::new();
    if let Some(clause) = &filter.where_clause {
        collect_operands(clause, &mut scalars, &mut arrays);
    }
    records.push(scalars);
    records.push(arrays);
    records
}

fn fixed_metadata() -> Vec<Metadata> {
    let record = |entries: Vec<(&str, MetadataValue)>| -> Metadata {
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    };
    vec![
        Metadata::new(),
        record(vec![
            ("a", MetadataValue::Int(2)),
            ("b", MetadataValue::Float(2.5)),
            ("c", MetadataValue::Str("x".into())),
            ("d", MetadataValue::Bool(true)),
            ("e", MetadataValue::IntArray(vec![1, 2, i64::MAX])),
            ("f", MetadataValue::FloatArray(vec![-0.0, 2.5])),
            ("g", MetadataValue::StrArray(vec!["x".into(), "y".into()])),
            ("h", MetadataValue::BoolArray(vec![false])),
            (
                "i",
                MetadataValue::SparseVector(SparseVector {
                    indices: vec![1, 5],
                    values: vec![0.5, -1.0],
                    tokens: None,
                }),
            ),
        ]),
        record(vec![
            ("a", MetadataValue::Float(2.0)),
            ("b", MetadataValue::Int(i64::MIN)),
            ("c", MetadataValue::Str(String::new())),
            ("d", MetadataValue::Bool(false)),
            (
                "e",
                MetadataValue::FloatArray(vec![2.0, 9_007_199_254_740_993.0]),
            ),
            ("n", MetadataValue::Int(9_007_199_254_740_993)),
            ("m", MetadataValue::Float(9_223_372_036_854_775_807.0)),
        ]),
        record(vec![
            ("a", MetadataValue::Int(i64::MAX)),
            ("b", MetadataValue::Float(-0.0)),
            ("c", MetadataValue::Int(0)),
            ("x", MetadataValue::Float(f64::MAX)),
            ("y", MetadataValue::Float(f64::MIN_POSITIVE)),
            ("z", MetadataValue::Float(-9_223_372_036_854_775_808.0)),
        ]),
        record(vec![
            ("a", MetadataValue::Str("2".into())),
            ("b", MetadataValue::Bool(true)),
            ("c", MetadataValue::Int(1)),
            ("d", MetadataValue::IntArray(vec![1])),
            ("é", MetadataValue::Str("\u{0}\u{10FFFF}".into())),
        ]),
    ]
}

/// Adds each operand under its key, the first operand per key winning, as a scalar to
/// `scalars` and in a one-element array to `arrays`.
fn collect_operands(clause: &Where, scalars: &mut Metadata, arrays: &mut Metadata) {
    match clause {
        Where::And(children) | Where::Or(children) => {
            for child in children {
                collect_operands(child, scalars, arrays);
            }
        }
        Where::Document(_) => {}
        Where::Metadata { key, condition } => {
            let operand = match condition {
                MetadataCondition::Eq(operand)
                | MetadataCondition::Ne(operand)
                | MetadataCondition::Contains(operand)
                | MetadataCondition::NotContains(operand) => Some(operand.clone()),
                MetadataCondition::Gt(number)
                | MetadataCondition::Gte(number)
                | MetadataCondition::Lt(number)
                | MetadataCondition::Lte(number) => Some(Scalar::Number(*number)),
                MetadataCondition::In(set) | MetadataCondition::NotIn(set) => first_member(set),
            };
            let Some(operand) = operand else {
                return;
            };
            let (scalar, array) = match operand {
                Scalar::Bool(value) => (
                    MetadataValue::Bool(value),
                    MetadataValue::BoolArray(vec![value]),
                ),
                Scalar::Str(text) => (
                    MetadataValue::Str(text.clone()),
                    MetadataValue::StrArray(vec![text]),
                ),
                Scalar::Number(Number::Int(int)) => {
                    (MetadataValue::Int(int), MetadataValue::IntArray(vec![int]))
                }
                Scalar::Number(Number::Float(float)) => (
                    MetadataValue::Float(float),
                    MetadataValue::FloatArray(vec![float]),
                ),
            };
            scalars.entry(key.clone()).or_insert(scalar);
            arrays.entry(key.clone()).or_insert(array);
        }
    }
}

fn first_member(set: &ScalarSet) -> Option<Scalar> {
    match set {
        ScalarSet::Bool(members) => members.first().copied().map(Scalar::Bool),
        ScalarSet::Str(members) => members.first().cloned().map(Scalar::Str),
        ScalarSet::Number(members) => members
            .ints()
            .first()
            .map(|int| Number::Int(*int))
            .or_else(|| members.floats().first().map(|float| Number::Float(*float)))
            .map(Scalar::Number),
    }
}

/// Returns fixed sample documents, no document, and up to [`MAX_DERIVED_DOCUMENTS`]
/// documents equal to the texts of the filter's `$contains` and `$not_contains`.
fn sample_documents(filter: &Filter) -> Vec<Option<String>> {
    let mut documents = vec![
        None,
        Some(String::new()),
        Some("hello world".to_string()),
        Some("Ünïcödé ✓\n\t\u{0} 2".to_string()),
    ];
    let mut texts = Vec::new();
    if let Some(clause) = &filter.where_clause {
        collect_where_texts(clause, &mut texts);
    }
    if let Some(clause) = &filter.where_document {
        collect_document_texts(clause, &mut texts);
    }
    documents.extend(texts.into_iter().take(MAX_DERIVED_DOCUMENTS).map(Some));
    documents
}

fn collect_where_texts(clause: &Where, texts: &mut Vec<String>) {
    match clause {
        Where::And(children) | Where::Or(children) => {
            for child in children {
                collect_where_texts(child, texts);
            }
        }
        Where::Document(condition) => collect_condition_text(condition, texts),
        Where::Metadata { .. } => {}
    }
}

fn collect_document_texts(clause: &WhereDocument, texts: &mut Vec<String>) {
    match clause {
        WhereDocument::And(children) | WhereDocument::Or(children) => {
            for child in children {
                collect_document_texts(child, texts);
            }
        }
        WhereDocument::Condition(condition) => collect_condition_text(condition, texts),
    }
}

fn collect_condition_text(condition: &DocumentCondition, texts: &mut Vec<String>) {
    if texts.len() >= MAX_DERIVED_DOCUMENTS {
        return;
    }
    if let DocumentCondition::Contains(text) | DocumentCondition::NotContains(text) = condition {
        texts.push(text.clone());
    }
}
