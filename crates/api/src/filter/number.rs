//! Exact comparison of 64-bit integers with 64-bit floats.
//!
//! Casting an `i64` to `f64` rounds once the magnitude passes 2^53, and casting a float
//! to an integer drops its fraction, so neither cast compares the two correctly. The
//! functions here compare the mathematical values instead.

use std::cmp::Ordering;

/// 2^63, the smallest float above every `i64`. Its negation is exactly `i64::MIN`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// A numeric operand. JSON keeps integers and floats apart, and so does this type, but
/// filters compare them by value with [`Number::numeric_cmp`]. The derived `PartialEq`
/// is structural, so `Int(2) != Float(2.0)` there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// Compares two numbers by mathematical value, so `Int(2)` equals `Float(2.0)` and
    /// `Int(2)` is less than `Float(2.5)`. Returns `None` only when a float is NaN, which
    /// parsed filters and validated metadata never contain.
    pub fn numeric_cmp(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (Number::Float(a), Number::Float(b)) => a.partial_cmp(&b),
            (Number::Int(a), Number::Float(b)) => compare_int_float(a, b),
            (Number::Float(a), Number::Int(b)) => compare_int_float(b, a).map(Ordering::reverse),
        }
    }

    /// Returns true when both numbers have the same mathematical value.
    pub fn numeric_eq(self, other: Number) -> bool {
        self.numeric_cmp(other) == Some(Ordering::Equal)
    }
}

/// Compares an integer with a float without rounding either.
fn compare_int_float(int: i64, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    if float >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if float < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }

    // The float lies in [-2^63, 2^63), so its integer part converts to i64 exactly, and
    // subtracting that part leaves the exact fraction.
    let whole = float.trunc();
    match int.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(float - whole)),
        unequal => Some(unequal),
    }
}

/// Returns the integer equal to `float`, if there is one.
fn float_to_exact_int(float: f64) -> Option<i64> {
    let in_range = (-TWO_POW_63..TWO_POW_63).contains(&float);
    (in_range && float.fract() == 0.0).then_some(float as i64)
}

/// The numbers of an `$in` or `$nin` list, kept sorted for binary search.
///
/// A whole float within the `i64` range is stored as the integer of the same value, so
/// `[2.0, 2.5]` becomes the integer 2 and the float 2.5. After that step no float equals
/// any integer, and each lookup searches one sorted list. NaN equals nothing, so it is
/// dropped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NumberSet {
    ints: Vec<i64>,
    floats: Vec<f64>,
}

impl NumberSet {
    pub fn new(numbers: impl IntoIterator<Item = Number>) -> NumberSet {
        let mut ints = Vec::new();
        let mut floats = Vec::new();
        for number in numbers {
            match number {
                Number::Int(int) => ints.push(int),
                Number::Float(float) => match float_to_exact_int(float) {
                    Some(int) => ints.push(int),
                    None if float.is_nan() => {}
                    None => floats.push(float),
                },
            }
        }

        ints.sort_unstable();
        ints.dedup();
        floats.sort_unstable_by(f64::total_cmp);
        floats.dedup();
        NumberSet { ints, floats }
    }

    /// Returns true when some member has the same mathematical value as `number`.
    pub fn contains(&self, number: Number) -> bool {
        match number {
            Number::Int(int) => self.ints.binary_search(&int).is_ok(),
            Number::Float(float) => match float_to_exact_int(float) {
                Some(int) => self.ints.binary_search(&int).is_ok(),
                None => self
                    .floats
                    .binary_search_by(|member| member.total_cmp(&float))
                    .is_ok(),
            },
        }
    }

    /// Returns the members that are integers, including whole floats, in ascending order.
    pub fn ints(&self) -> &[i64] {
        &self.ints
    }

    /// Returns the members that are not integers, in ascending order.
    pub fn floats(&self) -> &[f64] {
        &self.floats
    }

    /// Returns the number of distinct values.
    pub fn len(&self) -> usize {
        self.ints.len() + self.floats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
