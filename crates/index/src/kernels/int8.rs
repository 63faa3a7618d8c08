//! Dot products of int8 codes, used to traverse the graph over quantized vectors.
//!
//! One operand contains unsigned bytes and the other signed bytes (two's complement), the
//! operand order of the VNNI instruction `vpdpbusd`. Every variant sums exactly in
//! wrapping i32 arithmetic, so all of them return the same value. A product is at most
//! 255 × 128 in magnitude, so the sum cannot wrap for codes of up to
//! [`MAX_EXACT_CODE_BYTES`] bytes.

use std::fmt;

/// The maximum code length, in bytes, whose dot product fits an i32 without
/// wrapping: ⌊(2³¹ − 1) / (255 × 128)⌋.
pub const MAX_EXACT_CODE_BYTES: usize = (i32::MAX as usize) / (255 * 128);

/// Bytes per [`CodeBlock`].
pub const CODE_BLOCK_BYTES: usize = 64;

/// One cache line of int8 codes, aligned to 64 bytes. A code fills whole blocks (the
/// last one padded with zeros), so the kernels load full aligned lines and two codes
/// never share a cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CodeBlock(pub [u8; CODE_BLOCK_BYTES]);

impl CodeBlock {
    pub const ZERO: CodeBlock = CodeBlock([0; CODE_BLOCK_BYTES]);
}

impl fmt::Debug for CodeBlock {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_list().entries(self.0.iter()).finish()
    }
}

/// A kernel computing Σ unsigned[i] × signed[i] over two codes of the same length.
pub type CodeKernel = fn(&[CodeBlock], &[CodeBlock]) -> i32;

/// Computes the sum byte by byte. It is the reference for the other variants and the
/// kernel for CPUs without AVX2.
pub fn dot_u8_i8_portable(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
    debug_assert_eq!(unsigned.len(), signed.len());
    let mut sum = 0i32;
    for (unsigned, signed) in unsigned.iter().zip(signed) {
        let mut block_sum = 0i32;
        for (&u, &s) in unsigned.0.iter().zip(&signed.0) {
            block_sum += i32::from(u) * i32::from(s as i8);
        }
        sum = sum.wrapping_add(block_sum);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepi8_epi16,
        _mm256_cvtepu8_epi16, _mm256_dpbusd_avx_epi32, _mm256_extracti128_si256, _mm256_load_si256,
        _mm256_madd_epi16, _mm256_setzero_si256, _mm512_add_epi32, _mm512_dpbusd_epi32,
        _mm512_load_si512, _mm512_reduce_add_epi32, _mm512_setzero_si512, _mm_add_epi32,
        _mm_cvtsi128_si32, _mm_load_si128, _mm_shuffle_epi32,
    };

    use super::CodeBlock;

    /// Sums the eight i32 lanes of a 256-bit register.
    #[target_feature(enable = "avx2")]
    fn sum_lanes_256(sum: __m256i) -> i32 {
        let half = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let quarter = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0b01_00_11_10));
        let eighth = _mm_add_epi32(quarter, _mm_shuffle_epi32(quarter, 0b10_11_00_01));
        _mm_cvtsi128_si32(eighth)
    }

    /// Computes the sum with `vpdpbusd`, 64 multiply-adds per instruction, into two
    /// accumulators so consecutive blocks do not wait on each other.
    #[target_feature(enable = "avx512f,avx512vnni")]
    fn dot_vnni512(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
        let mut even = _mm512_setzero_si512();
        let mut odd = _mm512_setzero_si512();
        let mut pairs_unsigned = unsigned.chunks_exact(2);
        let mut pairs_signed = signed.chunks_exact(2);
        for (u, s) in (&mut pairs_unsigned).zip(&mut pairs_signed) {
            // SAFETY: each CodeBlock is 64 bytes aligned to 64, the size and alignment
            // of an aligned 512-bit load, and each chunk contains two blocks.
            let (u0, u1, s0, s1) = unsafe {
                (
                    _mm512_load_si512(u[0].0.as_ptr().cast()),
                    _mm512_load_si512(u[1].0.as_ptr().cast()),
                    _mm512_load_si512(s[0].0.as_ptr().cast()),
                    _mm512_load_si512(s[1].0.as_ptr().cast()),
                )
            };
            even = _mm512_dpbusd_epi32(even, u0, s0);
            odd = _mm512_dpbusd_epi32(odd, u1, s1);
        }
        for (u, s) in pairs_unsigned
            .remainder()
            .iter()
            .zip(pairs_signed.remainder())
        {
            // SAFETY: as above, for one aligned 64-byte block.
            let (u, s) = unsafe {
                (
                    _mm512_load_si512(u.0.as_ptr().cast()),
                    _mm512_load_si512(s.0.as_ptr().cast()),
                )
            };
            even = _mm512_dpbusd_epi32(even, u, s);
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(even, odd))
    }

    /// Computes the sum with the 256-bit VNNI instruction (AVX-VNNI), for CPUs that
    /// have it without AVX-512.
    #[target_feature(enable = "avx2,avxvnni")]
    fn dot_vnni256(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
        let mut low = _mm256_setzero_si256();
        let mut high = _mm256_setzero_si256();
        for (u, s) in unsigned.iter().zip(signed) {
            // SAFETY: each CodeBlock is 64 bytes aligned to 64: two aligned 256-bit
            // loads at offsets 0 and 32 per block.
            let (u_low, u_high, s_low, s_high) = unsafe {
                (
                    _mm256_load_si256(u.0.as_ptr().cast()),
                    _mm256_load_si256(u.0.as_ptr().add(32).cast()),
                    _mm256_load_si256(s.0.as_ptr().cast()),
                    _mm256_load_si256(s.0.as_ptr().add(32).cast()),
                )
            };
            low = _mm256_dpbusd_avx_epi32(low, u_low, s_low);
            high = _mm256_dpbusd_avx_epi32(high, u_high, s_high);
        }
        sum_lanes_256(_mm256_add_epi32(low, high))
    }

    /// Widens 16 bytes at a time to i16 (zero-extending the unsigned operand and
    /// sign-extending the signed one) and multiplies with `vpmaddwd`, whose pair sums
    /// (at most 2 × 255 × 128) cannot saturate, unlike `vpmaddubsw`.
    #[target_feature(enable = "avx2")]
    fn dot_avx2(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
        let mut sum = _mm256_setzero_si256();
        for (u, s) in unsigned.iter().zip(signed) {
            for offset in [0, 16, 32, 48] {
                // SAFETY: offset + 16 <= 64 and each CodeBlock is aligned to 64, so
                // both aligned 128-bit loads stay inside the block.
                let (u, s) = unsafe {
                    (
                        _mm_load_si128(u.0.as_ptr().add(offset).cast()),
                        _mm_load_si128(s.0.as_ptr().add(offset).cast()),
                    )
                };
                let products = _mm256_madd_epi16(_mm256_cvtepu8_epi16(u), _mm256_cvtepi8_epi16(s));
                sum = _mm256_add_epi32(sum, products);
            }
        }
        sum_lanes_256(sum)
    }

    // The entry points below are stored in the dispatch table only by `select`, after
    // it detected the features, and only the tests call them otherwise, after the same
    // check.

    pub fn dot_u8_i8_vnni512(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
        debug_assert_eq!(unsigned.len(), signed.len());
        // SAFETY: `select` stores this function only when the CPU supports AVX-512F
        // and AVX-512 VNNI.
        unsafe { dot_vnni512(unsigned, signed) }
    }

    pub fn dot_u8_i8_vnni256(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
        debug_assert_eq!(unsigned.len(), signed.len());
        // SAFETY: `select` stores this function only when the CPU supports AVX2 and
        // AVX-VNNI.
        unsafe { dot_vnni256(unsigned, signed) }
    }

    pub fn dot_u8_i8_avx2(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i32 {
        debug_assert_eq!(unsigned.len(), signed.len());
        // SAFETY: `select` stores this function only when the CPU supports AVX2.
        unsafe { dot_avx2(unsigned, signed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums in i64, so it cannot wrap whatever the inputs.
    fn reference_dot(unsigned: &[CodeBlock], signed: &[CodeBlock]) -> i64 {
        unsigned
            .iter()
            .zip(signed)
            .flat_map(|(u, s)| u.0.iter().zip(&s.0))
            .map(|(&u, &s)| i64::from(u) * i64::from(s as i8))
            .sum()
    }

    fn blocks(count: usize, seed: u32) -> Vec<CodeBlock> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                let mut block = CodeBlock::ZERO;
                for byte in &mut block.0 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    *byte = (state >> 24) as u8;
                }
                block
            })
            .collect()
    }

    fn variants() -> Vec<(&'static str, CodeKernel)> {
        // Only x86-64 adds variants, so elsewhere `mut` is unused.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut variants: Vec<(&str, CodeKernel)> = vec![("portable", dot_u8_i8_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                variants.push(("avx2", x86::dot_u8_i8_avx2));
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("avxvnni")
            {
                variants.push(("avxvnni", x86::dot_u8_i8_vnni256));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                variants.push(("avx512vnni", x86::dot_u8_i8_vnni512));
            }
        }
        variants
    }

    #[test]
    fn code_kernels_match_reference() {
        for count in [0, 1, 2, 3, 6, 7, 64] {
            let unsigned = blocks(count, 1);
            let signed = blocks(count, 2);
            let expected = reference_dot(&unsigned, &signed);
            for (name, kernel) in variants() {
                assert_eq!(
                    i64::from(kernel(&unsigned, &signed)),
                    expected,
                    "{name}, {count} blocks"
                );
            }
        }
    }

    /// The largest products (255 × -128 and 255 × 127) in every lane.
    #[test]
    fn code_kernels_exact_at_extremes() {
        let unsigned = vec![CodeBlock([255; CODE_BLOCK_BYTES]); 5];
        for fill in [0x80u8, 0x7f] {
            let signed = vec![CodeBlock([fill; CODE_BLOCK_BYTES]); 5];
            let expected = reference_dot(&unsigned, &signed);
            for (name, kernel) in variants() {
                assert_eq!(
                    i64::from(kernel(&unsigned, &signed)),
                    expected,
                    "{name}, fill {fill:#x}"
                );
            }
        }
    }

    #[test]
    fn exact_code_limit_fits_i32() {
        let largest = MAX_EXACT_CODE_BYTES as i64 * 255 * 128;
        assert!(largest <= i64::from(i32::MAX));
        assert!(largest + 255 * 128 > i64::from(i32::MAX));
    }
}
