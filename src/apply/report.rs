//! What apply did, per registry: the plain report the renderers read.

use std::path::PathBuf;

use crate::ranked::Ranked;
use crate::reference::Reference;

/// What apply did to a registry's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    DryRun,
    Written,
    Applied,
    RolledBack,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Applied,
        Outcome::Written,
        Outcome::Unchanged,
        Outcome::DryRun,
        Outcome::RolledBack,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::DryRun => "dry-run",
            Outcome::Written => "written",
            Outcome::Applied => "applied",
            Outcome::RolledBack => "rolled-back",
            Outcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registry: its probe and what apply did with it.
#[derive(Debug)]
pub struct RegistryReport {
    pub registry: String,
    /// The image its mirrors were probed with (`None` with `--via`).
    pub image: Option<Reference>,
    pub ranked: Ranked,
    pub file: PathBuf,
    /// The mirrors the file listed before, as the file names them.
    pub old: Vec<String>,
    /// The mirrors it lists now (or would, with `dry_run`; or was to list,
    /// when rolled back).
    pub new: Vec<String>,
    pub outcome: Outcome,
    pub message: String,
    /// How the runtime was told (`SIGHUP to dockerd (pid 42)`), if it was.
    pub action: Option<String>,
    /// What the runtime reports running afterwards, if it was asked.
    pub running: Option<Vec<String>>,
}

impl RegistryReport {
    /// How many mirrors the configuration lists after the apply.
    pub fn mirrors_after(&self) -> usize {
        match self.outcome {
            Outcome::Applied | Outcome::Written => self.new.len(),
            _ => self.old.len(),
        }
    }
}

/// What apply did.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub registries: Vec<RegistryReport>,
}

impl Report {
    pub fn rolled_back(&self) -> bool {
        self.registries
            .iter()
            .any(|r| r.outcome == Outcome::RolledBack)
    }

    /// Whether any registry was configured (or already was).
    pub fn any_configured(&self) -> bool {
        self.registries.iter().any(|r| r.outcome != Outcome::Failed)
    }
}
