//! The settings schema: the `section!` macro that declares every setting
//! once — its section, key, type, default, documentation, optional flag
//! and whether it is a secret — and what the rest of the crate reads of
//! those declarations ([`Setting`], [`Section`]), plus the serde adapters
//! for the text forms that are not plain values (`"0s"` = off, `""` =
//! none, `"off"`).
//!
//! Owns: the shape of a declaration. Must not touch: any particular
//! setting (they are in `super`), files, variables or flags (the
//! `settings` module derives those from what is declared here).

use std::fmt;

/// One setting as declared: what the example file, the flags, the
/// environment and the masking of secrets are derived from.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key within its section (the Rust field name).
    pub name: &'static str,
    /// Its doc comment, one entry per attribute (`None` for attributes
    /// that are not documentation); read it with [`Setting::doc`].
    pub doc_attrs: &'static [Option<&'static str>],
    /// The long flag of `wsedge serve` that sets it, if it has one.
    pub flag: Option<&'static str>,
    /// Masked wherever the configuration is printed.
    pub secret: bool,
}

impl Setting {
    /// The documentation, one line per doc-comment line.
    pub fn doc(&self) -> impl Iterator<Item = &'static str> {
        doc_lines(self.doc_attrs)
    }
}

/// A table of the file (or the top level, named `""`).
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub name: &'static str,
    pub doc_attrs: &'static [Option<&'static str>],
    pub settings: &'static [Setting],
}

impl Section {
    /// The documentation, one line per doc-comment line.
    pub fn doc(&self) -> impl Iterator<Item = &'static str> {
        doc_lines(self.doc_attrs)
    }

    /// `section.name`, or `name` at the top level.
    pub fn key(&self, setting: &Setting) -> String {
        if self.name.is_empty() {
            setting.name.to_string()
        } else {
            format!("{}.{}", self.name, setting.name)
        }
    }
}

fn doc_lines(attrs: &'static [Option<&'static str>]) -> impl Iterator<Item = &'static str> {
    // `/// text` arrives as `#[doc = " text"]`.
    attrs
        .iter()
        .flatten()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
}

/// The text of a `#[doc = "…"]` attribute; `None` for any other.
macro_rules! doc_attr {
    (doc = $doc:literal) => {
        Some($doc)
    };
    ($($other:tt)*) => {
        None
    };
}

macro_rules! flag_name {
    () => {
        None
    };
    ($flag:literal) => {
        Some($flag)
    };
}

macro_rules! is_secret {
    () => {
        false
    };
    ($secret:literal) => {
        $secret
    };
}

/// Declares a section of the configuration: a struct whose fields are the
/// section's keys, each written once as
///
/// ```text
/// /// Documentation (the example file's comment; the flag's help is its
/// /// first sentence).
/// #[serde(…)]                      // optional: a text form, e.g. humantime
/// pub key: Type = default, flag = "flag-name", secret = true;
/// ```
///
/// (`flag` and `secret` optional), and, for the top level, a trailing
/// `sections { /// doc \n "toml_name" => pub field: Type; … }` (that
/// doc is the section's comment in the example file).
/// It generates the struct (serde with `default` and
/// `deny_unknown_fields`, so the TOML file *is* the struct), its
/// `Default`, a `Debug` that masks secrets, and the `SETTINGS` (and
/// `SECTIONS`) tables.
macro_rules! section {
    (
        $(#[$($sattr:tt)*])*
        pub struct $name:ident {
            $(
                $(#[$($fattr:tt)*])*
                pub $field:ident: $ty:ty = $default:expr
                    $(, flag = $flag:literal)? $(, secret = $secret:literal)?;
            )*
            $(
                sections {
                    $(
                        $(#[$($battr:tt)*])*
                        $toml:literal => pub $sfield:ident: $sty:ty;
                    )*
                }
            )?
        }
    ) => {
        $(#[$($sattr)*])*
        #[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$($fattr)*])*
                pub $field: $ty,
            )*
            $($(
                $(#[$($battr)*])*
                #[serde(rename = $toml)]
                pub $sfield: $sty,
            )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    $($($sfield: <$sty>::default(),)*)?
                }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut s = f.debug_struct(stringify!($name));
                $(
                    s.field(
                        stringify!($field),
                        $crate::config::schema::shown(
                            &self.$field,
                            $crate::config::schema::is_secret!($($secret)?),
                        ),
                    );
                )*
                $($(s.field(stringify!($sfield), &self.$sfield);)*)?
                s.finish()
            }
        }

        impl $name {
            /// The section's settings, in file order, as declared.
            pub const SETTINGS: &'static [$crate::config::schema::Setting] = &[$(
                $crate::config::schema::Setting {
                    name: stringify!($field),
                    doc_attrs: &[$($crate::config::schema::doc_attr!($($fattr)*)),*],
                    flag: $crate::config::schema::flag_name!($($flag)?),
                    secret: $crate::config::schema::is_secret!($($secret)?),
                },
            )*];

            $(
            /// The top level and every section, in file order.
            pub const SECTIONS: &'static [$crate::config::schema::Section] = &[
                $crate::config::schema::Section {
                    name: "",
                    doc_attrs: &[],
                    settings: Self::SETTINGS,
                },
                $(
                    $crate::config::schema::Section {
                        name: $toml,
                        doc_attrs: &[$($crate::config::schema::doc_attr!($($battr)*)),*],
                        settings: <$sty>::SETTINGS,
                    },
                )*
            ];
            )?
        }
    };
}

pub(crate) use {doc_attr, flag_name, is_secret, section};

/// What `Debug` shows of a field: the value, or a mask for a secret.
pub fn shown<T: fmt::Debug>(value: &T, secret: bool) -> &dyn fmt::Debug {
    struct Masked;
    impl fmt::Debug for Masked {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("********")
        }
    }
    if secret {
        &Masked
    } else {
        value
    }
}

/// `Option<Duration>` written as a duration, `"0s"` meaning off.
pub mod zero_is_off {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(&v.unwrap_or_default(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Duration = humantime_serde::deserialize(d)?;
        Ok((!v.is_zero()).then_some(v))
    }
}

/// `Option<String>` written as a string, `""` meaning none.
pub mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = String::deserialize(d)?;
        Ok((!v.is_empty()).then_some(v))
    }
}

/// `Option<SocketAddr>` written as an address, `"off"` meaning none.
pub mod addr_or_off {
    use std::net::SocketAddr;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let v = String::deserialize(d)?;
        if v == "off" {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|e| D::Error::custom(format!("\"{v}\": {e} (an address or \"off\")")))
    }
}
