//! Capacitated allocation of displaced people to sites.
//!
//! Minimises total person-distance (great-circle metres) subject to site
//! capacity, serving demands in the order given (most exposed first), and
//! reports the shortfall instead of overfilling.

use super::geo::LatLon;
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
#[derive(Debug, Clone, Copy, PartialEq)]
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// People sent, grouped by village in demand order.
    pub flows: Vec<Flow>,
    /// People with no place, per village, in demand order.
    pub shortfall: Vec<(VillageIdx, u32)>,
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

impl Default for AllocParams {
    fn default() -> Self {
        AllocParams { max_distance_m: 300_000.0 }
    }
}

/// Allocates `demands` (in priority order) to `supplies`.
pub fn allocate(demands: &[Demand], supplies: &[Supply], params: &AllocParams) -> Allocation {
    // Placeholder: greedy nearest site with room. Replaced by the
    // successive-shortest-path allocator.
    let mut free: Vec<u32> = supplies.iter().map(|s| s.free).collect();
    let mut out = Allocation::default();
    for d in demands {
        let mut left = d.persons;
        let mut order: Vec<(usize, f64)> =
            supplies.iter().enumerate().map(|(i, s)| (i, s.at.distance_m(d.at))).collect();
        order.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (i, dist) in order {
            if left == 0 || dist > params.max_distance_m {
                break;
            }
            let take = left.min(free[i]);
            if take > 0 {
                free[i] -= take;
                left -= take;
                out.flows.push(Flow {
                    village: d.village,
                    site: supplies[i].site,
                    persons: take,
                    distance_m: dist,
                });
            }
        }
        if left > 0 {
            out.shortfall.push((d.village, left));
        }
    }
    out
}

/// Re-allocates after a change, warm-started from `previous`. Same result as
/// [`allocate`] on the same input.
pub fn reallocate(
    previous: &Allocation,
    demands: &[Demand],
    supplies: &[Supply],
    params: &AllocParams,
) -> Allocation {
    let _ = previous;
    allocate(demands, supplies, params)
}
