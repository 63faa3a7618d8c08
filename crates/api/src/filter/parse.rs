//! Parsing of `where` and `where_document` JSON into typed clauses.
//!
//! Each clause is checked against [`FilterLimits`] when the parser enters it, before it
//! looks at the clause's children, so recursion never goes deeper than `max_depth` and
//! work stops at the first clause past `max_clauses`.

use std::collections::BTreeSet;
use std::fmt::Display;

use regex::RegexBuilder;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::metadata::printable;

use super::{
    DocumentCondition, DocumentRegex, Filter, FilterLimits, MetadataCondition, Number, NumberSet,
    Scalar, ScalarSet, Where, WhereDocument,
};

/// The key under which a `where` clause tests the document instead of metadata.
const DOCUMENT_KEY: &str = "#document";

/// Maximum nesting depth of groups, classes and repetition operators in a regex. The
/// regex crate compiles a pattern recursively, so each level uses stack. At its default
/// limit of 250 levels, a pattern such as `x` followed by 249 `*` overflowed a 2 MiB
/// thread stack in a debug build (regex 1.13.2), while 64 levels fit in 1 MiB.
const MAX_REGEX_NESTING: u32 = 64;

const WHERE_OPERATORS: &str =
    "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $contains or $not_contains";
const DOCUMENT_OPERATORS: &str = "$contains, $not_contains, $regex or $not_regex";

pub(super) fn parse_filter(
    where_clause: Option<&Value>,
    where_document: Option<&Value>,
    limits: &FilterLimits,
) -> Result<Filter, ApiError> {
    let mut parser = Parser { limits, clauses: 0 };

    let where_clause = match where_clause {
        None | Some(Value::Null) => None,
        Some(value) => Some(parser.parse_where(value, 1)?),
    };
    let where_document = match where_document {
        None | Some(Value::Null) => None,
        Some(value) => Some(parser.parse_where_document(value, 1)?),
    };
    Ok(Filter {
        where_clause,
        where_document,
    })
}

/// The request field a clause came from, which fixes the start of its error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Where,
    WhereDocument,
}

impl Field {
    /// Builds a 400 error whose message starts with Chroma's own text for this error.
    fn invalid(self, detail: impl Display) -> ApiError {
        let prefix = match self {
            Field::Where => "Invalid where clause",
            Field::WhereDocument => "Invalid where document clause",
        };
        ApiError::invalid(format!("{prefix}: {detail}"))
    }

    /// Describes the keys a clause of this field may have, for error messages.
    fn expected_keys(self) -> &'static str {
        match self {
            Field::Where => "$and, $or or a metadata key",
            Field::WhereDocument => "$contains, $not_contains, $regex, $not_regex, $and or $or",
        }
    }
}

struct Parser<'a> {
    limits: &'a FilterLimits,
    /// Clauses entered so far, across `where` and `where_document`.
    clauses: usize,
}

impl Parser<'_> {
    /// Counts a clause at `depth` and checks the depth and clause limits, which must
    /// happen before the caller parses anything inside the clause.
    fn enter_clause(&mut self, field: Field, depth: usize) -> Result<(), ApiError> {
        if depth > self.limits.max_depth {
            return Err(field.invalid(format!(
                "$and and $or are nested deeper than the maximum depth of {}",
                self.limits.max_depth
            )));
        }
        self.clauses += 1;
        if self.clauses > self.limits.max_clauses {
            return Err(field.invalid(format!(
                "the filter has more than the maximum of {} clauses",
                self.limits.max_clauses
            )));
        }
        Ok(())
    }

    fn parse_where(&mut self, value: &Value, depth: usize) -> Result<Where, ApiError> {
        let field = Field::Where;
        self.enter_clause(field, depth)?;
        let (key, operand) = single_entry(field, value)?;

        match key {
            "$and" => {
                let items = logical_list(field, key, operand)?;
                let children = self.parse_where_list(items, depth)?;
                Ok(Where::And(children))
            }
            "$or" => {
                let items = logical_list(field, key, operand)?;
                let children = self.parse_where_list(items, depth)?;
                Ok(Where::Or(children))
            }
            DOCUMENT_KEY => parse_document_key(operand, self.limits).map(Where::Document),
            _ if key.starts_with('$') => Err(field.invalid(format!(
                "unknown operator [{}] at the top level of a clause. Expected {}",
                printable(key),
                field.expected_keys()
            ))),
            _ => {
                let condition = parse_metadata_key(key, operand, self.limits)?;
                Ok(Where::Metadata {
                    key: key.to_string(),
                    condition,
                })
            }
        }
    }

    fn parse_where_list(&mut self, items: &[Value], depth: usize) -> Result<Vec<Where>, ApiError> {
        items
            .iter()
            .map(|item| self.parse_where(item, depth + 1))
            .collect()
    }

    fn parse_where_document(
        &mut self,
        value: &Value,
        depth: usize,
    ) -> Result<WhereDocument, ApiError> {
        let field = Field::WhereDocument;
        self.enter_clause(field, depth)?;
        let (operator, operand) = single_entry(field, value)?;

        match operator {
            "$and" => {
                let items = logical_list(field, operator, operand)?;
                let children = self.parse_where_document_list(items, depth)?;
                Ok(WhereDocument::And(children))
            }
            "$or" => {
                let items = logical_list(field, operator, operand)?;
                let children = self.parse_where_document_list(items, depth)?;
                Ok(WhereDocument::Or(children))
            }
            _ => match DocumentOperator::from_name(operator) {
                Some(operator) => parse_document_condition(field, operator, operand, self.limits)
                    .map(WhereDocument::Condition),
                None => Err(field.invalid(format!(
                    "unknown operator [{}]. Expected {}",
                    printable(operator),
                    field.expected_keys()
                ))),
            },
        }
    }

    fn parse_where_document_list(
        &mut self,
        items: &[Value],
        depth: usize,
    ) -> Result<Vec<WhereDocument>, ApiError> {
        items
            .iter()
            .map(|item| self.parse_where_document(item, depth + 1))
            .collect()
    }
}

/// Returns the only key of a clause object and its value.
fn single_entry(field: Field, value: &Value) -> Result<(&str, &Value), ApiError> {
    let Value::Object(object) = value else {
        return Err(field.invalid(format!(
            "expected a JSON object with one key, found {}",
            describe(value)
        )));
    };
    if object.len() > 1 {
        return Err(field.invalid(format!(
            "the clause has {} keys ({}) but must have exactly one. Combine conditions with $and or $or",
            object.len(),
            list_keys(object)
        )));
    }
    match object.iter().next() {
        Some((key, value)) => Ok((key.as_str(), value)),
        None => Err(field.invalid(format!(
            "the clause is an empty object. Expected one key: {}",
            field.expected_keys()
        ))),
    }
}

/// Lists the first few keys of an object for an error message.
fn list_keys(object: &Map<String, Value>) -> String {
    const MAX_KEYS: usize = 5;
    let mut listed: Vec<String> = object
        .keys()
        .take(MAX_KEYS)
        .map(|key| format!("[{}]", printable(key)))
        .collect();
    if object.len() > MAX_KEYS {
        listed.push("...".to_string());
    }
    listed.join(", ")
}

/// Returns the clauses of an `$and` or `$or`, which must be a non-empty list.
fn logical_list<'v>(
    field: Field,
    operator: &str,
    value: &'v Value,
) -> Result<&'v [Value], ApiError> {
    match value {
        Value::Array(items) if items.is_empty() => Err(field.invalid(format!(
            "{operator} has an empty list. Expected at least one clause"
        ))),
        Value::Array(items) => Ok(items),
        other => Err(field.invalid(format!(
            "{operator} expects a list of clauses, found {}",
            describe(other)
        ))),
    }
}

/// The operators that test a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocumentOperator {
    Contains,
    NotContains,
    Regex,
    NotRegex,
}

impl DocumentOperator {
    fn from_name(name: &str) -> Option<DocumentOperator> {
        match name {
            "$contains" => Some(DocumentOperator::Contains),
            "$not_contains" => Some(DocumentOperator::NotContains),
            "$regex" => Some(DocumentOperator::Regex),
            "$not_regex" => Some(DocumentOperator::NotRegex),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DocumentOperator::Contains => "$contains",
            DocumentOperator::NotContains => "$not_contains",
            DocumentOperator::Regex => "$regex",
            DocumentOperator::NotRegex => "$not_regex",
        }
    }
}

/// Parses the value of the `#document` key inside `where`.
fn parse_document_key(value: &Value, limits: &FilterLimits) -> Result<DocumentCondition, ApiError> {
    let field = Field::Where;
    let Value::Object(expression) = value else {
        return Err(field.invalid(format!(
            "key [{DOCUMENT_KEY}] takes an operator expression such as {{\"$contains\": \"text\"}}, found {}",
            describe(value)
        )));
    };
    let (operator, operand) = single_operator(DOCUMENT_KEY, expression)?;

    match DocumentOperator::from_name(operator) {
        Some(operator) => parse_document_condition(field, operator, operand, limits),
        None => Err(field.invalid(format!(
            "operator [{}] is not supported on key [{DOCUMENT_KEY}]. Expected {DOCUMENT_OPERATORS}",
            printable(operator)
        ))),
    }
}

fn parse_document_condition(
    field: Field,
    operator: DocumentOperator,
    operand: &Value,
    limits: &FilterLimits,
) -> Result<DocumentCondition, ApiError> {
    let Value::String(text) = operand else {
        let subject = match field {
            Field::Where => format!("{} on key [{DOCUMENT_KEY}]", operator.name()),
            Field::WhereDocument => operator.name().to_string(),
        };
        return Err(field.invalid(format!(
            "the operand of {subject} must be a string, found {}",
            describe(operand)
        )));
    };

    match operator {
        DocumentOperator::Contains => Ok(DocumentCondition::Contains(text.clone())),
        DocumentOperator::NotContains => Ok(DocumentCondition::NotContains(text.clone())),
        DocumentOperator::Regex => compile_regex(field, text, limits).map(DocumentCondition::Regex),
        DocumentOperator::NotRegex => {
            compile_regex(field, text, limits).map(DocumentCondition::NotRegex)
        }
    }
}

fn compile_regex(
    field: Field,
    pattern: &str,
    limits: &FilterLimits,
) -> Result<DocumentRegex, ApiError> {
    if pattern.len() > limits.max_regex_bytes {
        return Err(field.invalid(format!(
            "the regex is {} bytes long, over the maximum of {} bytes",
            pattern.len(),
            limits.max_regex_bytes
        )));
    }

    RegexBuilder::new(pattern)
        .nest_limit(MAX_REGEX_NESTING)
        .size_limit(limits.max_regex_compiled_bytes)
        .dfa_size_limit(limits.max_regex_compiled_bytes)
        .build()
        .map(|regex| DocumentRegex { regex })
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(limit) => field.invalid(format!(
                "the regex [{}] compiles to more than the maximum of {limit} bytes. Use a smaller pattern",
                printable(pattern)
            )),
            // NOTE: the regex crate's message repeats the whole pattern, unescaped and with
            // a line-number prefix per line, so this message can be about 7 times as
            // long as `max_regex_bytes`.
            other => field.invalid(format!("invalid regex [{}]: {other}", printable(pattern))),
        })
}

/// The operators that test a metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetadataOperator {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    Contains,
    NotContains,
}

impl MetadataOperator {
    fn from_name(name: &str) -> Option<MetadataOperator> {
        match name {
            "$eq" => Some(MetadataOperator::Eq),
            "$ne" => Some(MetadataOperator::Ne),
            "$gt" => Some(MetadataOperator::Gt),
            "$gte" => Some(MetadataOperator::Gte),
            "$lt" => Some(MetadataOperator::Lt),
            "$lte" => Some(MetadataOperator::Lte),
            "$in" => Some(MetadataOperator::In),
            "$nin" => Some(MetadataOperator::NotIn),
            "$contains" => Some(MetadataOperator::Contains),
            "$not_contains" => Some(MetadataOperator::NotContains),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MetadataOperator::Eq => "$eq",
            MetadataOperator::Ne => "$ne",
            MetadataOperator::Gt => "$gt",
            MetadataOperator::Gte => "$gte",
            MetadataOperator::Lt => "$lt",
            MetadataOperator::Lte => "$lte",
            MetadataOperator::In => "$in",
            MetadataOperator::NotIn => "$nin",
            MetadataOperator::Contains => "$contains",
            MetadataOperator::NotContains => "$not_contains",
        }
    }
}

/// Parses the value of a metadata key: a scalar for `$eq`, or an operator expression.
fn parse_metadata_key(
    key: &str,
    value: &Value,
    limits: &FilterLimits,
) -> Result<MetadataCondition, ApiError> {
    let field = Field::Where;
    if let Value::Object(expression) = value {
        let (operator, operand) = single_operator(key, expression)?;
        return parse_operator_expression(key, operator, operand, limits);
    }

    match scalar(value) {
        Some(operand) => Ok(MetadataCondition::Eq(operand)),
        None => Err(field.invalid(format!(
            "key [{}] has {} as its value. Expected a string, bool, int or float, or an operator expression such as {{\"$eq\": value}}",
            printable(key),
            describe(value)
        ))),
    }
}

/// Returns the only operator of an operator expression and its operand.
fn single_operator<'v>(
    key: &str,
    expression: &'v Map<String, Value>,
) -> Result<(&'v str, &'v Value), ApiError> {
    let field = Field::Where;
    if expression.len() > 1 {
        return Err(field.invalid(format!(
            "the operator expression of key [{}] has {} operators ({}) but must have exactly one. Combine conditions with $and or $or",
            printable(key),
            expression.len(),
            list_keys(expression)
        )));
    }
    match expression.iter().next() {
        Some((operator, operand)) => Ok((operator.as_str(), operand)),
        None => Err(field.invalid(format!(
            "the operator expression of key [{}] is an empty object. Expected one operator such as {{\"$eq\": value}}",
            printable(key)
        ))),
    }
}

fn parse_operator_expression(
    key: &str,
    operator_name: &str,
    operand: &Value,
    limits: &FilterLimits,
) -> Result<MetadataCondition, ApiError> {
    let field = Field::Where;
    let Some(operator) = MetadataOperator::from_name(operator_name) else {
        if DocumentOperator::from_name(operator_name).is_some() {
            return Err(field.invalid(format!(
                "operator [{}] is supported only on key [{DOCUMENT_KEY}], not on key [{}]",
                printable(operator_name),
                printable(key)
            )));
        }
        return Err(field.invalid(format!(
            "unknown operator [{}] on key [{}]. Expected {WHERE_OPERATORS}",
            printable(operator_name),
            printable(key)
        )));
    };

    let wrong_operand = |expected: &str| {
        field.invalid(format!(
            "the operand of {} on key [{}] must be {expected}, found {}",
            operator.name(),
            printable(key),
            describe(operand)
        ))
    };
    let any_scalar =
        || scalar(operand).ok_or_else(|| wrong_operand("a string, bool, int or float"));
    let any_number = || number(operand).ok_or_else(|| wrong_operand("an int or float"));

    let condition = match operator {
        MetadataOperator::Eq => MetadataCondition::Eq(any_scalar()?),
        MetadataOperator::Ne => MetadataCondition::Ne(any_scalar()?),
        MetadataOperator::Gt => MetadataCondition::Gt(any_number()?),
        MetadataOperator::Gte => MetadataCondition::Gte(any_number()?),
        MetadataOperator::Lt => MetadataCondition::Lt(any_number()?),
        MetadataOperator::Lte => MetadataCondition::Lte(any_number()?),
        MetadataOperator::In => {
            MetadataCondition::In(parse_scalar_set(key, operator, operand, limits)?)
        }
        MetadataOperator::NotIn => {
            MetadataCondition::NotIn(parse_scalar_set(key, operator, operand, limits)?)
        }
        MetadataOperator::Contains => MetadataCondition::Contains(any_scalar()?),
        MetadataOperator::NotContains => MetadataCondition::NotContains(any_scalar()?),
    };
    Ok(condition)
}

/// Parses the list operand of `$in` or `$nin`. Its values must share one type, with ints
/// and floats counting as one type because they compare by value.
fn parse_scalar_set(
    key: &str,
    operator: MetadataOperator,
    operand: &Value,
    limits: &FilterLimits,
) -> Result<ScalarSet, ApiError> {
    let field = Field::Where;
    let subject = format!("{} on key [{}]", operator.name(), printable(key));
    let Value::Array(items) = operand else {
        return Err(field.invalid(format!(
            "the operand of {subject} must be a non-empty list, found {}",
            describe(operand)
        )));
    };
    if items.len() > limits.max_in_values {
        return Err(field.invalid(format!(
            "{subject} has {} values, over the maximum of {}",
            items.len(),
            limits.max_in_values
        )));
    }
    let Some(first) = items.first() else {
        return Err(field.invalid(format!(
            "the operand of {subject} is an empty list. Expected at least one value"
        )));
    };

    let mismatch = |index: usize, item: &Value| {
        if first.is_number() && item.is_number() {
            // Only an integer beyond the i64 range fails to convert.
            return field.invalid(format!("value {index} of {subject} is {}", describe(item)));
        }
        field.invalid(format!(
            "value {index} of {subject} is {}, but value 0 is {}. All values must have one type, with ints and floats counting as one",
            describe(item),
            describe(first)
        ))
    };
    let set = match first {
        Value::Bool(_) => items
            .iter()
            .enumerate()
            .map(|(index, item)| item.as_bool().ok_or_else(|| mismatch(index, item)))
            .collect::<Result<BTreeSet<bool>, ApiError>>()
            .map(ScalarSet::Bool)?,
        Value::String(_) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| mismatch(index, item))
            })
            .collect::<Result<BTreeSet<String>, ApiError>>()
            .map(ScalarSet::Str)?,
        Value::Number(_) => items
            .iter()
            .enumerate()
            .map(|(index, item)| number(item).ok_or_else(|| mismatch(index, item)))
            .collect::<Result<Vec<Number>, ApiError>>()
            .map(|numbers| ScalarSet::Number(NumberSet::new(numbers)))?,
        other => {
            return Err(field.invalid(format!(
                "the values of {subject} must be strings, bools, ints or floats, found {}",
                describe(other)
            )))
        }
    };
    Ok(set)
}

/// Converts a JSON string, bool or number to a scalar operand.
fn scalar(value: &Value) -> Option<Scalar> {
    match value {
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::String(s) => Some(Scalar::Str(s.clone())),
        Value::Number(_) => number(value).map(Scalar::Number),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Converts a JSON number to an `i64` or a finite `f64`. Integers beyond the `i64` range
/// are rejected, as metadata decoding and Chroma 1.5.9 reject them.
fn number(value: &Value) -> Option<Number> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(int) = number.as_i64() {
        return Some(Number::Int(int));
    }
    if number.is_u64() {
        return None;
    }
    number
        .as_f64()
        .filter(|float| float.is_finite())
        .map(Number::Float)
}

/// Describes a JSON value's type for an error message, as "found ...".
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        Value::Number(number) if number.is_i64() => "an int",
        Value::Number(number) if number.is_u64() => "an integer beyond the signed 64-bit range",
        Value::Number(_) => "a float",
    }
}
