//! Distance kernels with a fixed reduction order, dispatched once at runtime to the
//! widest instruction set the CPU has.
//!
//! Every variant runs the same loop: sixteen lanes accumulate interleaved products
//! (one multiply, then one add, never fused), the tail goes into the first lanes, and
//! the lanes combine pairwise. The AVX-512F and AVX2 variants do the lane loop with
//! one or two vector registers; the portable loop does it lane by lane. So every
//! variant returns bit-identical results, which a test checks. Other architectures
//! use the portable loop.
//!
//! The int8 code kernels (in `int8`) are dispatched the same way, to AVX-512 VNNI,
//! AVX-VNNI, AVX2 or a portable loop; their sums are exact integers.

// Calling a `#[target_feature]` function needs `unsafe`; each call below is guarded
// by runtime feature detection.
#![allow(unsafe_code)]

use std::sync::OnceLock;

mod int8;

pub use int8::{CodeBlock, CodeKernel, CODE_BLOCK_BYTES, MAX_EXACT_CODE_BYTES};

const LANES: usize = 16;

pub(crate) type Kernel = fn(&[f32], &[f32]) -> f32;

/// The kernels chosen for this CPU. Hot loops fetch this table once and call through
/// its function pointers, instead of reading the `OnceLock` on every call as [`dot`]
/// does.
pub(crate) struct Kernels {
    pub dot: Kernel,
    pub squared_l2: Kernel,
    /// Σ unsigned[i] × signed[i] over two int8 codes.
    pub dot_u8_i8: CodeKernel,
    name: &'static str,
    code_name: &'static str,
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

pub(crate) fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(select)
}

/// Returns the instruction set the kernels dispatched to: `avx512f`, `avx2` or
/// `portable`.
pub fn kernel_name() -> &'static str {
    kernels().name
}

/// Returns the instruction set the int8 code kernel dispatched to: `avx512vnni`,
/// `avxvnni`, `avx2` or `portable`.
pub fn code_kernel_name() -> &'static str {
    kernels().code_name
}

/// Asks the CPU to load every cache line of `values` into its L1 data cache ahead of
/// use. It is only a hint: it never faults, and on other architectures it does
/// nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};

        let bytes = std::mem::size_of_val(values);
        if bytes == 0 {
            return;
        }
        let start = values.as_ptr().cast::<i8>();
        let address = start as usize;
        let first_line = address & !63;
        let last_line = (address + bytes - 1) & !63;
        for line in (first_line..=last_line).step_by(64) {
            let pointer = start.wrapping_add(line.wrapping_sub(address));
            // SAFETY: a prefetch reads nothing architecturally and never faults, even
            // for an address outside any allocation, and SSE is part of the x86-64
            // baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(pointer) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// Returns the dot product of two vectors of equal length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Returns the squared Euclidean distance of two vectors of equal length.
#[inline]
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    (kernels().squared_l2)(a, b)
}

/// Adds the tail (the last `len % LANES` values) into the first lanes and combines the
/// lanes pairwise. Shared by every variant so they agree bit for bit.
#[inline(always)]
fn finish(mut lanes: [f32; LANES], a: &[f32], b: &[f32], squared_difference: bool) -> f32 {
    let tail_start = a.len().min(b.len()) / LANES * LANES;
    for (lane, (x, y)) in a[tail_start..].iter().zip(&b[tail_start..]).enumerate() {
        lanes[lane] += if squared_difference {
            (x - y) * (x - y)
        } else {
            x * y
        };
    }
    combine(lanes)
}

/// Accumulates the lanes one by one: one multiply and one add per lane per chunk.
#[inline(always)]
fn lanes_portable(a: &[f32], b: &[f32], squared_difference: bool) -> [f32; LANES] {
    let mut lanes = [0.0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        let (x, y) = (as_lanes(x), as_lanes(y));
        for lane in 0..LANES {
            lanes[lane] += if squared_difference {
                (x[lane] - y[lane]) * (x[lane] - y[lane])
            } else {
                x[lane] * y[lane]
            };
        }
    }
    lanes
}

/// Views a chunk from `chunks_exact(LANES)` as an array, so the compiler sees the
/// fixed length and keeps the lanes in one vector register.
#[inline(always)]
fn as_lanes(chunk: &[f32]) -> &[f32; LANES] {
    chunk.try_into().unwrap_or(&[0.0; LANES])
}

#[inline(always)]
fn combine(sums: [f32; LANES]) -> f32 {
    let mut width = LANES;
    let mut values = sums;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            values[lane] += values[lane + width];
        }
    }
    values[0]
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    finish(lanes_portable(a, b, false), a, b, false)
}

fn squared_l2_portable(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    finish(lanes_portable(a, b, true), a, b, true)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The loop of `lanes_portable` written with intrinsics, because
    //! the compiler does not vectorise the lane array on its own. Each lane still
    //! accumulates a multiply then an add, in chunk order, and the tail and the final
    //! combination are shared, so the results equal the portable loop's bit for bit.

    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm256_sub_ps, _mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps,
        _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps,
    };

    use super::{finish, LANES};

    #[target_feature(enable = "avx512f")]
    fn lanes_avx512(a: &[f32], b: &[f32], squared_difference: bool) -> [f32; LANES] {
        let mut sum: __m512 = _mm512_setzero_ps();
        for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            // SAFETY: both chunks hold exactly LANES = 16 floats, the width of one
            // unaligned 512-bit load.
            let (x, y) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr())) };
            let term = if squared_difference {
                let difference = _mm512_sub_ps(x, y);
                _mm512_mul_ps(difference, difference)
            } else {
                _mm512_mul_ps(x, y)
            };
            sum = _mm512_add_ps(sum, term);
        }
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` contains 16 floats, the width of one unaligned 512-bit store.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes
    }

    #[target_feature(enable = "avx2")]
    fn lanes_avx2(a: &[f32], b: &[f32], squared_difference: bool) -> [f32; LANES] {
        let mut low: __m256 = _mm256_setzero_ps();
        let mut high: __m256 = _mm256_setzero_ps();
        for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
            // SAFETY: both chunks hold 16 floats: two unaligned 256-bit loads of 8
            // floats each, at offsets 0 and 8.
            let (x_low, x_high, y_low, y_high) = unsafe {
                (
                    _mm256_loadu_ps(x.as_ptr()),
                    _mm256_loadu_ps(x.as_ptr().add(8)),
                    _mm256_loadu_ps(y.as_ptr()),
                    _mm256_loadu_ps(y.as_ptr().add(8)),
                )
            };
            let (term_low, term_high) = if squared_difference {
                let difference_low = _mm256_sub_ps(x_low, y_low);
                let difference_high = _mm256_sub_ps(x_high, y_high);
                (
                    _mm256_mul_ps(difference_low, difference_low),
                    _mm256_mul_ps(difference_high, difference_high),
                )
            } else {
                (_mm256_mul_ps(x_low, y_low), _mm256_mul_ps(x_high, y_high))
            };
            low = _mm256_add_ps(low, term_low);
            high = _mm256_add_ps(high, term_high);
        }
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` contains 16 floats: two unaligned 256-bit stores of 8 floats
        // each, at offsets 0 and 8.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), low);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), high);
        }
        lanes
    }

    // The entry points below are placed in the dispatch table only by `select`, after
    // it detected the feature, and only the tests call them otherwise, after the same
    // check.

    pub(super) fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `select` stores this function only when the CPU supports AVX-512F.
        let lanes = unsafe { lanes_avx512(a, b, false) };
        finish(lanes, a, b, false)
    }

    pub(super) fn squared_l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `select` stores this function only when the CPU supports AVX-512F.
        let lanes = unsafe { lanes_avx512(a, b, true) };
        finish(lanes, a, b, true)
    }

    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `select` stores this function only when the CPU supports AVX2.
        let lanes = unsafe { lanes_avx2(a, b, false) };
        finish(lanes, a, b, false)
    }

    pub(super) fn squared_l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `select` stores this function only when the CPU supports AVX2.
        let lanes = unsafe { lanes_avx2(a, b, true) };
        finish(lanes, a, b, true)
    }
}

fn select() -> Kernels {
    let (dot, squared_l2, name) = select_float();
    let (dot_u8_i8, code_name) = select_code();
    Kernels {
        dot,
        squared_l2,
        dot_u8_i8,
        name,
        code_name,
    }
}

/// Returns the portable kernels, whatever the CPU, so tests can compare them with
/// the dispatched ones on whole searches.
#[cfg(test)]
pub(crate) fn portable_kernels() -> Kernels {
    Kernels {
        dot: dot_portable,
        squared_l2: squared_l2_portable,
        dot_u8_i8: int8::dot_u8_i8_portable,
        name: "portable",
        code_name: "portable",
    }
}

fn select_float() -> (Kernel, Kernel, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return (x86::dot_avx512, x86::squared_l2_avx512, "avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return (x86::dot_avx2, x86::squared_l2_avx2, "avx2");
        }
    }
    (dot_portable, squared_l2_portable, "portable")
}

fn select_code() -> (CodeKernel, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected;

        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
            return (int8::x86::dot_u8_i8_vnni512, "avx512vnni");
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni") {
            return (int8::x86::dot_u8_i8_vnni256, "avxvnni");
        }
        if is_x86_feature_detected!("avx2") {
            return (int8::x86::dot_u8_i8_avx2, "avx2");
        }
    }
    (int8::dot_u8_i8_portable, "portable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    fn inputs(len: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..len)
            .map(|i| ((i * 37) % 11) as f32 * 0.25 - 1.0)
            .collect();
        let b = (0..len)
            .map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5)
            .collect();
        (a, b)
    }

    const LENGTHS: [usize; 12] = [0, 1, 3, 7, 8, 9, 15, 16, 17, 384, 385, 1000];

    #[test]
    fn kernels_match_scalar_reference() {
        for len in LENGTHS {
            let (a, b) = inputs(len);
            let expected_dot = scalar_dot(&a, &b);
            assert!(
                (f64::from(dot(&a, &b)) - expected_dot).abs() < 1e-3,
                "dot, len {len}"
            );

            let expected_l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum();
            assert!(
                (f64::from(squared_l2(&a, &b)) - expected_l2).abs() < 1e-3,
                "squared_l2, len {len}"
            );
        }
    }

    /// Every variant this CPU can run returns the same bits as the portable loop.
    #[test]
    fn variants_bit_identical() {
        // Only x86-64 adds variants, so elsewhere `mut` is unused.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut variants: Vec<(&str, Kernel, Kernel)> =
            vec![("portable", dot_portable, squared_l2_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                variants.push(("avx2", x86::dot_avx2, x86::squared_l2_avx2));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                variants.push(("avx512f", x86::dot_avx512, x86::squared_l2_avx512));
            }
        }
        for len in LENGTHS {
            let (a, b) = inputs(len);
            for (name, dot_kernel, l2_kernel) in &variants {
                assert_eq!(
                    dot_kernel(&a, &b).to_bits(),
                    dot_portable(&a, &b).to_bits(),
                    "{name} dot, len {len}"
                );
                assert_eq!(
                    l2_kernel(&a, &b).to_bits(),
                    squared_l2_portable(&a, &b).to_bits(),
                    "{name} l2, len {len}"
                );
            }
        }
    }
}
