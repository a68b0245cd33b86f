//! Reading one field of a JSON body without building the document: the ingest path names a delivery by a
//! field deep in a body of up to 10 MiB, and skipping everything else costs a fraction of a full parse.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The string or integer at `path` (a list of object keys) in `body`, as text; `None` when the body is not
/// JSON, the path is absent, or the value there is of another type.
pub fn field_at(body: &[u8], path: &[&str]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Path(path).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

struct Path<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Path<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Whether a key equals the wanted one, compared as the key is read.
struct Key<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

impl<'de> Visitor<'de> for Path<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        match self.0.split_first() {
            // An object where a scalar was wanted.
            None => while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {},
            Some((first, rest)) => {
                while let Some(hit) = map.next_key_seed(Key(first))? {
                    if hit && found.is_none() {
                        found = map.next_value_seed(Path(rest))?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| v.to_string()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_strings_and_integers_at_a_path() {
        let body =
            br#"{"a": [1, {"id": "x"}], "event": {"other": {"id": 5}, "id": "01F\u00e9", "n": 7}}"#;
        assert_eq!(field_at(body, &["event", "id"]).as_deref(), Some("01Fé"));
        assert_eq!(field_at(body, &["event", "n"]).as_deref(), Some("7"));
        assert_eq!(field_at(body, &["event"]), None);
        assert_eq!(field_at(body, &["event", "missing"]), None);
        assert_eq!(field_at(body, &["a", "id"]), None);
        assert_eq!(field_at(br#"{"id": -3}"#, &["id"]).as_deref(), Some("-3"));
        assert_eq!(field_at(br#"{"id": 1.5}"#, &["id"]), None);
        assert_eq!(field_at(br#"{"id": "x"} trailing"#, &["id"]), None);
        assert_eq!(field_at(b"[1]", &["id"]), None);
    }

    #[test]
    fn the_first_of_repeated_keys_stands() {
        assert_eq!(
            field_at(br#"{"id": "a", "id": "b"}"#, &["id"]).as_deref(),
            Some("a")
        );
    }
}
