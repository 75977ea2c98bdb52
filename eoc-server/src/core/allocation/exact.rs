//! Exact reference solver for the allocation objective, written apart from
//! the fast path so that the two can check each other.
//!
//! It builds the complete bipartite network (every village–site pair within
//! `max_distance_m`, by brute-force haversine) with explicit village and site
//! nodes, and runs textbook successive shortest paths: for each demand in
//! priority order, Dijkstra with node potentials on the residual network
//! (forward arcs village → site at `+d`, backward arcs site → village at `−d`
//! where people are placed) to the nearest site with room, augmenting by the
//! bottleneck until the demand is met or no site with room is reachable.
//! Nothing is pruned by distance rank or candidate lists; the only shortcut
//! is that nodes a failed search reached are never searched again (they form
//! a closed set without room, which no later path can enter or leave).
//!
//! Memory and time grow with villages × sites, so this is for tests and for
//! benchmarks as the peer, not for the engine.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{AllocParams, Allocation, Demand, Flow, Supply};

#[derive(Debug, Clone, Copy)]
struct Entry {
    dist: f64,
    node: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.dist.total_cmp(&self.dist).then_with(|| other.node.cmp(&self.node))
    }
}

/// How a node was reached on the current shortest-path tree.
#[derive(Debug, Clone, Copy)]
enum Via {
    Start,
    /// From village `village` along its arc `arc` (forward).
    Forward {
        village: usize,
        arc: usize,
    },
    /// From site `site` back along village `village`'s arc `arc`.
    Backward {
        site: usize,
        village: usize,
        arc: usize,
    },
}

/// Solves the allocation exactly: lexicographically most persons served per
/// demand in priority order, then least total person-metres. Same output
/// shape as [`super::allocate`]; equally good flows may differ.
pub fn solve(demands: &[Demand], supplies: &[Supply], params: &AllocParams) -> Allocation {
    let n = demands.len();
    let m = supplies.len();
    let max_m = params.max_distance_m;
    // Complete arc lists and their flows.
    let arcs: Vec<Vec<(usize, f64)>> = demands
        .iter()
        .map(|d| {
            supplies
                .iter()
                .enumerate()
                .map(|(j, s)| (j, d.at.distance_m(s.at)))
                .filter(|&(_, dist)| dist <= max_m)
                .collect()
        })
        .collect();
    let mut flow: Vec<Vec<u32>> = arcs.iter().map(|a| vec![0; a.len()]).collect();
    // Per site, the (village, arc) pairs carrying people there.
    let mut users: Vec<Vec<(usize, usize)>> = vec![Vec::new(); m];
    let mut room: Vec<u32> = supplies.iter().map(|s| s.free).collect();
    let mut left: Vec<u32> = demands.iter().map(|d| d.persons).collect();
    // Node potentials: villages 0..n, sites n..n+m.
    let mut pot = vec![0.0f64; n + m];
    let mut closed = vec![false; n + m];
    let mut dist = vec![f64::INFINITY; n + m];
    let mut via = vec![Via::Start; n + m];
    let mut touched: Vec<usize> = Vec::new();
    let mut settled: Vec<usize> = Vec::new();
    let mut done = vec![false; n + m];
    let mut heap = BinaryHeap::new();

    for root in 0..n {
        while left[root] > 0 && !closed[root] {
            for &v in &touched {
                dist[v] = f64::INFINITY;
                done[v] = false;
            }
            touched.clear();
            settled.clear();
            heap.clear();
            dist[root] = 0.0;
            via[root] = Via::Start;
            touched.push(root);
            heap.push(Entry { dist: 0.0, node: root });
            let mut target = None;
            while let Some(Entry { dist: d, node: v }) = heap.pop() {
                if done[v] || d > dist[v] {
                    continue;
                }
                done[v] = true;
                settled.push(v);
                if v >= n {
                    let site = v - n;
                    if room[site] > 0 {
                        target = Some(site);
                        break;
                    }
                    for &(u, k) in &users[site] {
                        let w = u;
                        if closed[w] || done[w] {
                            continue;
                        }
                        let rc = -arcs[u][k].1 + pot[v] - pot[w];
                        let nd = d + rc.max(0.0);
                        if nd < dist[w] {
                            if dist[w].is_infinite() {
                                touched.push(w);
                            }
                            dist[w] = nd;
                            via[w] = Via::Backward { site, village: u, arc: k };
                            heap.push(Entry { dist: nd, node: w });
                        }
                    }
                } else {
                    let u = v;
                    for (k, &(site, c)) in arcs[u].iter().enumerate() {
                        let w = n + site;
                        if closed[w] || done[w] {
                            continue;
                        }
                        let rc = c + pot[u] - pot[w];
                        let nd = d + rc.max(0.0);
                        if nd < dist[w] {
                            if dist[w].is_infinite() {
                                touched.push(w);
                            }
                            dist[w] = nd;
                            via[w] = Via::Forward { village: u, arc: k };
                            heap.push(Entry { dist: nd, node: w });
                        }
                    }
                }
            }
            let Some(target) = target else {
                // A closed set without room: nothing in it can ever help.
                for &v in &settled {
                    closed[v] = true;
                }
                break;
            };
            // Bottleneck along the path.
            let mut amount = left[root].min(room[target]);
            let mut v = n + target;
            loop {
                match via[v] {
                    Via::Start => break,
                    Via::Forward { village, .. } => v = village,
                    Via::Backward { site, village, arc } => {
                        amount = amount.min(flow[village][arc]);
                        v = n + site;
                    }
                }
            }
            // Apply it.
            let mut v = n + target;
            loop {
                match via[v] {
                    Via::Start => break,
                    Via::Forward { village, arc } => {
                        if flow[village][arc] == 0 {
                            users[arcs[village][arc].0].push((village, arc));
                        }
                        flow[village][arc] += amount;
                        v = village;
                    }
                    Via::Backward { site, village, arc } => {
                        flow[village][arc] -= amount;
                        if flow[village][arc] == 0 {
                            users[site].retain(|&x| x != (village, arc));
                        }
                        v = n + site;
                    }
                }
            }
            room[target] -= amount;
            left[root] -= amount;
            let reach = dist[n + target];
            for &v in &settled {
                pot[v] -= (reach - dist[v]).max(0.0);
            }
        }
    }

    let mut out = Allocation::default();
    for (u, d) in demands.iter().enumerate() {
        let mut mine: Vec<(f64, usize, u32)> = arcs[u]
            .iter()
            .zip(&flow[u])
            .filter(|&(_, &f)| f > 0)
            .map(|(&(site, dist_m), &f)| (dist_m, site, f))
            .collect();
        mine.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (distance_m, site, persons) in mine {
            out.flows.push(Flow { village: d.village, site: supplies[site].site, persons, distance_m });
        }
        if left[u] > 0 {
            out.shortfall.push((d.village, left[u]));
        }
    }
    out
}
