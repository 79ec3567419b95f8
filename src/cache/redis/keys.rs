//! Redis keys of a [`RedisCache`](super::RedisCache).
//!
//! Every key of one namespace (one cache_key) starts with
//! `<prefix>:{n:<namespace>}:`, so all of them share one Redis Cluster hash
//! tag (`n:<namespace>`) and live in one hash slot: the scripts touch one
//! slot, and the same code runs on a cluster. `{` and `}` inside the
//! namespace are written `%7B` and `%7D` (the namespace already writes `%`
//! as `%25`, so this stays one-to-one), and the tag is never empty.
//!
//! - `<prefix>:{n:<ns>}:g`: the namespace's generation;
//! - `<prefix>:{n:<ns>}:s:<slot>`: a slot, as `<generation>:<CBOR>`;
//! - `<prefix>:{n:<ns>}:l:<slot>`: a slot's lease, as `<generation>:<owner>`.

/// The three keys a lookup or fill of one slot touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRedisKeys {
    pub(crate) generation: String,
    pub(crate) slot: String,
    pub(crate) lease: String,
}

/// `<prefix>:{n:<namespace, braces escaped>}:`
pub(crate) fn namespace_base(prefix: &str, namespace: &str) -> String {
    let mut base = String::with_capacity(prefix.len() + namespace.len() + 8);
    base.push_str(prefix);
    base.push_str(":{n:");
    for c in namespace.chars() {
        match c {
            '{' => base.push_str("%7B"),
            '}' => base.push_str("%7D"),
            c => base.push(c),
        }
    }
    base.push_str("}:");
    base
}

/// The generation key of `namespace`.
pub(crate) fn generation_key(prefix: &str, namespace: &str) -> String {
    let mut key = namespace_base(prefix, namespace);
    key.push('g');
    key
}

/// The keys of `slot` in `namespace`.
pub(crate) fn slot_keys(prefix: &str, namespace: &str, slot: &str) -> SlotRedisKeys {
    let base = namespace_base(prefix, namespace);
    SlotRedisKeys {
        generation: format!("{base}g"),
        slot: format!("{base}s:{slot}"),
        lease: format!("{base}l:{slot}"),
    }
}

/// A `SCAN MATCH` pattern for every generation key under `prefix`.
pub(crate) fn all_generations_pattern(prefix: &str) -> String {
    group_generations_pattern(prefix, "")
}

/// A `SCAN MATCH` pattern for the generation keys under `prefix` of every
/// namespace starting with `namespace_prefix`.
pub(crate) fn group_generations_pattern(prefix: &str, namespace_prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + namespace_prefix.len() + 16);
    push_glob_escaped(&mut pattern, prefix);
    pattern.push_str(":{n:");
    for c in namespace_prefix.chars() {
        match c {
            '{' => pattern.push_str("%7B"),
            '}' => pattern.push_str("%7D"),
            c => push_glob_escaped(&mut pattern, c.encode_utf8(&mut [0; 4])),
        }
    }
    pattern.push_str("*}:g");
    pattern
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn push_glob_escaped(pattern: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
}

/// The Redis Cluster hash tag of a key: the text between the first `{` and
/// the first `}` after it, if not empty.
#[cfg(test)]
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_namespace_share_one_nonempty_hash_tag() {
        for ns in ["", "shop", "a}b", "{x}", "}", "{", "50%25off", "ünï"] {
            let k = slot_keys("vlive", ns, "list/-/all");
            let tag = hash_tag(&k.generation).expect("a tag");
            assert_eq!(hash_tag(&k.slot), Some(tag), "{ns:?}");
            assert_eq!(hash_tag(&k.lease), Some(tag), "{ns:?}");
            assert_eq!(generation_key("vlive", ns), k.generation);
        }
        // One-to-one: escaped braces do not collide with the text `%7B`
        // (a namespace writes `%` as `%25`).
        assert_ne!(namespace_base("p", "{"), namespace_base("p", "%257B"));
    }

    #[test]
    fn the_scan_pattern_escapes_glob_characters() {
        assert_eq!(all_generations_pattern("vlive"), "vlive:{n:*}:g");
        assert_eq!(all_generations_pattern("a*b"), "a\\*b:{n:*}:g");
    }
}
