//! A static k-d tree over the unit vectors of the candidate sites.
//!
//! Allocation asks for the k nearest sites of every village, thousands of
//! times per solve over a few hundred to a few thousand sites that do not
//! move during the solve. A flat, array-backed tree answers such a query in
//! well under a microsecond without allocating, which the general-purpose
//! R-tree (built for points that move) does not. Chord order on unit vectors
//! is great-circle order, so answers are exact everywhere on the globe.

use crate::core::geo::chord_sq;

/// Leaves hold at most this many points: small enough to prune well, large
/// enough that the recursion overhead stays below the distance arithmetic.
const LEAF_SIZE: usize = 16;

#[derive(Debug, Clone, Copy)]
enum Node {
    Leaf { lo: u32, hi: u32 },
    Split { axis: u8, at: f64, left: u32, right: u32 },
}

/// The bounding box of a node's points, per axis.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: [f64; 3],
    max: [f64; 3],
}

impl Bounds {
    /// The least squared chord from `q` to any point in the box. Rounding
    /// is monotone, so a point inside the box never computes (by
    /// [`chord_sq`]) a squared chord below it, nor above
    /// [`Bounds::chord_sq_far`].
    fn chord_sq_near(&self, q: [f64; 3]) -> f64 {
        let mut near = 0.0;
        for ((&min, &max), &qa) in self.min.iter().zip(&self.max).zip(&q) {
            let (lo, hi) = (min - qa, max - qa);
            if lo > 0.0 {
                near += lo * lo;
            } else if hi < 0.0 {
                near += hi * hi;
            }
        }
        near
    }

    /// The greatest squared chord from `q` to any point in the box.
    fn chord_sq_far(&self, q: [f64; 3]) -> f64 {
        let mut far = 0.0;
        for ((&min, &max), &qa) in self.min.iter().zip(&self.max).zip(&q) {
            let (lo, hi) = (min - qa, max - qa);
            far += (lo * lo).max(hi * hi);
        }
        far
    }
}

/// Sites as unit vectors, with their positions in the supply slice.
#[derive(Debug, Clone, Default)]
pub(super) struct KdTree {
    points: Vec<([f64; 3], u32)>,
    nodes: Vec<Node>,
    /// Per node, the box of its points.
    bounds: Vec<Bounds>,
}

impl KdTree {
    /// Builds the tree over `(unit vector, key)` pairs.
    pub(super) fn new(points: Vec<([f64; 3], u32)>) -> Self {
        let mut tree = KdTree { points, nodes: Vec::new(), bounds: Vec::new() };
        if !tree.points.is_empty() {
            let n = tree.points.len();
            tree.build(0, n);
        }
        tree
    }

    /// The tree over the sites of `supplies`, keyed by position in it.
    pub(super) fn of_supplies(supplies: &[super::Supply]) -> Self {
        KdTree::new(supplies.iter().enumerate().map(|(i, s)| (s.at.to_unit(), i as u32)).collect())
    }

    fn build(&mut self, lo: usize, hi: usize) -> u32 {
        let id = self.nodes.len() as u32;
        let mut min = [f64::INFINITY; 3];
        let mut max = [f64::NEG_INFINITY; 3];
        for (p, _) in &self.points[lo..hi] {
            for a in 0..3 {
                min[a] = min[a].min(p[a]);
                max[a] = max[a].max(p[a]);
            }
        }
        self.bounds.push(Bounds { min, max });
        if hi - lo <= LEAF_SIZE {
            self.nodes.push(Node::Leaf { lo: lo as u32, hi: hi as u32 });
            return id;
        }
        // Split on the axis of largest spread, at the median.
        let axis = (0..3).max_by(|&a, &b| (max[a] - min[a]).total_cmp(&(max[b] - min[b]))).unwrap_or(0);
        let mid = lo + (hi - lo) / 2;
        self.points[lo..hi].select_nth_unstable_by(mid - lo, |x, y| x.0[axis].total_cmp(&y.0[axis]));
        let at = self.points[mid].0[axis];
        self.nodes.push(Node::Leaf { lo: 0, hi: 0 });
        let left = self.build(lo, mid);
        let right = self.build(mid, hi);
        self.nodes[id as usize] = Node::Split { axis: axis as u8, at, left, right };
        id
    }

    /// The up to `k` points nearest to `q` with squared chord at most
    /// `max_chord2`, nearest first, as `(key, squared chord)` in `out`.
    pub(super) fn nearest(&self, q: [f64; 3], k: usize, max_chord2: f64, out: &mut Vec<(u32, f64)>) {
        out.clear();
        if self.nodes.is_empty() || k == 0 {
            return;
        }
        let mut worst = max_chord2;
        self.search(0, q, k, &mut worst, out);
    }

    /// Every point with squared chord to `q` above `inner` and at most
    /// `outer`, in no particular order, as `(key, squared chord)` in `out`:
    /// the ring a widening search adds to what it had. Nodes wholly inside
    /// the inner disc are skipped without looking at their points.
    pub(super) fn within_ring(&self, q: [f64; 3], inner: f64, outer: f64, out: &mut Vec<(u32, f64)>) {
        out.clear();
        if self.nodes.is_empty() {
            return;
        }
        // Depth-first from the root without recursion. The tree is balanced
        // (medians), so it is at most 32 levels deep for any u32 count of
        // points, and the stack holds at most one node per level plus one.
        let mut stack = [0u32; 64];
        let mut len = 1;
        while len > 0 {
            len -= 1;
            let node = stack[len];
            let b = &self.bounds[node as usize];
            if b.chord_sq_near(q) > outer || b.chord_sq_far(q) <= inner {
                continue;
            }
            match self.nodes[node as usize] {
                Node::Leaf { lo, hi } => {
                    for &(p, key) in &self.points[lo as usize..hi as usize] {
                        let d2 = chord_sq(p, q);
                        if d2 > inner && d2 <= outer {
                            out.push((key, d2));
                        }
                    }
                }
                Node::Split { left, right, .. } => {
                    stack[len] = right;
                    stack[len + 1] = left;
                    len += 2;
                }
            }
        }
    }

    fn search(&self, node: u32, q: [f64; 3], k: usize, worst: &mut f64, out: &mut Vec<(u32, f64)>) {
        match self.nodes[node as usize] {
            Node::Leaf { lo, hi } => {
                for &(p, key) in &self.points[lo as usize..hi as usize] {
                    let d2 = chord_sq(p, q);
                    if d2 > *worst {
                        continue;
                    }
                    // Insertion into a short sorted list; ties keep key order
                    // so answers do not depend on the tree's layout.
                    let pos = out.partition_point(|&(k2, e)| e < d2 || (e == d2 && k2 < key));
                    if pos < k {
                        if out.len() == k {
                            out.pop();
                        }
                        out.insert(pos, (key, d2));
                        if out.len() == k {
                            *worst = out[k - 1].1;
                        }
                    }
                }
            }
            Node::Split { axis, at, left, right } => {
                let diff = q[axis as usize] - at;
                let (near, far) = if diff < 0.0 { (left, right) } else { (right, left) };
                if self.bounds[near as usize].chord_sq_near(q) <= *worst {
                    self.search(near, q, k, worst, out);
                }
                // The far side's box is a tighter bound than its plane.
                if diff * diff <= *worst && self.bounds[far as usize].chord_sq_near(q) <= *worst {
                    self.search(far, q, k, worst, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::geo::LatLon;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn nearest_equals_brute_force(
            pts in prop::collection::vec((-60.0f64..60.0, -180.0f64..180.0), 0..120),
            q in (-60.0f64..60.0, -180.0f64..180.0),
            k in 1usize..20,
            max_chord2 in 0.0f64..4.0,
        ) {
            let unit = |(lat, lon): (f64, f64)| LatLon::new(lat, lon).unwrap().to_unit();
            let points: Vec<([f64; 3], u32)> = pts.iter().enumerate().map(|(i, &p)| (unit(p), i as u32)).collect();
            let tree = KdTree::new(points.clone());
            let mut got = Vec::new();
            tree.nearest(unit(q), k, max_chord2, &mut got);
            let mut want: Vec<(u32, f64)> = points
                .iter()
                .map(|&(p, key)| (key, chord_sq(p, unit(q))))
                .filter(|&(_, d2)| d2 <= max_chord2)
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            want.truncate(k);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn within_ring_equals_brute_force(
            pts in prop::collection::vec((-60.0f64..60.0, -180.0f64..180.0), 0..200),
            q in (-60.0f64..60.0, -180.0f64..180.0),
            inner_chord2 in 0.0f64..2.0,
            width in 0.0f64..2.0,
            at_a_point in any::<prop::sample::Index>(),
        ) {
            let unit = |(lat, lon): (f64, f64)| LatLon::new(lat, lon).unwrap().to_unit();
            let points: Vec<([f64; 3], u32)> = pts.iter().enumerate().map(|(i, &p)| (unit(p), i as u32)).collect();
            let tree = KdTree::new(points.clone());
            // Half the time the inner radius is exactly a point's squared
            // chord: that point is outside the ring, its equals too.
            let inner_chord2 = match points.get(at_a_point.index(points.len().max(1))) {
                Some(&(p, _)) if width < 1.0 => chord_sq(p, unit(q)),
                _ => inner_chord2,
            };
            let outer_chord2 = inner_chord2 + width;
            let mut got = Vec::new();
            tree.within_ring(unit(q), inner_chord2, outer_chord2, &mut got);
            got.sort_by_key(|&(key, _)| key);
            let want: Vec<(u32, f64)> = points
                .iter()
                .map(|&(p, key)| (key, chord_sq(p, unit(q))))
                .filter(|&(_, d2)| d2 > inner_chord2 && d2 <= outer_chord2)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
