//! Portable distance kernels with a fixed reduction order.
//!
//! Eight lanes accumulate interleaved products, then combine pairwise, so the compiler
//! can vectorise the loop and results are the same on every target.

const LANES: usize = 8;

/// Returns the dot product of two vectors of equal length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut sums = [0.0f32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let tail_a = chunks_a.remainder();
    let tail_b = chunks_b.remainder();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    for (lane, (x, y)) in tail_a.iter().zip(tail_b).enumerate() {
        sums[lane] += x * y;
    }
    combine(sums)
}

/// Returns the squared Euclidean distance of two vectors of equal length.
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut sums = [0.0f32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let tail_a = chunks_a.remainder();
    let tail_b = chunks_b.remainder();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            let difference = x[lane] - y[lane];
            sums[lane] += difference * difference;
        }
    }
    for (lane, (x, y)) in tail_a.iter().zip(tail_b).enumerate() {
        let difference = x - y;
        sums[lane] += difference * difference;
    }
    combine(sums)
}

fn combine(sums: [f32; LANES]) -> f32 {
    let quads = [
        sums[0] + sums[4],
        sums[1] + sums[5],
        sums[2] + sums[6],
        sums[3] + sums[7],
    ];
    let pairs = [quads[0] + quads[2], quads[1] + quads[3]];
    pairs[0] + pairs[1]
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

    #[test]
    fn kernels_match_scalar_reference() {
        for len in [0, 1, 3, 7, 8, 9, 16, 17, 384, 385] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 11) as f32 * 0.25 - 1.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5)
                .collect();
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
}
