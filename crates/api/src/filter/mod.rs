//! The `where` and `where_document` filter grammar: parsing and evaluation.
//!
//! [`Filter::parse`] turns the two JSON values of a get, query or delete request into
//! typed clauses, checking them against [`FilterLimits`], and [`Filter::matches`] tests
//! one record's metadata and document against them. Nothing here does I/O.
//!
//! # `where`
//!
//! Every clause is a JSON object with exactly one key:
//!
//! - `{"$and": [clause, ...]}` and `{"$or": [clause, ...]}` combine one or more clauses.
//!   An empty list is invalid.
//! - `{"key": scalar}` is shorthand for `{"key": {"$eq": scalar}}`.
//! - `{"key": {"$op": operand}}` has exactly one operator:
//!
//! | Operator | Operand | Matches when the metadata value |
//! |---|---|---|
//! | `$eq`, `$ne` | string, bool, int or float | equals, or does not equal, the operand |
//! | `$gt`, `$gte`, `$lt`, `$lte` | int or float | is an int or float above, at least, below, or at most the operand |
//! | `$in`, `$nin` | non-empty list of strings, of bools or of numbers | is, or is not, in the list |
//! | `$contains`, `$not_contains` | string, bool, int or float | is an array that contains, or does not contain, the operand |
//!
//! - `{"#document": {"$op": string}}` tests the record's document with `$contains`,
//!   `$not_contains`, `$regex` or `$not_regex`, exactly as `where_document` does. Other
//!   operators on `#document` are invalid, and so is `$regex` on any other key.
//! - Any other key that starts with `$` is invalid, as is a top-level object with no key
//!   or with several keys.
//!
//! # `where_document`
//!
//! `{"$contains": s}`, `{"$not_contains": s}`, `{"$regex": pattern}`,
//! `{"$not_regex": pattern}`, and `{"$and": [...]}` / `{"$or": [...]}` of those.
//! `$contains` is a case-sensitive substring test, so an empty `s` matches every record
//! that has a document, even an empty one.
//! Patterns use the syntax of the Rust `regex` crate and must compile within the limits.
//!
//! # Semantics
//!
//! - Each negated operator is the exact complement of its positive form. A record that
//!   lacks the key, or whose value has another type, fails `$eq`, `$gt`, `$gte`, `$lt`,
//!   `$lte`, `$in` and `$contains`, so it passes `$ne`, `$nin` and `$not_contains`.
//! - A record without a document fails `$contains` and `$regex`, so it passes
//!   `$not_contains` and `$not_regex`.
//! - Integers and floats compare by exact mathematical value: a whole float such as `2.0`
//!   equals the integer `2`, `2.5` equals no integer, and `$lt 2.5` matches `2`.
//!   Integers beyond 2^53 are compared exactly too, never through a rounding cast.
//!   The same rule applies to `$in` lists and to `$contains` on int and float arrays.
//! - A bool is not a number: `true` neither equals `1` nor orders against it.
//! - `$contains` tests array-valued metadata only. A scalar value equal to the operand
//!   does not match it.
//!
//! # Differences from Chroma
//!
//! Checked against Chroma 1.5.9 running in-process, which differs in four places:
//!
//! - Chroma truncates a non-integral float bound when it compares against int values, so
//!   its `{"$eq": 2.5}` matches the int 2 and its `{"$lt": 2.5}` misses it.
//! - Chroma's `$contains` on arrays matches only elements of the operand's JSON type, so
//!   `2` misses `[2.0]`. Here the two compare by value, as they do in `$eq`.
//! - Chroma accepts an `$in` list mixing ints and floats only when its first value is a
//!   float. Here any order is accepted.
//! - Chroma accepts empty `$and` and `$or` lists, which then match every record and no
//!   record. Here they are invalid. Chroma's Python and JavaScript clients reject them
//!   too, along with single-clause lists, which are valid here.
//!
//! # Limits
//!
//! The parser checks nesting depth before it descends, so a hostile filter cannot exhaust
//! the stack, and it bounds the number of clauses, the length of `$in` lists, and the
//! nesting depth (64 levels), source size and compiled size of each regex. Every invalid
//! filter is a 400
//! `InvalidArgumentError` whose message starts with "Invalid where clause" or "Invalid
//! where document clause", the texts of Chroma's own messages.

mod eval;
mod number;
mod parse;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::ApiError;
use crate::metadata::Metadata;

pub use number::{Number, NumberSet};

/// Bounds on the size of a filter, checked by [`Filter::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterLimits {
    /// The maximum nesting depth of `$and` and `$or`, counting the top-level clause as
    /// depth 1. Default 32. Parsing and evaluation recurse once per level, so keep it
    /// small enough for the stack of the threads that run filters.
    pub max_depth: usize,
    /// The maximum number of clauses in one filter, counting every `$and`, `$or` and leaf
    /// of `where` and `where_document` together. Default 1024.
    pub max_clauses: usize,
    /// The maximum number of values in one `$in` or `$nin` list. Default 4096.
    pub max_in_values: usize,
    /// The maximum length of one regex pattern, in bytes of UTF-8. Default 4096.
    pub max_regex_bytes: usize,
    /// The approximate maximum heap size, in bytes, of one compiled regex and of each lazy
    /// DFA cache that a search with it builds, passed to the `regex` crate's `size_limit`
    /// and `dfa_size_limit`. Default 1 MiB.
    ///
    /// NOTE: the limit applies to each regex separately, so a filter of `max_clauses`
    /// regexes may use that many times this much memory.
    pub max_regex_compiled_bytes: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_depth: 32,
            max_clauses: 1024,
            max_in_values: 4096,
            max_regex_bytes: 4096,
            max_regex_compiled_bytes: 1024 * 1024,
        }
    }
}

/// The parsed filters of one request. A record matches when it passes both parts, and
/// an absent part passes every record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub where_clause: Option<Where>,
    pub where_document: Option<WhereDocument>,
}

impl Filter {
    /// Parses the `where` and `where_document` values of a request. An absent value and
    /// JSON `null` both mean "no filter".
    ///
    /// # Errors
    ///
    /// A 400 [`ApiError`] naming the first invalid clause or exceeded limit.
    pub fn parse(
        where_clause: Option<&Value>,
        where_document: Option<&Value>,
        limits: &FilterLimits,
    ) -> Result<Filter, ApiError> {
        parse::parse_filter(where_clause, where_document, limits)
    }

    /// Returns true when neither part is present, so every record matches.
    pub fn is_empty(&self) -> bool {
        self.where_clause.is_none() && self.where_document.is_none()
    }

    /// Tests one record. Missing metadata behaves as an empty map.
    pub fn matches(&self, metadata: Option<&Metadata>, document: Option<&str>) -> bool {
        let no_metadata = Metadata::new();
        let metadata = metadata.unwrap_or(&no_metadata);

        let where_passes = self
            .where_clause
            .as_ref()
            .is_none_or(|clause| clause.matches(metadata, document));
        let document_passes = self
            .where_document
            .as_ref()
            .is_none_or(|clause| clause.matches(document));
        where_passes && document_passes
    }
}

/// One parsed `where` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Where {
    /// `$and`: every child matches. The parser never produces an empty list.
    And(Vec<Where>),
    /// `$or`: at least one child matches. The parser never produces an empty list.
    Or(Vec<Where>),
    /// A condition on the metadata value stored under `key`.
    Metadata {
        key: String,
        condition: MetadataCondition,
    },
    /// A condition on the document, written under the key `#document`.
    Document(DocumentCondition),
}

/// An operator and its operand, applied to one metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataCondition {
    Eq(Scalar),
    Ne(Scalar),
    Gt(Number),
    Gte(Number),
    Lt(Number),
    Lte(Number),
    In(ScalarSet),
    NotIn(ScalarSet),
    /// The value is an array with an element equal to the operand.
    Contains(Scalar),
    NotContains(Scalar),
}

/// A scalar operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Number(Number),
    Str(String),
}

/// The operand of `$in` or `$nin`: a list of one scalar type, with ints and floats
/// together counting as one type.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarSet {
    Bool(BTreeSet<bool>),
    Number(NumberSet),
    Str(BTreeSet<String>),
}

/// One parsed `where_document` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum WhereDocument {
    /// `$and`: every child matches. The parser never produces an empty list.
    And(Vec<WhereDocument>),
    /// `$or`: at least one child matches. The parser never produces an empty list.
    Or(Vec<WhereDocument>),
    Condition(DocumentCondition),
}

/// A test of a record's document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentCondition {
    /// The document contains the text as a case-sensitive substring. An empty text
    /// matches every record that has a document.
    Contains(String),
    NotContains(String),
    /// The regex matches somewhere in the document.
    Regex(DocumentRegex),
    NotRegex(DocumentRegex),
}

/// A compiled, size-limited regex from a filter. Two regexes are equal when their
/// patterns are.
#[derive(Debug, Clone)]
pub struct DocumentRegex {
    regex: regex::Regex,
}

impl DocumentRegex {
    /// Returns the pattern as the client sent it.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Returns true when the regex matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for DocumentRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
