//! From written paths to module dependencies, and from those to cycles.
//!
//! A path is resolved against the module tree the way the compiler reads it, as far as modules
//! go: `crate::`, `self::`, `super::` (repeated), a child module's name, or a name a `use` of
//! the module bound (followed, so `crate::Config` re-exported from `crate::config` reaches
//! `crate::config`); names a glob import brought in are looked for in the globbed module.
//! Resolution stops at the first segment that is not a module: the module reached is the
//! one the path depends on. A path into another crate resolves to nothing.
//!
//! A reference from module S to module T is an edge at exactly one level: under their lowest
//! common ancestor L, from L's child above S to L's child above T. A reference to an ancestor
//! (or to itself) or to a descendant is no edge: a parent may use its children and a child its
//! parent's items. A cycle is a strongly connected component of two or more children of one
//! module.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::refs::{self, PathRef};
use crate::tree::Tree;

/// One reference, as an example of an edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    /// The file of the reference.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// The path as written.
    pub text: String,
}

/// An edge between two children of one module, with the first reference (by file and line)
/// that makes it and how many there are.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The first reference that makes the edge.
    pub example: Example,
    /// How many references make it.
    pub count: usize,
}

/// The dependencies among the children of every module of a crate.
#[derive(Debug)]
pub struct Graph {
    /// Module id → (child name, child name) → edge.
    pub levels: BTreeMap<usize, BTreeMap<(String, String), Edge>>,
    /// References resolved to a module of this crate.
    pub references: usize,
}

/// A cycle among the children of one module.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// `crate::a`: the module whose children are in the cycle.
    pub parent: String,
    /// The strongly connected component: child names, sorted.
    pub members: Vec<String>,
    /// Chains that go through every member: each `a -> b -> .. -> a`, as its edges.
    pub chains: Vec<Vec<(String, String, Example)>>,
}

impl Graph {
    /// The edges among the children of every module of `tree`.
    pub fn build(tree: &Tree) -> Graph {
        let mut graph = Graph {
            levels: BTreeMap::new(),
            references: 0,
        };
        for (from, m) in tree.modules.iter().enumerate() {
            let mut paths = refs::collect(&m.items);
            refs::doc_paths(&m.docs, &mut paths);
            for r in paths {
                let Some(to) = resolve(tree, from, &r.segments, 0) else {
                    continue;
                };
                graph.references += 1;
                graph.add(tree, from, to, &r, m.file.clone());
            }
        }
        graph
    }

    fn add(&mut self, tree: &Tree, from: usize, to: usize, r: &PathRef, file: PathBuf) {
        let (s, t) = (&tree.modules[from].path, &tree.modules[to].path);
        let common = s.iter().zip(t).take_while(|(a, b)| a == b).count();
        if common == s.len() || common == t.len() {
            return; // an ancestor, itself or a descendant
        }
        // The lowest common ancestor: walk up from `from`.
        let mut lca = from;
        for _ in common..s.len() {
            lca = tree.modules[lca].parent.unwrap_or(0);
        }
        let key = (s[common].clone(), t[common].clone());
        let example = Example {
            file,
            line: r.line,
            text: r.text(),
        };
        let edge = self
            .levels
            .entry(lca)
            .or_default()
            .entry(key)
            .or_insert_with(|| Edge {
                example: example.clone(),
                count: 0,
            });
        edge.count += 1;
        if example < edge.example {
            edge.example = example;
        }
    }

    /// Every cycle, by parent module then members.
    pub fn cycles(&self, tree: &Tree) -> Vec<Cycle> {
        let mut out = Vec::new();
        for (&level, edges) in &self.levels {
            let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (a, b) in edges.keys() {
                next.entry(a).or_default().push(b);
                next.entry(b).or_default();
            }
            for members in components(&next) {
                if members.len() < 2 {
                    continue;
                }
                let mut chains = Vec::new();
                let mut covered: Vec<&str> = Vec::new();
                for &start in &members {
                    if covered.contains(&start) {
                        continue;
                    }
                    let Some(ring) = shortest_cycle(&next, start) else {
                        continue;
                    };
                    let chain: Vec<(String, String, Example)> = ring
                        .iter()
                        .zip(ring.iter().cycle().skip(1))
                        .map(|(&a, &b)| {
                            let e = &edges[&(a.to_string(), b.to_string())];
                            (a.to_string(), b.to_string(), e.example.clone())
                        })
                        .collect();
                    covered.extend(ring);
                    chains.push(chain);
                }
                out.push(Cycle {
                    parent: tree.modules[level].display(),
                    members: members.iter().map(|s| s.to_string()).collect(),
                    chains,
                });
            }
        }
        out
    }
}

/// The module `segments` (written in module `ctx`) leads to, if it is in this crate.
fn resolve(tree: &Tree, ctx: usize, segments: &[String], depth: u8) -> Option<usize> {
    if depth > 16 {
        return None;
    }
    let (first, rest) = segments.split_first()?;
    match first.as_str() {
        "crate" | "$crate" => walk(tree, 0, rest, depth),
        "self" | "super" => {
            let mut at = ctx;
            let mut i = usize::from(first == "self");
            while segments.get(i).is_some_and(|s| s == "super") {
                at = tree.modules[at].parent?;
                i += 1;
            }
            walk(tree, at, &segments[i..], depth)
        }
        name => {
            let m = &tree.modules[ctx];
            if let Some(&child) = m.children.get(name) {
                return walk(tree, child, rest, depth);
            }
            if let Some(b) = m.bindings.iter().find(|b| b.name == name) {
                let full: Vec<String> = b.path.iter().chain(rest).cloned().collect();
                return resolve(tree, ctx, &full, depth + 1);
            }
            // A name a glob import brought in.
            for glob in &m.globs {
                let Some(g) = resolve(tree, ctx, glob, depth + 1) else {
                    continue;
                };
                let gm = &tree.modules[g];
                if gm.children.contains_key(name) || gm.bindings.iter().any(|b| b.name == name) {
                    return walk(tree, g, segments, depth + 1);
                }
            }
            None // another crate, the prelude, a local name or a generic
        }
    }
}

/// Walks `rest` down from module `at`: child modules, then names bound by `use` there.
fn walk(tree: &Tree, mut at: usize, rest: &[String], depth: u8) -> Option<usize> {
    for (i, seg) in rest.iter().enumerate() {
        let m = &tree.modules[at];
        if let Some(&child) = m.children.get(seg) {
            at = child;
            continue;
        }
        if let Some(b) = m.bindings.iter().find(|b| &b.name == seg) {
            let full: Vec<String> = b.path.iter().chain(&rest[i + 1..]).cloned().collect();
            // Bound to another crate's item: the path still names this module's binding.
            return resolve(tree, at, &full, depth + 1).or(Some(at));
        }
        break;
    }
    Some(at)
}

/// Strongly connected components (Tarjan), each sorted, in order of their first member.
fn components<'a>(next: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a, 'n> {
        next: &'n BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a, '_>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for &w in s.next.get(v).map_or(&[][..], Vec::as_slice) {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                comp.push(w);
                if w == v {
                    break;
                }
            }
            comp.sort_unstable();
            s.out.push(comp);
        }
    }
    let mut s = State {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for &v in next.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// The shortest cycle through `start` (breadth first), as its nodes from `start`.
fn shortest_cycle<'a>(
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in next.get(v).map_or(&[][..], Vec::as_slice) {
            if w == start {
                let mut ring = vec![v];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    ring.push(at);
                }
                ring.reverse();
                return Some(ring);
            }
            if !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    None
}
