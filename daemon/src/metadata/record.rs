//! Reading and writing the values every record kind shares, as containerd stores them:
//! labels sub-buckets, timestamps, strings, sizes, Any values.

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi};

use super::encoding::{
    decode_any, decode_time, decode_varint_value, encode_any, encode_time, encode_varint, Timestamp,
};
use super::error::{MetaError, MetaResult};

/// The string/string map in sub-bucket `name` (labels, annotations); empty when absent.
pub fn read_map<'tx, B: BucketApi<'tx>>(b: &B, name: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(sub) = b.bucket(name) {
        for (k, v) in sub.iter_entries() {
            out.insert(
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            );
        }
    }
    out
}

/// Replaces sub-bucket `name` with `map`, as containerd's `boltutil.writeMap` does: the old
/// bucket goes, an empty map leaves none, and empty values are not stored (a map of only
/// empty values leaves an empty bucket).
pub fn write_map<'tx, B: BucketRwApi<'tx>>(
    b: &mut B,
    name: &[u8],
    map: &BTreeMap<String, String>,
) -> MetaResult<()> {
    if b.bucket(name).is_some() {
        b.delete_bucket(name)?;
    }
    if map.is_empty() {
        return Ok(());
    }
    let mut sub = b.create_bucket(name)?;
    for (k, v) in map {
        if !v.is_empty() {
            sub.put(k.as_bytes(), v.as_bytes())?;
        }
    }
    Ok(())
}

/// A timestamp key; `path` names it in errors.
pub fn read_time<'tx, B: BucketApi<'tx>>(
    b: &B,
    key: &[u8],
    path: &str,
) -> MetaResult<Option<Timestamp>> {
    b.get(key)
        .map(|raw| {
            decode_time(raw).map_err(|e| {
                MetaError::encoding(format!("{path}/{}", String::from_utf8_lossy(key)), e)
            })
        })
        .transpose()
}

pub fn write_time<'tx, B: BucketRwApi<'tx>>(b: &mut B, key: &[u8], t: Timestamp) -> MetaResult<()> {
    Ok(b.put(key, encode_time(t))?)
}

/// A string key; absent reads as empty.
pub fn read_string<'tx, B: BucketApi<'tx>>(b: &B, key: &[u8]) -> String {
    b.get(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// A signed varint key (sizes).
pub fn read_varint<'tx, B: BucketApi<'tx>>(
    b: &B,
    key: &[u8],
    path: &str,
) -> MetaResult<Option<i64>> {
    b.get(key)
        .map(|raw| {
            decode_varint_value(raw).map_err(|e| {
                MetaError::encoding(format!("{path}/{}", String::from_utf8_lossy(key)), e)
            })
        })
        .transpose()
}

pub fn write_varint<'tx, B: BucketRwApi<'tx>>(b: &mut B, key: &[u8], v: i64) -> MetaResult<()> {
    Ok(b.put(key, encode_varint(v))?)
}

/// A protobuf Any value: `(type_url, value)`.
pub fn read_any<'tx, B: BucketApi<'tx>>(
    b: &B,
    key: &[u8],
    path: &str,
) -> MetaResult<Option<(String, Vec<u8>)>> {
    b.get(key)
        .map(|raw| {
            decode_any(raw).map_err(|e| {
                MetaError::encoding(format!("{path}/{}", String::from_utf8_lossy(key)), e)
            })
        })
        .transpose()
}

pub fn write_any<'tx, B: BucketRwApi<'tx>>(
    b: &mut B,
    key: &[u8],
    type_url: &str,
    value: &[u8],
) -> MetaResult<()> {
    Ok(b.put(key, encode_any(type_url, value))?)
}

/// Names of the sub-buckets of `b`, in bolt's (bytewise) order.
pub fn bucket_names<'tx, B: BucketApi<'tx>>(b: &B) -> Vec<String> {
    b.iter_buckets()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bbolt_rs::{BucketApi, BucketRwApi};

    use super::{read_map, write_map};
    use crate::metadata::test_support::{labels, store};

    /// containerd's `boltutil.writeMap`: an empty map leaves no bucket; a map of only empty
    /// values leaves an empty one (containerd's overlayfs fixture has such a `labels/`).
    #[test]
    fn write_map_matches_containerds_buckets() {
        let (_d, s) = store();
        let shape = |m: BTreeMap<String, String>| {
            s.update(|tx| {
                let mut v1 = tx.v1_mut()?;
                let mut b = v1.create_bucket_if_not_exists(b"t")?;
                write_map(&mut b, b"labels", &m)?;
                Ok((
                    b.bucket(b"labels").is_some(),
                    read_map(&b, b"labels").into_iter().collect::<Vec<_>>(),
                ))
            })
            .unwrap()
        };
        assert_eq!(shape(BTreeMap::new()), (false, vec![]));
        assert_eq!(shape(labels(&[("a", "")])), (true, vec![]));
        assert_eq!(
            shape(labels(&[("a", ""), ("b", "1")])),
            (true, vec![("b".to_string(), "1".to_string())])
        );
    }
}
