//! The paths a module's own code writes: in `use` trees (nested groups included), in
//! expressions, types, patterns, trait bounds and visibilities, and inside macro calls (read
//! from their tokens: `format!("{}", crate::a::f())` names `crate::a`), and in doc comments
//! (`[`crate::a::B`]` is a link rustdoc resolves, and a path named in prose is a dependency a
//! reader follows). Nested `mod` items are left out: they are modules of their own.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use crate::tree::{UseLeaf, use_tree};

/// A path as written, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    /// The path's segments (`crate`, `super`, names).
    pub segments: Vec<String>,
    /// The line it starts on.
    pub line: usize,
}

impl PathRef {
    /// `crate::a::B`.
    pub fn text(&self) -> String {
        self.segments.join("::")
    }
}

/// Every path written in `items`, outside nested modules, that may name something of this
/// crate: `use` leaves, and other paths of two segments or more (a lone `self` is a value).
pub fn collect(items: &[syn::Item]) -> Vec<PathRef> {
    let mut v = Collector { out: Vec::new() };
    for item in items {
        v.visit_item(item);
    }
    v.out
}

struct Collector {
    out: Vec<PathRef>,
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_some() {
            return; // `use ::dep::..`: another crate
        }
        let line = u.use_token.span.start().line;
        use_tree(&u.tree, &mut Vec::new(), &mut |leaf| {
            let segments = match leaf {
                UseLeaf::Name(_, path) | UseLeaf::Glob(path) => path,
            };
            if !segments.is_empty() {
                self.out.push(PathRef { segments, line });
            }
        });
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() >= 2 {
            self.out.push(PathRef {
                segments: p.segments.iter().map(|s| s.ident.to_string()).collect(),
                line: p.segments[0].ident.span().start().line,
            });
        }
        visit::visit_path(self, p);
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        doc_paths(std::slice::from_ref(a), &mut self.out);
        visit::visit_attribute(self, a);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        macro_paths(m.tokens.clone(), &mut self.out);
        visit::visit_macro(self, m);
    }
}

/// `crate::`, `super::` and `self::` paths written in the text of `doc` attributes (`///`,
/// `//!`).
pub fn doc_paths(attrs: &[syn::Attribute], out: &mut Vec<PathRef>) {
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        let syn::Meta::NameValue(nv) = &a.meta else {
            continue;
        };
        let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(text),
            ..
        }) = &nv.value
        else {
            continue;
        };
        let line = text.span().start().line;
        let text = text.value();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut rest = text.as_str();
        while let Some(at) = ["crate::", "super::", "self::"]
            .iter()
            .filter_map(|k| rest.find(k))
            .min()
        {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(word(c) || c == ':'))
                .unwrap_or(tail.len());
            let segments: Vec<String> = tail[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if !before.is_some_and(word) && segments.len() >= 2 {
                out.push(PathRef { segments, line });
            }
            rest = &tail[end.max(1)..];
        }
    }
}

/// Paths in a macro's tokens: `a::b::c` chains (`$crate` read as `crate`), at any nesting.
fn macro_paths(tokens: TokenStream, out: &mut Vec<PathRef>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_sep = |at: usize| {
        matches!((tokens.get(at), tokens.get(at + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
    };
    let mut i = 0;
    while i < tokens.len() {
        if let TokenTree::Group(g) = &tokens[i] {
            macro_paths(g.stream(), out);
            i += 1;
            continue;
        }
        // `$crate`: a `$` punct, then the ident.
        let dollar = matches!(&tokens[i], TokenTree::Punct(p) if p.as_char() == '$')
            && matches!(tokens.get(i + 1), Some(TokenTree::Ident(id)) if id == "crate");
        let start = if dollar { i + 1 } else { i };
        let TokenTree::Ident(first) = &tokens[start] else {
            i += 1;
            continue;
        };
        // A chain after `::` or `.` continues something else (`::std::x`, `x.a::<T>()`).
        let continues = i >= 2 && is_sep(i - 2)
            || matches!(i.checked_sub(1).map(|p| &tokens[p]), Some(TokenTree::Punct(p)) if p.as_char() == '.');
        let mut segments = vec![first.to_string()];
        let line = first.span().start().line;
        let mut at = start + 1;
        while is_sep(at) {
            match tokens.get(at + 2) {
                Some(TokenTree::Ident(id)) => {
                    segments.push(id.to_string());
                    at += 3;
                }
                _ => break,
            }
        }
        if segments.len() >= 2 && !continues {
            out.push(PathRef { segments, line });
        }
        i = at.max(i + 1);
    }
}
