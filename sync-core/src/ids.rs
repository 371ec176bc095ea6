//! Identifiers of the domain: short, printable, safe to use as Automerge map keys, in URLs and
//! inside the `/`-separated keys of a ledger.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest identifier accepted.
pub const MAX_ID_LEN: usize = 64;

/// An identifier that breaks the rules: what kind it was meant to be, and the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
pub struct IdError {
    /// Which identifier (for example "subject id").
    pub kind: &'static str,
    /// The rejected value.
    pub value: String,
}

fn check(kind: &'static str, value: &str) -> Result<(), IdError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(IdError { kind, value: value.to_owned() }) }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps an identifier.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::text(concat!("A ", $kind, ": 1 to 64 ASCII letters, digits, '-', '_' or '.'."), Some(r"^[A-Za-z0-9._-]{1,64}$"))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// An administrative unit (province, district, commune, hamlet or residential group).
    UnitId,
    "unit id"
);
id_type!(
    /// A campaign ("đợt lấy ý kiến").
    CampaignId,
    "campaign id"
);
id_type!(
    /// A cadre being evaluated in a campaign.
    SubjectId,
    "subject id"
);
id_type!(
    /// A question of a form.
    QuestionId,
    "question id"
);
id_type!(
    /// A person who records or voids: a collector, or a member of district staff.
    PersonId,
    "person id"
);
id_type!(
    /// One resident's response; devices use a random UUID so that concurrent inserts commute.
    ResponseId,
    "response id"
);
id_type!(
    /// One meeting tally; devices use a random UUID.
    TallyId,
    "tally id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_codes() {
        assert!(ResponseId::new("0b6f2c8e-3f0a-4c6e-9d1e-0a4f5b6c7d8e").is_ok());
        assert!(UnitId::new("xa-phu-my.thon-3").is_ok());
    }

    #[test]
    fn refuses_separators_and_blanks() {
        for bad in ["", "a/b", "thôn 3", "a b", &"x".repeat(65)] {
            let err = SubjectId::new(bad).expect_err("must be refused");
            assert_eq!(err.kind, "subject id");
            assert_eq!(err.value, bad);
        }
    }

    #[test]
    fn deserialising_checks_too() {
        let err = serde_json::from_str::<QuestionId>("\"q/1\"").expect_err("must be refused");
        assert!(err.to_string().contains("question id"), "{err}");
    }
}
