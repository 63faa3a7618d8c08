//! Rejecting filters that need an index the schema disables.

use super::{ScalarType, Schema};
use crate::error::ApiError;
use crate::filter::{Filter, MetadataCondition, Number, Scalar, ScalarSet, Where};
use crate::metadata::printable;

impl Schema {
    /// Checks that every clause of `filter` uses an enabled index: the inverted index of
    /// its key for each value type of its operand, and the `#document` full-text index
    /// for document conditions. Chroma 1.5.9 rejects the same filters on get, query and
    /// delete, even when the collection is empty.
    ///
    /// The operand decides the value type, so `{"tag": {"$ne": 3}}` needs the int index
    /// of `tag` whatever type the stored values have. A `$in` list of numbers needs the
    /// int index when it has an integer, and the float index when it has a fraction.
    ///
    /// NOTE: a whole float in a `$in` list, such as `2.0`, counts as an integer here,
    /// because the parsed list keeps its value but not its JSON type. Chroma checks the
    /// float index for it.
    ///
    /// # Errors
    ///
    /// 400 naming the first key or document condition whose index is disabled.
    pub fn check_filter(&self, filter: &Filter) -> Result<(), ApiError> {
        if filter.where_document.is_some() {
            self.check_document_filter()?;
        }

        let mut pending: Vec<&Where> = filter.where_clause.iter().collect();
        while let Some(clause) = pending.pop() {
            match clause {
                Where::And(children) | Where::Or(children) => pending.extend(children),
                Where::Document(_) => self.check_document_filter()?,
                Where::Metadata { key, condition } => {
                    for value_type in operand_types(condition) {
                        if !self.is_inverted_index_enabled(key, value_type) {
                            return Err(ApiError::invalid(format!(
                                "Cannot filter using metadata key '{}': its {} inverted index is disabled in the collection schema",
                                printable(key),
                                value_type.name()
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_document_filter(&self) -> Result<(), ApiError> {
        if self.is_fts_enabled() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                "Cannot filter on document text: the FTS index of #document is disabled in the collection schema",
            ))
        }
    }
}

/// Returns the value types of a condition's operand: one for a scalar, and up to two
/// for a list of numbers.
fn operand_types(condition: &MetadataCondition) -> Vec<ScalarType> {
    match condition {
        MetadataCondition::Eq(scalar)
        | MetadataCondition::Ne(scalar)
        | MetadataCondition::Contains(scalar)
        | MetadataCondition::NotContains(scalar) => vec![scalar_type(scalar)],
        MetadataCondition::Gt(number)
        | MetadataCondition::Gte(number)
        | MetadataCondition::Lt(number)
        | MetadataCondition::Lte(number) => vec![number_type(*number)],
        MetadataCondition::In(set) | MetadataCondition::NotIn(set) => match set {
            ScalarSet::Bool(_) => vec![ScalarType::Bool],
            ScalarSet::Str(_) => vec![ScalarType::String],
            ScalarSet::Number(numbers) => {
                let mut types = Vec::with_capacity(2);
                if !numbers.ints().is_empty() {
                    types.push(ScalarType::Int);
                }
                if !numbers.floats().is_empty() {
                    types.push(ScalarType::Float);
                }
                types
            }
        },
    }
}

fn scalar_type(scalar: &Scalar) -> ScalarType {
    match scalar {
        Scalar::Bool(_) => ScalarType::Bool,
        Scalar::Str(_) => ScalarType::String,
        Scalar::Number(number) => number_type(*number),
    }
}

fn number_type(number: Number) -> ScalarType {
    match number {
        Number::Int(_) => ScalarType::Int,
        Number::Float(_) => ScalarType::Float,
    }
}
