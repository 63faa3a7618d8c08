//! Exact k-nearest-neighbour search by scanning every candidate.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search result: the caller's candidate handle and its distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour<H> {
    pub handle: H,
    pub distance: f32,
}

struct HeapEntry<H> {
    distance: f32,
    order: usize,
    handle: H,
}

impl<H> PartialEq for HeapEntry<H> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<H> Eq for HeapEntry<H> {}
impl<H> PartialOrd for HeapEntry<H> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<H> Ord for HeapEntry<H> {
    /// Orders by distance, then by candidate order, so ties resolve to the candidate
    /// seen first and results are deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.order.cmp(&other.order))
    }
}

/// Returns the `k` candidates nearest to the query, nearest first. `candidates`
/// yields each candidate's handle and its distance to the query.
pub fn nearest<H: Copy>(
    k: usize,
    candidates: impl IntoIterator<Item = (H, f32)>,
) -> Vec<Neighbour<H>> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<HeapEntry<H>> = BinaryHeap::with_capacity(k + 1);
    for (order, (handle, distance)) in candidates.into_iter().enumerate() {
        let entry = HeapEntry {
            distance,
            order,
            handle,
        };
        if heap.len() < k {
            heap.push(entry);
        } else if let Some(worst) = heap.peek() {
            if entry < *worst {
                heap.pop();
                heap.push(entry);
            }
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|entry| Neighbour {
            handle: entry.handle,
            distance: entry.distance,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_sorted_and_truncated() {
        let candidates = [(1, 0.5), (2, 0.1), (3, 0.9), (4, 0.3)];
        let result = nearest(3, candidates);
        let handles: Vec<i32> = result.iter().map(|n| n.handle).collect();
        assert_eq!(handles, [2, 4, 1]);
    }

    #[test]
    fn nearest_ties_keep_candidate_order() {
        let result = nearest(2, [(1, 0.5), (2, 0.5), (3, 0.5)]);
        let handles: Vec<i32> = result.iter().map(|n| n.handle).collect();
        assert_eq!(handles, [1, 2]);
    }

    #[test]
    fn nearest_with_fewer_candidates_than_k() {
        assert_eq!(nearest(10, [(1, 0.5)]).len(), 1);
        assert!(nearest::<i32>(0, [(1, 0.5)]).is_empty());
    }
}
