//! Builds `config/scenarios/tajikistan` from `shared/data/tajikistan`.

use std::path::Path;

/// `eoc-server scenario build --from DIR --out DIR`.
pub fn run(from: &Path, out: &Path) -> anyhow::Result<()> {
    anyhow::bail!("scenario build is not implemented yet: {} -> {}", from.display(), out.display())
}
