//! Capacitated allocation of displaced people to sites.
//!
//! Minimises total person-distance (great-circle metres) subject to site
//! capacity, serving demands in the order given (most exposed first), and
//! reports the shortfall instead of overfilling.
//!
//! The result is lexicographically optimal: first the persons served per
//! demand, in priority order, are as many as possible (the first demand gets
//! all it can reach, then the second given that, and so on); then, among such
//! flows, total person-metres are least. Sites further than
//! [`AllocParams::max_distance_m`] from a village are never used for it.
//!
//! - [`allocate`] solves from scratch by successive shortest paths over the
//!   sites (see `ssp.rs` for the method and why it is exact while looking
//!   only at each village's nearest sites). A contended instance of up to
//!   1,000 demands, one that solver cannot finish in a fifth of a
//!   millisecond of work, goes to an auction (`auction.rs`) when everybody
//!   can be placed: near-optimal (within 1 % in the tests, 0.07 % on the
//!   Tajikistan M7.2) in a fraction of the time. When room runs out
//!   (or a larger contended instance spends the exact solver's budget),
//!   the persons served per demand come first, exactly, from a priority
//!   max-flow over in-range bitsets (`served.rs`); then a network simplex
//!   on the candidate graph (`simplex.rs`) places exactly those persons at
//!   the least person-metres, within its own budget and up to
//!   [`SIMPLEX_MAX_PAIRS`] pairs in range. Past either, the max-flow's own
//!   placement stands, flagged approximate: the right persons served, not
//!   the least distance.
//! - [`reallocate`] starts from the previous result and its site prices and
//!   repairs only what a change broke.
//! - [`exact`] is an independent reference solver on the complete graph,
//!   for tests and benchmarks.

mod auction;
pub mod exact;
mod served;
mod simplex;
mod ssp;

use super::geo::{LatLon, m_to_chord_sq};
use super::kdtree::KdTree;
use super::world::{SiteIdx, VillageIdx};

/// People of one village needing a place. Demands are served in slice order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// The village.
    pub village: VillageIdx,
    /// Where the people are.
    pub at: LatLon,
    /// How many.
    pub persons: u32,
}

/// Room at one candidate site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Supply {
    /// The site.
    pub site: SiteIdx,
    /// Where it is.
    pub at: LatLon,
    /// Persons it can still take.
    pub free: u32,
}

/// People of a village sent to a site.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    /// From.
    pub village: VillageIdx,
    /// To.
    pub site: SiteIdx,
    /// How many.
    pub persons: u32,
    /// Great-circle metres.
    pub distance_m: f64,
}

/// The result of an allocation.
///
/// Two allocations are equal when their flows and shortfalls are; the
/// warm-start prices they carry are a hint for [`reallocate`], not a result.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    /// People sent, grouped by village in demand order.
    pub flows: Vec<Flow>,
    /// People with no place, per village, in demand order.
    pub shortfall: Vec<(VillageIdx, u32)>,
    /// Site prices that certify the flow optimal; `None` for an allocation
    /// not made by this module or made by the network simplex (whose prices
    /// carry its rank penalties), which [`reallocate`] then solves cold.
    warm: Option<Box<WarmStart>>,
    /// Whether it is not proven minimal: placed by the auction, or, after
    /// the work budget ran out, partly greedily.
    approximate: bool,
    /// The input an exact allocation without site prices (the network
    /// simplex's) was made for, so that [`reallocate`] can keep it after a
    /// change that cannot alter the optimum. Not persisted: a hint.
    #[serde(skip)]
    solved_for: Option<Box<SolvedFor>>,
}

/// See [`Allocation::solved_for`].
#[derive(Debug, Clone, PartialEq)]
struct SolvedFor {
    max_distance_m: f64,
    demands: Vec<Demand>,
    supplies: Vec<Supply>,
}

impl Allocation {
    /// Whether the person-distance is not proven minimal: the auction placed
    /// everybody (close to the minimum), or the exact solver ran out of its
    /// work budget and placed the rest greedily. Either way the placement is
    /// feasible and most exposed first.
    pub fn is_approximate(&self) -> bool {
        self.approximate
    }
}

impl PartialEq for Allocation {
    fn eq(&self, other: &Self) -> bool {
        self.flows == other.flows && self.shortfall == other.shortfall
    }
}

/// What [`reallocate`] needs beyond the flows: the distance limit they were
/// made under and each site's price (the extra metres a person placed there
/// is worth, zero where there is room).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct WarmStart {
    max_distance_m: f64,
    prices: Vec<PriceHint>,
}

/// The price of one site, with where the site was when it was priced.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct PriceHint {
    site: SiteIdx,
    at: LatLon,
    price: f64,
}

impl Allocation {
    /// Total person-metres.
    pub fn person_m(&self) -> f64 {
        self.flows.iter().map(|f| f64::from(f.persons) * f.distance_m).sum()
    }

    /// People placed.
    pub fn placed(&self) -> u64 {
        self.flows.iter().map(|f| u64::from(f.persons)).sum()
    }

    /// People with no place.
    pub fn shortfall_total(&self) -> u64 {
        self.shortfall.iter().map(|&(_, p)| u64::from(p)).sum()
    }
}

/// Tuning of [`allocate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocParams {
    /// Sites further than this from a village are never used for it, metres.
    pub max_distance_m: f64,
}

impl AllocParams {
    /// The distance limit in metres (NaN and negative read as zero) and
    /// the squared chord a k-d tree search of sites goes to: a hair wider,
    /// so that sites exactly at the limit are not lost to rounding; the
    /// great-circle check follows.
    fn reach(&self) -> (f64, f64) {
        let max_m = if self.max_distance_m.is_nan() { 0.0 } else { self.max_distance_m.max(0.0) };
        (max_m, m_to_chord_sq(max_m) * (1.0 + 1e-12) + 1e-18)
    }
}

impl Default for AllocParams {
    fn default() -> Self {
        AllocParams { max_distance_m: 300_000.0 }
    }
}

/// Allocates `demands` (in priority order) to `supplies`: the most persons
/// for each demand in turn, then the least total person-metres, never
/// overfilling a site and never beyond `params.max_distance_m`. Flows come
/// grouped by village in demand order (nearest site first), and every demand
/// with people left unplaced appears in the shortfall.
///
/// Each village is placed once per demand entry; a village listed twice is
/// two demands.
pub fn allocate(demands: &[Demand], supplies: &[Supply], params: &AllocParams) -> Allocation {
    if demands.len() > AUCTION_MAX_DEMANDS {
        if room_is_short(demands, supplies) {
            return short_of_room(demands, supplies, params);
        }
        return ssp::Solver::new(demands, supplies, params)
            .solve_within_budget()
            .unwrap_or_else(|_| short_of_room(demands, supplies, params));
    }
    ssp::Solver::new(demands, supplies, params)
        .with_budget(ssp::QUICK_BUDGET)
        .solve_within_budget()
        .unwrap_or_else(|tree| contended(demands, supplies, params, tree))
}

/// Above this many demands the exact solver is used alone: it solves large
/// loose instances exactly (and keeps the prices that make the next change
/// cheap), while the auction's bids grow with the villages that contend
/// (10⁵ villages with 1,000 sites would need seconds of bidding).
const AUCTION_MAX_DEMANDS: usize = 1_000;

/// The flows of demand `d` from `(position in supplies, persons)` pairs,
/// nearest site first.
fn flows_of(d: &Demand, placed: &[(u32, u32)], supplies: &[Supply]) -> Vec<Flow> {
    let mut mine: Vec<Flow> = placed
        .iter()
        .map(|&(t, persons)| Flow {
            village: d.village,
            site: supplies[t as usize].site,
            persons,
            distance_m: d.at.distance_m(supplies[t as usize].at),
        })
        .collect();
    mine.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m).then(a.site.0.cmp(&b.site.0)));
    mine
}

/// The k-d tree of the sites of `supplies`, keyed by position in it.
fn site_tree(supplies: &[Supply]) -> KdTree<u32> {
    KdTree::new(supplies.iter().enumerate().map(|(i, s)| (s.at.to_unit(), i as u32)).collect())
}

/// An instance the exact solver could not finish quickly: the auction if
/// everybody can be placed, else the exact solver on its full budget.
/// `tree` is the quick attempt's k-d tree of `supplies`.
fn contended(demands: &[Demand], supplies: &[Supply], params: &AllocParams, tree: KdTree<u32>) -> Allocation {
    auction::solve_with_tree(demands, supplies, params, tree)
        .unwrap_or_else(|| short_of_room(demands, supplies, params))
}

/// A contended instance the auction cannot take (not everybody fits) or
/// too large for it. First the persons served per demand, exactly: a
/// priority max-flow (`served.rs`, milliseconds). Then the network simplex
/// places exactly those persons at the least person-metres, when the
/// instance has at most [`SIMPLEX_MAX_PAIRS`] demand–site pairs in range and
/// the simplex finishes within its budget. Past either, the max-flow's own
/// placement stands: the right persons served, each at the nearest room
/// the search left, flagged approximate.
fn short_of_room(demands: &[Demand], supplies: &[Supply], params: &AllocParams) -> Allocation {
    short_of_room_within(demands, supplies, params, SIMPLEX_MAX_PAIRS, simplex::WORK_BUDGET)
}

/// [`short_of_room`] with the simplex's size gate and work budget given.
fn short_of_room_within(
    demands: &[Demand],
    supplies: &[Supply],
    params: &AllocParams,
    max_pairs: usize,
    budget: u64,
) -> Allocation {
    let served = served::solve(demands, supplies, params);
    if served.pairs_in_range() > max_pairs {
        return served.into_allocation();
    }
    let order: Vec<usize> = (0..demands.len()).filter(|&i| served.amounts[i] > 0).collect();
    let fixed: Vec<Demand> =
        order.iter().map(|&i| Demand { persons: served.amounts[i], ..demands[i] }).collect();
    let seed: Vec<&[(u32, u32)]> = order.iter().map(|&i| served.sites(i)).collect();
    let Some(placed) = simplex::solve(&fixed, supplies, params, &seed, budget) else {
        return served.into_allocation();
    };
    let shortfall = demands
        .iter()
        .zip(&served.amounts)
        .filter(|&(d, &n)| n < d.persons)
        .map(|(d, &n)| (d.village, d.persons - n))
        .collect();
    let solved_for = SolvedFor {
        max_distance_m: params.max_distance_m,
        demands: demands.to_vec(),
        supplies: supplies.to_vec(),
    };
    Allocation {
        flows: placed.flows,
        shortfall,
        warm: None,
        approximate: false,
        solved_for: Some(Box::new(solved_for)),
    }
}

/// `previous` itself when it is still the optimum for the new input: it
/// was exact for the same demands and distance limit, every site still has
/// room for what it holds, and room grew only at sites `previous` did not
/// fill. Shrinking room it still fits in only removes other placements; room
/// growing where it was not binding changes no optimum (any better
/// placement, mixed a little into `previous`, would have been a better one
/// before). A capacity report at a site in range of a crowded alert is
/// mostly one of these.
fn still_optimal(
    previous: &Allocation,
    demands: &[Demand],
    supplies: &[Supply],
    params: &AllocParams,
) -> Option<Allocation> {
    let was = previous.solved_for.as_deref()?;
    if previous.approximate
        || was.max_distance_m.to_bits() != params.max_distance_m.to_bits()
        || was.demands != demands
    {
        return None;
    }
    let mut load: std::collections::HashMap<SiteIdx, u64> = std::collections::HashMap::new();
    for f in &previous.flows {
        *load.entry(f.site).or_default() += u64::from(f.persons);
    }
    let old: std::collections::HashMap<SiteIdx, &Supply> = was.supplies.iter().map(|s| (s.site, s)).collect();
    if old.len() != was.supplies.len() {
        return None;
    }
    let mut seen = std::collections::HashSet::with_capacity(supplies.len());
    for new in supplies {
        if !seen.insert(new.site) {
            return None;
        }
        let held = load.get(&new.site).copied().unwrap_or(0);
        if u64::from(new.free) < held {
            return None;
        }
        match old.get(&new.site) {
            Some(o) if o.at != new.at => return None,
            Some(o) if new.free > o.free && held >= u64::from(o.free) => return None,
            Some(_) => {}
            None if new.free > 0 => return None,
            None => {}
        }
    }
    if load.iter().any(|(site, &held)| held > 0 && !seen.contains(site)) {
        return None;
    }
    let mut kept = previous.clone();
    if let Some(w) = kept.solved_for.as_deref_mut() {
        w.supplies = supplies.to_vec();
    }
    Some(kept)
}

/// Whether the sites have less room in all than the demands want: then
/// somebody goes without, and the exact solver's first attempt, which
/// finishes quickly only where room is plentiful, is skipped.
fn room_is_short(demands: &[Demand], supplies: &[Supply]) -> bool {
    let room: u64 = supplies.iter().map(|s| u64::from(s.free)).sum();
    let wanted: u64 = demands.iter().map(|d| u64::from(d.persons)).sum();
    room < wanted
}

/// Demand–site pairs in range beyond which the network simplex is not
/// tried: its pivots grow past its budget, and trying would only add the
/// budget to the time the max-flow's placement takes anyway.
const SIMPLEX_MAX_PAIRS: usize = 2_000_000;

/// Re-allocates after a change (site room, demands, or both), warm-started
/// from `previous`: flows that are still possible are kept with the prices
/// that made them optimal, what the change broke is evicted and placed again.
/// Serves the same persons per demand at the same total person-metres as
/// [`allocate`] on the same input (ties between equally good flows may be
/// broken differently). An exact allocation made by the network simplex is
/// kept as it is when the change cannot alter its optimum (see
/// [`still_optimal`]). Falls back to [`allocate`] when `previous` carries no
/// site prices (not made by this module, or by its network simplex), was
/// made under another distance limit, or the input lists a village or a
/// site twice.
pub fn reallocate(
    previous: &Allocation,
    demands: &[Demand],
    supplies: &[Supply],
    params: &AllocParams,
) -> Allocation {
    if let Some(kept) = still_optimal(previous, demands, supplies, params) {
        return kept;
    }
    if let Some(warm) = &previous.warm
        && let Some(out) = ssp::Solver::new(demands, supplies, params).solve_warm(previous, warm)
    {
        if out.is_approximate() && demands.len() <= AUCTION_MAX_DEMANDS {
            return auction::solve(demands, supplies, params).unwrap_or(out);
        }
        return out;
    }
    allocate(demands, supplies, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).unwrap()
    }

    fn demand(i: u32, at: LatLon, persons: u32) -> Demand {
        Demand { village: VillageIdx(i), at, persons }
    }

    fn supply(j: u32, at: LatLon, free: u32) -> Supply {
        Supply { site: SiteIdx(j), at, free }
    }

    /// Persons placed per demand, in demand order.
    pub(super) fn served(a: &Allocation, demands: &[Demand]) -> Vec<u64> {
        demands
            .iter()
            .map(|d| a.flows.iter().filter(|f| f.village == d.village).map(|f| u64::from(f.persons)).sum())
            .collect()
    }

    fn persons_at(a: &Allocation, v: u32, s: u32) -> u32 {
        a.flows.iter().filter(|f| f.village == VillageIdx(v) && f.site == SiteIdx(s)).map(|f| f.persons).sum()
    }

    /// Everything a caller relies on, whatever the instance.
    pub(super) fn check_feasible(
        a: &Allocation,
        demands: &[Demand],
        supplies: &[Supply],
        params: &AllocParams,
    ) {
        for s in supplies {
            let load: u64 = a.flows.iter().filter(|f| f.site == s.site).map(|f| u64::from(f.persons)).sum();
            assert!(load <= u64::from(s.free), "site {:?} holds {load} > free {}", s.site, s.free);
        }
        for d in demands {
            let placed: u64 =
                a.flows.iter().filter(|f| f.village == d.village).map(|f| u64::from(f.persons)).sum();
            let short: u64 =
                a.shortfall.iter().filter(|(v, _)| *v == d.village).map(|&(_, n)| u64::from(n)).sum();
            assert_eq!(placed + short, u64::from(d.persons), "village {:?}", d.village);
        }
        for f in &a.flows {
            assert!(f.persons > 0);
            let d = demands.iter().find(|d| d.village == f.village).unwrap();
            let s = supplies.iter().find(|s| s.site == f.site).unwrap();
            assert_eq!(f.distance_m, d.at.distance_m(s.at), "flow distance");
            assert!(f.distance_m <= params.max_distance_m, "flow beyond the limit: {}", f.distance_m);
        }
        assert!(a.shortfall.iter().all(|&(_, n)| n > 0));
    }

    /// The same persons served per demand at the optimum person-metres, or
    /// within 1 % of them when either side came from the auction.
    pub(super) fn assert_same_optimum(got: &Allocation, want: &Allocation, demands: &[Demand]) {
        assert_eq!(served(got, demands), served(want, demands), "served per demand");
        let (g, w) = (got.person_m(), want.person_m());
        if got.is_approximate() || want.is_approximate() {
            let best = g.min(w);
            assert!(g.max(w) <= best * 1.01 + 1e-6, "person-metres {g} vs {w}");
        } else {
            assert!((g - w).abs() <= 1e-9 * w.max(1.0), "person-metres {g} vs optimum {w}");
        }
    }

    /// 2,000 people for 1,440 places along a valley: every search needs
    /// augmenting paths.
    fn tight() -> (Vec<Demand>, Vec<Supply>) {
        let demands = (0..40)
            .map(|i| demand(i, p(38.5 + 0.01 * f64::from(i), 69.0 + 0.005 * f64::from(i % 7)), 50))
            .collect();
        let supplies = (0..12).map(|j| supply(j, p(38.52 + 0.03 * f64::from(j), 69.01), 120)).collect();
        (demands, supplies)
    }

    /// A tight instance that needs augmenting paths: once the work budget
    /// is spent, the rest is placed greedily — still within capacity and
    /// range, every person placed or counted short, flagged approximate, and
    /// the next change starts cold.
    #[test]
    fn a_spent_work_budget_falls_back_to_feasible_greedy_placement() {
        let (demands, supplies) = tight();
        let params = AllocParams::default();
        let exact = allocate(&demands, &supplies, &params);
        assert!(!exact.is_approximate());
        for budget in [0, 5, 50] {
            let a = ssp::Solver::new(&demands, &supplies, &params).with_budget(budget).solve_cold();
            check_feasible(&a, &demands, &supplies, &params);
            assert!(a.is_approximate(), "budget {budget}");
            // The same people are placed (capacity is the binding limit) …
            assert_eq!(a.placed(), exact.placed());
            // … at no less total distance than the optimum.
            assert!(a.person_m() >= exact.person_m() - 1e-6);
            let again = reallocate(&a, &demands, &supplies, &params);
            assert_same_optimum(&again, &exact, &demands);
        }
    }

    /// Villages in clusters wanting a fifth more room than the sites have:
    /// too contended for the exact solver's budget, too large for the
    /// auction's, not everybody fits.
    fn crowded() -> (Vec<Demand>, Vec<Supply>) {
        let mut rng = crate::core::synthetic::Rng::new(0x5EED);
        let mut unit = move || rng.unit();
        let centres: Vec<(f64, f64)> = (0..12).map(|_| (37.5 + 2.0 * unit(), 68.5 + 3.0 * unit())).collect();
        let demands: Vec<Demand> = (0..1_200)
            .map(|i| {
                let (lat, lon) = centres[i % centres.len()];
                let at = p(lat + 0.3 * (unit() - 0.5), lon + 0.4 * (unit() - 0.5));
                demand(i as u32, at, 10 + (unit() * unit() * 400.0) as u32)
            })
            .collect();
        let total: u32 = demands.iter().map(|d| d.persons).sum();
        let supplies = (0..100)
            .map(|j| {
                let at = demands[(unit() * demands.len() as f64) as usize].at;
                supply(j, at, (f64::from(total) * 0.8 / 100.0 * (0.5 + unit())) as u32)
            })
            .collect();
        (demands, supplies)
    }

    /// Where the exact solver runs out of budget and not everybody fits,
    /// the max-flow and the network simplex still find the optimum: the
    /// most exposed villages served first, at the least person-metres, not
    /// flagged approximate.
    #[test]
    fn a_crowded_instance_beyond_the_exact_solvers_budget_is_solved_exactly() {
        let (demands, supplies) = crowded();
        let params = AllocParams::default();
        assert!(ssp::Solver::new(&demands, &supplies, &params).solve_within_budget().is_err());
        let a = allocate(&demands, &supplies, &params);
        check_feasible(&a, &demands, &supplies, &params);
        assert!(!a.is_approximate());
        assert!(a.shortfall_total() > 0);
        let want = exact::solve(&demands, &supplies, &params);
        assert_same_optimum(&a, &want, &demands);
        // The exact solver alone, on its budget, does worse.
        let greedy = ssp::Solver::new(&demands, &supplies, &params).solve_cold();
        assert!(greedy.is_approximate());
        assert!(served(&greedy, &demands) < served(&a, &demands) || greedy.person_m() > a.person_m());
        // The next change starts cold and finds the same optimum.
        assert_same_optimum(&reallocate(&a, &demands, &supplies, &params), &want, &demands);
    }

    /// When the simplex may not run (too many pairs in range) or runs out
    /// of work, the persons served per demand are still the optimum's. On
    /// the second instance the greedy placement the exact solver falls back
    /// on leaves the second village out (the first took the only site it
    /// can reach); the max-flow moves part of the first to its other site.
    #[test]
    fn past_the_simplex_the_most_exposed_are_still_served_first() {
        let pair = (
            vec![demand(0, p(38.0, 69.0), 100), demand(1, p(38.05, 69.0), 100)],
            vec![supply(0, p(38.01, 69.0), 100), supply(1, p(37.95, 69.0), 60)],
        );
        for ((demands, supplies), params) in
            [(crowded(), AllocParams::default()), (pair, AllocParams { max_distance_m: 8_000.0 })]
        {
            let want = exact::solve(&demands, &supplies, &params);
            if demands.len() == 2 {
                let greedy = ssp::Solver::new(&demands, &supplies, &params).with_budget(0).solve_cold();
                assert_eq!(served(&greedy, &demands), [100, 0]);
                assert_eq!(served(&want, &demands), [100, 60]);
            }
            for (max_pairs, budget) in [(0, u64::MAX), (usize::MAX, 0)] {
                let a = short_of_room_within(&demands, &supplies, &params, max_pairs, budget);
                check_feasible(&a, &demands, &supplies, &params);
                assert!(a.is_approximate());
                assert_eq!(
                    served(&a, &demands),
                    served(&want, &demands),
                    "gate {max_pairs}, budget {budget}"
                );
                assert!(a.person_m() >= want.person_m() - 1e-6);
                // The next change solves it exactly.
                assert_same_optimum(&reallocate(&a, &demands, &supplies, &params), &want, &demands);
            }
        }
    }

    /// A capacity report that cannot change the optimum of a crowded
    /// alert keeps its allocation without solving again: room shrinking to
    /// no less than a site holds, or growing at a site with room to spare.
    /// Room growing at a full site, or shrinking below what a site holds,
    /// solves again. Either way the answer is the exact optimum.
    #[test]
    fn a_report_that_cannot_change_the_optimum_keeps_the_allocation() {
        let (demands, mut supplies) = crowded();
        // A large site at the northern edge of the villages' reach: room
        // to spare.
        supplies.push(supply(100, p(41.6, 70.0), 100_000));
        let params = AllocParams::default();
        let a = allocate(&demands, &supplies, &params);
        assert!(!a.is_approximate() && a.solved_for.is_some());
        let held = |s: &Supply| a.flows.iter().filter(|f| f.site == s.site).map(|f| f.persons).sum::<u32>();
        let spare = supplies.iter().position(|s| held(s) < s.free).expect("a site with room to spare");
        let full = supplies.iter().position(|s| held(s) == s.free && s.free > 0).expect("a full site");
        let changed = |k: usize, free: u32| {
            let mut out = supplies.clone();
            out[k].free = free;
            out
        };
        let cases = [
            (changed(spare, supplies[spare].free + 500), true),
            (changed(full, held(&supplies[full])), true),
            (changed(spare, held(&supplies[spare])), true),
            (changed(full, supplies[full].free + 500), false),
            (changed(full, held(&supplies[full]) / 2), false),
        ];
        for (k, (after, keeps)) in cases.iter().enumerate() {
            assert_eq!(still_optimal(&a, &demands, after, &params).is_some(), *keeps, "case {k}");
            let got = reallocate(&a, &demands, after, &params);
            check_feasible(&got, &demands, after, &params);
            assert_same_optimum(&got, &exact::solve(&demands, after, &params), &demands);
        }
        // Other demands, or another distance limit, always solve again.
        let fewer = &demands[..demands.len() - 1];
        assert!(still_optimal(&a, fewer, &supplies, &params).is_none());
        assert!(still_optimal(&a, &demands, &supplies, &AllocParams { max_distance_m: 299_000.0 }).is_none());
    }

    /// Once the budget is spent, each demand in turn fills the nearest
    /// sites that still have room, in range, and what no site in range can
    /// take is short: a site that filled is passed over by every later
    /// demand, and a full or out-of-range one is never used.
    #[test]
    fn greedy_placement_fills_the_nearest_sites_with_room_first() {
        let at = |km_east: f64| p(38.5, 69.0 + km_east / 87.0);
        let supplies = vec![
            supply(0, at(1.0), 0),
            supply(1, at(2.0), 10),
            supply(2, at(3.0), 100),
            supply(3, at(50.0), 1_000),
            supply(4, at(400.0), 1_000),
        ];
        let demands = vec![demand(0, at(0.0), 60), demand(1, at(0.5), 100), demand(2, at(0.2), 1_000)];
        let params = AllocParams { max_distance_m: 100_000.0 };
        let a = ssp::Solver::new(&demands, &supplies, &params).with_budget(0).solve_cold();
        check_feasible(&a, &demands, &supplies, &params);
        assert!(a.is_approximate());
        assert_eq!((persons_at(&a, 0, 1), persons_at(&a, 0, 2)), (10, 50));
        assert_eq!((persons_at(&a, 1, 2), persons_at(&a, 1, 3)), (50, 50));
        assert_eq!(persons_at(&a, 2, 3), 950);
        assert_eq!(a.shortfall, vec![(VillageIdx(2), 50)]);
        assert!(a.flows.iter().all(|f| f.site != SiteIdx(0) && f.site != SiteIdx(4)));
    }

    /// The quick first attempt of `allocate` either finishes exactly or
    /// says it could not; it never hands back a half-greedy answer that
    /// the auction would then have to beat.
    #[test]
    fn a_quick_attempt_gives_up_instead_of_guessing() {
        let (demands, supplies) = tight();
        let params = AllocParams::default();
        for budget in [0, 5, 50] {
            let quick =
                ssp::Solver::new(&demands, &supplies, &params).with_budget(budget).solve_within_budget();
            assert!(quick.is_err(), "budget {budget}");
        }
        let full = ssp::Solver::new(&demands, &supplies, &params).solve_within_budget().expect("exact");
        assert!(!full.is_approximate());
        check_feasible(&full, &demands, &supplies, &params);
        let reference = exact::solve(&demands, &supplies, &params);
        assert_same_optimum(&full, &reference, &demands);
    }

    #[test]
    fn the_more_exposed_village_wins_a_contested_site() {
        let site = p(38.50, 69.00);
        // Village 7 is listed first (more exposed) although village 3 is nearer.
        let demands = [demand(7, p(38.55, 69.00), 100), demand(3, p(38.505, 69.00), 100)];
        let supplies = [supply(0, site, 120)];
        let a = allocate(&demands, &supplies, &AllocParams::default());
        assert_eq!(persons_at(&a, 7, 0), 100);
        assert_eq!(persons_at(&a, 3, 0), 20);
        assert_eq!(a.shortfall, vec![(VillageIdx(3), 80)]);
    }

    #[test]
    fn a_nearer_village_takes_the_close_site_when_that_lowers_the_total() {
        // Site A is nearest for both villages; village 0 is only slightly
        // further from B, village 1 much further. Greedy would put 0 in A and
        // send 1 far away; the optimum swaps them.
        let a_site = p(38.50, 69.00);
        let b_site = p(38.50, 69.10);
        let v0 = p(38.55, 69.045);
        let v1 = p(38.505, 68.99);
        let demands = [demand(0, v0, 100), demand(1, v1, 100)];
        let supplies = [supply(0, a_site, 100), supply(1, b_site, 100)];
        let a = allocate(&demands, &supplies, &AllocParams::default());
        assert_eq!(persons_at(&a, 1, 0), 100, "{a:?}");
        assert_eq!(persons_at(&a, 0, 1), 100, "{a:?}");
        assert!(a.shortfall.is_empty());
        assert_same_optimum(&a, &exact::solve(&demands, &supplies, &AllocParams::default()), &demands);
    }

    #[test]
    fn sites_beyond_the_limit_are_never_used_and_the_gap_is_reported() {
        let demands = [demand(0, p(38.0, 69.0), 50)];
        // 0.5° of latitude is about 55.6 km.
        let supplies = [supply(0, p(38.5, 69.0), 1_000)];
        let params = AllocParams { max_distance_m: 50_000.0 };
        let a = allocate(&demands, &supplies, &params);
        assert!(a.flows.is_empty());
        assert_eq!(a.shortfall, vec![(VillageIdx(0), 50)]);
        let near = AllocParams { max_distance_m: 60_000.0 };
        assert_eq!(allocate(&demands, &supplies, &near).placed(), 50);
    }

    #[test]
    fn a_village_reaches_past_its_nearest_sites_when_they_fill() {
        // Forty small sites strung out northwards: the village needs most
        // of them, far more than it lists at first.
        let centre = p(38.5, 69.0);
        let supplies: Vec<Supply> =
            (0..40).map(|j| supply(j, p(38.5 + 0.01 * f64::from(j + 1), 69.0), 3)).collect();
        let demands = [demand(0, centre, 100)];
        let a = allocate(&demands, &supplies, &AllocParams::default());
        assert_eq!(a.placed(), 100);
        // The 34 nearest sites, nothing further.
        let used: std::collections::BTreeSet<u32> = a.flows.iter().map(|f| f.site.0).collect();
        assert_eq!(used, (0..34).collect(), "{a:?}");
        assert_same_optimum(&a, &exact::solve(&demands, &supplies, &AllocParams::default()), &demands);
    }

    #[test]
    fn shrinking_a_site_moves_people_and_keeps_the_first_village_served() {
        let demands =
            [demand(0, p(38.50, 69.00), 80), demand(1, p(38.52, 69.02), 80), demand(2, p(38.60, 69.20), 60)];
        let mut supplies = vec![supply(0, p(38.51, 69.01), 150), supply(1, p(38.62, 69.22), 70)];
        let params = AllocParams::default();
        let before = allocate(&demands, &supplies, &params);
        assert!(before.shortfall.is_empty());
        supplies[0].free = 70;
        let warm = reallocate(&before, &demands, &supplies, &params);
        check_feasible(&warm, &demands, &supplies, &params);
        let cold = allocate(&demands, &supplies, &params);
        assert_same_optimum(&warm, &cold, &demands);
        assert_eq!(served(&warm, &demands), vec![80, 60, 0]);
    }

    #[test]
    fn reallocate_without_a_previous_solve_is_a_cold_solve() {
        let demands = [demand(0, p(38.5, 69.0), 10)];
        let supplies = [supply(0, p(38.5, 69.01), 5)];
        let params = AllocParams::default();
        let a = reallocate(&Allocation::default(), &demands, &supplies, &params);
        assert_eq!(a, allocate(&demands, &supplies, &params));
        assert_eq!(a.shortfall, vec![(VillageIdx(0), 5)]);
    }

    #[test]
    fn nothing_to_place_or_nowhere_to_place_it() {
        let params = AllocParams::default();
        assert_eq!(allocate(&[], &[supply(0, p(38.5, 69.0), 5)], &params), Allocation::default());
        let a = allocate(&[demand(0, p(38.5, 69.0), 5)], &[], &params);
        assert_eq!(a.shortfall, vec![(VillageIdx(0), 5)]);
    }

    /// A random instance: villages and sites in a small box, some sharing a
    /// spot, some sites full, a distance limit that leaves some villages with
    /// no site at all, capacity from very tight to loose.
    pub(super) fn instance() -> impl Strategy<Value = (Vec<Demand>, Vec<Supply>, AllocParams)> {
        let spot = (38.0f64..39.0, 69.0f64..70.5);
        (
            prop::collection::vec(spot.clone(), 1..8),
            prop::collection::vec((0u8..4, spot.clone(), 0u32..400), 1..200),
            prop::collection::vec((0u8..4, spot, 0u32..8), 0..30),
            0.1f64..2.0,
            10_000.0f64..150_000.0,
        )
            .prop_map(|(shared, vs, ss, capacity, max_distance_m)| {
                // A quarter of the points sit on a shared spot (duplicates).
                let place = |k: u8, own: (f64, f64), salt: usize| {
                    let (lat, lon) = if k == 0 { shared[salt % shared.len()] } else { own };
                    p(lat, lon)
                };
                let demands: Vec<Demand> = vs
                    .iter()
                    .enumerate()
                    .map(|(i, &(k, at, persons))| demand(i as u32, place(k, at, i), persons.max(1)))
                    .collect();
                let total: f64 = demands.iter().map(|d| f64::from(d.persons)).sum();
                let per_site = capacity * total / ss.len().max(1) as f64;
                let supplies: Vec<Supply> = ss
                    .iter()
                    .enumerate()
                    .map(|(j, &(k, at, weight))| {
                        // Weight 0 makes a full site; others share the capacity.
                        let free = (per_site * f64::from(weight) / 3.5).round() as u32;
                        supply(j as u32 + 1000, place(k, at, j + 3), free)
                    })
                    .collect();
                (demands, supplies, AllocParams { max_distance_m })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn allocate_is_feasible_and_matches_the_exact_optimum((demands, supplies, params) in instance()) {
            let a = allocate(&demands, &supplies, &params);
            check_feasible(&a, &demands, &supplies, &params);
            let want = exact::solve(&demands, &supplies, &params);
            check_feasible(&want, &demands, &supplies, &params);
            assert_same_optimum(&a, &want, &demands);
        }

        #[test]
        fn reallocate_after_a_change_matches_a_cold_solve(
            (demands, supplies, params) in instance(),
            changes in prop::collection::vec((any::<prop::sample::Index>(), 0u32..3, 0.0f64..2.0), 1..4),
        ) {
            let before = allocate(&demands, &supplies, &params);
            let mut supplies = supplies;
            let mut demands = demands;
            for (which, kind, factor) in changes {
                match kind {
                    // A site's room grows or shrinks.
                    0 if !supplies.is_empty() => {
                        let k = which.index(supplies.len());
                        let s = &mut supplies[k];
                        s.free = (f64::from(s.free) * factor + 3.0 * factor).round() as u32;
                    }
                    // A site closes.
                    1 if !supplies.is_empty() => {
                        supplies.remove(which.index(supplies.len()));
                    }
                    // A village's displaced count changes.
                    _ => {
                        let k = which.index(demands.len());
                        let d = &mut demands[k];
                        d.persons = ((f64::from(d.persons) * factor).round() as u32).max(1);
                    }
                }
            }
            let warm = reallocate(&before, &demands, &supplies, &params);
            check_feasible(&warm, &demands, &supplies, &params);
            let cold = allocate(&demands, &supplies, &params);
            assert_same_optimum(&warm, &cold, &demands);
            // And a second change on top of the warm result.
            if let Some(s) = supplies.first_mut() {
                s.free += 50;
            }
            let again = reallocate(&warm, &demands, &supplies, &params);
            check_feasible(&again, &demands, &supplies, &params);
            assert_same_optimum(&again, &exact::solve(&demands, &supplies, &params), &demands);
        }
    }
}
