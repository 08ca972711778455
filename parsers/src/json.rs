//! JSON lines: a serde visitor walks the object once, descends only into objects that lead
//! to a mapped field, skips everything else without building values, and borrows strings
//! that need no unescaping.

use crate::fields::{FieldIndex, PathEntry};
use crate::record::{Raw, RawRecord};
use crate::ParseError;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Reads one JSON object into `record`. `path` is a scratch buffer reused across lines.
pub(crate) fn read<'a>(
    line: &'a str,
    index: &FieldIndex,
    path: &mut String,
    record: &mut RawRecord<'a>,
) -> Result<(), ParseError> {
    path.clear();
    let mut de = serde_json::Deserializer::from_str(line);
    let walker = Walker {
        index,
        path,
        record,
    };
    de.deserialize_map(ObjectVisitor(walker))
        .and_then(|()| de.end())
        .map_err(|_| ParseError::MalformedJson)
}

/// The state shared while walking one record.
struct Walker<'w, 'a> {
    index: &'w FieldIndex,
    path: &'w mut String,
    record: &'w mut RawRecord<'a>,
}

impl<'w, 'a> Walker<'w, 'a> {
    fn reborrow(&mut self) -> Walker<'_, 'a> {
        Walker {
            index: self.index,
            path: self.path,
            record: self.record,
        }
    }
}

/// A JSON string, borrowed when it had no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

struct ObjectVisitor<'w, 'a>(Walker<'w, 'a>);

impl<'de, 'w> Visitor<'de> for ObjectVisitor<'w, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        let w = &mut self.0;
        let prefix_len = w.path.len();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if prefix_len > 0 {
                w.path.push('.');
            }
            w.path.push_str(&key);
            match w.index.lookup(w.path) {
                Some(entry) => map.next_value_seed(ValueSeed {
                    walker: w.reborrow(),
                    entry,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            w.path.truncate(prefix_len);
        }
        Ok(())
    }
}

/// The value of a key that maps to a field or leads to one.
struct ValueSeed<'w, 'a> {
    walker: Walker<'w, 'a>,
    entry: PathEntry,
}

impl<'de, 'w> DeserializeSeed<'de> for ValueSeed<'w, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'w, 'de> ValueSeed<'w, 'de> {
    fn scalar(self, raw: Raw<'de>) {
        if let Some((field, rank)) = self.entry.field {
            self.walker.record.offer(field, rank, raw);
        }
    }
}

impl<'de, 'w> Visitor<'de> for ValueSeed<'w, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.scalar(Raw::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Raw::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(Raw::U64(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Raw::I64(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(Raw::F64(v));
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(Raw::Bool(v));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar(Raw::Null);
        Ok(())
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        if self.entry.is_prefix {
            return ObjectVisitor(self.walker).visit_map(map);
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.scalar(Raw::Compound);
        Ok(())
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.scalar(Raw::Compound);
        Ok(())
    }
}
