//! Successive shortest paths over a graph whose nodes are sites.
//!
//! # Model
//!
//! Village `u` may send people to any site within `max_distance_m` at cost
//! `d(u, t)` metres per person. Each site `t` keeps a price `p(t) ≥ 0`, zero
//! wherever there is room. The invariant is that every village with people at
//! site `s` is at a cheapest site for it: `d(u, s) + p(s) ≤ d(u, t) + p(t)`
//! for every site `t` within range. That is the reduced-cost condition of
//! min-cost flow with potentials `−p`, written on the graph where the villages
//! are contracted away: moving one of `u`'s people from `s` to `t` is an arc
//! `s → t` of reduced cost `d(u,t) + p(t) − d(u,s) − p(s) ≥ 0`. The invariant
//! means the current flow is the cheapest for the amounts it serves.
//!
//! Demands are served in priority order. For demand `i`, Dijkstra runs from
//! `i` (entering site `t` at `d(i,t) + p(t)`) over those arcs until it settles
//! a site with room, then the flow is augmented along the path by its
//! bottleneck and the prices of settled sites rise by `D − dist`. Shortest
//! augmenting paths keep the invariant; augmenting from a later demand never
//! takes people away from an earlier one. When no site with room is reachable
//! the demand keeps a shortfall, and every site the search reached is a closed
//! set without room that no later augmenting path can enter; those sites are
//! marked dead and later searches skip them, so the unmet tail of a tight
//! instance costs one search, not one per village.
//!
//! # Lazy candidates, exactly
//!
//! A village only lists its nearest [`CANDIDATES`] sites at first. A site `t`
//! beyond the list is at least `next_m` away, and `p(t) ≥ 0`, so every arc to
//! such a site costs at least `base + next_m`; Dijkstra receives that bound as
//! an event in its heap and only extends the list when the event comes up
//! before the search has ended. The search therefore is exact on the complete
//! graph of all pairs within range, while most villages never look past their
//! first few sites.
//!
//! # Warm start
//!
//! After a change the previous flow is kept where still valid, with the
//! prices it was optimal for. Anything that would break the invariant is
//! evicted and becomes pending again. Because a warm flow can hold people of
//! a later demand while an earlier one waits, searches from demand `i` may
//! also end at a site holding people of a later demand `j > i` (the latest
//! such demand, nearest path): `j` then yields the place and is pending again.
//! That is successive shortest paths on the network where each demand has an
//! "unserved" arc with a penalty that falls with rank, so the result is the
//! same lexicographic optimum a cold solve reaches.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use super::site_tree;
use super::{AllocParams, Allocation, Demand, Flow, PriceHint, Supply, WarmStart};
use crate::core::kdtree::KdTree;
use crate::core::world::{SiteIdx, VillageIdx};

/// Sites a village lists before it needs to look further. Sixteen covers the
/// sites a village ends up using in nearly every realistic instance; a longer
/// list only costs time in every search that passes the village.
pub(super) const CANDIDATES: usize = 16;

/// Work (heap events plus arc relaxations) one solve may do before it stops
/// looking for shortest augmenting paths. Exact solves of loose instances
/// use a few thousand units; contended ones (little room near many
/// villages) can need billions, which would hold the writer for minutes.
/// Past the budget the remaining demands are served greedily, in priority
/// order, at the nearest sites with room: still feasible and
/// most-exposed-first, no longer minimal in person-distance. About 20
/// million units take a second here, so this bounds a solve to roughly
/// 200 ms. [`super::allocate`] only spends it when the auction cannot place
/// everybody; a warm re-solve spends it before handing over to the auction.
pub(super) const WORK_BUDGET: u64 = 4_000_000;

/// The budget of the first, exact attempt of [`super::allocate`] (a fifth
/// of a millisecond): loose instances finish within it; contended ones
/// give up without placing the rest and go to the auction.
pub(super) const QUICK_BUDGET: u64 = 10_000;

/// Reduced costs that rounding pushed below zero by less than this many
/// metres are treated as zero.
const EPS_M: f64 = 1e-6;

/// "No village": the event is a site being reached.
const NONE: u32 = u32::MAX;
/// "From the root": the event enters from the demand being served.
const ROOT: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
struct Cands {
    built: bool,
    /// Site position in the supply slice and great-circle metres, nearest first.
    sites: Vec<(u32, f64)>,
    /// Metres to the nearest site in range not listed; infinite if none.
    next_m: f64,
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    site: u32,
    persons: u32,
    dist_m: f64,
}

#[derive(Debug, Clone, Copy)]
enum Pred {
    Root,
    Via { from: u32, village: u32 },
}

/// A heap event: a site reached at `key`, or (when `village != NONE`) the
/// lower bound `key` on every arc from `site` via `village` to a site beyond
/// the first `upto` of its candidates.
#[derive(Debug, Clone, Copy)]
struct Event {
    key: f64,
    base: f64,
    site: u32,
    village: u32,
    upto: u32,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on key; site events before bound events at equal keys so
        // a search never extends a list it does not need.
        other.key.total_cmp(&self.key).then_with(|| (other.village != NONE).cmp(&(self.village != NONE)))
    }
}

/// What an augmentation left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Augmented {
    /// The path filled its last site and every arc on it still carries
    /// people: the search may go on.
    Saturated,
    /// Anything else.
    Other,
}

enum Outcome {
    /// Reached a site with room.
    Room(u32),
    /// No room reachable; reached a site holding people of a later demand.
    Displace { site: u32, demand: u32 },
    /// Nothing reachable to serve the demand with.
    Stuck,
    /// The work budget ran out before the search ended.
    OutOfBudget,
}

/// The allocation state and scratch space of one solve.
pub(super) struct Solver<'a> {
    demands: &'a [Demand],
    supplies: &'a [Supply],
    max_m: f64,
    max_chord2: f64,
    tree: KdTree<u32>,
    knn_buf: Vec<(u32, f64)>,
    // Per demand.
    cands: Vec<Cands>,
    left: Vec<u32>,
    placed: Vec<Vec<Placed>>,
    queued: Vec<bool>,
    // Per site.
    room: Vec<u32>,
    price: Vec<f64>,
    hosts: Vec<Vec<u32>>,
    dead: Vec<bool>,
    /// Which failed search made a site dead (1 for the first), 0 if live.
    dead_gen: Vec<u32>,
    /// Failed searches that reached any site.
    dead_sets: u32,
    // Dijkstra scratch, reset by epoch rather than by clearing.
    seen: Vec<u32>,
    done: Vec<u32>,
    epoch: u32,
    dist: Vec<f64>,
    pred: Vec<Pred>,
    heap: BinaryHeap<Event>,
    settled: Vec<u32>,
    /// Whether this search relaxed the demand's own arcs (`direct` may
    /// end a search without).
    rooted: bool,
    pending: BinaryHeap<Reverse<u32>>,
    /// Whether a warm flow may hold people of later demands, so searches
    /// look for places to take back.
    displacing: bool,
    /// Heap events processed, against `budget`.
    work: u64,
    budget: u64,
    /// Whether the budget ran out and greedy placement took over.
    exhausted: bool,
    /// Whether to place the rest greedily once the budget runs out, or to
    /// stop (a quick attempt whose caller has a better fallback).
    greedy_after_budget: bool,
    /// The sites with room once greedy placement took over (it only ever
    /// takes room), keyed by position in the supply slice.
    open: Option<KdTree<u32>>,
    /// Sites the greedy placement under way filled (scratch of `greedy`).
    filled: Vec<([f64; 3], u32)>,
}

impl<'a> Solver<'a> {
    /// An empty flow with zero prices.
    pub(super) fn new(demands: &'a [Demand], supplies: &'a [Supply], params: &AllocParams) -> Self {
        let (max_m, max_chord2) = params.reach();
        let tree = site_tree(supplies);
        let (n, m) = (demands.len(), supplies.len());
        Solver {
            demands,
            supplies,
            max_m,
            max_chord2,
            tree,
            knn_buf: Vec::with_capacity(2 * CANDIDATES + 2),
            cands: vec![Cands::default(); n],
            left: demands.iter().map(|d| d.persons).collect(),
            placed: vec![Vec::new(); n],
            queued: vec![false; n],
            room: supplies.iter().map(|s| s.free).collect(),
            price: vec![0.0; m],
            hosts: vec![Vec::new(); m],
            dead: vec![false; m],
            dead_gen: vec![0; m],
            dead_sets: 0,
            seen: vec![0; m],
            done: vec![0; m],
            epoch: 0,
            dist: vec![0.0; m],
            pred: vec![Pred::Root; m],
            heap: BinaryHeap::new(),
            settled: Vec::new(),
            rooted: false,
            pending: BinaryHeap::new(),
            displacing: false,
            work: 0,
            budget: WORK_BUDGET,
            greedy_after_budget: true,
            exhausted: false,
            open: None,
            filled: Vec::new(),
        }
    }

    /// The same solver with another work budget.
    pub(super) fn with_budget(mut self, budget: u64) -> Self {
        self.budget = budget;
        self
    }

    /// An exact solve from an empty flow within the work budget, or, as
    /// soon as the budget runs out, the k-d tree of the sites for whatever
    /// solves next.
    pub(super) fn solve_within_budget(mut self) -> Result<Allocation, KdTree<u32>> {
        self.greedy_after_budget = false;
        for i in 0..self.demands.len() {
            self.serve(i as u32);
            if self.exhausted {
                return Err(self.tree);
            }
        }
        Ok(self.finish())
    }

    /// Serves every demand in priority order from an empty flow, greedily
    /// once the budget is spent.
    #[cfg(test)]
    pub(super) fn solve_cold(mut self) -> Allocation {
        for i in 0..self.demands.len() {
            self.serve(i as u32);
        }
        self.finish()
    }

    /// Starts from `previous` (made for the same sites by [`Solver::finish`])
    /// and repairs what the change broke. `None` when `previous` cannot seed
    /// this instance, and a cold solve is needed.
    pub(super) fn solve_warm(mut self, previous: &Allocation, warm: &WarmStart) -> Option<Allocation> {
        if warm.max_distance_m.to_bits() != self.max_m.to_bits() {
            return None;
        }
        let mut demand_of: HashMap<VillageIdx, u32> = HashMap::with_capacity(self.demands.len());
        for (i, d) in self.demands.iter().enumerate() {
            if demand_of.insert(d.village, i as u32).is_some() {
                return None;
            }
        }
        let mut supply_of: HashMap<SiteIdx, u32> = HashMap::with_capacity(self.supplies.len());
        for (i, s) in self.supplies.iter().enumerate() {
            if supply_of.insert(s.site, i as u32).is_some() {
                return None;
            }
        }
        // Prices of sites that are still where they were; a new or moved
        // site starts at zero and is checked like a site that gained room.
        let mut recheck: Vec<u32> = Vec::new();
        let mut known = vec![false; self.supplies.len()];
        for h in &warm.prices {
            if let Some(&t) = supply_of.get(&h.site)
                && self.supplies[t as usize].at == h.at
                && h.price.is_finite()
            {
                self.price[t as usize] = h.price.max(0.0);
                known[t as usize] = true;
            }
        }
        for (t, k) in known.iter().enumerate() {
            if !k {
                recheck.push(t as u32);
            }
        }
        // Keep every previous flow that is still possible.
        for f in &previous.flows {
            let (Some(&u), Some(&t)) = (demand_of.get(&f.village), supply_of.get(&f.site)) else {
                continue;
            };
            let (ui, ti) = (u as usize, t as usize);
            if !known[ti] {
                continue;
            }
            let d = self.demands[ui].at.distance_m(self.supplies[ti].at);
            if d > self.max_m || (d - f.distance_m).abs() > EPS_M {
                continue;
            }
            let take = f.persons.min(self.left[ui]);
            if take > 0 {
                self.left[ui] -= take;
                self.add_flow(u, t, take, d);
            }
        }
        // Sites whose room shrank below their load give up people, latest
        // demands first: they would be the first displaced anyway.
        for t in 0..self.supplies.len() {
            let load: u64 = self.hosts[t]
                .iter()
                .map(|&u| u64::from(self.flow_at(u, t as u32).map_or(0, |p| p.persons)))
                .sum();
            let free = u64::from(self.supplies[t].free);
            if load > free {
                let mut excess = load - free;
                let mut by_rank = self.hosts[t].clone();
                by_rank.sort_unstable_by(|a, b| b.cmp(a));
                for u in by_rank {
                    if excess == 0 {
                        break;
                    }
                    let have = self.flow_at(u, t as u32).map_or(0, |p| p.persons);
                    let out = have.min(u32::try_from(excess).unwrap_or(u32::MAX));
                    self.remove_flow(u, t as u32, out);
                    self.left[u as usize] += out;
                    excess -= u64::from(out);
                }
                self.room[t] = 0;
            } else {
                self.room[t] = (free - load) as u32;
            }
            if self.room[t] > 0 && self.price[t] > 0.0 {
                recheck.push(t as u32);
            }
        }
        // A site with room must cost nothing; lowering its price may make it
        // cheaper for villages placed elsewhere, which then move out and
        // leave room (and possibly a price to lower) behind them.
        while let Some(t) = recheck.pop() {
            let ti = t as usize;
            if known[ti] && (self.room[ti] == 0 || self.price[ti] == 0.0) {
                continue;
            }
            self.price[ti] = 0.0;
            known[ti] = true;
            let at = self.supplies[ti].at;
            for u in 0..self.demands.len() {
                // All of a village's places cost it the same (the invariant),
                // but take the dearest in case rounding says otherwise.
                let Some(worst) = self.placed[u]
                    .iter()
                    .map(|p| p.dist_m + self.price[p.site as usize])
                    .max_by(f64::total_cmp)
                else {
                    continue;
                };
                let d = self.demands[u].at.distance_m(at);
                if d > self.max_m || d >= worst - EPS_M {
                    continue;
                }
                for p in std::mem::take(&mut self.placed[u]) {
                    let si = p.site as usize;
                    if let Some(h) = self.hosts[si].iter().position(|&v| v == u as u32) {
                        self.hosts[si].swap_remove(h);
                    }
                    self.room[si] += p.persons;
                    self.left[u] += p.persons;
                    if self.price[si] > 0.0 {
                        recheck.push(p.site);
                    }
                }
            }
        }
        self.displacing = true;
        #[cfg(test)]
        if let Err(e) = self.check_invariant("after warm setup") {
            panic!("{e}");
        }
        for i in 0..self.demands.len() {
            if self.left[i] > 0 {
                self.queued[i] = true;
                self.pending.push(Reverse(i as u32));
            }
        }
        while let Some(Reverse(i)) = self.pending.pop() {
            self.queued[i as usize] = false;
            self.serve(i);
        }
        Some(self.finish())
    }

    /// Checks the invariant by brute force; `Err` names the first breach.
    #[cfg(test)]
    pub(super) fn check_invariant(&self, what: &str) -> Result<(), String> {
        for (t, &p) in self.price.iter().enumerate() {
            if p < 0.0 || (self.room[t] > 0 && p != 0.0) {
                return Err(format!("{what}: site {t} price {p} room {}", self.room[t]));
            }
        }
        for (u, mine) in self.placed.iter().enumerate() {
            for here in mine {
                if self.dead[here.site as usize] {
                    continue;
                }
                let h = here.dist_m + self.price[here.site as usize];
                for (t, s) in self.supplies.iter().enumerate() {
                    let d = self.demands[u].at.distance_m(s.at);
                    if d <= self.max_m && !self.dead[t] && d + self.price[t] < h - 1e-3 {
                        return Err(format!(
                            "{what}: village {u} at site {} (cost {h}) prefers site {t} (cost {})",
                            here.site,
                            d + self.price[t]
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Augments from demand `i` until it is served or nothing is reachable.
    ///
    /// One search serves many augmenting paths: when a path fills the site
    /// it ends at and leaves every other arc on it with people still on it
    /// (the common case, a big village filling small schools one after the
    /// other), the residual graph changed only by that site having no room
    /// and new hosts whose arcs leave at the level they were already reached
    /// at. Dijkstra can therefore go on from where it stopped: the distances
    /// it settled stay shortest, and the next site with room it reaches ends
    /// the next shortest augmenting path. Prices rise once, to the level of
    /// the last path, when the search ends (the rises of successive paths
    /// telescope). Anything else (a path that emptied an arc, no room
    /// reachable after a path, a displacement) starts a fresh search.
    fn serve(&mut self, i: u32) {
        if self.exhausted {
            self.greedy(i);
            return;
        }
        while self.left[i as usize] > 0 {
            let mut outcome = self.search(i);
            // The level of the last path this search augmented, whose
            // price rise is still to be made.
            let mut level: Option<f64> = None;
            loop {
                match outcome {
                    Outcome::OutOfBudget => {
                        if let Some(d) = level {
                            self.raise_prices(d);
                        }
                        self.exhausted = true;
                        if self.greedy_after_budget {
                            self.greedy(i);
                        }
                        return;
                    }
                    Outcome::Room(t) => {
                        let step = self.augment(i, t, None);
                        level = Some(self.dist[t as usize]);
                        match step {
                            Some(Augmented::Saturated) if self.left[i as usize] > 0 => {
                                self.reopen(i, t);
                                outcome = self.run(i);
                                continue;
                            }
                            Some(_) => break,
                            None => {
                                self.raise_prices(self.dist[t as usize]);
                                return;
                            }
                        }
                    }
                    Outcome::Displace { site, demand } if level.is_none() => {
                        let step = self.augment(i, site, Some(demand));
                        level = Some(self.dist[site as usize]);
                        if step.is_none() {
                            self.raise_prices(self.dist[site as usize]);
                            return;
                        }
                        break;
                    }
                    Outcome::Stuck if level.is_none() => {
                        if !self.settled.is_empty() {
                            self.dead_sets += 1;
                        }
                        for k in 0..self.settled.len() {
                            let t = self.settled[k] as usize;
                            self.dead[t] = true;
                            self.dead_gen[t] = self.dead_sets;
                        }
                        return;
                    }
                    // Paths were augmented and then no room was reachable:
                    // settle their prices and look again from scratch.
                    Outcome::Displace { .. } | Outcome::Stuck => break,
                }
            }
            if let Some(d) = level {
                self.raise_prices(d);
            }
        }
    }

    /// Places what is left of demand `i` at the nearest sites with room,
    /// within range: the fallback once the work budget is spent. The sites
    /// with room are walked nearest first in a k-d tree of their own, which
    /// a site leaves when it fills, so a village whose neighbourhood is full
    /// does not look at the full sites again and again.
    fn greedy(&mut self, i: u32) {
        let (room, supplies) = (&self.room, self.supplies);
        let mut open = self.open.take().unwrap_or_else(|| {
            KdTree::new(
                (0..room.len() as u32)
                    .filter(|&t| room[t as usize] > 0)
                    .map(|t| (supplies[t as usize].at.to_unit(), t))
                    .collect(),
            )
        });
        let at = self.demands[i as usize].at;
        let mut filled = std::mem::take(&mut self.filled);
        if !open.is_empty() {
            for (t, chord2, unit) in open.nearest_iter(at.to_unit()) {
                if chord2 > self.max_chord2 || self.left[i as usize] == 0 {
                    break;
                }
                let ti = t as usize;
                if self.room[ti] == 0 || self.flow_at(i, t).is_some() {
                    continue;
                }
                let d = at.distance_m(self.supplies[ti].at);
                if d > self.max_m {
                    continue;
                }
                self.place_greedily(i, t, d);
                if self.room[ti] == 0 {
                    filled.push((unit, t));
                }
            }
        }
        for (unit, t) in filled.drain(..) {
            open.remove(unit, t);
        }
        self.filled = filled;
        self.open = Some(open);
    }

    /// Places as many of demand `i`'s people at site `t` (`d` metres away)
    /// as it has room for, keeping the count of sites with room.
    fn place_greedily(&mut self, i: u32, t: u32, d: f64) {
        let ti = t as usize;
        let take = self.left[i as usize].min(self.room[ti]);
        self.room[ti] -= take;
        self.left[i as usize] -= take;
        self.add_flow(i, t, take, d);
    }

    fn flow_at(&self, u: u32, t: u32) -> Option<&Placed> {
        self.placed[u as usize].iter().find(|p| p.site == t)
    }

    fn add_flow(&mut self, u: u32, t: u32, persons: u32, dist_m: f64) {
        let list = &mut self.placed[u as usize];
        if let Some(p) = list.iter_mut().find(|p| p.site == t) {
            p.persons += persons;
        } else {
            list.push(Placed { site: t, persons, dist_m });
            self.hosts[t as usize].push(u);
        }
    }

    fn remove_flow(&mut self, u: u32, t: u32, persons: u32) {
        let list = &mut self.placed[u as usize];
        if let Some(k) = list.iter().position(|p| p.site == t) {
            list[k].persons -= persons;
            if list[k].persons == 0 {
                list.swap_remove(k);
                let hosts = &mut self.hosts[t as usize];
                if let Some(h) = hosts.iter().position(|&v| v == u) {
                    hosts.swap_remove(h);
                }
            }
        }
    }

    /// Makes sure village `u` lists at least `want` candidates (or all there
    /// are in range). Earlier entries never move, so events that relaxed a
    /// prefix stay valid.
    fn ensure_cands(&mut self, u: u32, want: usize) {
        let c = &self.cands[u as usize];
        if c.built && (c.sites.len() >= want || c.next_m.is_infinite()) {
            return;
        }
        let at = self.demands[u as usize].at;
        let k = want.max(CANDIDATES);
        self.tree.nearest(at.to_unit(), k + 1, self.max_chord2, &mut self.knn_buf);
        let supplies = self.supplies;
        let max_m = self.max_m;
        let c = &mut self.cands[u as usize];
        c.built = true;
        c.next_m = f64::INFINITY;
        let mut taken = 0;
        for &(t, _) in self.knn_buf.iter() {
            let d = at.distance_m(supplies[t as usize].at);
            if d > max_m {
                continue;
            }
            if taken == k {
                // Rounding between chord and great-circle order is far
                // below a millimetre; the slack keeps the bound a bound.
                c.next_m = d - EPS_M;
                break;
            }
            taken += 1;
            if !c.sites.iter().any(|&(s, _)| s == t) {
                c.sites.push((t, d));
            }
        }
    }

    fn relax(&mut self, t: u32, key: f64, pred: Pred) {
        let ti = t as usize;
        if self.dead[ti] || self.done[ti] == self.epoch {
            return;
        }
        if self.seen[ti] != self.epoch || key < self.dist[ti] {
            self.seen[ti] = self.epoch;
            self.dist[ti] = key;
            self.pred[ti] = pred;
            self.heap.push(Event { key, base: 0.0, site: t, village: NONE, upto: 0 });
        }
    }

    /// Relaxes the arcs via village `u` to its candidates `from_k..`, where
    /// entering candidate `t` costs `base + d(u,t) + p(t)`, and queues the
    /// bound for the candidates beyond.
    fn relax_village(&mut self, u: u32, from_site: u32, base: f64, floor: f64, from_k: usize) {
        let pred = if from_site == ROOT { Pred::Root } else { Pred::Via { from: from_site, village: u } };
        let n = self.cands[u as usize].sites.len();
        // Relaxations are most of a contended search's cost: they count
        // against the budget as much as heap events do.
        self.work += n.saturating_sub(from_k) as u64;
        for k in from_k..n {
            let (t, d) = self.cands[u as usize].sites[k];
            if t == from_site {
                continue;
            }
            let key = (base + d + self.price[t as usize]).max(floor);
            self.relax(t, key, pred);
        }
        let next_m = self.cands[u as usize].next_m;
        if next_m.is_finite() {
            let key = (base + next_m).max(floor);
            self.heap.push(Event { key, base, site: from_site, village: u, upto: n as u32 });
        }
    }

    fn search(&mut self, i: u32) -> Outcome {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.seen.fill(0);
            self.done.fill(0);
            self.epoch = 1;
        }
        self.heap.clear();
        self.settled.clear();
        self.ensure_cands(i, CANDIDATES);
        self.rooted = false;
        if let Some(t) = self.direct(i) {
            return Outcome::Room(t);
        }
        self.relax_village(i, ROOT, 0.0, 0.0, 0);
        self.rooted = true;
        self.run(i)
    }

    /// Goes on with the search from demand `i` after the path to `t` filled
    /// it: `t`, settled, now has no room, so its hosts' arcs leave from it.
    fn reopen(&mut self, i: u32, t: u32) {
        if !self.rooted {
            // `direct` found `t` without relaxing the demand's own arcs.
            self.relax_village(i, ROOT, 0.0, 0.0, 0);
            self.rooted = true;
        }
        self.open_hosts(t, self.dist[t as usize]);
    }

    /// Relaxes the arcs of the villages placed at full site `t`, settled at
    /// `dist_t`: moving one of them elsewhere frees a place at `t`.
    fn open_hosts(&mut self, t: u32, dist_t: f64) {
        let ti = t as usize;
        for h in 0..self.hosts[ti].len() {
            let u = self.hosts[ti][h];
            let Some(here) = self.flow_at(u, t).map(|p| p.dist_m) else { continue };
            self.ensure_cands(u, CANDIDATES);
            let base = dist_t - here - self.price[ti];
            self.relax_village(u, t, base, dist_t, 0);
        }
    }

    /// Dijkstra from the heap as it stands, until a site with room settles.
    fn run(&mut self, i: u32) -> Outcome {
        let mut displace: Option<(u32, u32)> = None; // (demand, site)
        while let Some(ev) = self.heap.pop() {
            self.work += 1;
            if self.work > self.budget {
                return Outcome::OutOfBudget;
            }
            if ev.village == NONE {
                let t = ev.site;
                let ti = t as usize;
                if self.done[ti] == self.epoch || ev.key > self.dist[ti] {
                    continue;
                }
                self.done[ti] = self.epoch;
                self.settled.push(t);
                if self.room[ti] > 0 {
                    return Outcome::Room(t);
                }
                if self.displacing {
                    for &j in &self.hosts[ti] {
                        if j > i && displace.is_none_or(|(best, _)| j > best) {
                            displace = Some((j, t));
                        }
                    }
                }
                self.open_hosts(t, ev.key);
            } else {
                let (u, from, upto) = (ev.village, ev.site, ev.upto as usize);
                if from != ROOT && self.done[from as usize] != self.epoch {
                    continue;
                }
                self.ensure_cands(u, 2 * upto.max(CANDIDATES / 2));
                self.relax_village(u, from, ev.base, ev.key, upto);
            }
        }
        match displace {
            Some((demand, site)) => Outcome::Displace { site, demand },
            None => Outcome::Stuck,
        }
    }

    /// The common case without contention: when the cheapest entry of all
    /// (nearest first, and no site costs less than its distance since prices
    /// are never negative) is a site with room, that is the shortest path,
    /// found without a heap. Leaves the search state as Dijkstra would have
    /// after settling only that site.
    fn direct(&mut self, i: u32) -> Option<u32> {
        let c = &self.cands[i as usize];
        let mut best: Option<(f64, u32)> = None;
        for &(t, d) in &c.sites {
            if best.is_some_and(|(key, _)| d >= key) {
                break;
            }
            let ti = t as usize;
            if self.dead[ti] {
                continue;
            }
            let key = d + self.price[ti];
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, t));
            }
        }
        let (key, t) = best?;
        let ti = t as usize;
        if self.room[ti] == 0 || key > c.next_m {
            return None;
        }
        self.seen[ti] = self.epoch;
        self.done[ti] = self.epoch;
        self.dist[ti] = key;
        self.pred[ti] = Pred::Root;
        self.settled.push(t);
        Some(t)
    }

    /// Pushes the bottleneck along the path to `target`; the caller raises
    /// the prices. With `displace = Some(j)` the path ends by taking `j`'s
    /// place there. `None` if the path had no capacity.
    fn augment(&mut self, i: u32, target: u32, displace: Option<u32>) -> Option<Augmented> {
        let mut steps: Vec<(u32, u32, u32)> = Vec::new(); // (from, village, to)
        let mut t = target;
        while let Pred::Via { from, village } = self.pred[t as usize] {
            steps.push((from, village, t));
            t = from;
        }
        let first = t;
        let mut b = self.left[i as usize];
        b = b.min(match displace {
            None => self.room[target as usize],
            Some(j) => self.flow_at(j, target).map_or(0, |p| p.persons),
        });
        for &(from, u, _) in &steps {
            b = b.min(self.flow_at(u, from).map_or(0, |p| p.persons));
        }
        if b == 0 {
            // Unreachable by construction (every arc on the path carries
            // people); report a shortfall rather than loop forever.
            debug_assert!(false, "augmenting path without capacity");
            return None;
        }
        let d_first = self.demands[i as usize].at.distance_m(self.supplies[first as usize].at);
        self.add_flow(i, first, b, d_first);
        self.left[i as usize] -= b;
        let mut emptied = false;
        for &(from, u, to) in &steps {
            self.remove_flow(u, from, b);
            emptied |= self.flow_at(u, from).is_none();
            let d = self.demands[u as usize].at.distance_m(self.supplies[to as usize].at);
            self.add_flow(u, to, b, d);
        }
        match displace {
            None => self.room[target as usize] -= b,
            Some(j) => {
                self.remove_flow(j, target, b);
                self.left[j as usize] += b;
                if !self.queued[j as usize] {
                    self.queued[j as usize] = true;
                    self.pending.push(Reverse(j));
                }
            }
        }
        Some(if displace.is_none() && !emptied && self.room[target as usize] == 0 {
            Augmented::Saturated
        } else {
            Augmented::Other
        })
    }

    /// Raises the price of every site the search settled below `level` (the
    /// distance of the last augmenting path) to keep reduced costs
    /// non-negative.
    fn raise_prices(&mut self, level: f64) {
        for &s in &self.settled {
            let gap = level - self.dist[s as usize];
            if gap > 0.0 {
                self.price[s as usize] += gap;
            }
        }
    }

    /// Searches skip dead sites, so their prices missed the rises of the
    /// sites around them, and a village placed outside a dead set may now
    /// look cheaper inside it. That never mattered for this solve (no path
    /// leaves a dead set), but the prices must certify the flow for the next
    /// warm start. Arcs only lead from a later dead set (or a live site) into
    /// an earlier one, never back, so lifting each set by more than every
    /// later one, by at least the spread of all costs, keeps the arcs inside
    /// each set as they are and makes every arc into an earlier set dearer
    /// than any village's current cost.
    fn lift_dead_prices(&mut self) {
        let generations = self.dead_sets;
        if generations == 0 {
            return;
        }
        let (lo, hi) = self.price.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        let max_d = self.placed.iter().flatten().map(|p| p.dist_m).fold(0.0f64, f64::max);
        let step = max_d + hi - lo + 1.0;
        for (t, p) in self.price.iter_mut().enumerate() {
            let g = self.dead_gen[t];
            if g > 0 {
                *p += f64::from(generations - g + 1) * step;
            }
        }
    }

    /// The allocation in the shape callers expect, with the prices that let
    /// the next change start warm.
    fn finish(mut self) -> Allocation {
        self.lift_dead_prices();
        #[cfg(test)]
        if !self.exhausted {
            self.dead.fill(false);
            if let Err(e) = self.check_invariant("at the end") {
                panic!("{e}");
            }
        }
        let mut out = Allocation::default();
        for (u, d) in self.demands.iter().enumerate() {
            let mut mine = self.placed[u].clone();
            mine.sort_by(|a, b| a.dist_m.total_cmp(&b.dist_m).then(a.site.cmp(&b.site)));
            for p in mine {
                out.flows.push(Flow {
                    village: d.village,
                    site: self.supplies[p.site as usize].site,
                    persons: p.persons,
                    distance_m: p.dist_m,
                });
            }
            if self.left[u] > 0 {
                out.shortfall.push((d.village, self.left[u]));
            }
        }
        if self.exhausted {
            // Greedy placements broke the price invariant: the next change
            // starts cold.
            out.approximate = true;
            return out;
        }
        out.warm = Some(Box::new(WarmStart {
            max_distance_m: self.max_m,
            prices: self
                .supplies
                .iter()
                .zip(&self.price)
                .map(|(s, &price)| PriceHint { site: s.site, at: s.at, price })
                .collect(),
        }));
        out
    }
}
