//! containerd's validation rules for identifiers (`identifiers.Validate`) and labels
//! (`labels.Validate`), with messages shaped like containerd's; used by the daemon and the shim.

use std::collections::BTreeMap;

use crate::rpc::{Code, Status};

/// Longest identifier, in bytes (containerd's `identifiers.maxLength`).
pub const MAX_IDENTIFIER_LEN: usize = 76;
/// Largest label, key plus value, in bytes (containerd's `labels.maxSize`).
pub const MAX_LABEL_SIZE: usize = 4096;
/// The identifier pattern, as containerd prints it.
pub const IDENTIFIER_PATTERN: &str = r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$";

/// An identifier or label that containerd would refuse; always `InvalidArgument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Empty identifier.
    #[error("{kind} \"\": identifier must not be empty: invalid argument")]
    EmptyIdentifier { kind: String },
    /// Identifier over 76 bytes.
    #[error("{kind} {id:?}: identifier greater than maximum length ({MAX_IDENTIFIER_LEN} characters): invalid argument")]
    IdentifierTooLong { kind: String, id: String },
    /// Identifier not matching [`IDENTIFIER_PATTERN`].
    #[error("{kind} {id:?}: identifier must match {IDENTIFIER_PATTERN}: invalid argument")]
    IdentifierPattern { kind: String, id: String },
    /// Label with an empty key.
    #[error("label key must not be empty: invalid argument")]
    EmptyLabelKey,
    /// Label whose key plus value exceed 4096 bytes; `key` holds at most its first 10 bytes.
    #[error("label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {key}: invalid argument")]
    LabelTooLarge { key: String },
}

impl ValidationError {
    /// The gRPC code: always `InvalidArgument`.
    pub fn code(&self) -> Code {
        Code::INVALID_ARGUMENT
    }
}

impl From<ValidationError> for Status {
    fn from(e: ValidationError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

fn matches_pattern(id: &str) -> bool {
    // Runs of ASCII alphanumerics joined by single `.`, `_` or `-`.
    !id.is_empty()
        && id
            .split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// containerd's `identifiers.Validate` for an object of `kind` (e.g. `container`,
/// `namespace`, `lease`): 1 to 76 bytes matching [`IDENTIFIER_PATTERN`].
pub fn validate_identifier(kind: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::EmptyIdentifier {
            kind: kind.to_owned(),
        });
    }
    if id.len() > MAX_IDENTIFIER_LEN {
        return Err(ValidationError::IdentifierTooLong {
            kind: kind.to_owned(),
            id: id.to_owned(),
        });
    }
    if !matches_pattern(id) {
        return Err(ValidationError::IdentifierPattern {
            kind: kind.to_owned(),
            id: id.to_owned(),
        });
    }
    Ok(())
}

/// containerd's `labels.Validate` for one label, plus Corral's rule that the key is not empty.
pub fn validate_label(key: &str, value: &str) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(ValidationError::EmptyLabelKey);
    }
    if key.len() + value.len() > MAX_LABEL_SIZE {
        let mut end = key.len().min(10);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        return Err(ValidationError::LabelTooLarge {
            key: key[..end].to_owned(),
        });
    }
    Ok(())
}

/// Every label of a map, in key order; the first failure is returned.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    labels.iter().try_for_each(|(k, v)| validate_label(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_identifiers() {
        let max = "a".repeat(76);
        for id in [
            "default",
            "web",
            "a",
            "0",
            "k8s.io",
            "a-b_c.d",
            "A1.2-3_Z",
            "fixture-lease",
            &max,
        ] {
            assert_eq!(validate_identifier("container", id), Ok(()), "{id}");
        }
    }

    #[test]
    fn bad_identifiers() {
        for id in [
            "bad id", "-a", "a-", ".a", "a.", "a..b", "a.-b", "a/b", "é", "a\n", "a:b", "_",
        ] {
            assert!(
                matches!(
                    validate_identifier("container", id),
                    Err(ValidationError::IdentifierPattern { .. })
                ),
                "{id:?}"
            );
        }
        let long = "a".repeat(77);
        assert!(matches!(
            validate_identifier("namespace", &long),
            Err(ValidationError::IdentifierTooLong { .. })
        ));
    }

    #[test]
    fn identifier_messages() {
        let e = validate_identifier("container", "bad id").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"container "bad id": identifier must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument"#
        );
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        let status: Status = e.into();
        assert_eq!(status.code(), Code::INVALID_ARGUMENT);

        let e = validate_identifier("namespace", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"namespace "": identifier must not be empty: invalid argument"#
        );
        let long = "b".repeat(77);
        let e = validate_identifier("lease", &long).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "lease \"{long}\": identifier greater than maximum length (76 characters): invalid argument"
            )
        );
        // Quoting escapes like Go's %q.
        let e = validate_identifier("container", "a\"b").unwrap_err();
        assert!(e.to_string().starts_with(r#"container "a\"b": "#));
    }

    #[test]
    fn labels() {
        assert_eq!(validate_label("app", "web"), Ok(()));
        assert_eq!(validate_label("k", ""), Ok(()));
        let value = "v".repeat(4096 - 3);
        assert_eq!(validate_label("key", &value), Ok(()));
        let e = validate_label("key", &format!("{value}v")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "label key and value greater than maximum size (4096 bytes), key: key: invalid argument"
        );
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);

        let big = "containerd.io/gc.ref.content.".to_string() + &"x".repeat(4096);
        assert_eq!(
            validate_label(&big, ""),
            Err(ValidationError::LabelTooLarge {
                key: "containerd".into()
            })
        );
        // Truncation keeps whole characters.
        let uni = "ééééééé".to_string() + &"x".repeat(4096);
        assert_eq!(
            validate_label(&uni, ""),
            Err(ValidationError::LabelTooLarge {
                key: "ééééé".into()
            })
        );

        let e = validate_label("", "x").unwrap_err();
        assert_eq!(e, ValidationError::EmptyLabelKey);
        assert_eq!(
            e.to_string(),
            "label key must not be empty: invalid argument"
        );

        let mut m = BTreeMap::new();
        m.insert("app".to_string(), "web".to_string());
        m.insert("tier".to_string(), "edge".to_string());
        assert_eq!(validate_labels(&m), Ok(()));
        assert_eq!(validate_labels(&BTreeMap::new()), Ok(()));
        m.insert(String::new(), "x".to_string());
        assert_eq!(validate_labels(&m), Err(ValidationError::EmptyLabelKey));
    }
}
