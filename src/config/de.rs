//! Serde helpers: durations as `10s` / `250ms`, and the seeds' shorthands (a name for a
//! table, `true` for a table, one value for a list, rules keyed by name).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::model::{RuleConfig, Rules, StickyConfig, TlsConfig};

fn parse_duration<E: de::Error>(s: &str) -> Result<Duration, E> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        E::custom(format_args!(
            "invalid duration `{}` ({e}); write a number and a unit, like `10s`, `250ms` or `1h`",
            s.chars().take(64).collect::<String>()
        ))
    })
}

fn format_duration(d: &Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(*d).to_string()
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `10s` or `250ms`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration `{v}`: a unit is needed, like `{v}s` or `{v}ms`"
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration `{v}`: a unit is needed, like `{v}s` or `{v}ms`"
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration `{v}`: a unit is needed, like `{v}s`"
        )))
    }
}

/// `Duration` as `10s`.
pub(crate) mod duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// `Option<Duration>` as `10s` (absent: `None`).
pub(crate) mod opt_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(DurationVisitor).map(Some)
    }
}

/// A name (parsed with `FromStr`) or a table.
pub(crate) fn string_or_table<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: DeserializeOwned + FromStr<Err = String>,
    D: Deserializer<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: DeserializeOwned + FromStr<Err = String>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a name or a table")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            T::from_str(v).map_err(E::custom)
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// `true` / `false` or a table.
pub(crate) fn opt_bool_or_table<'de, D>(d: D) -> Result<Option<StickyConfig>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = StickyConfig;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true`, `false` or a table")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<StickyConfig, E> {
            Ok(StickyConfig::from(v))
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<StickyConfig, M::Error> {
            StickyConfig::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V).map(Some)
}

/// `false` (no TLS) or a table with `certificate` and `private_key`.
pub(crate) fn opt_tls<'de, D>(d: D) -> Result<Option<TlsConfig>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<TlsConfig>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`false` or a table with `certificate` and `private_key`")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<TlsConfig>, E> {
            if v {
                Err(E::custom(
                    "`ssl: true` needs a table with `certificate` and `private_key`",
                ))
            } else {
                Ok(None)
            }
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Option<TlsConfig>, M::Error> {
            TlsConfig::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V)
}

/// One string or a list of strings.
pub(crate) fn opt_one_or_many<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Vec<String>, S::Error> {
            Vec::<String>::deserialize(SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(V).map(Some)
}

impl Serialize for Rules {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.by_name {
            let mut map = s.serialize_map(Some(self.rules.len()))?;
            for rule in &self.rules {
                let body = RuleConfig {
                    name: String::new(),
                    ..rule.clone()
                };
                map.serialize_entry(&rule.name, &body)?;
            }
            map.end()
        } else {
            self.rules.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rules, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rules;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules or a table of rules by name")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Rules, S::Error> {
                Vec::<RuleConfig>::deserialize(SeqAccessDeserializer::new(seq)).map(Rules::list)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Rules, M::Error> {
                let mut rules = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let mut rule: RuleConfig = map.next_value()?;
                    if !rule.name.is_empty() && rule.name != name {
                        return Err(de::Error::custom(format_args!(
                            "rule `{name}` has another name inside (`{}`)",
                            rule.name
                        )));
                    }
                    rule.name = name;
                    rules.push(rule);
                }
                Ok(Rules {
                    rules,
                    by_name: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}
