//! The project's own development tools. One so far, `module-cycles` (run it with
//! `scripts/module-cycles`): no module of a crate may depend on a module that depends on it back.
//!
//! ```text
//!  crate root file ──► tree: the module tree (mod name; → name.rs | name/mod.rs | #[path])
//!                        │ each module's items (syn)
//!                        ▼
//!                      refs: the paths each module's code writes (use trees, expressions,
//!                        │   types, macro tokens)
//!                        ▼
//!                      graph: paths resolved to modules; an edge X → Y between two children
//!                             of one module when X's subtree names something in Y's; cycles
//!                             are strongly connected components of two or more children
//! ```
//!
//! Syntax only: no type checking, no macro expansion. What it reads is what a person reads in
//! the source; what a macro generates, or a method called on a value whose type lives
//! elsewhere, is not seen.

pub mod graph;
pub mod refs;
pub mod tree;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use graph::{Cycle, Graph};
pub use tree::{Files, Source, Tree};

/// What the check found in one crate (a library or binary target).
#[derive(Debug)]
pub struct Report {
    /// `agora-server (lib)`.
    pub name: String,
    /// Modules in the crate.
    pub modules: usize,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Paths that resolved to a module of the crate.
    pub references: usize,
    /// The cycles found (none in a healthy crate).
    pub cycles: Vec<Cycle>,
    /// Module files that could not be found or parsed.
    pub errors: Vec<String>,
}

/// Checks the crate whose root file is `root`.
pub fn check(name: &str, root: &Path, src: &dyn Source) -> Report {
    let tree = Tree::read(root, src);
    let graph = Graph::build(&tree);
    let cycles = graph.cycles(&tree);
    Report {
        name: name.to_string(),
        modules: tree.modules.len(),
        files: tree.files,
        references: graph.references,
        cycles,
        errors: tree.errors,
    }
}

impl Report {
    /// The cycles, one block each: the chain, then one example reference per edge, with file
    /// paths shown relative to `base`.
    pub fn render(&self, base: &Path) -> String {
        let mut out = String::new();
        for c in &self.cycles {
            let path = |child: &str| format!("{}::{child}", c.parent);
            let _ = writeln!(
                out,
                "{}: cycle among the children of {}: {}",
                self.name,
                c.parent,
                c.members.join(", ")
            );
            for chain in &c.chains {
                let ring: Vec<String> = chain
                    .iter()
                    .map(|(a, _, _)| path(a))
                    .chain(chain.first().map(|(a, _, _)| path(a)))
                    .collect();
                let _ = writeln!(out, "  {}", ring.join(" -> "));
                for (a, b, e) in chain {
                    let file = e.file.strip_prefix(base).unwrap_or(&e.file);
                    let _ = writeln!(
                        out,
                        "    {} -> {}: {}:{}: {}",
                        path(a),
                        path(b),
                        file.display(),
                        e.line,
                        e.text
                    );
                }
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "{}: error: {e}", self.name);
        }
        out
    }
}

#[cfg(test)]
mod tests;
