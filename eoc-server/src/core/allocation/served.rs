//! How many persons of each demand the lexicographic optimum serves,
//! without the distances: a priority max-flow over in-range bitsets.
//!
//! # Method
//!
//! The vectors of persons served that some placement achieves form a
//! polymatroid (the flows of a bipartite network from the demands to a sink
//! through capacitated sites), so the greedy order gives its lexicographic
//! maximum: each demand in turn, most exposed first, takes all it can get
//! without taking anything from those before it. Here that is one
//! augmenting-path search after another. A demand first takes room at the
//! nearest sites in range that have some; when none has, a breadth-first
//! search over the sites looks for room reachable by moving persons of
//! earlier demands to other sites in their range (each move keeps what they
//! are served), and pushes along the path it finds.
//!
//! The search is over sites, not demands: an edge `a → b` exists while some
//! demand with persons at `a` has `b` in range. Each demand's range is a
//! bitset of sites, and each site keeps, for every other site, how many of
//! its demands have that site in range, so that a site's out-edges are one
//! bitset and a search costs about `sites × sites / 64` word operations.
//!
//! A search that finds no room has visited a set of sites that are all full
//! and whose out-edges all stay inside it. No later search can pass through
//! it (it could not leave it) and no placement can touch it (it has no
//! room), so it stays that way: its sites are marked dead and never searched
//! again. So at most one failed search per site visits anything.
//!
//! The placement the searches leave serves the right persons but pays
//! little attention to distance (nearest room first, and on a chain of
//! moves the persons who go least further); `mod.rs` hands the amounts to
//! the network simplex (`simplex.rs`), which minimises person-metres for
//! them, and keeps this placement only when the simplex cannot finish.

use super::{AllocParams, Allocation, Demand, Supply, flows_of};
use crate::core::geo::{chord_sq, chord_sq_to_m, m_to_chord_sq};

const NONE: u32 = u32::MAX;

/// Rows of bits, one row per item, `words` 64-bit words each.
struct Rows {
    words: usize,
    bits: Vec<u64>,
}

impl Rows {
    fn new(rows: usize, width: usize) -> Rows {
        let words = width.div_ceil(64);
        Rows { words, bits: vec![0; rows * words] }
    }

    fn row(&self, r: usize) -> &[u64] {
        &self.bits[r * self.words..(r + 1) * self.words]
    }

    fn row_mut(&mut self, r: usize) -> &mut [u64] {
        &mut self.bits[r * self.words..(r + 1) * self.words]
    }
}

/// Calls `f` with every bit set in `words`, lowest first.
#[inline]
fn each_bit(words: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in words.iter().enumerate() {
        let mut x = word;
        while x != 0 {
            f(w * 64 + x.trailing_zeros() as usize);
            x &= x - 1;
        }
    }
}

#[inline]
fn set(words: &mut [u64], b: usize) {
    words[b / 64] |= 1 << (b % 64);
}

#[inline]
fn clear(words: &mut [u64], b: usize) {
    words[b / 64] &= !(1 << (b % 64));
}

#[inline]
fn has(words: &[u64], b: usize) -> bool {
    words[b / 64] & (1 << (b % 64)) != 0
}

/// The persons each demand is served at the lexicographic optimum, and
/// the search that found them, holding a placement that serves them.
pub(super) struct Served<'a> {
    /// Per demand, in demand order.
    pub amounts: Vec<u32>,
    search: Search<'a>,
}

struct Search<'a> {
    demands: &'a [Demand],
    supplies: &'a [Supply],
    /// Each demand's and each site's unit vector.
    demand_units: Vec<[f64; 3]>,
    site_units: Vec<[f64; 3]>,
    /// Per demand, the sites with room in range.
    range: Rows,
    /// Per site, the demands with persons there.
    users: Vec<Vec<u32>>,
    /// `count[a · sites + b]`: demands with persons at `a` and `b` in range.
    count: Vec<u32>,
    /// Per site, the sites its persons could move to (count above zero).
    out: Rows,
    free: Vec<u32>,
    /// Sites with room left.
    room: Vec<u64>,
    /// Sites full and closed under moves.
    dead: Vec<u64>,
    /// Per demand, `(position in supplies, persons)`.
    placed: Vec<Vec<(u32, u32)>>,
    // Scratch of a search.
    visited: Vec<u64>,
    parent: Vec<u32>,
    queue: Vec<u32>,
    path: Vec<(usize, usize)>,
}

impl<'a> Search<'a> {
    /// Each demand's range and an empty placement.
    fn new(demands: &'a [Demand], supplies: &'a [Supply], params: &AllocParams) -> Search<'a> {
        let (max_m, max_chord2) = params.reach();
        // Below this squared chord a pair is in range without the arcsine.
        let surely_in = m_to_chord_sq(max_m) * (1.0 - 1e-9);
        let sites = supplies.len();
        let site_units: Vec<[f64; 3]> = supplies.iter().map(|s| s.at.to_unit()).collect();
        let demand_units: Vec<[f64; 3]> = demands.iter().map(|d| d.at.to_unit()).collect();
        let mut range = Rows::new(demands.len(), sites);
        for (i, (d, &u)) in demands.iter().zip(&demand_units).enumerate() {
            if d.persons == 0 {
                continue;
            }
            let row = range.row_mut(i);
            for (t, s) in supplies.iter().enumerate() {
                if s.free == 0 {
                    continue;
                }
                let c2 = chord_sq(u, site_units[t]);
                if c2 < surely_in || (c2 <= max_chord2 && chord_sq_to_m(c2) <= max_m) {
                    set(row, t);
                }
            }
        }
        let words = range.words;
        let mut room = vec![0; words];
        for (t, sup) in supplies.iter().enumerate() {
            if sup.free > 0 {
                set(&mut room, t);
            }
        }
        Search {
            demands,
            supplies,
            demand_units,
            site_units,
            range,
            users: vec![Vec::new(); sites],
            count: vec![0; sites * sites],
            out: Rows::new(sites, sites),
            free: supplies.iter().map(|s| s.free).collect(),
            room,
            dead: vec![0; words],
            placed: vec![Vec::new(); demands.len()],
            visited: vec![0; words],
            parent: vec![NONE; sites],
            queue: Vec::with_capacity(sites),
            path: Vec::new(),
        }
    }

    /// Adds `n` persons of demand `d` at site `a`, taking room there.
    fn add(&mut self, d: usize, a: usize, n: u32) {
        self.free[a] -= n;
        if self.free[a] == 0 {
            clear(&mut self.room, a);
        }
        self.join(d, a, n);
    }

    /// Adds `n` persons of demand `d` at site `a`, room aside.
    fn join(&mut self, d: usize, a: usize, n: u32) {
        let mine = &mut self.placed[d];
        if let Some(e) = mine.iter_mut().find(|e| e.0 as usize == a) {
            e.1 += n;
            return;
        }
        mine.push((a as u32, n));
        self.users[a].push(d as u32);
        self.recount(d, a, true);
    }

    /// Takes `n` persons of demand `d` away from site `a` (where it has at
    /// least that many), room aside.
    fn leave(&mut self, d: usize, a: usize, n: u32) {
        let mine = &mut self.placed[d];
        let Some(k) = mine.iter().position(|e| e.0 as usize == a) else { return };
        mine[k].1 -= n;
        if mine[k].1 > 0 {
            return;
        }
        mine.swap_remove(k);
        if let Some(k) = self.users[a].iter().position(|&u| u as usize == d) {
            self.users[a].swap_remove(k);
        }
        self.recount(d, a, false);
    }

    /// Demand `d` now has persons at site `a` (`arrived`) or no longer:
    /// the sites in its range gain or lose one reason to be reachable
    /// from `a`.
    fn recount(&mut self, d: usize, a: usize, arrived: bool) {
        let (count, out, sites) = (&mut self.count, &mut self.out, self.supplies.len());
        let out_a = out.row_mut(a);
        each_bit(self.range.row(d), |b| {
            let c = &mut count[a * sites + b];
            if arrived {
                *c += 1;
                if *c == 1 {
                    set(out_a, b);
                }
            } else {
                *c -= 1;
                if *c == 0 {
                    clear(out_a, b);
                }
            }
        });
    }

    fn persons_at(&self, d: usize, a: usize) -> u32 {
        self.placed[d].iter().find(|e| e.0 as usize == a).map_or(0, |e| e.1)
    }

    /// Places up to `need` more persons of demand `i` without taking any
    /// from the others (their persons may move); how many it placed.
    fn serve(&mut self, i: usize, need: u32) -> u32 {
        let at = self.demand_units[i];
        let mut left = need;
        while left > 0 {
            // Room in range: the nearest site that has some.
            let mut best = (f64::INFINITY, NONE);
            for (w, (&r, &room)) in self.range.row(i).iter().zip(&self.room).enumerate() {
                let mut x = r & room;
                while x != 0 {
                    let t = w * 64 + x.trailing_zeros() as usize;
                    x &= x - 1;
                    let c2 = chord_sq(at, self.site_units[t]);
                    if c2 < best.0 {
                        best = (c2, t as u32);
                    }
                }
            }
            if best.1 != NONE {
                let t = best.1 as usize;
                let n = left.min(self.free[t]);
                self.add(i, t, n);
                left -= n;
                continue;
            }
            // No room in range: search for a chain of moves that makes some.
            let Some(found) = self.search(i) else { break };
            // The moves, from the site with room back to one in range of i:
            // for each step a → b, the demand at a with b in range whose
            // persons go least further by moving.
            let mut path = std::mem::take(&mut self.path);
            path.clear();
            let mut n = left.min(self.free[found]);
            let mut b = found;
            while self.parent[b] != NONE {
                let a = self.parent[b] as usize;
                let mut mover = (f64::INFINITY, 0u32, NONE);
                for &d in &self.users[a] {
                    if has(self.range.row(d as usize), b) {
                        let u = self.demand_units[d as usize];
                        let extra = chord_sq_to_m(chord_sq(u, self.site_units[b]))
                            - chord_sq_to_m(chord_sq(u, self.site_units[a]));
                        if extra < mover.0 {
                            mover = (extra, self.persons_at(d as usize, a), d);
                        }
                    }
                }
                // The edge exists, so some demand there has `b` in range.
                if mover.2 == NONE {
                    break;
                }
                n = n.min(mover.1);
                path.push((mover.2 as usize, a));
                b = a;
            }
            if self.parent[b] != NONE {
                self.path = path;
                break;
            }
            let mut to = found;
            for &(d, a) in &path {
                self.leave(d, a, n);
                self.join(d, to, n);
                to = a;
            }
            self.path = path;
            // `to` is now the site in range of i whose persons moved on.
            self.free[found] -= n;
            if self.free[found] == 0 {
                clear(&mut self.room, found);
            }
            self.join(i, to, n);
            left -= n;
        }
        need - left
    }

    /// Breadth-first over the sites in range of demand `i` and those their
    /// persons could move to, for a site with room; its parents are in
    /// `parent`. `None`, with the sites visited marked dead, when there is
    /// none.
    fn search(&mut self, i: usize) -> Option<usize> {
        let words = self.range.words;
        self.queue.clear();
        for w in 0..words {
            self.visited[w] = self.range.row(i)[w] & !self.dead[w];
        }
        let (parent, queue) = (&mut self.parent, &mut self.queue);
        each_bit(&self.visited, |t| {
            parent[t] = NONE;
            queue.push(t as u32);
        });
        let mut head = 0;
        while head < self.queue.len() {
            let a = self.queue[head] as usize;
            head += 1;
            for w in 0..words {
                let mut x = self.out.row(a)[w] & !self.visited[w] & !self.dead[w];
                self.visited[w] |= x;
                while x != 0 {
                    let b = w * 64 + x.trailing_zeros() as usize;
                    x &= x - 1;
                    self.parent[b] = a as u32;
                    if has(&self.room, b) {
                        return Some(b);
                    }
                    self.queue.push(b as u32);
                }
            }
        }
        // Full, and closed under moves: nothing will ever get in.
        for w in 0..words {
            self.dead[w] |= self.visited[w];
        }
        None
    }

    /// The placement as an allocation, flagged approximate: each demand's
    /// flows nearest site first, and what it lacks of its persons short.
    fn allocation(&self) -> Allocation {
        let mut out = Allocation { approximate: true, ..Allocation::default() };
        for (i, d) in self.demands.iter().enumerate() {
            let mine = flows_of(d, &self.placed[i], self.supplies);
            let placed: u32 = mine.iter().map(|f| f.persons).sum();
            out.flows.extend(mine);
            let short = d.persons.saturating_sub(placed);
            if short > 0 {
                out.shortfall.push((d.village, short));
            }
        }
        out
    }
}

/// The persons of each demand (in order) served at the lexicographic
/// optimum over `supplies` within `params.max_distance_m`, and a placement
/// serving them.
pub(super) fn solve<'a>(demands: &'a [Demand], supplies: &'a [Supply], params: &AllocParams) -> Served<'a> {
    let mut search = Search::new(demands, supplies, params);
    let amounts = (0..demands.len()).map(|i| search.serve(i, demands[i].persons)).collect();
    Served { amounts, search }
}

impl Served<'_> {
    /// Per demand, the sites (positions in the supplies) where the search
    /// placed its persons.
    pub(super) fn sites(&self, i: usize) -> &[(u32, u32)] {
        &self.search.placed[i]
    }

    /// Demand–site pairs in range, counting sites with room only.
    pub(super) fn pairs_in_range(&self) -> usize {
        self.search.range.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The placement the searches left, as an allocation: the right persons
    /// served, nearest room first, person-metres not minimised.
    pub(super) fn into_allocation(self) -> Allocation {
        self.search.allocation()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_feasible, instance, served};
    use super::super::{AllocParams, Demand, Supply, exact};
    use super::*;
    use crate::core::geo::LatLon;
    use crate::core::world::{SiteIdx, VillageIdx};
    use proptest::prelude::*;

    fn at(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).unwrap()
    }

    /// The first village reaches both sites and fills the nearer; the
    /// second reaches only that one. Serving the second needs persons of
    /// the first moved to the other site, which a nearest-first placement
    /// alone would not do.
    #[test]
    fn later_demands_get_room_by_moving_earlier_ones() {
        let demands = [
            Demand { village: VillageIdx(0), at: at(38.0, 69.0), persons: 100 },
            Demand { village: VillageIdx(1), at: at(38.05, 69.0), persons: 100 },
        ];
        let supplies = [
            Supply { site: SiteIdx(0), at: at(38.01, 69.0), free: 100 },
            Supply { site: SiteIdx(1), at: at(37.95, 69.0), free: 60 },
        ];
        // Within 8 km: site 0 from both (1.1 and 4.4 km), site 1 only from
        // the first (5.6 km; 11.1 km from the second).
        let params = AllocParams { max_distance_m: 8_000.0 };
        let got = solve(&demands, &supplies, &params);
        assert_eq!(got.amounts, [100, 60]);
        let a = got.into_allocation();
        check_feasible(&a, &demands, &supplies, &params);
        assert_eq!(a.shortfall, [(VillageIdx(1), 40)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The same persons per demand as the exact reference serves, and
        /// a placement within capacity and range that serves them.
        #[test]
        fn the_persons_served_are_the_lexicographic_optimum((demands, supplies, params) in instance()) {
            let got = solve(&demands, &supplies, &params);
            let want = exact::solve(&demands, &supplies, &params);
            let want_served: Vec<u64> = served(&want, &demands);
            let got_served: Vec<u64> = got.amounts.iter().map(|&n| u64::from(n)).collect();
            prop_assert_eq!(&got_served, &want_served);
            let a = got.into_allocation();
            check_feasible(&a, &demands, &supplies, &params);
            prop_assert_eq!(served(&a, &demands), want_served);
        }
    }
}
