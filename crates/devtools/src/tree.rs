//! A crate's module tree, read the way rustc finds module files: from the crate root file,
//! following `mod name;` to `name.rs` or `name/mod.rs` (or a `#[path]`), and into inline
//! `mod name { .. }` blocks. Every `mod` is followed whatever its `#[cfg]`: test modules are
//! code of their module too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where source files come from: the file system, or a map in the tests.
pub trait Source {
    /// The text of `path`, or `None` when there is no such file.
    fn read(&self, path: &Path) -> Option<String>;
}

/// The file system.
#[derive(Debug, Clone, Copy)]
pub struct Files;

impl Source for Files {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
}

impl Source for BTreeMap<PathBuf, String> {
    fn read(&self, path: &Path) -> Option<String> {
        self.get(path).cloned()
    }
}

/// A module-level `use` that binds a name: `use crate::a::B;` binds `B` to `crate::a::B`.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The name bound.
    pub name: String,
    /// The path it stands for.
    pub path: Vec<String>,
}

/// One module of the tree.
pub struct Module {
    /// Names from the crate root down (empty for the root).
    /// The path it stands for.
    pub path: Vec<String>,
    /// The parent module (`None` for the root).
    pub parent: Option<usize>,
    /// The file holding this module's items (an inline module's is its parent's).
    pub file: PathBuf,
    /// The module's items, parsed.
    pub items: Vec<syn::Item>,
    /// The module's own doc attributes (`//!` and those on its `mod` item).
    pub docs: Vec<syn::Attribute>,
    /// Child modules by name.
    pub children: BTreeMap<String, usize>,
    /// Names bound by this module's own `use` items.
    pub bindings: Vec<Binding>,
    /// Paths of this module's glob imports (`use a::b::*` gives `a::b`).
    pub globs: Vec<Vec<String>>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("file", &self.file)
            .field("items", &self.items.len())
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// `crate::a::b`.
    pub fn display(&self) -> String {
        std::iter::once("crate")
            .chain(self.path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("::")
    }
}

/// Where a module's source is.
struct Place {
    /// The file holding its items.
    file: PathBuf,
    /// Where the files of its `mod name;` children are.
    dir: PathBuf,
    /// What a `#[path]` on those is relative to.
    path_dir: PathBuf,
}

/// The modules of one crate (one target: a library or a binary). Module 0 is the root.
#[derive(Debug)]
pub struct Tree {
    /// Every module, the root first.
    pub modules: Vec<Module>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Files that could not be found or parsed.
    pub errors: Vec<String>,
}

impl Tree {
    /// Reads the crate whose root file is `root`.
    pub fn read(root: &Path, src: &dyn Source) -> Tree {
        let mut tree = Tree {
            modules: Vec::new(),
            files: Vec::new(),
            errors: Vec::new(),
        };
        let dir = root.parent().unwrap_or(Path::new("")).to_path_buf();
        if let Some((docs, items)) = tree.parse(root, src) {
            let place = Place {
                file: root.to_path_buf(),
                dir: dir.clone(),
                path_dir: dir,
            };
            tree.add(Vec::new(), None, place, docs, items, src);
        }
        tree
    }

    fn parse(
        &mut self,
        path: &Path,
        src: &dyn Source,
    ) -> Option<(Vec<syn::Attribute>, Vec<syn::Item>)> {
        let Some(text) = src.read(path) else {
            self.errors.push(format!("{}: cannot read", path.display()));
            return None;
        };
        self.files.push(path.to_path_buf());
        match syn::parse_file(&text) {
            Ok(file) => Some((file.attrs, file.items)),
            Err(e) => {
                let at = e.span().start();
                self.errors.push(format!(
                    "{}:{}:{}: {e}",
                    path.display(),
                    at.line,
                    at.column + 1
                ));
                None
            }
        }
    }

    /// Adds a module and, recursively, its children.
    fn add(
        &mut self,
        path: Vec<String>,
        parent: Option<usize>,
        place: Place,
        docs: Vec<syn::Attribute>,
        items: Vec<syn::Item>,
        src: &dyn Source,
    ) -> usize {
        let id = self.modules.len();
        let mut bindings = Vec::new();
        let mut globs = Vec::new();
        for item in &items {
            if let syn::Item::Use(u) = item
                && u.leading_colon.is_none()
            {
                use_tree(&u.tree, &mut Vec::new(), &mut |leaf| match leaf {
                    UseLeaf::Name(name, path) => bindings.push(Binding { name, path }),
                    UseLeaf::Glob(path) => globs.push(path),
                });
            }
        }
        self.modules.push(Module {
            path: path.clone(),
            parent,
            file: place.file.clone(),
            items: Vec::new(),
            docs,
            children: BTreeMap::new(),
            bindings,
            globs,
        });
        for item in &items {
            let syn::Item::Mod(m) = item else { continue };
            let name = m.ident.to_string();
            let mut child_path = path.clone();
            child_path.push(name.clone());
            let child_dir = place.dir.join(&name);
            // The module's docs: those on its `mod` item (outer, and inner ones of an inline
            // module), then its file's `//!`.
            let mut docs = m.attrs.clone();
            let (child_place, inner) = match &m.content {
                Some((_, inner)) => (
                    Place {
                        file: place.file.clone(),
                        dir: child_dir.clone(),
                        path_dir: child_dir,
                    },
                    inner.clone(),
                ),
                None => {
                    let Some((file, mod_rs)) = self.find(m, &name, &place, src) else {
                        continue;
                    };
                    let Some((file_docs, inner)) = self.parse(&file, src) else {
                        continue;
                    };
                    docs.extend(file_docs);
                    let beside = file.parent().unwrap_or(Path::new("")).to_path_buf();
                    // A mod.rs (or #[path]) file's children sit beside it; a.rs's in a/.
                    let dir = if mod_rs { beside.clone() } else { child_dir };
                    let place = Place {
                        file,
                        dir,
                        path_dir: beside,
                    };
                    (place, inner)
                }
            };
            let child = self.add(child_path, Some(id), child_place, docs, inner, src);
            self.modules[id].children.insert(name, child);
        }
        self.modules[id].items = items;
        id
    }

    /// The file of `mod name;`, and whether its own children sit beside it (mod-rs style).
    fn find(
        &mut self,
        m: &syn::ItemMod,
        name: &str,
        place: &Place,
        src: &dyn Source,
    ) -> Option<(PathBuf, bool)> {
        let explicit = m.attrs.iter().find_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        });
        let candidates = match explicit {
            Some(p) => vec![(place.path_dir.join(p), true)],
            None => vec![
                (place.dir.join(format!("{name}.rs")), false),
                (place.dir.join(name).join("mod.rs"), true),
            ],
        };
        let found = candidates
            .iter()
            .find(|(p, _)| src.read(p).is_some())
            .cloned();
        if found.is_none() {
            self.errors.push(format!(
                "module {name}: none of {} exists",
                candidates
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        found
    }
}

/// A leaf of a `use` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseLeaf {
    /// A name bound to a path (`a::B`, `a::B as C`, `a::{self}`).
    Name(String, Vec<String>),
    /// `a::*`: the path of the module (or enum) whose names come in.
    Glob(Vec<String>),
}

/// Calls `leaf` for every leaf of a `use` tree, nested groups included:
/// `use crate::{a, b::{c, self}}` gives `crate::a`, `crate::b::c` and `crate::b`.
pub fn use_tree(tree: &syn::UseTree, prefix: &mut Vec<String>, leaf: &mut dyn FnMut(UseLeaf)) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree(&p.tree, prefix, leaf);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                if let Some(last) = prefix.last() {
                    leaf(UseLeaf::Name(last.clone(), prefix.clone()));
                }
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                leaf(UseLeaf::Name(name, path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            leaf(UseLeaf::Name(r.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => leaf(UseLeaf::Glob(prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_tree(t, prefix, leaf);
            }
        }
    }
}
