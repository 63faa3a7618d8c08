use serde_json::{json, Map, Value};

use super::*;
use crate::error::ErrorKind;
use crate::metadata::{decode_metadata_strict, MetadataLimits, MetadataValue};

// ---- helpers ----

fn parse(where_clause: Option<&Value>, where_document: Option<&Value>) -> Result<Filter, ApiError> {
    Filter::parse(where_clause, where_document, &FilterLimits::default())
}

fn where_filter(clause: Value) -> Filter {
    parse(Some(&clause), None)
        .unwrap_or_else(|error| panic!("where clause {clause} failed to parse: {error}"))
}

fn document_filter(clause: Value) -> Filter {
    parse(None, Some(&clause))
        .unwrap_or_else(|error| panic!("where_document clause {clause} failed to parse: {error}"))
}

/// Parses a filter that must be invalid and checks that the error is a 400.
fn expect_invalid(result: Result<Filter, ApiError>, input: &Value) -> ApiError {
    let error = result.expect_err(&format!("{input} parsed but should be invalid"));
    assert_eq!(
        error.kind,
        ErrorKind::InvalidArgument,
        "error kind for {input}"
    );
    assert_eq!(error.status(), 400, "status for {input}");
    error
}

fn where_error(clause: Value) -> ApiError {
    let error = expect_invalid(parse(Some(&clause), None), &clause);
    assert!(
        error.message.starts_with("Invalid where clause: "),
        "message for {clause}: {}",
        error.message
    );
    error
}

fn document_error(clause: Value) -> ApiError {
    let error = expect_invalid(parse(None, Some(&clause)), &clause);
    assert!(
        error.message.starts_with("Invalid where document clause: "),
        "message for {clause}: {}",
        error.message
    );
    error
}

/// Decodes metadata through the same validation that record writes use.
fn metadata(value: Value) -> Metadata {
    decode_metadata_strict(&value, &MetadataLimits::default(), "metadata")
        .unwrap_or_else(|error| panic!("test metadata {value} is invalid: {error}"))
}

/// Returns whether a record with this metadata and no document passes the clause.
fn where_matches(clause: Value, record: Value) -> bool {
    where_filter(clause).matches(Some(&metadata(record)), None)
}

struct Record {
    id: &'static str,
    metadata: Option<Value>,
    document: Option<&'static str>,
}

fn record(id: &'static str, metadata: Value) -> Record {
    Record {
        id,
        metadata: Some(metadata),
        document: None,
    }
}

fn document_record(id: &'static str, document: Option<&'static str>) -> Record {
    Record {
        id,
        metadata: None,
        document,
    }
}

fn matching_ids(filter: &Filter, records: &[Record]) -> Vec<&'static str> {
    records
        .iter()
        .filter(|record| {
            let decoded = record.metadata.clone().map(metadata);
            filter.matches(decoded.as_ref(), record.document)
        })
        .map(|record| record.id)
        .collect()
}

fn where_ids(clause: Value, records: &[Record]) -> Vec<&'static str> {
    matching_ids(&where_filter(clause), records)
}

fn document_ids(clause: Value, records: &[Record]) -> Vec<&'static str> {
    matching_ids(&document_filter(clause), records)
}

/// Wraps `leaf` in `levels` single-item `$and` lists, without recursion.
fn nest_in_and(leaf: Value, levels: usize) -> Value {
    let mut value = leaf;
    for _ in 0..levels {
        let mut object = Map::new();
        object.insert("$and".to_string(), Value::Array(vec![value]));
        value = Value::Object(object);
    }
    value
}

/// Drops a value one level at a time. Dropping a very deep `Value` directly recurses
/// once per level and overflows the test thread's stack.
fn drop_iteratively(value: Value) {
    let mut pending = vec![value];
    while let Some(mut value) = pending.pop() {
        match &mut value {
            Value::Array(items) => pending.append(items),
            Value::Object(object) => {
                pending.extend(std::mem::take(object).into_iter().map(|(_, child)| child))
            }
            _ => {}
        }
    }
}

// ---- structure ----

#[test]
fn default_limits() {
    let limits = FilterLimits::default();
    assert_eq!(limits.max_depth, 32);
    assert_eq!(limits.max_clauses, 1024);
    assert_eq!(limits.max_in_values, 4096);
    assert_eq!(limits.max_regex_bytes, 4096);
    assert_eq!(limits.max_regex_compiled_bytes, 1024 * 1024);
}

#[test]
fn absent_and_null_mean_no_filter() {
    for (where_clause, where_document) in [
        (None, None),
        (Some(Value::Null), None),
        (None, Some(Value::Null)),
        (Some(Value::Null), Some(Value::Null)),
    ] {
        let filter = parse(where_clause.as_ref(), where_document.as_ref())
            .expect("null filters should parse");
        assert!(filter.is_empty(), "{where_clause:?} {where_document:?}");
        assert!(filter.matches(None, None));
        assert!(filter.matches(Some(&metadata(json!({"a": 1}))), Some("text")));
    }
}

#[test]
fn parsed_filter_not_empty() {
    assert!(!where_filter(json!({"a": 1})).is_empty());
    assert!(!document_filter(json!({"$contains": "x"})).is_empty());
}

#[test]
fn shorthand_parses_as_eq() {
    let filter = where_filter(json!({"k": "v"}));
    assert_eq!(
        filter.where_clause,
        Some(Where::Metadata {
            key: "k".to_string(),
            condition: MetadataCondition::Eq(Scalar::Str("v".to_string())),
        })
    );
    assert_eq!(filter, where_filter(json!({"k": {"$eq": "v"}})));
}

#[test]
fn int_and_float_operands_stay_distinct() {
    let int = where_filter(json!({"n": {"$gt": 2}}));
    let float = where_filter(json!({"n": {"$gt": 2.0}}));
    let condition = |filter: Filter| match filter.where_clause {
        Some(Where::Metadata { condition, .. }) => condition,
        other => panic!("expected a metadata clause, found {other:?}"),
    };
    assert_eq!(condition(int), MetadataCondition::Gt(Number::Int(2)));
    assert_eq!(condition(float), MetadataCondition::Gt(Number::Float(2.0)));
}

#[test]
fn document_key_parses_as_document_condition() {
    let filter = where_filter(json!({"#document": {"$contains": "x"}}));
    assert_eq!(
        filter.where_clause,
        Some(Where::Document(DocumentCondition::Contains(
            "x".to_string()
        )))
    );
}

// ---- $eq and $ne ----

#[test]
fn eq_each_type() {
    let cases = [
        (json!("apple"), json!("pear")),
        (json!(true), json!(false)),
        (json!(7), json!(8)),
        (json!(2.5), json!(3.5)),
    ];
    for (value, other) in cases {
        let record = json!({"k": value});
        let other_record = json!({"k": other});
        assert!(
            where_matches(json!({"k": value}), record.clone()),
            "shorthand {value}"
        );
        assert!(
            where_matches(json!({"k": {"$eq": value}}), record.clone()),
            "$eq {value}"
        );
        assert!(
            !where_matches(json!({"k": value}), other_record.clone()),
            "shorthand {value} vs {other}"
        );
        assert!(
            !where_matches(json!({"k": {"$eq": value}}), other_record),
            "$eq {value} vs {other}"
        );
    }
}

#[test]
fn ne_each_type() {
    let cases = [
        (json!("apple"), json!("pear")),
        (json!(true), json!(false)),
        (json!(7), json!(8)),
        (json!(2.5), json!(3.5)),
    ];
    for (value, other) in cases {
        assert!(
            !where_matches(json!({"k": {"$ne": value}}), json!({"k": value})),
            "$ne {value}"
        );
        assert!(
            where_matches(json!({"k": {"$ne": value}}), json!({"k": other})),
            "$ne {value} vs {other}"
        );
    }
}

#[test]
fn string_eq_is_case_sensitive() {
    assert!(!where_matches(json!({"k": "Apple"}), json!({"k": "apple"})));
}

#[test]
fn bool_is_not_a_number() {
    let record = json!({"b": true});
    assert!(!where_matches(json!({"b": 1}), record.clone()));
    assert!(!where_matches(json!({"b": {"$in": [1]}}), record.clone()));
    assert!(!where_matches(json!({"b": {"$gt": 0}}), record.clone()));
    assert!(!where_matches(json!({"b": {"$gte": 1.0}}), record.clone()));
    assert!(where_matches(json!({"b": {"$ne": 1}}), record.clone()));

    let int_record = json!({"n": 1});
    assert!(!where_matches(json!({"n": true}), int_record.clone()));
    assert!(where_matches(json!({"n": {"$ne": true}}), int_record));
}

// ---- ordering ----

fn numbers() -> Vec<Record> {
    vec![
        record("int1", json!({"n": 1})),
        record("float2.5", json!({"n": 2.5})),
        record("int3", json!({"n": 3})),
        record("float-0.5", json!({"n": -0.5})),
    ]
}

#[test]
fn gt_gte_lt_lte_int_bounds() {
    let records = numbers();
    assert_eq!(
        where_ids(json!({"n": {"$gt": 1}}), &records),
        ["float2.5", "int3"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$gte": 1}}), &records),
        ["int1", "float2.5", "int3"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$lt": 3}}), &records),
        ["int1", "float2.5", "float-0.5"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$lte": 0}}), &records),
        ["float-0.5"]
    );
}

#[test]
fn gt_gte_lt_lte_float_bounds() {
    let records = numbers();
    assert_eq!(where_ids(json!({"n": {"$gt": 2.5}}), &records), ["int3"]);
    assert_eq!(
        where_ids(json!({"n": {"$gte": 2.5}}), &records),
        ["float2.5", "int3"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$lt": 1.5}}), &records),
        ["int1", "float-0.5"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$lte": 1.0}}), &records),
        ["int1", "float-0.5"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$gt": -0.6}}), &records),
        ["int1", "float2.5", "int3", "float-0.5"]
    );
}

#[test]
fn ordering_skips_non_numbers() {
    let records = [
        record("string", json!({"n": "5"})),
        record("bool", json!({"n": true})),
        record("array", json!({"n": [5, 6]})),
        record("number", json!({"n": 5})),
    ];
    for operator in ["$gt", "$gte"] {
        assert_eq!(
            where_ids(json!({"n": {operator: 0}}), &records),
            ["number"],
            "{operator}"
        );
    }
    for operator in ["$lt", "$lte"] {
        assert_eq!(
            where_ids(json!({"n": {operator: 100.5}}), &records),
            ["number"],
            "{operator}"
        );
    }
}

// ---- int and float compared exactly ----

/// Returns records with n = 2 (int), 2.5 (float) and 3 (int).
fn int_float_int_records() -> Vec<Record> {
    vec![
        record("2", json!({"n": 2})),
        record("2.5", json!({"n": 2.5})),
        record("3", json!({"n": 3})),
    ]
}

#[test]
fn non_integral_bound_against_ints() {
    let records = int_float_int_records();
    assert_eq!(where_ids(json!({"n": {"$eq": 2.5}}), &records), ["2.5"]);
    assert_eq!(
        where_ids(json!({"n": {"$gte": 2.5}}), &records),
        ["2.5", "3"]
    );
    assert_eq!(where_ids(json!({"n": {"$lt": 2.5}}), &records), ["2"]);
    assert_eq!(where_ids(json!({"n": {"$ne": 2.5}}), &records), ["2", "3"]);
    assert_eq!(where_ids(json!({"n": {"$in": [2.5]}}), &records), ["2.5"]);
    assert_eq!(
        where_ids(json!({"n": {"$nin": [2.5]}}), &records),
        ["2", "3"]
    );
}

#[test]
fn whole_float_equals_int() {
    let records = int_float_int_records();
    assert_eq!(where_ids(json!({"n": 2.0}), &records), ["2"]);
    assert_eq!(where_ids(json!({"n": {"$eq": 2.0}}), &records), ["2"]);
    assert_eq!(
        where_ids(json!({"n": {"$ne": 2.0}}), &records),
        ["2.5", "3"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$in": [2.0, 3.0]}}), &records),
        ["2", "3"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$nin": [2.0]}}), &records),
        ["2.5", "3"]
    );
    assert_eq!(where_ids(json!({"n": {"$lte": 2.0}}), &records), ["2"]);
    assert_eq!(
        where_ids(json!({"n": {"$gt": 2.0}}), &records),
        ["2.5", "3"]
    );

    let float_two = [record("float2", json!({"n": 2.0}))];
    assert_eq!(where_ids(json!({"n": 2}), &float_two), ["float2"]);
    assert_eq!(
        where_ids(json!({"n": {"$in": [2]}}), &float_two),
        ["float2"]
    );
}

#[test]
fn negative_zero_equals_zero() {
    let records = [
        record("int0", json!({"n": 0})),
        record("float0", json!({"n": 0.0})),
    ];
    assert_eq!(where_ids(json!({"n": -0.0}), &records), ["int0", "float0"]);
    assert_eq!(
        where_ids(json!({"n": {"$in": [-0.0]}}), &records),
        ["int0", "float0"]
    );
}

#[test]
fn ints_beyond_two_pow_53_compare_exactly() {
    // 2^53 + 1 is the smallest positive integer that f64 cannot represent, and `as f64`
    // rounds it to 2^53.
    let records = [record("2^53+1", json!({"n": 9_007_199_254_740_993_i64}))];
    let two_pow_53 = 9_007_199_254_740_992.0_f64;
    assert_eq!(
        where_ids(json!({"n": two_pow_53}), &records),
        Vec::<&str>::new()
    );
    assert_eq!(
        where_ids(json!({"n": {"$gt": two_pow_53}}), &records),
        ["2^53+1"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$lte": two_pow_53}}), &records),
        Vec::<&str>::new()
    );
    assert_eq!(
        where_ids(json!({"n": {"$lt": 9_007_199_254_740_994.0_f64}}), &records),
        ["2^53+1"]
    );
    assert_eq!(
        where_ids(json!({"n": {"$in": [two_pow_53]}}), &records),
        Vec::<&str>::new()
    );
    assert_eq!(
        where_ids(json!({"n": {"$ne": two_pow_53}}), &records),
        ["2^53+1"]
    );
    assert_eq!(
        where_ids(json!({"n": 9_007_199_254_740_993_i64}), &records),
        ["2^53+1"]
    );

    // A float value of 2^53 against int operands.
    let float_records = [record("float2^53", json!({"n": two_pow_53}))];
    assert_eq!(
        where_ids(json!({"n": 9_007_199_254_740_993_i64}), &float_records),
        Vec::<&str>::new()
    );
    assert_eq!(
        where_ids(
            json!({"n": {"$lt": 9_007_199_254_740_993_i64}}),
            &float_records
        ),
        ["float2^53"]
    );
    assert_eq!(
        where_ids(json!({"n": 9_007_199_254_740_992_i64}), &float_records),
        ["float2^53"]
    );
}

#[test]
fn i64_extremes_against_floats() {
    // `i64::MAX as f64` rounds up to 2^63, which is above every i64.
    let max = [record("max", json!({"n": i64::MAX}))];
    assert_eq!(
        where_ids(json!({"n": {"$lt": 9_223_372_036_854_775_808.0_f64}}), &max),
        ["max"]
    );
    assert_eq!(
        where_ids(json!({"n": 9_223_372_036_854_775_808.0_f64}), &max),
        Vec::<&str>::new()
    );
    assert_eq!(
        where_ids(
            json!({"n": {"$in": [9_223_372_036_854_775_808.0_f64]}}),
            &max
        ),
        Vec::<&str>::new()
    );

    let min = [record("min", json!({"n": i64::MIN}))];
    assert_eq!(
        where_ids(json!({"n": -9_223_372_036_854_775_808.0_f64}), &min),
        ["min"]
    );
    assert_eq!(
        where_ids(
            json!({"n": {"$in": [-9_223_372_036_854_775_808.0_f64]}}),
            &min
        ),
        ["min"]
    );
    assert_eq!(where_ids(json!({"n": {"$gt": -1e300}}), &min), ["min"]);
    assert_eq!(
        where_ids(json!({"n": {"$lt": -1e300}}), &min),
        Vec::<&str>::new()
    );
}

#[test]
fn numeric_cmp_table() {
    use std::cmp::Ordering::{Equal, Greater, Less};

    let cases = [
        (Number::Int(2), Number::Float(2.0), Some(Equal)),
        (Number::Int(2), Number::Float(2.5), Some(Less)),
        (Number::Int(3), Number::Float(2.5), Some(Greater)),
        (Number::Int(-2), Number::Float(-2.5), Some(Greater)),
        (Number::Int(-3), Number::Float(-2.5), Some(Less)),
        (Number::Int(-2), Number::Float(-1.5), Some(Less)),
        (Number::Int(0), Number::Float(-0.0), Some(Equal)),
        (Number::Int(0), Number::Float(f64::MIN_POSITIVE), Some(Less)),
        (
            Number::Int(i64::MAX),
            Number::Float(9_223_372_036_854_775_808.0),
            Some(Less),
        ),
        (
            Number::Int(i64::MIN),
            Number::Float(-9_223_372_036_854_775_808.0),
            Some(Equal),
        ),
        (
            Number::Int(i64::MIN),
            Number::Float(f64::MIN),
            Some(Greater),
        ),
        (
            Number::Int(i64::MAX),
            Number::Float(f64::INFINITY),
            Some(Less),
        ),
        (
            Number::Int(i64::MIN),
            Number::Float(f64::NEG_INFINITY),
            Some(Greater),
        ),
        (
            Number::Int(9_007_199_254_740_993),
            Number::Float(9_007_199_254_740_992.0),
            Some(Greater),
        ),
        (Number::Int(1), Number::Float(f64::NAN), None),
        (Number::Float(2.5), Number::Int(2), Some(Greater)),
        (Number::Float(1.0), Number::Float(1.5), Some(Less)),
        (Number::Int(4), Number::Int(4), Some(Equal)),
    ];
    for (left, right, expected) in cases {
        assert_eq!(left.numeric_cmp(right), expected, "{left:?} vs {right:?}");
    }
}

#[test]
fn number_set_normalizes_values() {
    let set = NumberSet::new([
        Number::Float(2.0),
        Number::Int(2),
        Number::Float(2.5),
        Number::Float(-0.0),
        Number::Float(f64::NAN),
        Number::Float(9_223_372_036_854_775_808.0),
        Number::Int(-7),
    ]);
    assert_eq!(set.ints(), [-7, 0, 2]);
    assert_eq!(set.floats(), [2.5, 9_223_372_036_854_775_808.0]);
    assert_eq!(set.len(), 5);
    assert!(set.contains(Number::Float(0.0)));
    assert!(set.contains(Number::Int(0)));
    assert!(set.contains(Number::Float(-7.0)));
    assert!(set.contains(Number::Float(2.5)));
    assert!(set.contains(Number::Float(9_223_372_036_854_775_808.0)));
    assert!(!set.contains(Number::Int(i64::MAX)));
    assert!(!set.contains(Number::Float(f64::NAN)));
    assert!(!set.contains(Number::Int(3)));
}

// ---- $in and $nin ----

#[test]
fn in_and_nin_each_type() {
    let cases = [
        (json!({"k": "b"}), json!(["a", "b"]), json!(["c"])),
        (json!({"k": false}), json!([false]), json!([true])),
        (json!({"k": 5}), json!([4, 5, 6]), json!([7, 8])),
        (json!({"k": 0.25}), json!([0.25, 0.5]), json!([0.75])),
        (json!({"k": 5}), json!([4.5, 5]), json!([5.5, 6])),
    ];
    for (value, hit, miss) in cases {
        assert!(
            where_matches(json!({"k": {"$in": hit}}), value.clone()),
            "{value} $in {hit}"
        );
        assert!(
            !where_matches(json!({"k": {"$in": miss}}), value.clone()),
            "{value} $in {miss}"
        );
        assert!(
            !where_matches(json!({"k": {"$nin": hit}}), value.clone()),
            "{value} $nin {hit}"
        );
        assert!(
            where_matches(json!({"k": {"$nin": miss}}), value.clone()),
            "{value} $nin {miss}"
        );
    }
}

#[test]
fn in_mixed_numbers_either_order() {
    assert!(where_matches(
        json!({"k": {"$in": [1, 2.5]}}),
        json!({"k": 2.5})
    ));
    assert!(where_matches(
        json!({"k": {"$in": [2.5, 1]}}),
        json!({"k": 1})
    ));
}

// ---- missing keys and other types ----

#[test]
fn missing_key_rules() {
    let clauses_that_match = [
        json!({"k": {"$ne": 1}}),
        json!({"k": {"$ne": "x"}}),
        json!({"k": {"$nin": [1, 2]}}),
        json!({"k": {"$not_contains": "x"}}),
    ];
    let clauses_that_fail = [
        json!({"k": 1}),
        json!({"k": {"$eq": "x"}}),
        json!({"k": {"$gt": 0}}),
        json!({"k": {"$gte": 0}}),
        json!({"k": {"$lt": 0}}),
        json!({"k": {"$lte": 0}}),
        json!({"k": {"$in": [1]}}),
        json!({"k": {"$contains": "x"}}),
    ];
    let other_key = metadata(json!({"other": 1}));
    for clause in clauses_that_match {
        let filter = where_filter(clause.clone());
        assert!(
            filter.matches(Some(&other_key), None),
            "{clause} with another key"
        );
        assert!(filter.matches(None, None), "{clause} without metadata");
    }
    for clause in clauses_that_fail {
        let filter = where_filter(clause.clone());
        assert!(
            !filter.matches(Some(&other_key), None),
            "{clause} with another key"
        );
        assert!(!filter.matches(None, None), "{clause} without metadata");
    }
}

#[test]
fn other_type_matches_only_negations() {
    let int_record = json!({"k": 5});
    assert!(!where_matches(json!({"k": "5"}), int_record.clone()));
    assert!(where_matches(
        json!({"k": {"$ne": "x"}}),
        int_record.clone()
    ));
    assert!(!where_matches(
        json!({"k": {"$in": ["5"]}}),
        int_record.clone()
    ));
    assert!(where_matches(
        json!({"k": {"$nin": ["5"]}}),
        int_record.clone()
    ));

    let string_record = json!({"k": "5"});
    assert!(!where_matches(json!({"k": 5}), string_record.clone()));
    assert!(where_matches(json!({"k": {"$ne": 5}}), string_record));

    let array_record = json!({"k": ["a", "b"]});
    assert!(!where_matches(json!({"k": "a"}), array_record.clone()));
    assert!(where_matches(
        json!({"k": {"$ne": "a"}}),
        array_record.clone()
    ));
    assert!(!where_matches(
        json!({"k": {"$in": ["a"]}}),
        array_record.clone()
    ));
    assert!(where_matches(json!({"k": {"$nin": ["a"]}}), array_record));

    let sparse_record = json!({"k": {"#type": "sparse_vector", "indices": [1], "values": [0.5]}});
    assert!(!where_matches(json!({"k": 1}), sparse_record.clone()));
    assert!(!where_matches(
        json!({"k": {"$contains": 1}}),
        sparse_record.clone()
    ));
    assert!(where_matches(json!({"k": {"$ne": 1}}), sparse_record));
}

// ---- $contains on arrays ----

#[test]
fn array_contains_each_type() {
    let cases = [
        (json!(["action", "comedy"]), json!("comedy"), json!("drama")),
        (json!([true, true]), json!(true), json!(false)),
        (json!([10, 20, 30]), json!(20), json!(25)),
        (json!([4.5, 3.2]), json!(3.2), json!(4.0)),
    ];
    for (array, member, stranger) in cases {
        let record = json!({"tags": array});
        assert!(
            where_matches(json!({"tags": {"$contains": member}}), record.clone()),
            "{array} $contains {member}"
        );
        assert!(
            !where_matches(json!({"tags": {"$contains": stranger}}), record.clone()),
            "{array} $contains {stranger}"
        );
        assert!(
            !where_matches(json!({"tags": {"$not_contains": member}}), record.clone()),
            "{array} $not_contains {member}"
        );
        assert!(
            where_matches(json!({"tags": {"$not_contains": stranger}}), record.clone()),
            "{array} $not_contains {stranger}"
        );
    }
}

#[test]
fn array_contains_compares_numbers_by_value() {
    assert!(where_matches(
        json!({"a": {"$contains": 2.0}}),
        json!({"a": [1, 2]})
    ));
    assert!(where_matches(
        json!({"a": {"$contains": 2}}),
        json!({"a": [2.0, 3.5]})
    ));
    assert!(!where_matches(
        json!({"a": {"$contains": 2.5}}),
        json!({"a": [2, 3]})
    ));
    assert!(!where_matches(
        json!({"a": {"$contains": 1}}),
        json!({"a": [true]})
    ));
    assert!(!where_matches(
        json!({"a": {"$contains": "1"}}),
        json!({"a": [1]})
    ));
}

#[test]
fn contains_ignores_scalar_values() {
    let record = json!({"tags": "action"});
    assert!(!where_matches(
        json!({"tags": {"$contains": "action"}}),
        record.clone()
    ));
    assert!(where_matches(
        json!({"tags": {"$not_contains": "action"}}),
        record
    ));
}

// ---- $and and $or ----

#[test]
fn and_or_combine_children() {
    let records = [
        record("a", json!({"x": 1, "y": "p"})),
        record("b", json!({"x": 2, "y": "p"})),
        record("c", json!({"x": 3, "y": "q"})),
    ];
    assert_eq!(
        where_ids(json!({"$and": [{"x": {"$gte": 2}}, {"y": "p"}]}), &records),
        ["b"]
    );
    assert_eq!(
        where_ids(json!({"$or": [{"x": 1}, {"y": "q"}]}), &records),
        ["a", "c"]
    );
    assert_eq!(
        where_ids(
            json!({"$or": [{"$and": [{"x": 1}, {"y": "p"}]}, {"$and": [{"x": 3}, {"y": "p"}]}]}),
            &records
        ),
        ["a"]
    );
    assert_eq!(where_ids(json!({"$and": [{"x": 2}]}), &records), ["b"]);
    assert_eq!(where_ids(json!({"$or": [{"x": 3}]}), &records), ["c"]);
}

// ---- documents ----

fn documents() -> Vec<Record> {
    vec![
        document_record("apple", Some("Apple pie recipe")),
        document_record("cat", Some("the cat sat")),
        document_record("empty", Some("")),
        document_record("none", None),
    ]
}

#[test]
fn document_contains_is_case_sensitive() {
    let records = documents();
    assert_eq!(
        document_ids(json!({"$contains": "Apple"}), &records),
        ["apple"]
    );
    assert_eq!(
        document_ids(json!({"$contains": "apple"}), &records),
        Vec::<&str>::new()
    );
    assert_eq!(
        document_ids(json!({"$not_contains": "cat"}), &records),
        ["apple", "empty", "none"]
    );
}

#[test]
fn empty_contains_matches_every_document() {
    let records = documents();
    assert_eq!(
        document_ids(json!({"$contains": ""}), &records),
        ["apple", "cat", "empty"]
    );
    assert_eq!(
        document_ids(json!({"$not_contains": ""}), &records),
        ["none"]
    );
}

#[test]
fn regex_needs_a_document() {
    let records = documents();
    assert_eq!(document_ids(json!({"$regex": "^$"}), &records), ["empty"]);
    assert_eq!(
        document_ids(json!({"$regex": ""}), &records),
        ["apple", "cat", "empty"]
    );
    assert_eq!(
        document_ids(json!({"$not_regex": "cat"}), &records),
        ["apple", "empty", "none"]
    );
    assert_eq!(document_ids(json!({"$not_regex": ""}), &records), ["none"]);
}

#[test]
fn regex_flags_and_case() {
    let records = [
        document_record("1", Some("cat")),
        document_record("2", Some("Cat")),
        document_record("3", Some("CAT")),
    ];
    assert_eq!(document_ids(json!({"$regex": "cat"}), &records), ["1"]);
    assert_eq!(
        document_ids(json!({"$regex": "(?i)cat"}), &records),
        ["1", "2", "3"]
    );
    assert_eq!(
        document_ids(json!({"$regex": "(?i)c(?-i)at"}), &records),
        ["1", "2"]
    );
}

#[test]
fn document_and_or_nesting() {
    let records = documents();
    assert_eq!(
        document_ids(
            json!({"$and": [{"$contains": "the"}, {"$regex": "s.t"}]}),
            &records
        ),
        ["cat"]
    );
    assert_eq!(
        document_ids(
            json!({"$or": [{"$contains": "pie"}, {"$contains": "sat"}]}),
            &records
        ),
        ["apple", "cat"]
    );
    assert_eq!(
        document_ids(
            json!({"$or": [{"$and": [{"$contains": "pie"}, {"$not_contains": "Apple"}]}, {"$regex": "^the"}]}),
            &records
        ),
        ["cat"]
    );
}

#[test]
fn document_key_in_where() {
    let records = documents();
    assert_eq!(
        where_ids(json!({"#document": {"$contains": "cat"}}), &records),
        ["cat"]
    );
    assert_eq!(
        where_ids(json!({"#document": {"$not_contains": "cat"}}), &records),
        ["apple", "empty", "none"]
    );
    assert_eq!(
        where_ids(json!({"#document": {"$regex": "^A"}}), &records),
        ["apple"]
    );
    assert_eq!(
        where_ids(json!({"#document": {"$not_regex": "^A"}}), &records),
        ["cat", "empty", "none"]
    );
    assert_eq!(
        where_ids(json!({"#document": {"$contains": ""}}), &records),
        ["apple", "cat", "empty"]
    );
}

#[test]
fn where_and_where_document_both_apply() {
    let records = [
        Record {
            id: "a",
            metadata: Some(json!({"n": 10})),
            document: Some("cat"),
        },
        Record {
            id: "b",
            metadata: Some(json!({"n": 20})),
            document: Some("cat"),
        },
        Record {
            id: "c",
            metadata: Some(json!({"n": 20})),
            document: Some("dog"),
        },
    ];
    let where_clause = json!({"n": {"$ne": 10}});
    let where_document = json!({"$contains": "cat"});
    let filter = parse(Some(&where_clause), Some(&where_document)).expect("filter should parse");
    assert_eq!(matching_ids(&filter, &records), ["b"]);

    let combined = json!({"$and": [{"n": 20}, {"#document": {"$regex": "c.t"}}]});
    assert_eq!(where_ids(combined, &records), ["b"]);
}

// ---- invalid where clauses ----

#[test]
fn empty_where_object_invalid() {
    let error = where_error(json!({}));
    assert!(error.message.contains("empty object"), "{}", error.message);
}

#[test]
fn several_top_level_keys_invalid() {
    let error = where_error(json!({"a": 1, "b": 2}));
    assert!(error.message.contains("2 keys"), "{}", error.message);
    assert!(error.message.contains("$and or $or"), "{}", error.message);
    where_error(json!({"int_value": {"$lt": 2}, "$or": [{"int_value": {"$gt": 1}}]}));
}

#[test]
fn non_object_clauses_invalid() {
    for clause in [json!("a"), json!(1), json!(true), json!([{"a": 1}])] {
        let error = where_error(clause.clone());
        assert!(
            error.message.contains("expected a JSON object"),
            "{clause}: {}",
            error.message
        );
    }
    for child in [json!(null), json!("a"), json!(3), json!([])] {
        where_error(json!({"$and": [{"a": 1}, child]}));
    }
}

#[test]
fn logical_operands_invalid() {
    let cases = [
        (json!({"$and": []}), "empty list"),
        (json!({"$or": []}), "empty list"),
        (
            json!({"$and": {"a": 1}}),
            "expects a list of clauses, found an object",
        ),
        (
            json!({"$or": "a"}),
            "expects a list of clauses, found a string",
        ),
        (json!({"$and": null}), "found null"),
    ];
    for (clause, expected) in cases {
        let error = where_error(clause.clone());
        assert!(
            error.message.contains(expected),
            "{clause}: {}",
            error.message
        );
    }
}

#[test]
fn top_level_dollar_keys_invalid() {
    for key in ["$contains", "$not_contains", "$gt", "$in", "$regex", "$foo"] {
        let error = where_error(json!({key: "x"}));
        assert!(
            error.message.contains("at the top level"),
            "{key}: {}",
            error.message
        );
        assert!(
            error.message.contains(&format!("[{key}]")),
            "{key}: {}",
            error.message
        );
    }
}

#[test]
fn unknown_operator_invalid() {
    let error = where_error(json!({"int_value": {"$invalid": 2}}));
    assert!(
        error
            .message
            .contains("unknown operator [$invalid] on key [int_value]"),
        "{}",
        error.message
    );
    assert!(error.message.contains("$eq, $ne, $gt"), "{}", error.message);
}

#[test]
fn operator_count_invalid() {
    let error = where_error(json!({"k": {"$lt": 2, "$gt": 1}}));
    assert!(error.message.contains("2 operators"), "{}", error.message);
    let error = where_error(json!({"k": {}}));
    assert!(error.message.contains("empty object"), "{}", error.message);
}

#[test]
fn wrong_operand_types_invalid() {
    let cases = [
        (
            json!({"k": {"$lt": "2"}}),
            "$lt on key [k] must be an int or float, found a string",
        ),
        (
            json!({"k": {"$gt": true}}),
            "$gt on key [k] must be an int or float, found a bool",
        ),
        (json!({"k": {"$gte": null}}), "found null"),
        (json!({"k": {"$lte": [1]}}), "found a list"),
        (
            json!({"k": {"$eq": null}}),
            "$eq on key [k] must be a string, bool, int or float, found null",
        ),
        (json!({"k": {"$ne": [1]}}), "found a list"),
        (json!({"k": {"$eq": {"nested": "5"}}}), "found an object"),
        (
            json!({"k": {"$contains": [1, 2]}}),
            "$contains on key [k] must be a string, bool, int or float",
        ),
        (
            json!({"k": {"$not_contains": {"nested": true}}}),
            "found an object",
        ),
        (json!({"k": null}), "key [k] has null as its value"),
        (json!({"k": [1, 2]}), "key [k] has a list as its value"),
        (
            json!({"value": {"nested": "5"}}),
            "unknown operator [nested] on key [value]",
        ),
    ];
    for (clause, expected) in cases {
        let error = where_error(clause.clone());
        assert!(
            error.message.contains(expected),
            "{clause}: {}",
            error.message
        );
    }
}

#[test]
fn integer_beyond_i64_invalid() {
    let huge = json!(u64::MAX);
    for clause in [
        json!({"k": huge}),
        json!({"k": {"$gt": huge}}),
        json!({"k": {"$in": [1, huge]}}),
        json!({"k": {"$nin": [huge]}}),
    ] {
        let error = where_error(clause.clone());
        assert!(
            error.message.contains("beyond the signed 64-bit range"),
            "{clause}: {}",
            error.message
        );
    }

    let error = where_error(json!({"k": {"$in": [1, huge]}}));
    assert!(
        error
            .message
            .ends_with("value 1 of $in on key [k] is an integer beyond the signed 64-bit range"),
        "{}",
        error.message
    );
}

#[test]
fn in_operands_invalid() {
    let cases = [
        (
            json!({"k": {"$in": "a"}}),
            "$in on key [k] must be a non-empty list, found a string",
        ),
        (
            json!({"k": {"$nin": 1}}),
            "$nin on key [k] must be a non-empty list, found an int",
        ),
        (json!({"k": {"$in": []}}), "empty list"),
        (
            json!({"k": {"$in": [1, "a"]}}),
            "value 1 of $in on key [k] is a string, but value 0 is an int",
        ),
        (
            json!({"k": {"$nin": ["a", "b", true]}}),
            "value 2 of $nin on key [k] is a bool, but value 0 is a string",
        ),
        (
            json!({"k": {"$in": [true, 1]}}),
            "value 1 of $in on key [k] is an int, but value 0 is a bool",
        ),
        (
            json!({"k": {"$in": [[1]]}}),
            "must be strings, bools, ints or floats, found a list",
        ),
        (json!({"k": {"$in": [null]}}), "found null"),
        (json!({"k": {"$in": [{"a": 1}]}}), "found an object"),
    ];
    for (clause, expected) in cases {
        let error = where_error(clause.clone());
        assert!(
            error.message.contains(expected),
            "{clause}: {}",
            error.message
        );
    }
}

#[test]
fn regex_on_metadata_key_invalid() {
    for operator in ["$regex", "$not_regex"] {
        let error = where_error(json!({"text": {operator: "^a"}}));
        assert!(
            error.message.contains(&format!(
                "operator [{operator}] is supported only on key [#document], not on key [text]"
            )),
            "{}",
            error.message
        );
    }
}

#[test]
fn document_key_misuse_invalid() {
    let cases = [
        (
            json!({"#document": "text"}),
            "key [#document] takes an operator expression",
        ),
        (
            json!({"#document": {"$eq": "text"}}),
            "operator [$eq] is not supported on key [#document]",
        ),
        (
            json!({"#document": {"$in": ["text"]}}),
            "operator [$in] is not supported on key [#document]",
        ),
        (
            json!({"#document": {"$contains": 42}}),
            "the operand of $contains on key [#document] must be a string, found an int",
        ),
        (
            json!({"#document": {"$not_contains": true}}),
            "$not_contains on key [#document] must be a string, found a bool",
        ),
        (
            json!({"#document": {"$regex": 3.5}}),
            "$regex on key [#document] must be a string, found a float",
        ),
        (
            json!({"#document": {"$contains": "a", "$regex": "b"}}),
            "2 operators",
        ),
    ];
    for (clause, expected) in cases {
        let error = where_error(clause.clone());
        assert!(
            error.message.contains(expected),
            "{clause}: {}",
            error.message
        );
    }
}

#[test]
fn invalid_regex_names_problem() {
    let error = document_error(json!({"$regex": "(unclosed"}));
    assert!(
        error.message.contains("invalid regex [(unclosed]"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("unclosed group"),
        "{}",
        error.message
    );

    let error = where_error(json!({"#document": {"$not_regex": "a{2,1}"}}));
    assert!(
        error.message.contains("invalid regex [a{2,1}]"),
        "{}",
        error.message
    );

    // Look-around is outside the regex crate's syntax.
    document_error(json!({"$not_regex": "(?=a)"}));
}

// ---- invalid where_document clauses ----

#[test]
fn where_document_shapes_invalid() {
    let cases = [
        (json!({}), "empty object"),
        (
            json!("text"),
            "expected a JSON object with one key, found a string",
        ),
        (json!({"$contains": "a", "$regex": "b"}), "2 keys"),
        (json!({"$lt": {"$nested": 2}}), "unknown operator [$lt]"),
        (
            json!({"$contains": 2}),
            "the operand of $contains must be a string, found an int",
        ),
        (json!({"$contains": []}), "found a list"),
        (json!({"$contains": {"text": "hello"}}), "found an object"),
        (
            json!({"$not_contains": {"text": "hello"}}),
            "found an object",
        ),
        (json!({"$regex": null}), "found null"),
        (
            json!({"$and": {"$unsupported": "doc"}}),
            "expects a list of clauses, found an object",
        ),
        (json!({"$or": []}), "empty list"),
        (
            json!({"$and": [{"$contains": "a"}, {"$unsupported": "doc"}]}),
            "unknown operator [$unsupported]",
        ),
        (
            json!({"#document": {"$contains": "a"}}),
            "unknown operator [#document]",
        ),
    ];
    for (clause, expected) in cases {
        let error = document_error(clause.clone());
        assert!(
            error.message.contains(expected),
            "{clause}: {}",
            error.message
        );
    }
}

#[test]
fn client_strings_escaped_in_messages() {
    let error = where_error(json!({"k\n": {"$bad\u{0}": 1}}));
    assert!(error.message.contains("[$bad\\u{0}]"), "{}", error.message);
    assert!(error.message.contains("[k\\n]"), "{}", error.message);
}

// ---- limits ----

#[test]
fn depth_limit_boundary() {
    let limits = FilterLimits::default();
    let leaf = json!({"a": 1});

    // The leaf sits at depth `levels + 1`.
    let at_limit = nest_in_and(leaf.clone(), limits.max_depth - 1);
    assert!(parse(Some(&at_limit), None).is_ok());

    let past_limit = nest_in_and(leaf, limits.max_depth);
    let error = where_error(past_limit);
    assert!(
        error.message.contains("maximum depth of 32"),
        "{}",
        error.message
    );
}

#[test]
fn depth_limit_applies_to_where_document() {
    let mut value = json!({"$contains": "a"});
    for _ in 0..FilterLimits::default().max_depth {
        value = json!({"$or": [value]});
    }
    let error = document_error(value);
    assert!(
        error.message.contains("maximum depth of 32"),
        "{}",
        error.message
    );
}

#[test]
fn very_deep_filter_rejected_without_overflow() {
    const LEVELS: usize = 100_000;

    let deep_where = nest_in_and(json!({"a": 1}), LEVELS);
    let result = parse(Some(&deep_where), None);
    drop_iteratively(deep_where);
    let error = result.expect_err("a 100,000-deep where clause should be rejected");
    assert!(error.message.contains("maximum depth"), "{}", error.message);

    let mut deep_document = json!({"$contains": "a"});
    for _ in 0..LEVELS {
        let mut object = Map::new();
        object.insert("$or".to_string(), Value::Array(vec![deep_document]));
        deep_document = Value::Object(object);
    }
    let result = parse(None, Some(&deep_document));
    drop_iteratively(deep_document);
    let error = result.expect_err("a 100,000-deep where_document clause should be rejected");
    assert!(error.message.contains("maximum depth"), "{}", error.message);
}

#[test]
fn depth_limit_is_configurable() {
    let limits = FilterLimits {
        max_depth: 1,
        ..FilterLimits::default()
    };
    assert!(Filter::parse(Some(&json!({"a": 1})), None, &limits).is_ok());
    let nested = json!({"$and": [{"a": 1}]});
    let error =
        Filter::parse(Some(&nested), None, &limits).expect_err("depth 2 should be rejected");
    assert!(
        error.message.contains("maximum depth of 1"),
        "{}",
        error.message
    );
}

#[test]
fn clause_limit_counts_every_node() {
    let max = FilterLimits::default().max_clauses;

    // One $and node plus `max - 1` leaves is exactly the limit.
    let at_limit = json!({"$and": vec![json!({"a": 1}); max - 1]});
    assert!(parse(Some(&at_limit), None).is_ok());

    let past_limit = json!({"$and": vec![json!({"a": 1}); max]});
    let error = where_error(past_limit);
    assert!(
        error
            .message
            .contains("more than the maximum of 1024 clauses"),
        "{}",
        error.message
    );
}

#[test]
fn clause_limit_spans_both_fields() {
    let max = FilterLimits::default().max_clauses;
    let where_clause = json!({"$or": vec![json!({"a": 1}); max - 2]});
    let fits = json!({"$contains": "a"});
    assert!(parse(Some(&where_clause), Some(&fits)).is_ok());

    let too_many = json!({"$and": [{"$contains": "a"}]});
    let error = expect_invalid(parse(Some(&where_clause), Some(&too_many)), &too_many);
    assert!(
        error.message.starts_with("Invalid where document clause: "),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("more than the maximum of 1024 clauses"),
        "{}",
        error.message
    );
}

#[test]
fn in_values_limit_boundary() {
    let max = FilterLimits::default().max_in_values;
    let at_limit: Vec<i64> = (0..max as i64).collect();
    assert!(where_matches(
        json!({"k": {"$in": at_limit}}),
        json!({"k": 4095})
    ));

    let past_limit: Vec<i64> = (0..=max as i64).collect();
    let error = where_error(json!({"k": {"$nin": past_limit}}));
    assert!(
        error
            .message
            .contains("$nin on key [k] has 4097 values, over the maximum of 4096"),
        "{}",
        error.message
    );
}

#[test]
fn regex_length_limit_boundary() {
    let max = FilterLimits::default().max_regex_bytes;
    let at_limit = "a".repeat(max);
    assert!(parse(None, Some(&json!({"$regex": at_limit}))).is_ok());

    let past_limit = "a".repeat(max + 1);
    let error = document_error(json!({"$regex": past_limit.clone()}));
    assert!(
        error
            .message
            .contains("4097 bytes long, over the maximum of 4096 bytes"),
        "{}",
        error.message
    );
    let error = where_error(json!({"#document": {"$not_regex": past_limit}}));
    assert!(
        error.message.contains("over the maximum of 4096 bytes"),
        "{}",
        error.message
    );
}

#[test]
fn regex_compiled_size_limit() {
    // The regex crate documents that Unicode `\w` alone needs more than 45,000 bytes,
    // and repetition multiplies that.
    let error = document_error(json!({"$regex": "\\w{500}"}));
    assert!(
        error
            .message
            .contains("compiles to more than the maximum of 1048576 bytes"),
        "{}",
        error.message
    );

    let small = FilterLimits {
        max_regex_compiled_bytes: 10_000,
        ..FilterLimits::default()
    };
    let clause = json!({"#document": {"$regex": "\\w"}});
    let error =
        Filter::parse(Some(&clause), None, &small).expect_err("\\w should exceed 10,000 bytes");
    assert_eq!(error.status(), 400);
    assert!(
        error.message.contains("maximum of 10000 bytes"),
        "{}",
        error.message
    );
    assert!(Filter::parse(Some(&json!({"#document": {"$regex": "abc"}})), None, &small).is_ok());
}

/// Found by replaying the `request_decode` fuzz corpus in a debug build: `x` followed
/// by 200 `*` overflowed a 2 MiB thread stack while the regex crate compiled it.
#[test]
fn regex_nesting_limit() {
    let deep = format!("x{}", "*".repeat(200));
    let error = document_error(json!({ "$regex": deep }));
    assert!(error.message.contains("nested"), "{}", error.message);

    let groups = |depth: usize| format!("{}x{}", "(".repeat(depth), ")".repeat(depth));
    let error = document_error(json!({ "$regex": groups(65) }));
    assert!(error.message.contains("nested"), "{}", error.message);
    document_filter(json!({ "$regex": groups(64) }));
}

#[test]
fn eq_and_ne_are_complements() {
    // For every metadata type, arrays included, exactly one of $eq and $ne matches.
    let values = [
        MetadataValue::Bool(true),
        MetadataValue::Int(1),
        MetadataValue::Float(1.5),
        MetadataValue::Str("s".to_string()),
        MetadataValue::BoolArray(vec![true]),
        MetadataValue::IntArray(vec![1]),
        MetadataValue::FloatArray(vec![1.5]),
        MetadataValue::StrArray(vec!["s".to_string()]),
    ];
    let eq_one = MetadataCondition::Eq(Scalar::Number(Number::Int(1)));
    let ne_one = MetadataCondition::Ne(Scalar::Number(Number::Int(1)));
    for value in &values {
        assert_ne!(
            eq_one.matches(Some(value)),
            ne_one.matches(Some(value)),
            "{value:?}"
        );
    }
}

// ---- exact comparison against an independent oracle ----

/// A xorshift64 generator, so the randomized tests need no extra dependency and repeat
/// exactly.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Compares by another route than `numeric_cmp`: `floor` instead of `trunc`, and i128
/// arithmetic instead of range checks against 2^63.
fn oracle_cmp(int: i64, float: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;

    if float >= 1e30 {
        return Ordering::Less;
    }
    if float <= -1e30 {
        return Ordering::Greater;
    }
    let floor = float.floor();
    match i128::from(int).cmp(&(floor as i128)) {
        Ordering::Equal if float > floor => Ordering::Less,
        unequal => unequal,
    }
}

/// Returns a float near `int`: its rounded value, a few bit patterns either side, or a
/// half-way point.
fn float_near(int: i64, random: &mut Xorshift) -> f64 {
    let rounded = int as f64;
    let step = (random.next() % 7) as i64 - 3;
    match random.next() % 3 {
        0 => rounded,
        1 if rounded != 0.0 => f64::from_bits(rounded.to_bits().wrapping_add_signed(step)),
        _ => rounded + step as f64 * 0.5,
    }
}

fn interesting_int(random: &mut Xorshift) -> i64 {
    const BASES: [i64; 8] = [0, 1, -1, 1 << 53, -(1 << 53), i64::MAX, i64::MIN, 1 << 62];
    let base = BASES[(random.next() % BASES.len() as u64) as usize];
    match random.next() % 3 {
        0 => base.wrapping_add((random.next() % 9) as i64 - 4),
        1 => random.next() as i64,
        _ => ((random.next() % 2001) as i64) - 1000,
    }
}

#[test]
fn numeric_cmp_matches_oracle() {
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..200_000 {
        let int = interesting_int(&mut random);
        let float = float_near(int, &mut random);
        if float.is_nan() {
            continue;
        }
        let expected = oracle_cmp(int, float);
        assert_eq!(
            Number::Int(int).numeric_cmp(Number::Float(float)),
            Some(expected),
            "{int} vs {float:e}"
        );
        assert_eq!(
            Number::Float(float).numeric_cmp(Number::Int(int)),
            Some(expected.reverse()),
            "{float:e} vs {int}"
        );
    }
}

#[test]
fn number_set_matches_linear_scan() {
    let mut random = Xorshift(0x2545_F491_4F6C_DD1D);
    for _ in 0..2_000 {
        let members: Vec<Number> = (0..random.next() % 12)
            .map(|_| {
                let int = interesting_int(&mut random);
                if random.next().is_multiple_of(2) {
                    Number::Int(int)
                } else {
                    Number::Float(float_near(int, &mut random))
                }
            })
            .filter(|number| !matches!(number, Number::Float(float) if float.is_nan()))
            .collect();
        let set = NumberSet::new(members.clone());

        for _ in 0..20 {
            let int = interesting_int(&mut random);
            let probe = if random.next().is_multiple_of(2) {
                Number::Int(int)
            } else {
                Number::Float(float_near(int, &mut random))
            };
            let expected = members.iter().any(|member| member.numeric_eq(probe));
            assert_eq!(set.contains(probe), expected, "{probe:?} in {members:?}");
        }
    }
}
