//! `module-cycles`: checks every library and binary of the workspace for module cycles (see
//! `agora_devtools::graph` for what counts). Prints each cycle with one example reference per
//! edge and exits with 1 when there is any (2 when a module file cannot be read or parsed);
//! prints a one-line summary when the tree is clean.
//!
//! Run from anywhere in the workspace: `scripts/module-cycles`, or
//! `cargo run -q -p agora-devtools --bin module-cycles`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use agora_devtools::{Files, check};
use anyhow::{Context, Result, bail};

/// A crate root of a workspace member: `agora-server (lib)`, its root file.
struct Target {
    name: String,
    root: PathBuf,
}

/// The workspace: its root, its members' `src/` folders, and their library and binary targets,
/// from `cargo metadata`.
struct Workspace {
    root: PathBuf,
    src_dirs: Vec<PathBuf>,
    targets: Vec<Target>,
}

fn workspace() -> Result<Workspace> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    let root = PathBuf::from(
        meta["workspace_root"]
            .as_str()
            .context("cargo metadata: no workspace_root")?,
    );
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .context("cargo metadata: no workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut found = Vec::new();
    let mut src_dirs = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        if !pkg["id"].as_str().is_some_and(|id| members.contains(&id)) {
            continue;
        }
        let name = pkg["name"].as_str().unwrap_or("?");
        if let Some(dir) = pkg["manifest_path"]
            .as_str()
            .and_then(|m| Path::new(m).parent())
        {
            src_dirs.push(dir.join("src"));
        }
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            let kind = if kinds
                .iter()
                .any(|k| k.ends_with("lib") || *k == "proc-macro")
            {
                "lib".to_string()
            } else if kinds.contains(&"bin") {
                format!("bin {}", t["name"].as_str().unwrap_or("?"))
            } else {
                continue; // tests, benches, examples, build scripts: not under src/
            };
            let Some(src) = t["src_path"].as_str() else {
                continue;
            };
            found.push(Target {
                name: format!("{name} ({kind})"),
                root: PathBuf::from(src),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Workspace {
        root,
        src_dirs,
        targets: found,
    })
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn main() -> ExitCode {
    let ws = match workspace() {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("module-cycles: {e:#}");
            return ExitCode::from(2);
        }
    };
    let (mut cycles, mut errors, mut modules) = (0, 0, 0);
    let mut read: BTreeSet<PathBuf> = BTreeSet::new();
    for t in &ws.targets {
        let report = check(&t.name, &t.root, &Files);
        print!("{}", report.render(&ws.root));
        cycles += report.cycles.len();
        errors += report.errors.len();
        modules += report.modules;
        read.extend(report.files);
    }
    // A file under src/ that no crate reaches is no module of anything: say so.
    let mut all = Vec::new();
    for dir in &ws.src_dirs {
        rust_files(dir, &mut all);
    }
    all.sort();
    for f in all.iter().filter(|f| !read.contains(*f)) {
        let shown = f.strip_prefix(&ws.root).unwrap_or(f);
        println!("note: {} is in no crate's module tree", shown.display());
    }
    let what = format!(
        "{} crates ({} modules in {} files)",
        ws.targets.len(),
        modules,
        read.len()
    );
    if errors > 0 {
        println!("module-cycles: {errors} files could not be read; {cycles} cycles in {what}");
        ExitCode::from(2)
    } else if cycles > 0 {
        println!("module-cycles: {cycles} cycles in {what}");
        ExitCode::from(1)
    } else {
        println!("module-cycles: no module cycles in {what}");
        ExitCode::SUCCESS
    }
}
