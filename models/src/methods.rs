//! The table of methods and reproductions the CLI serves.
//!
//! Each entry names a method (or an engine), its spec, its status, and the functions the
//! CLI calls: `reproduce` for `lapis reproduce <name>`, and optionally `command` / `run` for
//! the method's own user subcommand (`lapis <name> …`, e.g. fitting a user's data). The CLI
//! builds its subcommands from this table, so adding a method is adding a row here.

use lapis_ops::Result;

use crate::reproduce::{Context, Report};

/// Where a method stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `lapis reproduce <name>` regenerates its claims.
    Reproducible,
    /// Not built yet (its issue is open).
    Planned,
}

impl Status {
    /// A word for tables.
    pub fn name(self) -> &'static str {
        match self {
            Status::Reproducible => "reproducible",
            Status::Planned => "planned",
        }
    }
}

/// One row of the table.
pub struct Method {
    /// The name on the command line (`softmoe`, `laplace-engine`, …).
    pub name: &'static str,
    /// One line: what it is.
    pub summary: &'static str,
    /// The spec it follows (`specs/<file>.md` and section).
    pub spec: &'static str,
    /// Its status.
    pub status: Status,
    /// Runs its reproduction.
    pub reproduce: Option<fn(&Context) -> Result<Report>>,
    /// Its user subcommand, if it has one: `lapis <command name> …`, usually the method's
    /// name (LAPLEX's is `laplex-cov`).
    pub command: Option<fn() -> clap::Command>,
    /// Runs that subcommand.
    pub run: Option<fn(&clap::ArgMatches) -> Result<()>>,
}

const fn planned(name: &'static str, summary: &'static str, spec: &'static str) -> Method {
    Method {
        name,
        summary,
        spec,
        status: Status::Planned,
        reproduce: None,
        command: None,
        run: None,
    }
}

/// Every method and engine, in the order the README lists them.
pub static METHODS: &[Method] = &[
    Method {
        name: "laplace-engine",
        summary: "exact O(n log n) Laplace-kernel operator, real and phased, with every gradient",
        spec: "docs/specs/laplace-engine.md",
        status: Status::Reproducible,
        reproduce: Some(crate::laplace_engine::reproduce),
        command: None,
        run: None,
    },
    Method {
        name: "softtopk-engine",
        summary: "LapSum soft top-k (Σp = k), learnable k and α, truncated form, soft rank",
        spec: "docs/specs/softtopk-engine.md",
        status: Status::Reproducible,
        reproduce: Some(crate::softtopk_engine::reproduce),
        command: None,
        run: None,
    },
    Method {
        name: "softmoe",
        summary: "mixture of experts routed by truncated soft top-k, learned k per layer",
        spec: "docs/specs/sparse-methods.md §1",
        status: Status::Reproducible,
        reproduce: Some(crate::softmoe::reproduce),
        command: Some(crate::softmoe::command),
        run: Some(crate::softmoe::run),
    },
    Method {
        name: "softsae",
        summary: "sparse autoencoder with a soft top-k bottleneck and a learned k per input",
        spec: "docs/specs/sparse-methods.md §2",
        status: Status::Reproducible,
        reproduce: Some(crate::softsae::reproduce),
        command: Some(crate::softsae::command),
        run: Some(crate::softsae::run),
    },
    Method {
        name: "cedar",
        summary: "orthogonal rotation of embeddings with a soft-then-hard top-k bottleneck",
        spec: "docs/specs/sparse-methods.md §3",
        status: Status::Reproducible,
        reproduce: Some(crate::cedar::reproduce),
        command: Some(crate::cedar::command),
        run: Some(crate::cedar::run),
    },
    Method {
        name: "laplex",
        summary: "trainable Laplace layers on digits and at scale; Gram covariance of photos",
        spec: "docs/specs/laplace-methods.md §1, §3 E1–E3",
        status: Status::Reproducible,
        reproduce: Some(crate::laplex::reproduce),
        command: Some(crate::laplex::command),
        run: Some(crate::laplex::run),
    },
    Method {
        name: "remix",
        summary: "data-free class-incremental learning with Laplace-covariance model inversion",
        spec: "docs/specs/laplace-methods.md §0, §2, §3 E4",
        status: Status::Reproducible,
        reproduce: Some(crate::remix::reproduce),
        command: None,
        run: None,
    },
    planned(
        "dave",
        "distribution-aware attribution via ViT gradient decomposition",
        "docs/specs/attribution-methods.md §1",
    ),
    planned(
        "diamond",
        "directed inference for artifact mitigation (gradient decomposition)",
        "docs/specs/attribution-methods.md §2",
    ),
    planned(
        "epic",
        "prototypes for a pretrained classifier (gradient decomposition)",
        "docs/specs/attribution-methods.md §3",
    ),
    planned(
        "zeus",
        "zero-shot clustering by a transformer trained on a synthetic prior",
        "docs/specs/cluster-regress-methods.md §1",
    ),
    planned(
        "cec-mmr",
        "multi-modal regression by cross-entropy clustering",
        "docs/specs/cluster-regress-methods.md §2",
    ),
];

/// The entry named `name`.
pub fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// The entry whose user subcommand is called `name` (`laplex-cov` → `laplex`).
pub fn find_command(name: &str) -> Option<&'static Method> {
    METHODS
        .iter()
        .find(|m| m.command.is_some_and(|c| c().get_name() == name))
}
