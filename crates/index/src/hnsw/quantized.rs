//! Int8 copies of the stored vectors, used to traverse the graph at search time.
//!
//! Each vector `x` gets its own scale `s = 127 / max|x_i|`, and its codes
//! `c_i = round(s · x_i)` lie in [-127, 127]. A slot stores `c_i + 128` as unsigned
//! bytes and a query stores its codes `d_i` as signed bytes, the operand order of the
//! `vpdpbusd` instruction. The code kernel returns `Σ (c_i + 128) d_i`, so subtracting
//! `128 · Σ d_i` once per query leaves `Σ c_i d_i`, and
//! `dot(x, q) ≈ Σ c_i d_i / (s_x · s_q)`. From that dot product, the estimated
//! distance follows the space's formula, with the exact squared norms for `l2`.
//!
//! A code is a quarter of the f32 vector's size, so four times as many fit in cache.
//! The estimates only steer the search; [`super::Hnsw::search`] recomputes the
//! distances of the candidates it keeps from the f32 vectors.

use crate::kernels::{CodeBlock, CodeKernel, CODE_BLOCK_BYTES};
use crate::Space;

/// Per-slot factors that turn a code dot product into a distance estimate.
#[derive(Clone, Copy)]
struct CodeFactors {
    /// `1 / s`, or 0 for a zero vector.
    inverse_scale: f32,
    /// The exact squared norm of the f32 vector, used by the `l2` estimate.
    squared_norm: f32,
}

/// The int8 codes of every slot, `blocks_per_vector` blocks each.
pub(super) struct Codes {
    dimension: usize,
    blocks_per_vector: usize,
    blocks: Vec<CodeBlock>,
    factors: Vec<CodeFactors>,
}

/// The largest `|x_i − c_i / s|`, in units of `1 / s`: half a step from rounding,
/// plus a margin for the f32 rounding of `s · x_i` and of the stored `1 / s`.
const QUANTIZATION_ERROR: f32 = 0.5001;

/// A query quantized for one search.
#[derive(Default)]
pub(super) struct QueryCode {
    blocks: Vec<CodeBlock>,
    inverse_scale: f32,
    /// `128 · Σ d_i`, the part of the kernel's sum that the unsigned offset adds.
    offset: i32,
    squared_norm: f32,
    /// `Σ |q_i|`, for the error bound.
    absolute_sum: f32,
}

impl Codes {
    pub fn new(dimension: usize) -> Codes {
        Codes {
            dimension,
            blocks_per_vector: dimension.div_ceil(CODE_BLOCK_BYTES),
            blocks: Vec::new(),
            factors: Vec::new(),
        }
    }

    /// Appends the codes of the next slot's vector.
    pub fn push(&mut self, vector: &[f32]) {
        let (scale, inverse_scale) = scales(magnitudes(vector).0);
        let start = self.blocks.len();
        self.blocks
            .resize(start + self.blocks_per_vector, CodeBlock::ZERO);
        let bytes = self.blocks[start..]
            .iter_mut()
            .flat_map(|block| block.0.iter_mut());
        for (byte, &value) in bytes.zip(vector) {
            *byte = (quantize(value, scale) + 128) as u8;
        }
        self.factors.push(CodeFactors {
            inverse_scale,
            squared_norm: crate::dot(vector, vector),
        });
    }

    /// Returns the codes of a slot.
    #[inline]
    pub fn code(&self, slot: u32) -> &[CodeBlock] {
        let start = slot as usize * self.blocks_per_vector;
        &self.blocks[start..start + self.blocks_per_vector]
    }

    /// Asks the CPU to load a slot's codes and factors into cache.
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        crate::kernels::prefetch(self.code(slot));
        crate::kernels::prefetch(std::slice::from_ref(&self.factors[slot as usize]));
    }

    /// Returns the estimated distance between a quantized query and a slot.
    #[inline]
    pub fn estimate(&self, space: Space, kernel: CodeKernel, query: &QueryCode, slot: u32) -> f32 {
        let sum = kernel(self.code(slot), &query.blocks).wrapping_sub(query.offset);
        let factors = self.factors[slot as usize];
        let dot = sum as f32 * (factors.inverse_scale * query.inverse_scale);
        match space {
            Space::L2 => query.squared_norm + factors.squared_norm - 2.0 * dot,
            Space::InnerProduct | Space::Cosine => 1.0 - dot,
        }
    }

    /// Quantizes a prepared query into `query`, reusing its buffer.
    pub fn quantize_query(&self, vector: &[f32], query: &mut QueryCode) {
        let (largest, absolute_sum) = magnitudes(vector);
        let (scale, inverse_scale) = scales(largest);
        query.blocks.clear();
        query.blocks.resize(self.blocks_per_vector, CodeBlock::ZERO);
        let bytes = query.blocks.iter_mut().flat_map(|block| block.0.iter_mut());
        let mut code_sum = 0i32;
        for (byte, &value) in bytes.zip(vector) {
            let code = quantize(value, scale);
            code_sum += code;
            *byte = code as i8 as u8;
        }
        query.inverse_scale = inverse_scale;
        query.offset = code_sum.wrapping_mul(128);
        query.squared_norm = crate::dot(vector, vector);
        query.absolute_sum = absolute_sum;
    }

    /// Returns a bound on `|estimate − exact distance|` for a slot, where the exact
    /// distance is the one the f32 kernels compute. It holds for finite vectors.
    ///
    /// With `x̃_i = c_i / s_x` and `|x_i − x̃_i| ≤ e_x` (likewise for the query),
    /// `|dot(x, q) − dot(x̃, q̃)| ≤ e_x Σ|q_i| + e_q (Σ|x_i| + d e_x)`, and
    /// `Σ|x_i| ≤ √d ‖x‖` by Cauchy–Schwarz. The `l2` estimate doubles the dot product
    /// error. A margin of `(d / 16 + 16) · 2⁻²³ · (‖q‖² + ‖x‖²)` covers the f32
    /// rounding of both the estimate and the kernels, whose error grows with the `d /
    /// 16` terms each of their sixteen lanes sums.
    #[inline]
    pub fn error_bound(&self, space: Space, query: &QueryCode, slot: u32) -> f32 {
        let factors = self.factors[slot as usize];
        let dimension = self.dimension as f32;
        let slot_error = QUANTIZATION_ERROR * factors.inverse_scale;
        let query_error = QUANTIZATION_ERROR * query.inverse_scale;
        let slot_absolute_sum = (dimension * factors.squared_norm).sqrt();
        let dot_error = slot_error * query.absolute_sum
            + query_error * (slot_absolute_sum + dimension * slot_error);
        let rounding =
            (dimension / 16.0 + 16.0) * f32::EPSILON * (query.squared_norm + factors.squared_norm);
        let scale = match space {
            Space::L2 => 2.0,
            Space::InnerProduct | Space::Cosine => 1.0,
        };
        scale * dot_error * 1.001 + rounding
    }

    pub fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * CODE_BLOCK_BYTES
            + self.factors.capacity() * std::mem::size_of::<CodeFactors>()
    }
}

/// Returns `s = 127 / max|x_i|` and `1 / s` for the largest magnitude of a vector,
/// or zeros when it is 0.
fn scales(largest: f32) -> (f32, f32) {
    if largest > 0.0 {
        (127.0 / largest, largest / 127.0)
    } else {
        (0.0, 0.0)
    }
}

/// Returns the largest finite `|x_i|` and `Σ|x_i|` over the finite values. Sixteen
/// independent lanes let the compiler vectorise the loop; the sum is kept in f64, so
/// its rounding is far below the error bound's margin.
fn magnitudes(vector: &[f32]) -> (f32, f32) {
    const LANES: usize = 16;
    let mut largest = [0.0f32; LANES];
    let mut sums = [0.0f64; LANES];
    let mut add = |lane: usize, value: f32| {
        let magnitude = if value.is_finite() { value.abs() } else { 0.0 };
        largest[lane] = largest[lane].max(magnitude);
        sums[lane] += f64::from(magnitude);
    };
    let mut chunks = vector.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &value) in chunk.iter().enumerate() {
            add(lane, value);
        }
    }
    for (lane, &value) in chunks.remainder().iter().enumerate() {
        add(lane, value);
    }
    let largest = largest.into_iter().fold(0.0f32, f32::max);
    (largest, sums.into_iter().sum::<f64>() as f32)
}

/// Returns `s · x` rounded half away from zero and clamped to [-127, 127]; NaN
/// becomes 0. Adding ±0.5 and truncating avoids `f32::round`, which is a libm call on
/// the x86-64 baseline. The f32 addition can round a value just below a half up, and
/// `QUANTIZATION_ERROR` allows for that.
#[inline]
fn quantize(value: f32, scale: f32) -> i32 {
    let scaled = (value * scale).clamp(-127.0, 127.0);
    (scaled + 0.5f32.copysign(scaled)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::kernels;

    fn exact_distance(space: Space, a: &[f32], b: &[f32]) -> f32 {
        match space {
            Space::L2 => crate::squared_l2(a, b),
            Space::InnerProduct | Space::Cosine => 1.0 - crate::dot(a, b),
        }
    }

    fn vector(dimension: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..dimension)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn normalised(mut vector: Vec<f32>) -> Vec<f32> {
        let scale = crate::inverse_norm(&vector);
        vector.iter_mut().for_each(|value| *value *= scale);
        vector
    }

    /// Vectors of several shapes: uniform, normalised, one large component, and far
    /// from the origin (where the `l2` estimate subtracts large norms).
    fn shaped_vectors(dimension: usize, seed: u32) -> Vec<Vec<f32>> {
        let uniform = vector(dimension, seed);
        let mut spiky = vector(dimension, seed + 1000);
        spiky[seed as usize % dimension] = 40.0;
        let shifted = vector(dimension, seed + 2000)
            .iter()
            .map(|value| 10.0 + 0.1 * value)
            .collect();
        vec![
            uniform.clone(),
            normalised(uniform),
            spiky,
            shifted,
            vec![0.0; dimension],
        ]
    }

    #[test]
    fn estimate_within_error_bound() {
        for dimension in [1, 8, 63, 64, 65, 384, 1000] {
            let mut codes = Codes::new(dimension);
            let data: Vec<Vec<f32>> = (0..8)
                .flat_map(|seed| shaped_vectors(dimension, seed))
                .collect();
            for vector in &data {
                codes.push(vector);
            }
            for query in shaped_vectors(dimension, 99) {
                let mut query_code = QueryCode::default();
                codes.quantize_query(&query, &mut query_code);
                for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
                    for (slot, vector) in data.iter().enumerate() {
                        let slot = slot as u32;
                        let estimate =
                            codes.estimate(space, kernels().dot_u8_i8, &query_code, slot);
                        let bound = codes.error_bound(space, &query_code, slot);
                        let exact = exact_distance(space, &query, vector);
                        assert!(
                            (estimate - exact).abs() <= bound,
                            "{space:?}, dimension {dimension}, slot {slot}: \
                             estimate {estimate}, exact {exact}, bound {bound}"
                        );
                    }
                }
            }
        }
    }

    /// The bound must stay well below the distance gaps between near neighbours, or
    /// re-ranking could skip nothing.
    #[test]
    fn error_bound_small_for_normalised_vectors() {
        let mut codes = Codes::new(384);
        codes.push(&normalised(vector(384, 1)));
        let mut query_code = QueryCode::default();
        codes.quantize_query(&normalised(vector(384, 2)), &mut query_code);
        let bound = codes.error_bound(Space::Cosine, &query_code, 0);
        assert!(bound < 0.03, "bound {bound}");
    }

    #[test]
    fn zero_vectors_estimate_zero_dot() {
        let mut codes = Codes::new(4);
        codes.push(&[0.0; 4]);
        let mut query_code = QueryCode::default();
        codes.quantize_query(&[0.5, -0.5, 0.0, 1.0], &mut query_code);
        let kernel = kernels().dot_u8_i8;
        assert_eq!(
            codes.estimate(Space::InnerProduct, kernel, &query_code, 0),
            1.0
        );
        assert_eq!(codes.estimate(Space::L2, kernel, &query_code, 0), 1.5);
    }

    #[test]
    fn codes_offset_and_zero_padding() {
        let mut codes = Codes::new(3);
        codes.push(&[1.0, -1.0, 0.5]);
        let code = codes.code(0);
        assert_eq!(code.len(), 1);
        assert_eq!(&code[0].0[..4], &[255, 1, 192, 0]);
    }
}
