//! module-cycles on small crates held in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::tree::{UseLeaf, use_tree};
use crate::{Report, check};

/// Checks a crate made of `files` (paths under `src/`, the root `src/lib.rs`).
fn run(files: &[(&str, &str)]) -> Report {
    let src: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, text)| (PathBuf::from(p), (*text).to_string()))
        .collect();
    let report = check("t (lib)", Path::new("src/lib.rs"), &src);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
}

/// (parent, members) of every cycle.
fn cycles(r: &Report) -> Vec<(String, Vec<String>)> {
    r.cycles
        .iter()
        .map(|c| (c.parent.clone(), c.members.clone()))
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn a_two_module_cycle_is_found_with_an_example_per_edge() {
    let r = run(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        ("src/a.rs", "use crate::b::B;\npub struct A(B);\n"),
        (
            "src/b.rs",
            "pub struct B;\n\nfn make() -> crate::a::A {\n    todo!()\n}\n",
        ),
    ]);
    assert_eq!(cycles(&r), vec![("crate".into(), names(&["a", "b"]))]);
    let text = r.render(Path::new(""));
    assert_eq!(
        text,
        "t (lib): cycle among the children of crate: a, b\n\
         \x20 crate::a -> crate::b -> crate::a\n\
         \x20   crate::a -> crate::b: src/a.rs:1: crate::b::B\n\
         \x20   crate::b -> crate::a: src/b.rs:3: crate::a::A\n"
    );
    assert_eq!((r.modules, r.files.len()), (3, 3));
}

#[test]
fn a_tree_without_cycles_passes() {
    // The root uses everything, children use the root's items and modules "below" them,
    // a child uses its own children: none of that is a cycle.
    let r = run(&[
        (
            "src/lib.rs",
            "mod a;\nmod b;\nmod c;\npub struct Root;\npub use a::A;\nfn f(_: c::C) {}\n",
        ),
        (
            "src/a.rs",
            "pub struct A;\nuse crate::b::B;\nfn g(_: crate::Root) {}\n",
        ),
        ("src/b.rs", "pub struct B(pub crate::c::C);\nmod inner;\n"),
        ("src/b/inner.rs", "use super::B;\nuse crate::c::C;\n"),
        (
            "src/c.rs",
            "pub struct C;\nfn h() -> super::Root { super::Root }\n",
        ),
    ]);
    assert!(r.cycles.is_empty(), "{}", r.render(Path::new("")));
    assert_eq!(r.modules, 5);
    assert!(r.references >= 6, "{}", r.references);
}

#[test]
fn nested_use_groups_are_read_leaf_by_leaf() {
    let tree: syn::ItemUse =
        syn::parse_str("use crate::{a, b::{c::{self, D}, e as f, *}};").expect("a use item");
    let mut leaves = Vec::new();
    use_tree(&tree.tree, &mut Vec::new(), &mut |leaf| {
        leaves.push(match leaf {
            UseLeaf::Name(name, path) => format!("{name} = {}", path.join("::")),
            UseLeaf::Glob(path) => format!("{}::*", path.join("::")),
        });
    });
    assert_eq!(
        leaves,
        [
            "a = crate::a",
            "c = crate::b::c",
            "D = crate::b::c::D",
            "f = crate::b::e",
            "crate::b::*"
        ]
    );

    // A cycle made through a nested group only.
    let r = run(&[
        ("src/lib.rs", "mod x;\nmod y;\nmod z;\n"),
        ("src/x.rs", "use crate::{z::Z, y::{inner::{Deep}}};\n"),
        ("src/y.rs", "pub mod inner { pub struct Deep; }\n"),
        ("src/z.rs", "pub struct Z;\nuse crate::{x as _};\n"),
    ]);
    assert_eq!(cycles(&r), vec![("crate".into(), names(&["x", "z"]))]);
}

#[test]
fn super_paths_and_cycles_below_the_root() {
    let r = run(&[
        ("src/lib.rs", "pub mod outer;\n"),
        ("src/outer/mod.rs", "mod x;\nmod y;\n"),
        ("src/outer/x.rs", "pub struct X;\nfn f(_: super::y::Y) {}\n"),
        (
            "src/outer/y.rs",
            "pub struct Y;\nfn g() {\n    let _ = super::super::outer::x::X;\n}\n",
        ),
    ]);
    assert_eq!(
        cycles(&r),
        vec![("crate::outer".into(), names(&["x", "y"]))]
    );
    let text = r.render(Path::new("src"));
    assert!(text.contains("crate::outer::x -> crate::outer::y: outer/x.rs:2: super::y::Y"));
    assert!(
        text.contains(
            "crate::outer::y -> crate::outer::x: outer/y.rs:3: super::super::outer::x::X"
        )
    );
}

#[test]
fn a_deep_reference_is_an_edge_between_the_ancestors_siblings() {
    // crate::a::deep::inner names crate::b; crate::b names crate::a: a cycle at the root.
    let r = run(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        (
            "src/a.rs",
            "mod deep { mod inner { fn f() { crate::b::g(); } } }\npub fn h() {}\n",
        ),
        (
            "src/b.rs",
            "pub fn g() { self::k(); }\nfn k() { crate::a::h() }\n",
        ),
    ]);
    assert_eq!(cycles(&r), vec![("crate".into(), names(&["a", "b"]))]);
    assert!(r.render(Path::new("")).contains("src/a.rs:1: crate::b::g"));
}

#[test]
fn re_exports_globs_and_macros_are_followed() {
    // `crate::Thing` is `crate::a::Thing`; `helper` comes in through a glob; a path inside a
    // macro call counts; `self.x`, other crates and the prelude do not.
    let r = run(&[
        ("src/lib.rs", "mod a;\nmod b;\nmod c;\npub use a::Thing;\n"),
        (
            "src/a.rs",
            "pub struct Thing;\nfn f() { println!(\"{}\", crate::c::NAME); }\n",
        ),
        (
            "src/b.rs",
            "pub fn g(_: crate::Thing) {}\nstruct S { x: u8 }\nimpl S { fn m(&self) -> u8 { self.x } }\n",
        ),
        (
            "src/c.rs",
            "pub const NAME: &str = \"c\";\nuse crate::*;\nfn k() { b::g(std::process::abort()) }\n",
        ),
    ]);
    // a -> c (macro), b -> a (re-export), c -> b (glob of the root brings `b`).
    assert_eq!(cycles(&r), vec![("crate".into(), names(&["a", "b", "c"]))]);
    let text = r.render(Path::new(""));
    assert!(
        text.contains("crate::a -> crate::c: src/a.rs:2: crate::c::NAME"),
        "{text}"
    );
    assert!(
        text.contains("crate::b -> crate::a: src/b.rs:1: crate::Thing"),
        "{text}"
    );
    assert!(
        text.contains("crate::c -> crate::b: src/c.rs:3: b::g"),
        "{text}"
    );
    assert!(
        text.contains("crate::a -> crate::c -> crate::b -> crate::a"),
        "{text}"
    );
}

#[test]
fn files_are_found_the_way_rustc_finds_them() {
    let r = run(&[
        (
            "src/lib.rs",
            "mod a;\nmod b;\n#[path = \"elsewhere/c_impl.rs\"]\nmod c;\n",
        ),
        ("src/a.rs", "mod inner;\n"),
        ("src/a/inner.rs", "fn f() { crate::b::nested::g() }\n"),
        ("src/b/mod.rs", "pub mod nested;\n"),
        (
            "src/b/nested.rs",
            "pub fn g() {}\nfn h(_: crate::c::C) {}\n",
        ),
        (
            "src/elsewhere/c_impl.rs",
            "pub struct C;\nuse crate::a as _;\n",
        ),
    ]);
    assert_eq!(r.files.len(), 6);
    assert_eq!(cycles(&r), vec![("crate".into(), names(&["a", "b", "c"]))]);

    let src: BTreeMap<PathBuf, String> = [(
        PathBuf::from("src/lib.rs"),
        "mod gone;\nfn broken( {}\n".to_string(),
    )]
    .into();
    let missing = check("t (lib)", Path::new("src/lib.rs"), &src);
    assert_eq!(missing.errors.len(), 1, "{:?}", missing.errors);
    assert!(
        missing.errors[0].contains("src/lib.rs:2:"),
        "{:?}",
        missing.errors
    );
}

#[test]
fn paths_in_doc_comments_are_references_too() {
    // A file's `//!`, an item's `///` and a link each make an edge; a word that merely ends in
    // `crate` (`subcrate::x`) does not.
    let r = run(&[
        ("src/lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("src/a.rs", "//! Fed by `crate::b`.\npub struct A;\n"),
        (
            "src/b.rs",
            "/// Makes a [`crate::a::A`].\npub fn make() {}\n",
        ),
        ("src/c.rs", "//! Not `subcrate::a`.\npub struct C;\n"),
    ]);
    assert_eq!(cycles(&r), vec![("crate".into(), names(&["a", "b"]))]);
    let text = r.render(Path::new(""));
    assert!(text.contains("src/a.rs:1: crate::b"), "{text}");
    assert!(text.contains("src/b.rs:1: crate::a::A"), "{text}");
}
