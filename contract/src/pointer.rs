//! RFC 6901 JSON pointers: escaping, changed-path computation and matching.
//!
//! The host uses [`changed_paths`] to fill a change's `changed-paths` and
//! [`any_interest`] to match a manifest's `interest`; plugins use [`touches`]
//! (through `prism_sdk::Change::changed`) to ask whether a field changed.
//! Both sides share this one implementation, so they can never disagree.

use serde_json::Value;

/// Escape one reference token: `~` becomes `~0`, `/` becomes `~1`.
pub fn escape_token(token: &str) -> String {
    if !token.contains(['~', '/']) {
        return token.to_owned();
    }
    token.replace('~', "~0").replace('/', "~1")
}

/// The leaf paths where `old` and `new` differ, sorted, as JSON pointers.
///
/// Objects are compared key by key and arrays index by index; anything else
/// (a scalar, or a change of type) is reported at its own path. Two equal
/// documents give an empty list. Numbers compare by their exact text.
pub fn changed_paths(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(old, new, &mut String::new(), &mut out);
    out.sort();
    out
}

fn diff(old: &Value, new: &Value, path: &mut String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let len = path.len();
                path.push('/');
                path.push_str(&escape_token(k));
                match b.get(k) {
                    Some(vb) => diff(va, vb, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}/{}", escape_token(k)));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                match (a.get(i), b.get(i)) {
                    (Some(va), Some(vb)) => diff(va, vb, path, out),
                    _ => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(path.clone()),
    }
}

/// Does the changed path `changed` touch the field at `query`?
///
/// True when one is the other or lies inside it: a change at `/price/amount`
/// touches `/price`, and a change at `/price` (or the whole document, `""`)
/// touches `/price/amount`. Matching is by whole reference tokens, so
/// `/price` does not touch `/prices`.
pub fn touches(changed: &str, query: &str) -> bool {
    is_within(changed, query) || is_within(query, changed)
}

/// Is `inner` equal to `outer` or a pointer below it?
fn is_within(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Does a change at pointer `changed` touch the fields selected by `pattern`?
///
/// A pattern is a JSON pointer whose tokens may be `*` (any one token) or `**`
/// (any depth). Like [`touches`], it is true when the change lies at or below a
/// selected field, or above it (a parent object was replaced): with the pattern
/// `/prices/*/amount`, changes at `/prices/EUR/amount`, `/prices/EUR`,
/// `/prices` and `""` all touch it, `/prices/EUR/currency` and `/name` do not.
pub fn pattern_touches(pattern: &str, changed: &str) -> bool {
    let mut pat = pattern.split('/').skip(1);
    let mut ptr = changed.split('/').skip(1);
    loop {
        match (pat.next(), ptr.next()) {
            (Some("**"), _) | (None, _) | (_, None) => return true,
            (Some(p), Some(t)) if p == "*" || p == t => continue,
            _ => return false,
        }
    }
}

/// Does a change with these changed paths touch any of `patterns`?
pub fn any_interest(changed: &[String], patterns: &[String]) -> bool {
    changed
        .iter()
        .any(|c| patterns.iter().any(|p| pattern_touches(p, c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_documents_have_no_changes() {
        let v = json!({"a": 1, "b": [1, {"c": "x"}]});
        assert!(changed_paths(&v, &v.clone()).is_empty());
    }

    #[test]
    fn reports_leaf_changes_added_and_removed_keys() {
        let old = json!({"price": {"EUR": 10}, "name": "A", "gone": true, "tags": ["x", "y"]});
        let new = json!({"price": {"EUR": 11}, "name": "A", "added": 1, "tags": ["x"]});
        assert_eq!(
            changed_paths(&old, &new),
            vec!["/added", "/gone", "/price/EUR", "/tags/1"]
        );
    }

    #[test]
    fn escapes_tokens() {
        let old = json!({"a/b": 1, "m~n": 1});
        let new = json!({"a/b": 2, "m~n": 2});
        assert_eq!(changed_paths(&old, &new), vec!["/a~1b", "/m~0n"]);
    }

    #[test]
    fn type_change_is_reported_at_its_path() {
        assert_eq!(
            changed_paths(&json!({"a": {"b": 1}}), &json!({"a": 5})),
            vec!["/a"]
        );
    }

    #[test]
    fn numbers_compare_exactly() {
        let old: Value =
            serde_json::from_str(r#"{"n": 12345678901234567890123456789012345678}"#).unwrap();
        let new: Value =
            serde_json::from_str(r#"{"n": 12345678901234567890123456789012345679}"#).unwrap();
        assert_eq!(changed_paths(&old, &new), vec!["/n"]);
    }

    #[test]
    fn touches_by_whole_tokens() {
        assert!(touches("/price/EUR", "/price"));
        assert!(touches("/price", "/price/EUR"));
        assert!(touches("", "/anything"));
        assert!(!touches("/prices", "/price"));
        assert!(!touches("/name", "/price"));
    }

    #[test]
    fn patterns() {
        assert!(pattern_touches("/prices/*", "/prices/EUR"));
        assert!(pattern_touches("/prices/*", "/prices/EUR/amount"));
        assert!(pattern_touches("/logistics/**", "/logistics/weight/net"));
        assert!(pattern_touches("/logistics", "/logistics/weight"));
        assert!(!pattern_touches("/logistics/**", "/name"));
        assert!(!pattern_touches("/prices/*/amount", "/prices/EUR/currency"));
        assert!(!pattern_touches("/price", "/prices"));
    }

    #[test]
    fn interest_sees_replaced_parents_and_whole_documents() {
        let pats = vec!["/prices/*/amount".to_owned()];
        assert!(any_interest(&["/prices".to_owned()], &pats));
        assert!(any_interest(&["".to_owned()], &pats));
        assert!(any_interest(&["/prices/EUR/amount".to_owned()], &pats));
        assert!(!any_interest(
            &["/name".to_owned(), "/prices/EUR/currency".to_owned()],
            &pats
        ));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Every JSON pointer in `v` with the value there, the root included.
    fn all_pointers(v: &Value, at: String, out: &mut Vec<(String, Value)>) {
        out.push((at.clone(), v.clone()));
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    all_pointers(x, format!("{at}/{}", escape_token(k)), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    all_pointers(x, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    fn doc() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0i64..4).prop_map(Value::from),
            "[ab~/]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 20, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[ab~/]{1,2}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Against a brute-force diff over every pointer of both documents:
        /// each reported path really differs (sound), and every pointer
        /// whose value differs is touched by a reported path (complete).
        #[test]
        fn changed_paths_match_a_brute_force_diff(old in doc(), new in doc()) {
            let changed = changed_paths(&old, &new);
            for c in &changed {
                prop_assert_ne!(old.pointer(c), new.pointer(c), "reported {:?} but it did not change", c);
            }
            let mut pointers = Vec::new();
            all_pointers(&old, String::new(), &mut pointers);
            all_pointers(&new, String::new(), &mut pointers);
            for (p, _) in pointers {
                if old.pointer(&p) != new.pointer(&p) {
                    prop_assert!(
                        changed.iter().any(|c| touches(c, &p)),
                        "{:?} changed but no reported path touches it: {:?}", p, changed
                    );
                }
            }
            prop_assert_eq!(changed.is_empty(), old == new);
        }
    }
}
