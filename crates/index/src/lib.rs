//! Distance functions and nearest-neighbour search over f32 vectors.
//!
//! The spaces and formulas are Chroma's: `l2` is the squared Euclidean distance, `ip`
//! is `1 - dot(a, b)`, and `cosine` is `1 - cos(a, b)`. Every kernel sums in a fixed
//! order (sixteen interleaved partial sums, combined pairwise), so a distance does not
//! depend on which machine or thread computed it.
//!
//! - [`Space`] and [`distance`]: the metric.
//! - [`exact`]: an exact scan that returns the k nearest of a candidate set.
//! - [`hnsw`]: the approximate index.

pub mod exact;
pub mod hnsw;
mod kernels;
pub use kernels::{code_kernel_name, kernel_name};

pub use kernels::{dot, squared_l2};

/// A distance metric, named as in Chroma's collection configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    L2,
    InnerProduct,
    Cosine,
}

impl Space {
    /// Parses Chroma's name for a space: `l2`, `ip` or `cosine`.
    pub fn from_name(name: &str) -> Option<Space> {
        match name {
            "l2" => Some(Space::L2),
            "ip" => Some(Space::InnerProduct),
            "cosine" => Some(Space::Cosine),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Space::L2 => "l2",
            Space::InnerProduct => "ip",
            Space::Cosine => "cosine",
        }
    }
}

/// Returns the inverse Euclidean norm used by the cosine space, or 0 for a zero vector,
/// whose cosine distance to anything is then 1.
pub fn inverse_norm(vector: &[f32]) -> f32 {
    let norm = dot(vector, vector).sqrt();
    if norm > 0.0 {
        1.0 / norm
    } else {
        0.0
    }
}

/// Returns the distance between `query` and `vector` in `space`. For the cosine space,
/// the callers pass each vector's [`inverse_norm`].
pub fn distance(
    space: Space,
    query: &[f32],
    query_inverse_norm: f32,
    vector: &[f32],
    vector_inverse_norm: f32,
) -> f32 {
    match space {
        Space::L2 => squared_l2(query, vector),
        Space::InnerProduct => 1.0 - dot(query, vector),
        Space::Cosine => 1.0 - dot(query, vector) * query_inverse_norm * vector_inverse_norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroma_distance_formulas() {
        let a = [1.0, 0.0, 0.0];
        let b = [0.5, 0.5, 0.1];
        assert!((distance(Space::L2, &a, 0.0, &b, 0.0) - 0.51).abs() < 1e-6);
        assert!((distance(Space::InnerProduct, &a, 0.0, &b, 0.0) - 0.5).abs() < 1e-6);
        let cosine = distance(Space::Cosine, &a, inverse_norm(&a), &b, inverse_norm(&b));
        let expected = 1.0 - 0.5 / (0.51f32).sqrt();
        assert!((cosine - expected).abs() < 1e-6);
    }

    #[test]
    fn zero_vector_cosine_is_one() {
        let zero = [0.0, 0.0];
        let other = [1.0, 2.0];
        let d = distance(
            Space::Cosine,
            &zero,
            inverse_norm(&zero),
            &other,
            inverse_norm(&other),
        );
        assert_eq!(d, 1.0);
    }

    #[test]
    fn space_names_round_trip() {
        for space in [Space::L2, Space::InnerProduct, Space::Cosine] {
            assert_eq!(Space::from_name(space.name()), Some(space));
        }
        assert_eq!(Space::from_name("L2"), None);
    }
}
