//! Every unknown field of a config file, not only the first.
//!
//! Each type of the config refuses fields it does not know, and serde stops
//! at the first; `check` (and a failed reload) should name them all. So the
//! text is walked again, with the same serde_yaml deserializer (which gives
//! each key's place, line and column, as for the config's types), along a
//! description of the config's mappings, once per unknown field found.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::{yaml_problem, Problem};

/// Most unknown fields [`fields`] names: each costs one more read of the
/// text.
const MAX_UNKNOWN: usize = 50;

/// Every unknown field of the config, in the order they appear, each as
/// serde_yaml would report it alone (its place, line and column; the field
/// name left out by [`super::yaml_problem`]). serde stops at the first error, so
/// the text is walked once per field found, each walk passing over the
/// ones found before; a walk that meets anything else wrong stops there.
pub(super) fn fields(file: &Path, text: &[u8]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for skip in 0..MAX_UNKNOWN {
        let state = std::cell::Cell::new(Walked {
            skip,
            seen: 0,
            raised: false,
        });
        let walk = Walk {
            shape: Shape::Config,
            state: &state,
        };
        match serde::de::DeserializeSeed::deserialize(
            walk,
            serde_yaml::Deserializer::from_slice(text),
        ) {
            Err(e) if state.get().raised => problems.push(yaml_problem(file, &e)),
            _ => break,
        }
    }
    problems
}

/// The mappings of a config, each with the fields it takes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Config,
    Endpoint,
    Filter,
    Gcr,
    Notify,
    Git,
    /// Anything else: not looked into.
    Other,
}

impl Shape {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Shape::Config => &["fluxRecvVersion", "api", "endpoints"],
            // In serde's order (an alias first), so that the first unknown
            // field reads the same from `parse` and from the walk.
            Shape::Endpoint => &[
                "source",
                "key",
                "keyPath",
                "registryHost",
                "api",
                "fluxReceivers",
                "argocd",
                "filter",
                "gcr",
                "notify",
                "requireSignature",
            ],
            Shape::Filter => &["branches", "images"],
            Shape::Gcr => &["audience", "email"],
            Shape::Notify => &["git", "image"],
            Shape::Git => &["url", "branch"],
            Shape::Other => &[],
        }
    }

    /// The shape of the value of `field`.
    fn of(self, field: &str) -> Shape {
        match (self, field) {
            (Shape::Endpoint, "filter") => Shape::Filter,
            (Shape::Endpoint, "gcr") => Shape::Gcr,
            (Shape::Endpoint, "notify") => Shape::Notify,
            (Shape::Notify, "git") => Shape::Git,
            _ => Shape::Other,
        }
    }
}

/// How far one walk has got.
#[derive(Debug, Clone, Copy)]
struct Walked {
    /// Unknown fields found by earlier walks, passed over.
    skip: usize,
    /// Unknown fields met so far.
    seen: usize,
    /// Whether this walk stopped at an unknown field.
    raised: bool,
}

/// One value of the config, of a known shape. `endpoints:` holds values
/// of the endpoint's shape.
#[derive(Clone, Copy)]
struct Walk<'a> {
    shape: Shape,
    state: &'a std::cell::Cell<Walked>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let key = Key {
            shape: self.shape,
            state: self.state,
        };
        while let Some(name) = map.next_key_seed(key)? {
            let name = name.unwrap_or_default();
            match (self.shape, name.as_str()) {
                (Shape::Config, "endpoints") => map.next_value_seed(Endpoints(self.state))?,
                _ => map.next_value_seed(Walk {
                    shape: self.shape.of(&name),
                    state: self.state,
                })?,
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let other = Walk {
            shape: Shape::Other,
            state: self.state,
        };
        while seq.next_element_seed(other)?.is_some() {}
        Ok(())
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        let (_, variant) = data.variant::<serde::de::IgnoredAny>()?;
        variant
            .newtype_variant::<serde::de::IgnoredAny>()
            .map(|_| ())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A key of a mapping of `shape`: its text if it is a string. An unknown
/// one is refused while it is being read, so that serde_yaml gives the
/// key's own line and column, as for the config's types.
#[derive(Clone, Copy)]
struct Key<'a> {
    shape: Shape,
    state: &'a std::cell::Cell<Walked>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        if matches!(self.shape, Shape::Other) {
            serde::de::IgnoredAny::deserialize(d)?;
            return Ok(None);
        }
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Option<String>, E> {
        let fields = self.shape.fields();
        if !fields.contains(&name) {
            let mut state = self.state.get();
            state.seen += 1;
            state.raised = state.seen > state.skip;
            self.state.set(state);
            if state.raised {
                return Err(E::unknown_field(name, fields));
            }
        }
        Ok(Some(name.to_string()))
    }
}

/// `endpoints:`: a list of values of the endpoint's shape (anything else
/// is not looked into).
struct Endpoints<'a>(&'a std::cell::Cell<Walked>);

impl<'de> serde::de::DeserializeSeed<'de> for Endpoints<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Endpoints<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of endpoints")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let endpoint = Walk {
            shape: Shape::Endpoint,
            state: self.0,
        };
        while seq.next_element_seed(endpoint)?.is_some() {}
        Ok(())
    }
}
