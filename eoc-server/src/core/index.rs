//! Exact great-circle nearest-neighbour and radius queries over points.
//!
//! Points are stored as unit vectors: chord order is great-circle order, so
//! a Euclidean nearest-neighbour search returns exact great-circle answers
//! everywhere on the globe. Each entry carries a small `Copy` key (an index
//! into the world's tables).
//!
//! Most points never move (villages, sites) or move now and then (teams).
//! They live in a flat k-d tree ([`KdTree`]), built in one go, which answers
//! a nearest query without allocating or chasing pointers. A point added or
//! moved since that build goes to a small R-tree ([`rstar`]) beside it, and
//! its old slot in the k-d tree is marked removed; every query asks both.
//! When the changes reach a quarter of the points, both are rebuilt into
//! one k-d tree, so the R-tree stays small and a move costs amortised
//! O(log n).

use rstar::primitives::GeomWithData;
use rstar::{ParentNode, RStarInsertionStrategy, RTree, RTreeNode, RTreeParams};

use super::geo::{LatLon, chord_sq, m_to_chord_sq, units_to_m};
use super::kdtree::{KdTree, offer};

type Entry<K> = GeomWithData<[f64; 3], K>;

/// R*-tree parameters without forced reinsertion. rstar 0.12's forced
/// reinsertion can corrupt the tree when many entries share one position
/// (teams waiting at the same district centre; a proptest found it), and it
/// gains little for points that move constantly.
#[derive(Debug, Clone, Copy)]
pub struct Params;

impl RTreeParams for Params {
    const MIN_SIZE: usize = 3;
    const MAX_SIZE: usize = 8;
    const REINSERTION_COUNT: usize = 0;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// The k-d tree and the R-tree are merged into a new k-d tree once the
/// points added, moved or removed since its build exceed this many and a
/// quarter of the points. Below it, the R-tree alone is quick enough.
const REBUILD_MIN: usize = 256;

/// A set of keyed points on the sphere.
#[derive(Debug, Clone)]
pub struct PointIndex<K: Copy + Ord> {
    /// The points as of the last build, less those removed since.
    built: KdTree<K>,
    /// The points added since the last build.
    fresh: RTree<Entry<K>, Params>,
}

impl<K: Copy + Ord> Default for PointIndex<K> {
    fn default() -> Self {
        PointIndex { built: KdTree::default(), fresh: RTree::new_with_params() }
    }
}

impl<K: Copy + Ord> PointIndex<K> {
    /// Builds an index over `points` in one go.
    pub fn bulk_load(points: impl IntoIterator<Item = (K, LatLon)>) -> Self {
        let built = KdTree::new(points.into_iter().map(|(k, at)| (at.to_unit(), k)).collect());
        PointIndex { built, fresh: RTree::new_with_params() }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.built.len() + self.fresh.size()
    }

    /// Whether the index holds no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a point.
    pub fn insert(&mut self, key: K, at: LatLon) {
        self.fresh.insert(Entry::new(at.to_unit(), key));
        self.rebuild_if_due();
    }

    /// Removes the point `key` stored at `at`; returns whether it was there.
    pub fn remove(&mut self, key: K, at: LatLon) -> bool {
        let p = at.to_unit();
        if self.fresh.size() > 0 && self.fresh.remove(&Entry::new(p, key)).is_some() {
            return true;
        }
        let removed = self.built.remove(p, key);
        self.rebuild_if_due();
        removed
    }

    /// Moves `key` from `from` to `to` (remove and re-insert).
    pub fn relocate(&mut self, key: K, from: LatLon, to: LatLon) {
        self.remove(key, from);
        self.insert(key, to);
    }

    /// Merges the R-tree and what is left of the k-d tree into a new k-d
    /// tree once the changes since the last build are many enough.
    fn rebuild_if_due(&mut self) {
        let changes = self.built.removed() + self.fresh.size();
        if changes <= REBUILD_MIN.max(self.len() / 4) {
            return;
        }
        let mut points = Vec::with_capacity(self.len());
        points.extend(self.built.iter());
        points.extend(self.fresh.iter().map(|e| (*e.geom(), e.data)));
        self.built = KdTree::new(points);
        self.fresh = RTree::new_with_params();
    }

    /// The `k` nearest points to `at`, nearest first (ties by key), with
    /// great-circle metres.
    pub fn nearest(&self, at: LatLon, k: usize) -> Vec<(K, f64)> {
        if k > BOUNDED_K_MAX {
            return self.nearest_iter(at).take(k).collect();
        }
        let q = at.to_unit();
        let mut best: Vec<(K, f64, [f64; 3])> = Vec::with_capacity(k.min(self.len()));
        let worst = self.built.nearest_more(q, k, f64::INFINITY, &mut best);
        if self.fresh.size() > 0 && k > 0 {
            k_nearest(self.fresh.root(), &q, k, worst, &mut best);
        }
        // Ranked by squared chord (great-circle order); the metres from the
        // vectors themselves, exact near the antipode too.
        best.into_iter().map(|(key, d2, p)| (key, units_to_m(p, q, d2))).collect()
    }

    /// Points in order of great-circle distance from `at`, lazily: combine
    /// with `filter` and `take` for "nearest open site with room".
    pub fn nearest_iter(&self, at: LatLon) -> impl Iterator<Item = (K, f64)> + '_ {
        let q = at.to_unit();
        let mut built = self.built.nearest_iter(q).peekable();
        let mut fresh = self
            .fresh
            .nearest_neighbor_iter_with_distance_2(&q)
            .map(|(e, d2)| (e.data, d2, *e.geom()))
            .peekable();
        std::iter::from_fn(move || {
            let from_built = match (built.peek(), fresh.peek()) {
                (Some(a), Some(b)) => a.1 <= b.1,
                (a, _) => a.is_some(),
            };
            if from_built { built.next() } else { fresh.next() }
        })
        .map(move |(key, d2, p)| (key, units_to_m(p, q, d2)))
    }

    /// Every point within `radius_m` great-circle metres of `at`, unordered.
    pub fn within(&self, at: LatLon, radius_m: f64) -> impl Iterator<Item = (K, f64)> + '_ {
        let q = at.to_unit();
        // A hair of slack so points exactly on the radius are not lost to
        // rounding in the chord conversion; the exact check follows.
        let chord2 = m_to_chord_sq(radius_m) * (1.0 + 1e-12) + 1e-18;
        let fresh = self
            .fresh
            .locate_within_distance(q, chord2)
            .map(move |e| (e.data, chord_sq(*e.geom(), q), *e.geom()));
        self.built.ring(q, -1.0, chord2).chain(fresh).filter_map(move |(key, d2, p)| {
            let d = units_to_m(p, q, d2);
            (d <= radius_m).then_some((key, d))
        })
    }

    /// All keys with their positions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (K, LatLon)> + '_ {
        let fresh = self.fresh.iter().map(|e| (*e.geom(), e.data));
        self.built.iter().chain(fresh).map(|(p, key)| (key, LatLon::from_unit(p)))
    }
}

/// Up to this many neighbours, [`PointIndex::nearest`] keeps a sorted list
/// of the best so far and prunes by the k-th distance; beyond, it takes
/// from the lazy iterator.
const BOUNDED_K_MAX: usize = 64;

/// Merges into `best` (at most `k` entries, sorted by squared chord then
/// key, bounded by `worst`) the entries under `node` nearest to `q`: depth
/// first, children in order of their boxes' distance, skipping every box
/// further than the k-th best so far.
fn k_nearest<K: Copy + Ord>(
    node: &ParentNode<Entry<K>>,
    q: &[f64; 3],
    k: usize,
    mut worst: f64,
    best: &mut Vec<(K, f64, [f64; 3])>,
) -> f64 {
    // Boxes of the child nodes, nearest first (R-tree nodes hold at most
    // `Params::MAX_SIZE` children; a larger node falls back to a vector).
    const STACK: usize = 16;
    let mut boxes = [(0.0f64, 0usize); STACK];
    let mut spill = Vec::new();
    let mut n = 0;
    for (i, child) in node.children().iter().enumerate() {
        match child {
            RTreeNode::Leaf(e) => {
                let d2 = chord_sq(*e.geom(), *q);
                if d2 <= worst {
                    worst = offer(best, k, worst, (e.data, d2, *e.geom()));
                }
            }
            RTreeNode::Parent(p) => {
                let d2 = p.envelope().distance_2(q);
                if d2 > worst {
                    continue;
                }
                if n < STACK {
                    let mut j = n;
                    while j > 0 && boxes[j - 1].0 > d2 {
                        boxes[j] = boxes[j - 1];
                        j -= 1;
                    }
                    boxes[j] = (d2, i);
                    n += 1;
                } else {
                    spill.push((d2, i));
                }
            }
        }
    }
    if !spill.is_empty() {
        spill.extend_from_slice(&boxes[..n]);
        spill.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let order = if spill.is_empty() { &boxes[..n] } else { &spill[..] };
    for &(d2, i) in order {
        if d2 > worst {
            break;
        }
        if let RTreeNode::Parent(p) = &node.children()[i] {
            worst = k_nearest(p, q, k, worst, best);
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A seeded xorshift generator: the tests' moves, reproducible from the
    /// seed proptest shrinks.
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn brute_nearest(points: &[LatLon], q: LatLon) -> f64 {
        points.iter().map(|x| x.distance_m(q)).fold(f64::INFINITY, f64::min)
    }

    fn coord() -> impl Strategy<Value = LatLon> {
        prop_oneof![
            // anywhere
            (-90.0f64..=90.0, -180.0f64..=180.0),
            // near the poles
            (85.0f64..=90.0, -180.0f64..=180.0),
            (-90.0f64..=-85.0, -180.0f64..=180.0),
            // either side of the antimeridian
            (-60.0f64..=60.0, prop_oneof![175.0f64..=180.0, -180.0f64..=-175.0]),
        ]
        .prop_map(|(lat, lon)| p(lat, lon))
    }

    /// Teams start stacked at a few district centres and shuttle between
    /// them: the index must survive many entries sharing one position.
    #[test]
    fn many_points_sharing_positions_move_without_corrupting_the_tree() {
        let spots = [p(38.56, 68.78), p(40.28, 69.62), p(37.49, 71.55), p(38.56, 68.78), p(-85.0, 0.0)];
        let mut at: Vec<LatLon> = (0..500).map(|i| spots[i % spots.len()]).collect();
        let mut index = PointIndex::bulk_load(at.iter().copied().enumerate());
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let x = next();
            let i = (x % 500) as usize;
            let to = spots[((x >> 20) % spots.len() as u64) as usize];
            index.relocate(i, at[i], to);
            at[i] = to;
        }
        assert_eq!(index.len(), 500);
        let q = p(40.0, 69.0);
        assert!((index.nearest(q, 1)[0].1 - brute_nearest(&at, q)).abs() < 1e-6);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn nearest_equals_brute_force_haversine(
            points in prop::collection::vec(coord(), 1..200),
            q in coord(),
            k in 1usize..12,
        ) {
            let index = PointIndex::bulk_load(points.iter().copied().enumerate());
            let got = index.nearest(q, k);
            prop_assert_eq!(got.len(), k.min(points.len()));
            prop_assert!((got[0].1 - brute_nearest(&points, q)).abs() < 1e-6);
            let mut all: Vec<f64> = points.iter().map(|x| x.distance_m(q)).collect();
            all.sort_by(f64::total_cmp);
            for (i, (key, d)) in got.iter().enumerate() {
                prop_assert!((d - all[i]).abs() < 1e-6, "rank {} got {} want {}", i, d, all[i]);
                prop_assert!((points[*key].distance_m(q) - d).abs() < 1e-6);
            }
        }

        /// The bounded search of `nearest` on trees several levels deep
        /// (bulk-loaded, then reshaped by moves; many points share a
        /// position) gives exactly the distances of the lazy iterator, for
        /// k on both sides of `BOUNDED_K_MAX`.
        #[test]
        fn nearest_equals_the_lazy_iterator_on_deep_trees(
            seed in any::<u64>(),
            n in 1usize..4_000,
            moves in 0usize..2_000,
            q in coord(),
            k in prop_oneof![1usize..=12, 60usize..=70],
        ) {
            let mut next = xorshift(seed);
            let spots: Vec<LatLon> = (0..50)
                .map(|_| p((next() % 1_000) as f64 * 0.004 + 37.0, (next() % 1_000) as f64 * 0.006 + 68.0))
                .collect();
            let mut at: Vec<LatLon> = (0..n).map(|_| spots[(next() % 50) as usize]).collect();
            let mut index = PointIndex::bulk_load(at.iter().copied().enumerate());
            for _ in 0..moves {
                let i = (next() % n as u64) as usize;
                let to = if next().is_multiple_of(2) {
                    spots[(next() % 50) as usize]
                } else {
                    p((next() % 10_000) as f64 * 0.0004 + 37.0, (next() % 10_000) as f64 * 0.0006 + 68.0)
                };
                index.relocate(i, at[i], to);
                at[i] = to;
            }
            let got: Vec<f64> = index.nearest(q, k).iter().map(|&(_, d)| d).collect();
            let want: Vec<f64> = index.nearest_iter(q).take(k).map(|(_, d)| d).collect();
            prop_assert_eq!(got, want);
            for (key, d) in index.nearest(q, k) {
                prop_assert!((at[key].distance_m(q) - d).abs() < 1e-6);
            }
        }

        /// Inserts, moves and removals past several rebuilds of the k-d
        /// tree (some keys in it, some in the R-tree beside it, some slots
        /// removed): every query answers as a brute-force scan of what is
        /// there.
        #[test]
        fn answers_stay_exact_across_rebuilds(
            seed in any::<u64>(),
            n in 0usize..1_500,
            ops in 0usize..3_000,
            q in coord(),
            k in 1usize..12,
            radius_m in 0.0f64..300_000.0,
        ) {
            let mut next = xorshift(seed);
            let mut place = |spread: u64| p((next() % spread) as f64 * 0.004 + 37.0, (next() % spread) as f64 * 0.006 + 68.0);
            let mut at: Vec<Option<LatLon>> = (0..n).map(|_| Some(place(1_000))).collect();
            let mut index = PointIndex::bulk_load(at.iter().enumerate().filter_map(|(i, a)| a.map(|a| (i, a))));
            for op in 0..ops {
                let i = (op * 7 + 3) % (n + op / 4 + 1);
                if i >= at.len() {
                    at.resize(i + 1, None);
                }
                let to = place(if op % 3 == 0 { 20 } else { 1_000 });
                match (at[i], op % 5) {
                    (Some(from), 0) => {
                        prop_assert!(index.remove(i, from));
                        at[i] = None;
                    }
                    (Some(from), _) => {
                        index.relocate(i, from, to);
                        at[i] = Some(to);
                    }
                    (None, _) => {
                        prop_assert!(!index.remove(i, to));
                        index.insert(i, to);
                        at[i] = Some(to);
                    }
                }
            }
            let live: Vec<(usize, LatLon)> = at.iter().enumerate().filter_map(|(i, a)| a.map(|a| (i, a))).collect();
            prop_assert_eq!(index.len(), live.len());
            let mut listed: Vec<usize> = index.iter().map(|(key, _)| key).collect();
            listed.sort_unstable();
            prop_assert_eq!(listed, live.iter().map(|&(i, _)| i).collect::<Vec<_>>());

            let mut all: Vec<f64> = live.iter().map(|&(_, a)| a.distance_m(q)).collect();
            all.sort_by(f64::total_cmp);
            let got = index.nearest(q, k);
            prop_assert_eq!(got.len(), k.min(live.len()));
            for (rank, (key, d)) in got.iter().enumerate() {
                prop_assert!((d - all[rank]).abs() < 1e-6, "rank {} got {} want {}", rank, d, all[rank]);
                prop_assert!((at[*key].map_or(f64::NAN, |a| a.distance_m(q)) - d).abs() < 1e-6);
            }
            let lazy: Vec<f64> = index.nearest_iter(q).map(|(_, d)| d).collect();
            prop_assert_eq!(lazy.len(), all.len());
            for (got, want) in lazy.iter().zip(&all) {
                prop_assert!((got - want).abs() < 1e-6);
            }
            let borderline = |d: f64| (d - radius_m).abs() < 1e-6;
            let mut near: Vec<usize> =
                index.within(q, radius_m).filter(|&(_, d)| !borderline(d)).map(|(key, _)| key).collect();
            near.sort_unstable();
            let want: Vec<usize> = live
                .iter()
                .filter(|&&(_, a)| a.distance_m(q) <= radius_m && !borderline(a.distance_m(q)))
                .map(|&(i, _)| i)
                .collect();
            prop_assert_eq!(near, want);
        }

        #[test]
        fn within_equals_brute_force(
            points in prop::collection::vec(coord(), 0..200),
            q in coord(),
            radius_m in 0.0f64..3_000_000.0,
        ) {
            let index = PointIndex::bulk_load(points.iter().copied().enumerate());
            let mut got: Vec<usize> = index.within(q, radius_m).map(|(k, _)| k).collect();
            got.sort_unstable();
            let want: Vec<usize> = (0..points.len())
                .filter(|&i| points[i].distance_m(q) <= radius_m)
                .collect();
            // Points within a micrometre of the radius may fall either way.
            let borderline = |i: &usize| (points[*i].distance_m(q) - radius_m).abs() < 1e-6;
            let got_f: Vec<usize> = got.iter().copied().filter(|i| !borderline(i)).collect();
            let want_f: Vec<usize> = want.iter().copied().filter(|i| !borderline(i)).collect();
            prop_assert_eq!(got_f, want_f);
        }

        #[test]
        fn moving_points_are_found_at_their_new_place(
            points in prop::collection::vec(coord(), 1..50),
            moves in prop::collection::vec((0usize..50, coord()), 0..30),
            q in coord(),
        ) {
            let mut pts = points.clone();
            let mut index = PointIndex::bulk_load(pts.iter().copied().enumerate());
            for (i, to) in moves {
                let i = i % pts.len();
                index.relocate(i, pts[i], to);
                pts[i] = to;
            }
            prop_assert_eq!(index.len(), pts.len());
            let got = index.nearest(q, 1);
            prop_assert!((got[0].1 - brute_nearest(&pts, q)).abs() < 1e-6);
        }
    }
}
