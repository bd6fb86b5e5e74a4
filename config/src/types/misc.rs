//! Durations, file modes, bounded integers and free-form scalar strings.

use std::borrow::Cow;

use super::{quote, str_scalar, StrScalar};

/// A duration written like `30s`, `2m` or `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    pub fn get(&self) -> std::time::Duration {
        self.0
    }
}

impl StrScalar for Duration {
    const EXPECTING: &'static str = "a duration such as 30s, 2m or 1h30m";
    fn parse_text(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            // humantime appends a long list of units; the example says enough.
            let e = e.to_string();
            let why = e.split(", supported units").next().unwrap_or(&e);
            format!(
                "{} is not a duration (expected e.g. 30s, 2m or 1h30m): {why}",
                quote(s)
            )
        })
    }
    fn text(&self) -> Cow<'_, str> {
        humantime::format_duration(self.0).to_string().into()
    }
}
str_scalar!(Duration, {
    "description": "A duration: a number and a unit (ns, us, ms, s, m, h, d), e.g. 30s, 2m, 1h30m.",
    "examples": ["2m"]
});

/// Unix permission bits written as an octal string, e.g. `"0644"` (YAML
/// reads an unquoted `0644` as that string too). A plain integer such as
/// `420` is refused: it is too easy to mean octal and write decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMode(u32);

impl FileMode {
    pub const fn new(mode: u32) -> Option<Self> {
        if mode <= 0o7777 {
            Some(FileMode(mode))
        } else {
            None
        }
    }
    pub fn bits(&self) -> u32 {
        self.0
    }
}

impl Default for FileMode {
    fn default() -> Self {
        FileMode(0o644)
    }
}

impl StrScalar for FileMode {
    const EXPECTING: &'static str =
        "an octal mode string such as \"0644\" (a plain number like 420 is refused as ambiguous)";
    fn parse_text(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|_| !digits.is_empty() && digits.len() <= 5)
            .and_then(FileMode::new)
            .ok_or_else(|| {
                format!(
                    "{} is not an octal file mode between 0000 and 7777",
                    quote(s)
                )
            })
    }
    fn text(&self) -> Cow<'_, str> {
        format!("{:04o}", self.0).into()
    }
}
str_scalar!(FileMode, {
    "description": "Octal permission bits as a string.",
    "pattern": "^(0o)?[0-7]{1,5}$",
    "examples": ["0644", "0600"]
});

/// An integer newtype limited to `$min..=$max`.
macro_rules! bounded_int {
    ($(#[$meta:meta])* $ty:ident($inner:ty), $min:expr, $max:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty($inner);

        impl $ty {
            pub const MIN: $inner = $min;
            pub const MAX: $inner = $max;
            pub fn new(v: $inner) -> Option<Self> {
                (Self::MIN..=Self::MAX).contains(&v).then_some($ty(v))
            }
            pub fn get(&self) -> $inner {
                self.0
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = i64::deserialize(d)?;
                <$inner>::try_from(v)
                    .ok()
                    .and_then($ty::new)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "{v} is out of range for {} ({}-{})",
                            $what,
                            Self::MIN,
                            Self::MAX
                        ))
                    })
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "integer",
                    "minimum": $min,
                    "maximum": $max
                })
            }
        }
    };
}

bounded_int!(
    /// Link MTU in bytes (68-65535).
    Mtu(u32), 68, 65535, "an MTU"
);
bounded_int!(
    /// IEEE 802.1Q VLAN ID (1-4094).
    VlanId(u16), 1, 4094, "a VLAN ID"
);

/// A string that YAML may also write as a number or boolean (`1`, `true`);
/// stored as text, the way a sysctl or a command-line flag takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScalarString(String);

impl ScalarString {
    pub fn new(s: impl Into<String>) -> Self {
        ScalarString(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ScalarString {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ScalarString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ScalarString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ScalarString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for ScalarString {
    fn schema_name() -> Cow<'static, str> {
        "ScalarString".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer", "number", "boolean"],
            "description": "A value passed on as text; numbers and booleans are converted."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        let d = Duration::parse_text("1h30m").unwrap();
        assert_eq!(d.get().as_secs(), 5400);
        assert_eq!(Duration::parse_text(&d.text()).unwrap(), d);
        assert!(Duration::parse_text("5 parsecs").is_err());
    }

    #[test]
    fn file_modes() {
        assert_eq!(FileMode::parse_text("0644").unwrap().bits(), 0o644);
        assert_eq!(FileMode::parse_text("0o600").unwrap().text(), "0600");
        assert!(FileMode::parse_text("0800").is_err());
        assert!(FileMode::parse_text("17777").is_err());
        assert!(FileMode::parse_text("").is_err());
    }

    #[test]
    fn bounded() {
        assert!(Mtu::new(1500).is_some());
        assert!(Mtu::new(10).is_none());
        let e = serde_yaml::from_str::<VlanId>("5000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("5000 is out of range for a VLAN ID (1-4094)"),
            "{e}"
        );
    }

    #[test]
    fn scalar_strings() {
        let v: ScalarString = serde_yaml::from_str("1").unwrap();
        assert_eq!(v.as_str(), "1");
        let v: ScalarString = serde_yaml::from_str("true").unwrap();
        assert_eq!(v.as_str(), "true");
        assert!(serde_yaml::from_str::<ScalarString>("[1]").is_err());
    }
}
