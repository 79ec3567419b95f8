//! How slot keys are built.
//!
//! A slot key is `<namespace>/<slot>`:
//!
//! - the **namespace** is the cache_key with `%` written as `%25` and `/` as
//!   `%2F`, so it never contains a `/`. The first `/` of a key therefore
//!   always ends the namespace, and [`SlotKeys::prefix`] (`<namespace>/`) is
//!   a prefix of exactly that cache_key's slots: `shop/` is not a prefix of
//!   `shopping/…`, and the cache_key `a/b` (namespace `a%2Fb`) is not inside
//!   the cache_key `a`.
//! - the **slot** names what is cached, with the view's equality conditions
//!   (sorted, so the order they were added in does not matter) as `-` or
//!   `eq:<field>=<value>&…`:
//!   - `list/<conditions>/all`: the unpaginated list;
//!   - `list/<conditions>/p<page>x<ipp>`: one page at one page size;
//!   - `count/<conditions>`: the count of the whole view;
//!   - `id/<conditions>/<id>`: one row.
//!
//! Every text part of a slot is escaped (`%`, `/`, `=`, `&`), so no two
//! different views, ids or cache_keys share a key.

use std::borrow::Cow;

use crate::request::View;

/// Escape `%`, `/`, `=` and `&` as `%XX`.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '/', '=', '&']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            '&' => out.push_str("%26"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Undo [`escape`]. Text that was not written by it comes back unchanged
/// where it has no `%XX` of the four escaped characters.
pub(crate) fn unescape(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3);
        let c = match code {
            Some("%25") => Some('%'),
            Some("%2F") => Some('/'),
            Some("%3D") => Some('='),
            Some("%26") => Some('&'),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Split a slot key into its namespace and the slot within it.
///
/// A key without `/` is all namespace, with an empty slot.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, ""))
}

/// What a raw prefix given to
/// [`Cache::invalidate_prefix`](super::Cache::invalidate_prefix) covers:
///
/// - `"<namespace>/"`: that namespace, whole;
/// - `"<namespace>/<start of a slot>"`: the slots of that namespace starting
///   with the rest;
/// - a bare cache_key (no `/`, not empty): that cache_key's namespace (as
///   [`SlotKeys`] escapes it) and, for keys written by hand, the namespace
///   spelled exactly as given; whole;
/// - `""`: every namespace, whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The namespaces covered; `None` for every namespace.
    pub namespaces: Option<Vec<String>>,
    /// What part of each.
    pub scope: Scope,
}

/// What part of a namespace a raw prefix covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every slot of the namespace.
    Whole,
    /// The slots whose key (after `<namespace>/`) starts with this text.
    Within(String),
}

impl Prefix {
    /// Read a raw prefix.
    pub fn parse(prefix: &str) -> Prefix {
        match prefix.split_once('/') {
            Some((namespace, "")) => Prefix {
                namespaces: Some(vec![namespace.to_owned()]),
                scope: Scope::Whole,
            },
            Some((namespace, within)) => Prefix {
                namespaces: Some(vec![namespace.to_owned()]),
                scope: Scope::Within(within.to_owned()),
            },
            None if prefix.is_empty() => Prefix {
                namespaces: None,
                scope: Scope::Whole,
            },
            None => {
                let escaped = escape(prefix);
                let mut namespaces = vec![escaped.clone().into_owned()];
                if escaped != prefix {
                    namespaces.push(prefix.to_owned());
                }
                Prefix {
                    namespaces: Some(namespaces),
                    scope: Scope::Whole,
                }
            }
        }
    }

    /// Whether it covers `namespace` (whole or in part).
    pub fn covers(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(names) => names.iter().any(|n| n == namespace),
        }
    }
}

/// Builds the slot keys of one cache_key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotKeys {
    cache_key: String,
    prefix: String,
}

impl SlotKeys {
    /// The slot keys of `cache_key`. Any text works: empty, slashes, spaces,
    /// unicode, kilobytes long.
    pub fn new(cache_key: impl Into<String>) -> Self {
        let cache_key = cache_key.into();
        let mut prefix = escape(&cache_key).into_owned();
        prefix.push('/');
        Self { cache_key, prefix }
    }

    /// The cache_key as given.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }

    /// `<namespace>/`: a prefix of every slot of this cache_key and of no
    /// other cache_key's. Invalidating it drops the whole cache_key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace: the escaped cache_key, without the trailing `/`.
    pub fn namespace(&self) -> &str {
        &self.prefix[..self.prefix.len() - 1]
    }

    fn start(&self, kind: &str, view: &View) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 32);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push('/');
        let eq = view.eq_conditions();
        if eq.is_empty() {
            key.push('-');
        } else {
            let mut pairs: Vec<_> = eq.iter().collect();
            pairs.sort();
            key.push_str("eq:");
            for (i, (field, value)) in pairs.into_iter().enumerate() {
                if i > 0 {
                    key.push('&');
                }
                key.push_str(&escape(field));
                key.push('=');
                key.push_str(&escape(value));
            }
        }
        key
    }

    /// The slot of `view`'s rows: its page at its page size, or the
    /// unpaginated list.
    pub fn list(&self, view: &View) -> String {
        let mut key = self.start("list", view);
        match view.pagination() {
            None => key.push_str("/all"),
            Some(p) => {
                let mut digits = itoa::Buffer::new();
                key.push_str("/p");
                key.push_str(digits.format(p.get_page()));
                key.push('x');
                key.push_str(digits.format(p.get_ipp()));
            }
        }
        key
    }

    /// The slot of `view`'s row count (pagination never applies).
    pub fn count(&self, view: &View) -> String {
        self.start("count", view)
    }

    /// The slot of row `id` within `view` (pagination never applies).
    pub fn id(&self, view: &View, id: &str) -> String {
        let mut key = self.start("id", view);
        key.push('/');
        key.push_str(&escape(id));
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_table::pagination::Pagination;

    #[test]
    fn prefixes_of_prefix_keys_do_not_overlap() {
        let shop = SlotKeys::new("shop");
        let shopping = SlotKeys::new("shopping");
        assert!(!shopping.list(&View::new()).starts_with(shop.prefix()));
        let a = SlotKeys::new("a");
        let ab = SlotKeys::new("a/b");
        assert!(!ab.list(&View::new()).starts_with(a.prefix()));
        assert!(!a.list(&View::new()).starts_with(ab.prefix()));
    }

    #[test]
    fn views_get_distinct_slots() {
        let k = SlotKeys::new("k");
        let all = k.list(&View::new());
        let p1 = k.list(&View::new().with_pagination(Some(Pagination::new(1, 10))));
        let p1_20 = k.list(&View::new().with_pagination(Some(Pagination::new(1, 20))));
        let eq = k.list(&View::new().with_eq("name", "x"));
        let eq2 = k.list(&View::new().with_eq("name", "x&y=z"));
        let all_keys = [&all, &p1, &p1_20, &eq, &eq2];
        for (i, a) in all_keys.iter().enumerate() {
            for b in &all_keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            k.list(&View::new().with_eq("a", "1").with_eq("b", "2")),
            k.list(&View::new().with_eq("b", "2").with_eq("a", "1"))
        );
    }

    #[test]
    fn split_key_finds_namespace() {
        let k = SlotKeys::new("a/b%c");
        let key = k.id(&View::new(), "x/y");
        let (ns, slot) = split_key(&key);
        assert_eq!(format!("{ns}/"), k.prefix());
        assert_eq!(slot, "id/-/x%2Fy");
        assert_eq!(k.namespace(), ns);
    }

    #[test]
    fn unescape_undoes_escape() {
        for text in ["", "plain", "a/b%c=d&e", "%%2F/", "100%", "%2", "ü/ß"] {
            assert_eq!(unescape(&escape(text)), text);
        }
        assert_eq!(unescape("50%zz"), "50%zz");
    }
}
