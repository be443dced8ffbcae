//! The SDK's JSON tree: [`Value`].

use std::fmt;

use bumpalo::Bump;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
pub use serde_json::Number;

/// A JSON value whose strings borrow from the parsed bytes where they can, and whose
/// containers live in an [`Arena`].
///
/// A webhook body is parsed once per call and read a few dozen times. Building a
/// `serde_json::Value` (a `String` per key and per string, a B-tree per object) and dropping
/// it again was most of a plugin's time; so was, after that, allocating a vector per object
/// and array and freeing every one of them again. This tree keeps every string that needs no
/// unescaping as a slice of the body, the rest and every object's and array's children in
/// the arena of the parse: a parse allocates a chunk or two of the arena, and dropping the
/// tree costs nothing (the arena goes in one piece).
///
/// It reads like `serde_json::Value`: the same variants, `as_str`, `as_i64`, `is_object`, …;
/// a repeated key resolves to its last value, and [`Map::iter`] and the compact rendering
/// ([`text`](crate::text), `to_string`) list members sorted by key, as `serde_json` does.
/// [`Value::to_json`] converts to a `serde_json::Value` where one is needed.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Value<'a> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(&'a str),
    Array(&'a [Value<'a>]),
    Object(Map<'a>),
}

/// `null`, for `body.get(path).unwrap_or(&NULL)`.
pub static NULL: Value<'static> = Value::Null;

/// A JSON object's members in document order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Map<'a>(&'a [(&'a str, Value<'a>)]);

/// The memory a parse puts its containers and unescaped strings in; what it parsed borrows
/// from it, and it is freed in one piece with them. [`Request::json`](crate::Request::json)
/// keeps one in the request, sized after the body.
#[derive(Default)]
pub struct Arena(Bump);

impl Arena {
    pub fn new() -> Self {
        Self::default()
    }

    /// An arena whose first chunk holds `bytes` (a parse of a body of `n` bytes needs about
    /// `2 * n`).
    pub fn with_capacity(bytes: usize) -> Self {
        Self(Bump::with_capacity(bytes))
    }

    /// The bytes of the arena's chunks.
    pub fn allocated(&self) -> usize {
        self.0.allocated_bytes()
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena").field("allocated", &self.allocated()).finish()
    }
}

/// A new, empty arena: what a clone of a parsed value borrows stays in the original's.
impl Clone for Arena {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<'a> Map<'a> {
    /// The member named `key` (the last one when the key repeats).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        // Keys are short: comparing their bytes in place costs less than calling `memcmp`
        // for every key of the right length.
        let key = key.as_bytes();
        let same = |k: &str| k.len() == key.len() && k.bytes().zip(key).all(|(a, b)| a == *b);
        self.0.iter().rev().find(|(k, _)| same(k)).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The members sorted by key, each key once (its last value), like a `serde_json::Map`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        let mut members: Vec<&(&'a str, Value<'a>)> = self.0.iter().collect();
        // Stable: equal keys stay in document order; of each run, the last one is kept.
        members.sort_by(|a, b| a.0.cmp(b.0));
        members.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                *kept = *next;
            }
            same
        });
        members.into_iter().map(|(k, v)| (*k, v))
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'m, 'a> IntoIterator for &'m Map<'a> {
    type Item = (&'m str, &'m Value<'a>);
    type IntoIter = Box<dyn Iterator<Item = (&'m str, &'m Value<'a>)> + 'm>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl<'a> Value<'a> {
    /// Parses JSON, borrowing strings from `bytes` where they hold no escapes and putting
    /// the rest in `arena`.
    pub fn from_slice(bytes: &'a [u8], arena: &'a Arena) -> serde_json::Result<Value<'a>> {
        // Sized so that a typical body's stacks never grow (a member takes 10 to 40 bytes of
        // JSON, an item a few more).
        let mut scratch = Scratch {
            arena: &arena.0,
            items: Vec::with_capacity(bytes.len() / 64),
            members: Vec::with_capacity(bytes.len() / 32),
        };
        // Checking the UTF-8 once up front lets the parser skip the check on every string.
        match std::str::from_utf8(bytes) {
            Ok(text) => parse_all(&mut serde_json::Deserializer::from_str(text), &mut scratch),
            Err(_) => parse_all(&mut serde_json::Deserializer::from_slice(bytes), &mut scratch),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map<'a>> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// A member of an object by key, or an element of an array by index (`"0"`).
    pub fn member(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(map) => map.get(key),
            Value::Array(items) => items.get(key.parse::<usize>().ok()?),
            _ => None,
        }
    }

    /// The same value as a `serde_json::Value` (every string copied).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(map) => {
                serde_json::Value::Object(map.0.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect())
            }
        }
    }
}

/// Compact JSON, object members sorted by key.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(v) => s.serialize_str(v),
            Value::Array(items) => s.collect_seq(items.iter()),
            Value::Object(map) => {
                let mut m = s.serialize_map(None)?;
                for (k, v) in map.iter() {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// One whole document: a value and nothing after it but white space.
fn parse_all<'de, R: serde_json::de::Read<'de>>(
    d: &mut serde_json::Deserializer<R>,
    scratch: &mut Scratch<'de>,
) -> serde_json::Result<Value<'de>> {
    let value = Parse(scratch).deserialize(&mut *d)?;
    d.end()?;
    Ok(value)
}

/// The arena and the children of the containers being parsed, shared down the tree: each
/// container's items or members are gathered on top of these stacks and moved into a slice
/// of the arena of exactly their number when it closes, instead of each growing a vector of
/// its own step by step.
struct Scratch<'de> {
    arena: &'de Bump,
    items: Vec<Value<'de>>,
    members: Vec<(&'de str, Value<'de>)>,
}

/// Parses one value with the shared [`Scratch`].
struct Parse<'s, 'de>(&'s mut Scratch<'de>);

impl<'de> DeserializeSeed<'de> for Parse<'_, 'de> {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Parse<'_, 'de> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        self.deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value<'de>, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::String(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value<'de>, E> {
        Ok(Value::String(self.0.arena.alloc_str(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let start = self.0.items.len();
        while let Some(item) = seq.next_element_seed(Parse(&mut *self.0))? {
            self.0.items.push(item);
        }
        Ok(Value::Array(self.0.arena.alloc_slice_fill_iter(self.0.items.drain(start..))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let start = self.0.members.len();
        while let Some(k) = map.next_key_seed(Key(self.0.arena))? {
            let v = map.next_value_seed(Parse(&mut *self.0))?;
            self.0.members.push((k, v));
        }
        Ok(Value::Object(Map(self.0.arena.alloc_slice_fill_iter(self.0.members.drain(start..)))))
    }
}

/// Reads an object key: borrowed when it holds no escapes, else unescaped into the arena.
struct Key<'de>(&'de Bump);

impl<'de> DeserializeSeed<'de> for Key<'de> {
    type Value = &'de str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'de str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'de> {
    type Value = &'de str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<&'de str, E> {
        Ok(s)
    }

    fn visit_str<E>(self, s: &str) -> Result<&'de str, E> {
        Ok(self.0.alloc_str(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str =
        r#"{"b": {"x": "a\"b", "n": 1.5, "k": [1, -2, true, null]}, "a": "plain", "b2": {}, "d": 1, "d": 2}"#;

    #[test]
    fn strings_without_escapes_are_borrowed_and_escaped_ones_are_unescaped() {
        let arena = Arena::new();
        let body = BODY.as_bytes();
        let v = Value::from_slice(body, &arena).unwrap();
        let in_body = |s: &str| body.as_ptr_range().contains(&s.as_ptr());
        let plain = v.member("a").and_then(Value::as_str).unwrap();
        assert_eq!(plain, "plain");
        assert!(in_body(plain), "borrowed from the body");
        let inner = v.member("b").unwrap();
        let escaped = inner.member("x").and_then(Value::as_str).unwrap();
        assert_eq!(escaped, "a\"b");
        assert!(!in_body(escaped), "unescaped into the arena");
        let keys = Value::from_slice(br#"{"k\u0065y": "v", "n\\": {"k": 1}}"#, &arena).unwrap();
        assert_eq!(keys.member("key").and_then(Value::as_str), Some("v"), "escaped keys are unescaped");
        assert_eq!(keys.get("n\\.k").and_then(Value::as_i64), Some(1));
        assert_eq!(inner.member("k").and_then(|k| k.member("1")).and_then(Value::as_i64), Some(-2));
        assert_eq!(inner.member("n").and_then(Value::as_f64), Some(1.5));
    }

    #[test]
    fn reads_and_renders_like_serde_json() {
        let arena = Arena::new();
        let ours = Value::from_slice(BODY.as_bytes(), &arena).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(BODY).unwrap();
        assert_eq!(ours.to_string(), theirs.to_string());
        assert_eq!(ours.to_json(), theirs);
        assert_eq!(ours.member("d").and_then(Value::as_i64), Some(2), "the last of a repeated key wins");
        let keys: Vec<&str> = ours.as_object().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "b2", "d"]);
        assert_eq!(ours.as_object().unwrap().len(), 4);
        for bad in ["{", "[1,]", "{\"a\" 1}", "nul", "\"\\x\"", "{} x", "1 2"] {
            assert!(Value::from_slice(bad.as_bytes(), &arena).is_err(), "{bad}");
        }
    }

    #[test]
    fn nested_containers_keep_their_own_children() {
        // Items and members of containers inside containers share the parse's stacks: each
        // container must end with exactly its own, in order, however the kinds interleave.
        let body = r#"[{"a": [{"b": [], "c": {"d": [1, {"e": 2}, 3]}}, {}], "f": 4}, [[], [{}], 5], {"g": [[6]]}, 7]"#;
        let arena = Arena::new();
        let ours = Value::from_slice(body.as_bytes(), &arena).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(ours.to_json(), theirs);
        assert_eq!(ours.as_array().map(<[_]>::len), Some(4));
        assert_eq!(ours.get("0.a.0.c.d.1.e").and_then(Value::as_i64), Some(2));
        assert_eq!(ours.get("0.f").and_then(Value::as_i64), Some(4));
        for bad in [r#"[{"a": [1, {"b": ]}]"#, r#"{"a": [{"b": 1}, {"c": }]}"#] {
            assert!(Value::from_slice(bad.as_bytes(), &arena).is_err(), "{bad}");
        }
    }
}
