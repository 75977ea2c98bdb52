//! A flat, array-backed k-d tree over unit vectors.
//!
//! Chord order on unit vectors is great-circle order, so its answers are
//! exact everywhere on the globe. The points, the nodes and their boxes
//! each live in one array, and a query neither allocates nor chases a
//! pointer per entry: at 10⁵ points a nearest query costs a few hundred
//! nanoseconds, well under what the general-purpose R-tree needs.
//!
//! It serves two callers:
//! - allocation asks for the k nearest sites of every village, thousands of
//!   times per solve, over sites that do not move during the solve;
//! - [`PointIndex`](super::index::PointIndex) keeps most of its points here
//!   and only the ones added or moved since its last rebuild in an R-tree.
//!   For that, a point can be removed: its slot is set to [`DEAD`], far off
//!   the sphere, where no query reaches it (every query is bounded by a
//!   squared chord of at most [`MAX_CHORD_SQ`]).

use super::geo::chord_sq;

/// Leaves hold at most this many points: small enough to prune well, large
/// enough that the recursion overhead stays below the distance arithmetic.
const LEAF_SIZE: usize = 16;

/// Where a removed point's slot is moved: its squared chord to any unit
/// vector is above 10⁶, beyond every query's bound.
const DEAD: [f64; 3] = [1.0e3; 3];

/// No two unit vectors are further apart than a squared chord of 4; this
/// bound leaves room for rounding and still excludes [`DEAD`].
pub const MAX_CHORD_SQ: f64 = 4.5;

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

    fn contains(&self, p: [f64; 3]) -> bool {
        (0..3).all(|a| self.min[a] <= p[a] && p[a] <= self.max[a])
    }
}

/// One answer of a nearest query: built from the key, the squared chord
/// and the point, and ranked by squared chord, then key.
pub trait Hit<K>: Copy {
    /// The answer for `key` at `point`, `chord2` from the query.
    fn hit(key: K, chord2: f64, point: [f64; 3]) -> Self;
    /// Its squared chord from the query.
    fn chord2(&self) -> f64;
    /// Its key.
    fn key(&self) -> K;
}

impl<K: Copy> Hit<K> for (K, f64) {
    fn hit(key: K, chord2: f64, _: [f64; 3]) -> Self {
        (key, chord2)
    }
    fn chord2(&self) -> f64 {
        self.1
    }
    fn key(&self) -> K {
        self.0
    }
}

impl<K: Copy> Hit<K> for (K, f64, [f64; 3]) {
    fn hit(key: K, chord2: f64, point: [f64; 3]) -> Self {
        (key, chord2, point)
    }
    fn chord2(&self) -> f64 {
        self.1
    }
    fn key(&self) -> K {
        self.0
    }
}

/// Inserts `h` into `best`, a list of at most `k` answers sorted by squared
/// chord then key, if it belongs there; returns the list's new bound (its
/// k-th squared chord once full, else `worst` unchanged).
pub fn offer<K: Copy + Ord, H: Hit<K>>(best: &mut Vec<H>, k: usize, worst: f64, h: H) -> f64 {
    let (d2, key) = (h.chord2(), h.key());
    let pos = best.partition_point(|b| b.chord2() < d2 || (b.chord2() == d2 && b.key() < key));
    if pos >= k {
        return worst;
    }
    if best.len() == k {
        best.pop();
    }
    best.insert(pos, h);
    if best.len() == k { best[k - 1].chord2() } else { worst }
}

/// Points as unit vectors with their keys.
#[derive(Debug, Clone)]
pub struct KdTree<K> {
    points: Vec<([f64; 3], K)>,
    nodes: Vec<Node>,
    /// Per node, the box of its points (as built: removals do not shrink it).
    bounds: Vec<Bounds>,
    /// Slots removed since the build.
    dead: usize,
}

impl<K> Default for KdTree<K> {
    fn default() -> Self {
        KdTree { points: Vec::new(), nodes: Vec::new(), bounds: Vec::new(), dead: 0 }
    }
}

impl<K: Copy + Ord> KdTree<K> {
    /// Builds the tree over `(unit vector, key)` pairs.
    pub fn new(points: Vec<([f64; 3], K)>) -> Self {
        let mut tree = KdTree { points, ..KdTree::default() };
        if !tree.points.is_empty() {
            let n = tree.points.len();
            tree.nodes.reserve(2 * n.div_ceil(LEAF_SIZE));
            tree.bounds.reserve(2 * n.div_ceil(LEAF_SIZE));
            tree.build(0, n);
        }
        tree
    }

    /// Points in the tree (removed ones not counted).
    pub fn len(&self) -> usize {
        self.points.len() - self.dead
    }

    /// Whether the tree holds no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Points removed since the build.
    pub fn removed(&self) -> usize {
        self.dead
    }

    /// The points with their keys, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ([f64; 3], K)> + '_ {
        self.points.iter().copied().filter(|&(p, _)| p != DEAD)
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

    /// Removes the point `key` stored at `p`; returns whether it was there.
    pub fn remove(&mut self, p: [f64; 3], key: K) -> bool {
        if self.nodes.is_empty() || p == DEAD {
            return false;
        }
        match self.find(0, p, key) {
            Some(slot) => {
                self.points[slot].0 = DEAD;
                self.dead += 1;
                true
            }
            None => false,
        }
    }

    fn find(&self, node: u32, p: [f64; 3], key: K) -> Option<usize> {
        if !self.bounds[node as usize].contains(p) {
            return None;
        }
        match self.nodes[node as usize] {
            Node::Leaf { lo, hi } => (lo as usize..hi as usize).find(|&i| self.points[i] == (p, key)),
            Node::Split { left, right, .. } => self.find(left, p, key).or_else(|| self.find(right, p, key)),
        }
    }

    /// The up to `k` points nearest to `q` with squared chord at most
    /// `max_chord2`, nearest first (ties by key), in `out`.
    pub fn nearest<H: Hit<K>>(&self, q: [f64; 3], k: usize, max_chord2: f64, out: &mut Vec<H>) {
        out.clear();
        self.nearest_more(q, k, max_chord2, out);
    }

    /// As [`KdTree::nearest`], but merging into `best`, which already holds
    /// up to `k` answers in that order (from another set of points); returns
    /// the bound the list ends with.
    pub fn nearest_more<H: Hit<K>>(&self, q: [f64; 3], k: usize, max_chord2: f64, best: &mut Vec<H>) -> f64 {
        let mut worst = max_chord2.min(MAX_CHORD_SQ);
        if best.len() >= k && k > 0 {
            worst = worst.min(best[k - 1].chord2());
        }
        if !self.nodes.is_empty() && k > 0 {
            self.search(0, q, k, &mut worst, best);
        }
        worst
    }

    /// Every point with squared chord to `q` above `inner` and at most
    /// `outer`, in no particular order, as `(key, squared chord)` in `out`:
    /// the ring a widening search adds to what it had.
    pub fn within_ring(&self, q: [f64; 3], inner: f64, outer: f64, out: &mut Vec<(K, f64)>) {
        out.clear();
        out.extend(self.ring(q, inner, outer).map(|(key, d2, _)| (key, d2)));
    }

    /// Every point with squared chord to `q` above `inner` and at most
    /// `outer`, lazily, in no particular order, as (key, squared chord,
    /// point). Nodes wholly inside the inner disc are skipped without
    /// looking at their points.
    pub fn ring(&self, q: [f64; 3], inner: f64, outer: f64) -> Ring<'_, K> {
        Ring {
            tree: self,
            q,
            inner,
            outer: outer.min(MAX_CHORD_SQ),
            stack: [0; 64],
            len: usize::from(!self.nodes.is_empty()),
            at: 0,
            end: 0,
        }
    }

    fn search<H: Hit<K>>(&self, node: u32, q: [f64; 3], k: usize, worst: &mut f64, out: &mut Vec<H>) {
        match self.nodes[node as usize] {
            Node::Leaf { lo, hi } => {
                for &(p, key) in &self.points[lo as usize..hi as usize] {
                    let d2 = chord_sq(p, q);
                    if d2 > *worst {
                        continue;
                    }
                    *worst = offer(out, k, *worst, H::hit(key, d2, p));
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

    /// Points in order of squared chord from `q`, lazily (best first over
    /// the nodes' boxes).
    pub fn nearest_iter(&self, q: [f64; 3]) -> NearestIter<'_, K> {
        let mut heap = std::collections::BinaryHeap::new();
        if !self.nodes.is_empty() {
            heap.push(Queued { chord2: self.bounds[0].chord_sq_near(q), point: false, at: 0 });
        }
        NearestIter { tree: self, q, heap }
    }
}

/// The lazy walk of [`KdTree::ring`]: depth first from the root without
/// recursion. The tree is balanced (medians), so it is at most 32 levels
/// deep for any u32 count of points, and the stack holds at most one node
/// per level plus one.
#[derive(Debug)]
pub struct Ring<'a, K> {
    tree: &'a KdTree<K>,
    q: [f64; 3],
    inner: f64,
    outer: f64,
    stack: [u32; 64],
    len: usize,
    /// The leaf being read: its slots `at..end`.
    at: usize,
    end: usize,
}

impl<K: Copy> Iterator for Ring<'_, K> {
    type Item = (K, f64, [f64; 3]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while self.at < self.end {
                let (p, key) = self.tree.points[self.at];
                self.at += 1;
                let d2 = chord_sq(p, self.q);
                if d2 > self.inner && d2 <= self.outer {
                    return Some((key, d2, p));
                }
            }
            if self.len == 0 {
                return None;
            }
            self.len -= 1;
            let node = self.stack[self.len] as usize;
            let b = &self.tree.bounds[node];
            if b.chord_sq_near(self.q) > self.outer || b.chord_sq_far(self.q) <= self.inner {
                continue;
            }
            match self.tree.nodes[node] {
                Node::Leaf { lo, hi } => (self.at, self.end) = (lo as usize, hi as usize),
                Node::Split { left, right, .. } => {
                    self.stack[self.len] = right;
                    self.stack[self.len + 1] = left;
                    self.len += 2;
                }
            }
        }
    }
}

/// A node (by its box) or a point waiting in [`NearestIter`]'s queue.
#[derive(Debug, Clone, Copy)]
struct Queued {
    chord2: f64,
    /// A point slot rather than a node.
    point: bool,
    at: u32,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed, so that the max-heap pops the nearest first; at equal
    /// squared chords points before nodes, then by slot.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.chord2.total_cmp(&self.chord2).then(self.point.cmp(&other.point)).then(other.at.cmp(&self.at))
    }
}

/// The lazy walk of [`KdTree::nearest_iter`].
#[derive(Debug)]
pub struct NearestIter<'a, K> {
    tree: &'a KdTree<K>,
    q: [f64; 3],
    heap: std::collections::BinaryHeap<Queued>,
}

impl<K: Copy> Iterator for NearestIter<'_, K> {
    type Item = (K, f64, [f64; 3]);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(top) = self.heap.pop() {
            if top.point {
                let (p, key) = self.tree.points[top.at as usize];
                return Some((key, top.chord2, p));
            }
            match self.tree.nodes[top.at as usize] {
                Node::Leaf { lo, hi } => {
                    for slot in lo..hi {
                        let d2 = chord_sq(self.tree.points[slot as usize].0, self.q);
                        if d2 <= MAX_CHORD_SQ {
                            self.heap.push(Queued { chord2: d2, point: true, at: slot });
                        }
                    }
                }
                Node::Split { left, right, .. } => {
                    for child in [left, right] {
                        let chord2 = self.tree.bounds[child as usize].chord_sq_near(self.q);
                        self.heap.push(Queued { chord2, point: false, at: child });
                    }
                }
            }
        }
        None
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
            let mut got: Vec<(u32, f64)> = Vec::new();
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

        /// After removals, nearest, the lazy order, rings and the listing
        /// all answer for the points left, and merging into a list from
        /// elsewhere keeps the k best of both.
        #[test]
        fn removed_points_are_never_answered(
            pts in prop::collection::vec((-60.0f64..60.0, -180.0f64..180.0), 0..150),
            gone in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
            elsewhere in prop::collection::vec((-60.0f64..60.0, -180.0f64..180.0), 0..10),
            q in (-60.0f64..60.0, -180.0f64..180.0),
            k in 1usize..20,
        ) {
            let unit = |(lat, lon): (f64, f64)| LatLon::new(lat, lon).unwrap().to_unit();
            let q = unit(q);
            let points: Vec<([f64; 3], u32)> = pts.iter().enumerate().map(|(i, &p)| (unit(p), i as u32)).collect();
            let mut tree = KdTree::new(points.clone());
            let mut left = points.clone();
            for g in &gone {
                if points.is_empty() {
                    break;
                }
                let (p, key) = points[g.index(points.len())];
                let was = left.iter().position(|&e| e == (p, key));
                prop_assert_eq!(tree.remove(p, key), was.is_some());
                if let Some(i) = was {
                    left.swap_remove(i);
                }
            }
            prop_assert_eq!(tree.len(), left.len());
            let mut listed: Vec<u32> = tree.iter().map(|(_, key)| key).collect();
            listed.sort_unstable();
            let mut want_keys: Vec<u32> = left.iter().map(|&(_, key)| key).collect();
            want_keys.sort_unstable();
            prop_assert_eq!(listed, want_keys);

            // Merged with hits from another set keyed above these.
            let mut best: Vec<(u32, f64)> = Vec::new();
            for (j, &e) in elsewhere.iter().enumerate() {
                let h = (1_000 + j as u32, chord_sq(unit(e), q));
                offer(&mut best, k, f64::INFINITY, h);
            }
            tree.nearest_more(q, k, f64::INFINITY, &mut best);
            let mut want: Vec<(u32, f64)> = left.iter().map(|&(p, key)| (key, chord_sq(p, q))).collect();
            want.extend(elsewhere.iter().enumerate().map(|(j, &e)| (1_000 + j as u32, chord_sq(unit(e), q))));
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let lazy: Vec<f64> = tree.nearest_iter(q).map(|(_, d2, _)| d2).collect();
            let mut left_d2: Vec<f64> = left.iter().map(|&(p, _)| chord_sq(p, q)).collect();
            left_d2.sort_by(f64::total_cmp);
            prop_assert_eq!(lazy, left_d2);
            want.truncate(k);
            prop_assert_eq!(best, want);

            let mut ring = Vec::new();
            tree.within_ring(q, -1.0, 4.0, &mut ring);
            prop_assert_eq!(ring.len(), left.len());
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
