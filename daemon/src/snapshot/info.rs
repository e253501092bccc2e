//! What a snapshotter says about a snapshot (containerd's `snapshots.Kind`, `Info` and
//! `Usage`), and how a walk filter sees it.

use std::collections::BTreeMap;
use std::fmt;

use crate::filter::{check_map, Adaptor};
use crate::metadata::encoding::Timestamp;

/// A snapshot's kind, stored as one byte (`kind` key) with containerd's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Kind {
    /// 0: a value containerd does not know.
    #[default]
    Unknown = 0,
    /// 1: a read-only snapshot of a committed parent.
    View = 1,
    /// 2: a writable snapshot, committed later.
    Active = 2,
    /// 3: an immutable layer other snapshots may use as parent.
    Committed = 3,
}

impl Kind {
    /// The kind a stored byte stands for; any other byte is [`Kind::Unknown`].
    pub fn from_byte(b: u8) -> Kind {
        match b {
            1 => Kind::View,
            2 => Kind::Active,
            3 => Kind::Committed,
            _ => Kind::Unknown,
        }
    }

    /// The stored byte.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// containerd's `snapshots.ParseKind`: `view`, `active` or `committed` in any case;
    /// anything else is [`Kind::Unknown`].
    pub fn parse(s: &str) -> Kind {
        match s.to_ascii_lowercase().as_str() {
            "view" => Kind::View,
            "active" => Kind::Active,
            "committed" => Kind::Committed,
            _ => Kind::Unknown,
        }
    }

    /// The value a walk filter compares `kind` with (`active`, `view`, `committed`); containerd
    /// gives none for an unknown kind.
    pub fn filter_value(self) -> Option<&'static str> {
        match self {
            Kind::View => Some("view"),
            Kind::Active => Some("active"),
            Kind::Committed => Some("committed"),
            Kind::Unknown => None,
        }
    }
}

impl fmt::Display for Kind {
    /// containerd's `Kind.String()`: `View`, `Active`, `Committed`, `Unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::View => "View",
            Kind::Active => "Active",
            Kind::Committed => "Committed",
            Kind::Unknown => "Unknown",
        })
    }
}

/// One snapshot as its snapshotter knows it (containerd's `snapshots.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub kind: Kind,
    /// The key (active, view) or name (committed) the snapshotter knows it by; behind
    /// corrald's metadata layer, the backend name `"<ns>/<seq>/<key>"`.
    pub name: String,
    /// The parent's name; `None` for a base layer.
    pub parent: Option<String>,
    /// Labels the snapshotter stores (the metadata layer passes it only those starting
    /// with `containerd.io/snapshot/`).
    pub labels: BTreeMap<String, String>,
    /// `createdat`; the zero value when the record has none.
    pub created: Timestamp,
    /// `updatedat`; the zero value when the record has none.
    pub updated: Timestamp,
}

impl Adaptor for Info {
    /// containerd's `adaptSnapshot`: `kind`, `name`, `parent` and `labels.<key>`.
    fn field(&self, path: &[&str]) -> Option<String> {
        match path.first().copied()? {
            "kind" => self.kind.filter_value().map(str::to_string),
            "name" => Some(self.name.clone()),
            "parent" => Some(self.parent.clone().unwrap_or_default()),
            "labels" if !self.labels.is_empty() => check_map(&path[1..], &self.labels),
            _ => None,
        }
    }
}

/// The resources a snapshot takes (containerd's `snapshots.Usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Distinct inodes, the snapshot's directory included.
    pub inodes: i64,
    /// Bytes of disk allocated (`st_blocks` x 512), each inode counted once.
    pub size: i64,
}

impl Usage {
    /// Adds `other` (containerd's `Usage.Add`).
    pub fn add(&mut self, other: Usage) {
        self.inodes += other.inodes;
        self.size += other.size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    #[test]
    fn kinds_have_containerds_bytes_and_names() {
        for (k, b, s) in [
            (Kind::Unknown, 0, "Unknown"),
            (Kind::View, 1, "View"),
            (Kind::Active, 2, "Active"),
            (Kind::Committed, 3, "Committed"),
        ] {
            assert_eq!(k.as_byte(), b);
            assert_eq!(Kind::from_byte(b), k);
            assert_eq!(k.to_string(), s);
            assert_eq!(Kind::parse(s), k);
        }
        assert_eq!(Kind::from_byte(9), Kind::Unknown);
        assert_eq!(Kind::parse("COMMITTED"), Kind::Committed);
        assert_eq!(Kind::parse("layer"), Kind::Unknown);
    }

    #[test]
    fn filters_see_containerds_fields() {
        let info = Info {
            kind: Kind::Active,
            name: "default/4/web".into(),
            parent: Some("default/2/base".into()),
            labels: [("a.b".to_string(), "1".to_string())].into(),
            ..Info::default()
        };
        let matches = |f: &str| Filter::parse_all(&[f]).unwrap().matches(&info);
        assert!(matches("kind==active"));
        assert!(!matches("kind==committed"));
        assert!(matches("name==default/4/web"));
        assert!(matches("parent==default/2/base"));
        assert!(matches("labels.a.b==1"));
        assert!(matches("labels.\"a.b\""));
        assert!(!matches("labels.c"));
        let base = Info {
            kind: Kind::Committed,
            name: "base".into(),
            ..Info::default()
        };
        assert!(Filter::parse_all(&["parent==\"\""]).unwrap().matches(&base));
        assert!(!Filter::parse_all(&["labels.a"]).unwrap().matches(&base));
        let mut u = Usage {
            inodes: 1,
            size: 4096,
        };
        u.add(Usage {
            inodes: 2,
            size: 8192,
        });
        assert_eq!(
            u,
            Usage {
                inodes: 3,
                size: 12288
            }
        );
    }
}
