//! Network simplex on the candidate graph: the least person-metres for
//! persons served per demand that are already known.
//!
//! # Model
//!
//! One node per demand, one per site with room, and a sink `T`, the root of
//! the spanning tree. Demand `i` supplies the persons it is to be served
//! (`served.rs` finds them); `T` takes them all. Arcs:
//!
//! - demand → site within range, at the great-circle distance per person,
//!   uncapacitated;
//! - site → `T`, free of cost, capacity the site's room;
//! - demand → `T`, "unserved", at a penalty `B` that exceeds what any simple
//!   path of demand–site arcs can cost (a path crosses each site at most
//!   once, so at most `sites + 2` arcs of at most `max_distance_m` each).
//!
//! A min-cost flow therefore serves the most persons it can in all: a flow
//! that served fewer would have an augmenting path, cheaper than the
//! penalty it saves. The amounts given can all be served, so the least-cost
//! flow serves every one of them at the least person-metres. Together with
//! amounts that are the lexicographic maximum, that is the allocation's
//! lexicographic optimum, the same one the successive shortest paths in
//! `ssp.rs` reach, found here by pivoting on the whole network at once.
//! (A penalty falling with rank would give the optimum from whole demands
//! alone, but it made the simplex pivot five times as often.)
//!
//! Costs are whole micrometres (millimetres or metres where the penalties
//! would overflow that), in `i64`: exact integers make the reduced cost of
//! every tree arc exactly zero, so degenerate pivots cannot cycle, and the
//! rounding changes no choice by more than that unit per person.
//!
//! # Candidates, exactly
//!
//! Each demand first lists its nearest [`CANDIDATES`] sites in range, and
//! the sites the max-flow placed it at, so that the amounts can be served
//! on the first arcs and the first prices are those of distances, not of
//! the penalty. Once
//! the simplex is optimal on those arcs, every demand whose value `v(i) =
//! −π(i)` could be beaten by a site it does not list (such a site is at
//! least `next(i)` away and costs its price `p(t) = −π(t)` on top) looks at
//! the sites in price order while `p(t) < v(i) − next(i)`, adds the arcs
//! that price out negative, and the simplex goes on. When no arc is added
//! the flow is optimal on the complete graph of all pairs in range.
//!
//! # Tree
//!
//! The first tree is the star at `T`: every demand unserved on its penalty
//! arc, every site on its empty room arc. It is strongly feasible (each
//! node can push flow to the root), and the leaving arc is chosen by
//! Cunningham's rule (the last blocking arc met going round the cycle from
//! the apex), which keeps it so. Each node keeps its parent, tree arc and
//! two lists of children: inner nodes, and leaves. A leaf is a demand with
//! no children, placed whole at one site or unserved, as most demands are;
//! its depth and potential are not stored but derived from its parent's
//! over its tree arc. A pivot re-roots the subtree that moves and refreshes
//! depth and potentials over its inner nodes only: on the tight 5,000 × 300
//! benchmark instance that is about 60 nodes per pivot instead of about
//! 600. Entering arcs are chosen by
//! block search (the most negative reduced cost in blocks of about 3√arcs),
//! and for a few pivots after each from that block's negative arcs alone.

use super::{AllocParams, Allocation, Demand, Flow, Supply};
use crate::core::geo::{chord_sq, units_to_m};
use crate::core::kdtree::KdTree;

/// Sites each demand lists before column generation asks for more. Fewer
/// arcs make each pricing pass and pivot cheaper; those a demand turns out
/// to need come in by column generation (eight beat 4, 6, 16 and 32 on the
/// tight benchmark instances).
const CANDIDATES: usize = 8;

/// Arcs priced per block, as a multiple of √arcs (3 beat 0.3, 1, 5 and 10).
const BLOCK_FACTOR: f64 = 3.0;

/// Pivots that re-price only the last block's negative arcs before the
/// next block search (8 and 16 took a quarter off the tight 5,000 × 300
/// instance against none; 64 less).
const MINOR_PIVOTS: u32 = 8;

/// Work (arcs priced plus nodes walked or refreshed) one solve may do
/// before it gives up and the caller falls back: about 0.3 s here, at the
/// rate the tight 5,000 × 300 instance runs (about 16 million units in
/// 75 ms of the simplex); 2,000 × 120 needs about 1.5 million, 1,000 × 60
/// about 0.45 million.
pub(super) const WORK_BUDGET: u64 = 60_000_000;

const NIL: u32 = u32::MAX;
const LOWER: i8 = 1;
const TREE: i8 = 0;
const UPPER: i8 = -1;
/// Capacity of an uncapacitated arc.
const INF: i64 = i64::MAX / 4;

/// Costs are whole units of `1 / scale` metres.
#[derive(Debug, Clone, Copy)]
struct Unit {
    per_m: f64,
}

impl Unit {
    /// The finest of micrometres, millimetres and metres in which `max_m`
    /// metres stay below 2⁶⁰, so that potentials and reduced costs (sums
    /// of three such) never overflow.
    fn for_largest(max_m: f64) -> Option<Unit> {
        [1e6, 1e3, 1.0]
            .into_iter()
            .find(|per_m| max_m * per_m < (1u64 << 60) as f64)
            .map(|per_m| Unit { per_m })
    }

    /// `m` (never negative: a distance or the penalty) in whole units, to
    /// the nearest by adding a half and truncating, which needs no call
    /// into libm (a value a hair below a half may go up: one unit, far
    /// below any choice). From 2⁵² on every value is whole already.
    fn of(self, m: f64) -> i64 {
        debug_assert!(m >= 0.0);
        let x = m * self.per_m;
        if x < 4_503_599_627_370_496.0 { (x + 0.5) as i64 } else { x as i64 }
    }
}

/// The budget ran out before the flow was optimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutOfWork;

/// Where a node hangs: in no list (the root, or a node being moved), in
/// its parent's list of inner children, or in its parent's list of leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Detached,
    Inner,
    Leaf,
}

/// A block search in progress ([`Network::scan`]).
struct Scan {
    block: usize,
    /// Arcs left in the current block.
    left: usize,
    best: u32,
    min: i64,
    /// The last source priced, and its potential.
    last_src: u32,
    last_pi: i64,
}

/// A node's place in the spanning tree.
#[derive(Debug, Clone, Copy)]
struct TreeNode {
    parent: u32,
    /// The tree arc to the parent.
    pred: u32,
    /// Kept for inner nodes; a leaf's is its parent's plus one.
    depth: u32,
    /// Children that have children of their own (or may: sites).
    first_child: u32,
    /// Children that are leaves: demands with no children.
    first_leaf: u32,
    next_sib: u32,
    prev_sib: u32,
    /// Whether the tree arc points from the node to its parent.
    up: bool,
    /// Whether the node may be kept as a leaf (demands may).
    leafable: bool,
    place: Place,
}

/// A min-cost flow network with its spanning-tree basis.
#[derive(Debug, Default)]
struct Network {
    // Arcs.
    src: Vec<u32>,
    dst: Vec<u32>,
    cost: Vec<i64>,
    cap: Vec<i64>,
    flow: Vec<i64>,
    state: Vec<i8>,
    // Nodes.
    /// Potentials, kept for inner nodes; a leaf's is derived from its
    /// parent's ([`Network::pi_of`]).
    pi: Vec<i64>,
    node: Vec<TreeNode>,
    // Pricing and scratch.
    next_arc: usize,
    /// Arcs that priced out negative in the last block search, and how
    /// many more pivots may take their entering arc from them alone.
    cands: Vec<u32>,
    minor_left: u32,
    stem: Vec<u32>,
    stack: Vec<u32>,
    work: u64,
}

impl Network {
    /// `nodes` nodes, the last of them the root, and no arcs yet.
    fn new(nodes: usize) -> Self {
        Network {
            pi: vec![0; nodes],
            node: vec![
                TreeNode {
                    parent: NIL,
                    pred: NIL,
                    depth: 0,
                    first_child: NIL,
                    first_leaf: NIL,
                    next_sib: NIL,
                    prev_sib: NIL,
                    up: true,
                    leafable: false,
                    place: Place::Detached,
                };
                nodes
            ],
            ..Network::default()
        }
    }

    fn root(&self) -> u32 {
        (self.pi.len() - 1) as u32
    }

    /// Adds an arc at its lower bound (no flow); returns its number.
    fn add_arc(&mut self, from: u32, to: u32, cost: i64, cap: i64) -> u32 {
        debug_assert!(!self.node[to as usize].leafable, "arcs end at sites or the root, never at a leaf");
        self.src.push(from);
        self.dst.push(to);
        self.cost.push(cost);
        self.cap.push(cap);
        self.flow.push(0);
        self.state.push(LOWER);
        (self.src.len() - 1) as u32
    }

    /// Makes `arc` (from `node` to the root) `node`'s tree arc with `flow`.
    fn hang_on_root(&mut self, node: u32, arc: u32, flow: i64) {
        let (u, a) = (node as usize, arc as usize);
        let root = self.root();
        self.flow[a] = flow;
        self.state[a] = TREE;
        self.node[u].parent = root;
        self.node[u].pred = arc;
        self.node[u].up = true;
        self.node[u].depth = 1;
        self.pi[u] = self.pi[root as usize] - self.cost[a];
        self.link(node, root);
    }

    /// Lets demand `node` be kept as a leaf while it has no children.
    fn leafable(&mut self, node: u32) {
        self.node[node as usize].leafable = true;
    }

    fn childless(&self, u: usize) -> bool {
        self.node[u].first_child == NIL && self.node[u].first_leaf == NIL
    }

    /// `u`'s potential: kept for inner nodes, derived from the parent's
    /// over the tree arc (reduced cost zero) for leaves.
    #[inline]
    fn pi_of(&self, u: usize) -> i64 {
        let n = &self.node[u];
        if n.place != Place::Leaf {
            return self.pi[u];
        }
        let c = self.cost[n.pred as usize];
        if n.up { self.pi[n.parent as usize] - c } else { self.pi[n.parent as usize] + c }
    }

    #[inline]
    fn depth_of(&self, u: usize) -> u32 {
        let n = &self.node[u];
        if n.place == Place::Leaf { self.node[n.parent as usize].depth + 1 } else { n.depth }
    }

    /// Stores `u`'s derived potential and depth, before it stops being a
    /// leaf or its parent changes.
    fn materialise(&mut self, u: usize) {
        if self.node[u].place == Place::Leaf {
            self.pi[u] = self.pi_of(u);
            self.node[u].depth = self.depth_of(u);
        }
    }

    /// Puts `child` (detached, its parent already set to `parent`) into
    /// `parent`'s leaves when it is a demand with no children, else into its
    /// inner children; a parent that was a leaf becomes inner.
    fn link(&mut self, child: u32, parent: u32) {
        let (c, p) = (child as usize, parent as usize);
        if self.node[p].place == Place::Leaf {
            self.materialise(p);
            self.unlink(parent);
            self.push(parent, self.node[p].parent, Place::Inner);
        }
        let place = if self.node[c].leafable && self.childless(c) { Place::Leaf } else { Place::Inner };
        self.push(child, parent, place);
    }

    fn push(&mut self, child: u32, parent: u32, place: Place) {
        let (c, p) = (child as usize, parent as usize);
        let first = if place == Place::Leaf { self.node[p].first_leaf } else { self.node[p].first_child };
        self.node[c].next_sib = first;
        self.node[c].prev_sib = NIL;
        self.node[c].place = place;
        if first != NIL {
            self.node[first as usize].prev_sib = child;
        }
        if place == Place::Leaf {
            self.node[p].first_leaf = child;
        } else {
            self.node[p].first_child = child;
        }
    }

    /// Takes `child` out of its parent's list; a demand parent left with no
    /// children becomes a leaf.
    fn unlink(&mut self, child: u32) {
        let c = child as usize;
        let place = self.node[c].place;
        if place == Place::Detached {
            return;
        }
        let (prev, next) = (self.node[c].prev_sib, self.node[c].next_sib);
        let parent = self.node[c].parent;
        let p = parent as usize;
        if prev != NIL {
            self.node[prev as usize].next_sib = next;
        } else if place == Place::Leaf {
            self.node[p].first_leaf = next;
        } else {
            self.node[p].first_child = next;
        }
        if next != NIL {
            self.node[next as usize].prev_sib = prev;
        }
        self.node[c].place = Place::Detached;
        if self.node[p].leafable && self.node[p].place == Place::Inner && self.childless(p) {
            self.unlink(parent);
            let grand = self.node[p].parent;
            self.push(parent, grand, Place::Leaf);
        }
    }

    fn reduced_cost(&self, a: usize) -> i64 {
        // Every arc ends at a site or the root, never at a leaf.
        self.cost[a] + self.pi_of(self.src[a] as usize) - self.pi[self.dst[a] as usize]
    }

    /// Panics unless the basis is a consistent spanning tree at an optimum:
    /// every node but the root hangs by a tree arc of reduced cost zero (a
    /// leaf's potential derived), sits in its parent's list of leaves
    /// exactly when it is a demand with no children, is one deeper than its
    /// parent, and no arc prices out negative.
    #[cfg(test)]
    fn check_optimal_tree(&self) {
        let root = self.root() as usize;
        for u in 0..self.node.len() {
            let n = &self.node[u];
            let mut listed = 0;
            for (first, place) in [(n.first_child, Place::Inner), (n.first_leaf, Place::Leaf)] {
                let mut c = first;
                while c != NIL {
                    let child = &self.node[c as usize];
                    assert_eq!(
                        child.parent as usize, u,
                        "node {c} is listed under {u}, its parent is {}",
                        child.parent
                    );
                    assert_eq!(child.place, place, "node {c} is in the wrong list of {u}");
                    listed += 1;
                    c = child.next_sib;
                }
            }
            let children =
                (0..self.node.len()).filter(|&v| v != root && self.node[v].parent as usize == u).count();
            assert_eq!(listed, children, "node {u} lists {listed} of its {children} children");
            if u == root {
                continue;
            }
            let want = if n.leafable && self.childless(u) { Place::Leaf } else { Place::Inner };
            assert_eq!(n.place, want, "node {u} is kept as {:?}, should be {want:?}", n.place);
            let a = n.pred as usize;
            assert_eq!(self.state[a], TREE, "node {u} hangs by arc {a}, which is not in the tree");
            assert_eq!(self.reduced_cost(a), 0, "tree arc {a} of node {u} has a reduced cost");
            assert_eq!(self.depth_of(u), self.depth_of(n.parent as usize) + 1, "depth of node {u}");
        }
        for a in 0..self.src.len() {
            if self.state[a] != TREE {
                assert!(i64::from(self.state[a]) * self.reduced_cost(a) >= 0, "arc {a} prices out negative");
            }
        }
    }

    /// Pivots until no arc prices out negative, or the budget runs out.
    fn optimise(&mut self, budget: u64) -> Result<(), OutOfWork> {
        while let Some(arc) = self.entering() {
            self.pivot(arc);
            if self.work > budget {
                return Err(OutOfWork);
            }
        }
        Ok(())
    }

    /// The arc of most negative reduced cost (against its bound) among the
    /// candidates the last block search found, re-priced, for up to
    /// [`MINOR_PIVOTS`] pivots after it; else block search: the arc of most
    /// negative reduced cost in the first block from where the last search
    /// stopped that has one, keeping that block's negative arcs as the
    /// candidates. Only a search of every arc ends the simplex.
    fn entering(&mut self) -> Option<u32> {
        let m = self.src.len();
        if m == 0 {
            return None;
        }
        if self.minor_left > 0 {
            self.minor_left -= 1;
            let (mut best, mut min) = (NIL, 0i64);
            let mut k = 0;
            self.work += self.cands.len() as u64;
            while k < self.cands.len() {
                let a = self.cands[k] as usize;
                let s = self.state[a];
                let c = if s != TREE { i64::from(s) * self.reduced_cost(a) } else { 0 };
                if c < 0 {
                    if c < min {
                        min = c;
                        best = a as u32;
                    }
                    k += 1;
                } else {
                    self.cands.swap_remove(k);
                }
            }
            if best != NIL {
                return Some(best);
            }
        }
        let mut cands = std::mem::take(&mut self.cands);
        cands.clear();
        let block = ((BLOCK_FACTOR * (m as f64).sqrt()) as usize).max(10).min(m);
        let start = self.next_arc % m;
        let mut scan = Scan { block, left: block, best: NIL, min: 0, last_src: NIL, last_pi: 0 };
        // From where the last search stopped to the end, then from the start.
        let stop = match self.scan(start, m, &mut scan, &mut cands) {
            Some(stop) => Some(stop),
            None => self.scan(0, start, &mut scan, &mut cands),
        };
        let next = stop.unwrap_or(start);
        self.work += if next > start { next - start } else { m - start + next } as u64;
        self.next_arc = next % m;
        self.cands = cands;
        self.minor_left = MINOR_PIVOTS;
        (scan.best != NIL).then_some(scan.best)
    }

    /// Prices arcs `from..to` for [`Network::entering`]: the negative ones go
    /// to `cands`, the most negative to `scan.best`. Returns where it stopped
    /// when a block ended with a negative arc found. Arcs of one source are
    /// mostly next to each other, so its potential is looked up once per run.
    fn scan(&self, from: usize, to: usize, scan: &mut Scan, cands: &mut Vec<u32>) -> Option<usize> {
        let range = from..to;
        let (state, cost) = (&self.state[range.clone()], &self.cost[range.clone()]);
        let (src, dst) = (&self.src[range.clone()], &self.dst[range]);
        for (k, (((&s, &c), &u), &v)) in state.iter().zip(cost).zip(src).zip(dst).enumerate() {
            if s != TREE {
                if u != scan.last_src {
                    scan.last_src = u;
                    scan.last_pi = self.pi_of(u as usize);
                }
                let rc = i64::from(s) * (c + scan.last_pi - self.pi[v as usize]);
                if rc < 0 {
                    let a = (from + k) as u32;
                    cands.push(a);
                    if rc < scan.min {
                        scan.min = rc;
                        scan.best = a;
                    }
                }
            }
            scan.left -= 1;
            if scan.left == 0 {
                if scan.best != NIL {
                    return Some(from + k + 1);
                }
                scan.left = scan.block;
            }
        }
        None
    }

    /// Sends flow round the cycle `arc` closes and swaps the blocking arc
    /// out of the tree.
    fn pivot(&mut self, arc: u32) {
        let e = arc as usize;
        let (s, t) = (self.src[e], self.dst[e]);
        let (first, second) = if self.state[e] == LOWER { (s, t) } else { (t, s) };
        // The apex: where the tree paths of both ends meet.
        let (mut a, mut b) = (first, second);
        while a != b {
            let (da, db) = (self.depth_of(a as usize), self.depth_of(b as usize));
            if da >= db {
                a = self.node[a as usize].parent;
            }
            if db >= da {
                b = self.node[b as usize].parent;
            }
            self.work += 1;
        }
        let join = a;
        // The blocking arc: on the first side the cycle runs down the tree,
        // on the second side up it; ties go to the second side, the last
        // met from the apex.
        let mut delta = self.cap[e];
        let (mut u_out, mut side) = (NIL, 0);
        let mut u = first;
        while u != join {
            let (ui, p) = (u as usize, self.node[u as usize].pred as usize);
            let room = if self.node[ui].up { self.flow[p] } else { self.cap[p] - self.flow[p] };
            if room < delta {
                delta = room;
                u_out = u;
                side = 1;
            }
            u = self.node[ui].parent;
            self.work += 1;
        }
        let mut u = second;
        while u != join {
            let (ui, p) = (u as usize, self.node[u as usize].pred as usize);
            let room = if self.node[ui].up { self.cap[p] - self.flow[p] } else { self.flow[p] };
            if room <= delta {
                delta = room;
                u_out = u;
                side = 2;
            }
            u = self.node[ui].parent;
            self.work += 1;
        }
        // Every cycle passes a room or unserved arc of finite capacity or
        // takes flow off an arc, so `delta` is finite.
        if delta > 0 {
            let val = i64::from(self.state[e]) * delta;
            self.flow[e] += val;
            let mut u = s;
            while u != join {
                let (ui, p) = (u as usize, self.node[u as usize].pred as usize);
                self.flow[p] += if self.node[ui].up { -val } else { val };
                u = self.node[ui].parent;
            }
            let mut u = t;
            while u != join {
                let (ui, p) = (u as usize, self.node[u as usize].pred as usize);
                self.flow[p] += if self.node[ui].up { val } else { -val };
                u = self.node[ui].parent;
            }
        }
        if side == 0 {
            // The entering arc blocks itself: it moves to its other bound.
            self.state[e] = -self.state[e];
            return;
        }
        let (u_in, v_in) = if side == 1 { (first, second) } else { (second, first) };
        let leaving = self.node[u_out as usize].pred as usize;
        self.state[leaving] = if self.flow[leaving] == 0 { LOWER } else { UPPER };
        self.state[e] = TREE;
        // The moved subtree keeps its own tree arcs, so all its potentials
        // shift by the one amount that zeroes the entering arc's reduced cost.
        let rc = self.reduced_cost(e);
        let shift = if s == u_in { -rc } else { rc };
        self.rehang(arc, u_in, v_in, u_out, shift);
    }

    /// Cuts the subtree of `u_out` off its parent, re-roots it at `u_in`
    /// (which lies in it) and hangs it from `v_in` by `arc`; then refreshes
    /// depth over the moved subtree and shifts its potentials by `shift`.
    fn rehang(&mut self, arc: u32, u_in: u32, v_in: u32, u_out: u32, shift: i64) {
        let mut stem = std::mem::take(&mut self.stem);
        stem.clear();
        let mut u = u_in;
        loop {
            stem.push(u);
            if u == u_out {
                break;
            }
            u = self.node[u as usize].parent;
        }
        // Stem nodes may be leaves now and inner after, or the other way
        // round: store what they derive, while the tree is still the old one.
        for &u in &stem {
            self.materialise(u as usize);
        }
        for &u in &stem {
            self.unlink(u);
        }
        // Reverse the stem: each node becomes the parent of its old parent,
        // over the same arc, now pointing the other way.
        for k in (0..stem.len() - 1).rev() {
            let (child, parent) = (stem[k + 1] as usize, stem[k] as usize);
            self.node[child].parent = stem[k];
            self.node[child].pred = self.node[parent].pred;
            self.node[child].up = !self.node[parent].up;
            self.link(stem[k + 1], stem[k]);
        }
        let ui = u_in as usize;
        self.node[ui].parent = v_in;
        self.node[ui].pred = arc;
        self.node[ui].up = self.src[arc as usize] == u_in;
        self.link(u_in, v_in);
        self.stem = stem;

        // Leaves derive depth and potential from their parents: only inner
        // nodes are refreshed.
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        if self.node[ui].place == Place::Inner {
            stack.push(u_in);
        }
        while let Some(u) = stack.pop() {
            let ui = u as usize;
            let p = self.node[ui].parent as usize;
            self.node[ui].depth = self.node[p].depth + 1;
            self.pi[ui] += shift;
            let mut c = self.node[ui].first_child;
            while c != NIL {
                stack.push(c);
                c = self.node[c as usize].next_sib;
            }
            self.work += 1;
        }
        self.stack = stack;
    }
}

/// Great-circle metres between unit vectors `a` and `b` (squared chord
/// `c2`), from the chord: within a few parts in 10¹⁴ of
/// [`LatLon::distance_m`](crate::core::geo::LatLon::distance_m) and several
/// times cheaper than its sines and cosines. Within a millimetre of the
/// distance limit `max_m`, `exact` decides, so that a site is in range
/// here exactly when it is for the other solvers. Flows report `exact`.
#[inline]
fn metres(a: [f64; 3], b: [f64; 3], c2: f64, max_m: f64, exact: impl FnOnce() -> f64) -> f64 {
    let m = units_to_m(a, b, c2);
    if (m - max_m).abs() < 1e-3 { exact() } else { m }
}

/// One demand's listed sites: (site number among the open sites, arc).
#[derive(Debug, Default)]
struct Listed {
    arcs: Vec<(u32, u32)>,
    /// Cost units to the nearest site in range not listed, at most; `None`
    /// when every site in range is listed.
    next: Option<i64>,
}

/// Serves every demand's persons (which must all fit: amounts from
/// `served.rs`) at the least person-metres over every pair in range, or
/// `None` when `budget` work units do not suffice. `seed` lists, per
/// demand, sites (positions in `supplies`) to offer it from the start.
pub(super) fn solve(
    demands: &[Demand],
    supplies: &[Supply],
    params: &AllocParams,
    seed: &[&[(u32, u32)]],
    budget: u64,
) -> Option<Allocation> {
    let (max_m, max_chord2) = params.reach();
    let open: Vec<u32> = (0..supplies.len() as u32).filter(|&j| supplies[j as usize].free > 0).collect();
    let (n, m) = (demands.len(), open.len());
    let units: Vec<[f64; 3]> = open.iter().map(|&j| supplies[j as usize].at.to_unit()).collect();
    let tree = KdTree::new(units.iter().enumerate().map(|(k, &u)| (u, k as u32)).collect());
    let demand_units: Vec<[f64; 3]> = demands.iter().map(|d| d.at.to_unit()).collect();
    let site_node = |k: u32| n as u32 + k;
    let mut net = Network::new(n + m + 1);
    let root = net.root();

    // The penalty: more than any simple path costs. A potential is the
    // cost of a tree path to the root: one arc into it (at most the
    // penalty) and at most one arc per other node.
    let penalty_m = (m as f64 + 2.0) * max_m + 1.0;
    let unit = Unit::for_largest(penalty_m + (n + m + 1) as f64 * max_m)?;
    let penalty = unit.of(penalty_m);
    for (k, &j) in open.iter().enumerate() {
        let arc = net.add_arc(site_node(k as u32), root, 0, i64::from(supplies[j as usize].free));
        net.hang_on_root(site_node(k as u32), arc, 0);
    }
    let mut unserved = Vec::with_capacity(n);
    for (i, d) in demands.iter().enumerate() {
        net.leafable(i as u32);
        let arc = net.add_arc(i as u32, root, penalty, INF);
        net.hang_on_root(i as u32, arc, i64::from(d.persons));
        unserved.push(arc);
    }

    // First candidate lists.
    let mut listed: Vec<Listed> = Vec::with_capacity(n);
    let mut knn: Vec<(u32, f64)> = Vec::with_capacity(CANDIDATES + 1);
    for (i, d) in demands.iter().enumerate() {
        let mut l = Listed::default();
        if d.persons > 0 {
            tree.nearest(demand_units[i], CANDIDATES + 1, max_chord2, &mut knn);
            for &(k, c2) in &knn {
                let dist = metres(demand_units[i], units[k as usize], c2, max_m, || {
                    d.at.distance_m(supplies[open[k as usize] as usize].at)
                });
                if dist > max_m {
                    continue;
                }
                if l.arcs.len() == CANDIDATES {
                    // Chord and great-circle order agree to far below a
                    // micrometre; one micrometre of slack keeps it a bound.
                    l.next = Some(unit.of(dist) - 1);
                    break;
                }
                let arc = net.add_arc(i as u32, site_node(k), unit.of(dist), INF);
                l.arcs.push((k, arc));
            }
            for &(j, _) in seed.get(i).copied().unwrap_or_default() {
                let Ok(k) = open.binary_search(&j) else { continue };
                let (u, k) = (units[k], k as u32);
                let c2 = chord_sq(demand_units[i], u);
                let dist = metres(demand_units[i], u, c2, max_m, || d.at.distance_m(supplies[j as usize].at));
                if dist <= max_m && !l.arcs.iter().any(|&(s, _)| s == k) {
                    let arc = net.add_arc(i as u32, site_node(k), unit.of(dist), INF);
                    l.arcs.push((k, arc));
                }
            }
        }
        listed.push(l);
    }

    let mut by_price: Vec<u32> = (0..m as u32).collect();
    loop {
        net.optimise(budget).ok()?;
        #[cfg(test)]
        net.check_optimal_tree();
        // Column generation: arcs beyond the lists that price out negative.
        by_price.sort_by_key(|&k| -net.pi[site_node(k) as usize]);
        let mut added = 0usize;
        for (i, d) in demands.iter().enumerate() {
            let Some(next) = listed[i].next else { continue };
            let value = -net.pi_of(i);
            let at = demand_units[i];
            for &k in &by_price {
                let price = -net.pi[site_node(k) as usize];
                if price >= value - next {
                    break;
                }
                net.work += 1;
                let c2 = chord_sq(at, units[k as usize]);
                if c2 > max_chord2 {
                    continue;
                }
                let dist = metres(at, units[k as usize], c2, max_m, || {
                    d.at.distance_m(supplies[open[k as usize] as usize].at)
                });
                // A listed arc never prices out negative here (the flow is
                // optimal on them); the list is checked only to be sure.
                if dist > max_m
                    || unit.of(dist) + price >= value
                    || listed[i].arcs.iter().any(|&(s, _)| s == k)
                {
                    continue;
                }
                let arc = net.add_arc(i as u32, site_node(k), unit.of(dist), INF);
                listed[i].arcs.push((k, arc));
                added += 1;
            }
        }
        if added == 0 {
            break;
        }
        if net.work > budget {
            return None;
        }
    }

    let mut out = Allocation::default();
    // Flows report the exact great-circle metres, nearest site first.
    let mut mine: Vec<(f64, u32, u32)> = Vec::new();
    for (i, d) in demands.iter().enumerate() {
        mine.clear();
        for &(k, arc) in &listed[i].arcs {
            let persons = net.flow[arc as usize];
            if persons > 0 {
                mine.push((d.at.distance_m(supplies[open[k as usize] as usize].at), k, persons as u32));
            }
        }
        mine.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(distance_m, k, persons) in &mine {
            let site = supplies[open[k as usize] as usize].site;
            out.flows.push(Flow { village: d.village, site, persons, distance_m });
        }
        let short = net.flow[unserved[i] as usize];
        if short > 0 {
            out.shortfall.push((d.village, short as u32));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_same_optimum, check_feasible, instance};
    use super::super::{AllocParams, Demand, Supply, exact};
    use super::*;
    use crate::core::geo::LatLon;
    use crate::core::world::{SiteIdx, VillageIdx};
    use proptest::prelude::*;

    /// Out of budget it says so instead of answering; with enough it
    /// places every person given at the least person-metres.
    #[test]
    fn a_spent_budget_gives_no_answer() {
        let at = |lat: f64| LatLon::new(lat, 69.0).unwrap();
        let demands: Vec<Demand> = (0..30)
            .map(|i| Demand { village: VillageIdx(i), at: at(38.0 + 0.01 * f64::from(i)), persons: 25 })
            .collect();
        let supplies: Vec<Supply> = (0..8)
            .map(|j| Supply { site: SiteIdx(j), at: at(38.05 + 0.03 * f64::from(j)), free: 100 })
            .collect();
        let params = AllocParams::default();
        assert!(solve(&demands, &supplies, &params, &[], 50).is_none());
        let got = solve(&demands, &supplies, &params, &[], u64::MAX).expect("no budget");
        assert_eq!(got.placed(), 750);
        assert!(got.shortfall.is_empty());
        assert_same_optimum(&got, &exact::solve(&demands, &supplies, &params), &demands);
    }

    /// A site exactly at the distance limit is in range, one a hair
    /// beyond it is not, by the same great-circle metres every other solver
    /// uses; the flow reports those metres.
    #[test]
    fn the_distance_limit_is_decided_by_the_exact_great_circle() {
        let village = LatLon::new(38.5, 68.7).unwrap();
        let site_at = LatLon::new(39.1, 69.9).unwrap();
        let limit_m = village.distance_m(site_at);
        let demands = [Demand { village: VillageIdx(0), at: village, persons: 40 }];
        let supplies = [Supply { site: SiteIdx(0), at: site_at, free: 100 }];
        let at_limit = AllocParams { max_distance_m: limit_m };
        let got = solve(&demands, &supplies, &at_limit, &[], u64::MAX).expect("no budget");
        assert_eq!(got.placed(), 40);
        assert_eq!(got.flows[0].distance_m, limit_m);
        let short_of_it = AllocParams { max_distance_m: limit_m.next_down() };
        let got = solve(&demands, &supplies, &short_of_it, &[], u64::MAX).expect("no budget");
        assert_eq!(got.placed(), 0);
        assert_eq!(got.shortfall, vec![(VillageIdx(0), 40)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Given the persons the max-flow serves per demand (and, or not,
        /// the sites it placed them at), the simplex serves them at the
        /// person-metres of the exact reference's lexicographic optimum,
        /// on instances tight and loose, with more sites in range than a
        /// demand lists at first.
        #[test]
        fn the_simplex_reaches_the_exact_optimum((demands, supplies, params) in instance(), seeded: bool) {
            let served = super::super::served::solve(&demands, &supplies, &params);
            let fixed: Vec<Demand> = demands
                .iter()
                .zip(&served.amounts)
                .map(|(d, &n)| Demand { persons: n, ..*d })
                .collect();
            let seed: Vec<&[(u32, u32)]> =
                if seeded { (0..demands.len()).map(|i| served.sites(i)).collect() } else { Vec::new() };
            let got = solve(&fixed, &supplies, &params, &seed, u64::MAX).expect("no budget");
            check_feasible(&got, &fixed, &supplies, &params);
            prop_assert!(got.shortfall.is_empty());
            let want = exact::solve(&demands, &supplies, &params);
            prop_assert_eq!(super::super::tests::served(&got, &demands), super::super::tests::served(&want, &demands));
            let (g, w) = (got.person_m(), want.person_m());
            prop_assert!((g - w).abs() <= 1e-9 * w.max(1.0), "person-metres {} vs optimum {}", g, w);
        }
    }
}
