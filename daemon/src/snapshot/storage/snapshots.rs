//! Snapshot records in the metastore, as containerd 1.6's `snapshots/storage/bolt.go` keeps
//! them (schema in [`super::schema`]). Every function works inside a transaction of
//! [`super::MetaStore`]; errors carry containerd's messages and kinds.

use std::collections::{BTreeMap, HashSet};

use bbolt_rs::{BucketApi, BucketRwApi, CursorApi};

use super::metastore::{Reader, WriteTx};
use super::schema::{
    parent_key, parent_of_key, parent_prefix_key, CREATED_AT, ID, INODES, KIND, LABELS, PARENT,
    PARENTS, SIZE, SNAPSHOTS, UPDATED_AT,
};
use crate::filter::Filter;
use crate::metadata::encoding::{
    decode_time, decode_uvarint, decode_varint_value, encode_time, encode_uvarint, encode_varint,
    EncodingError, Timestamp,
};
use crate::snapshot::error::{SnapshotError, SnapshotResult};
use crate::snapshot::info::{Info, Kind, Usage};

/// An active or view snapshot as a snapshotter needs it to build mounts (containerd's
/// `storage.Snapshot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub kind: Kind,
    /// The id: the snapshot's directory is `snapshots/<id>`.
    pub id: u64,
    /// The ids of the committed ancestors, the immediate parent first, the base layer last.
    pub parent_ids: Vec<u64>,
}

fn not_found(what: impl Into<String>) -> SnapshotError {
    SnapshotError::NotFound(what.into())
}

fn record_path(key: &str) -> String {
    format!("v1/snapshots/{key}")
}

fn field_error(key: &str, field: &[u8], e: EncodingError) -> SnapshotError {
    SnapshotError::encoding(
        format!("{}/{}", record_path(key), String::from_utf8_lossy(field)),
        e,
    )
}

fn read_id<'tx, B: BucketApi<'tx>>(b: &B, key: &str) -> SnapshotResult<u64> {
    // Read as containerd's readID does (binary.Uvarint: trailing bytes ignored), but a
    // missing or broken id is an error rather than id 0.
    let raw = b.get(ID).unwrap_or_default();
    decode_uvarint(raw)
        .map(|(id, _)| id)
        .map_err(|e| field_error(key, ID, e))
}

fn read_kind<'tx, B: BucketApi<'tx>>(b: &B) -> Kind {
    match b.get(KIND) {
        Some([k]) => Kind::from_byte(*k),
        _ => Kind::Unknown,
    }
}

fn read_time<'tx, B: BucketApi<'tx>>(b: &B, key: &str, field: &[u8]) -> SnapshotResult<Timestamp> {
    match b.get(field) {
        Some(raw) => decode_time(raw).map_err(|e| field_error(key, field, e)),
        None => Ok(Timestamp::default()),
    }
}

fn read_labels<'tx, B: BucketApi<'tx>>(b: &B) -> BTreeMap<String, String> {
    b.bucket(LABELS)
        .map(|l| {
            l.iter_entries()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// containerd's `readSnapshot` (without the id).
fn read_info<'tx, B: BucketApi<'tx>>(b: &B, key: &str) -> SnapshotResult<Info> {
    let parent = b
        .get(PARENT)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Ok(Info {
        kind: read_kind(b),
        name: key.to_string(),
        parent,
        labels: read_labels(b),
        created: read_time(b, key, CREATED_AT)?,
        updated: read_time(b, key, UPDATED_AT)?,
    })
}

/// containerd's `getUsage`: zero when the record has none (active and view snapshots).
fn read_usage<'tx, B: BucketApi<'tx>>(b: &B, key: &str) -> SnapshotResult<Usage> {
    let read = |field: &[u8]| -> SnapshotResult<i64> {
        match b.get(field) {
            Some(raw) => decode_varint_value(raw).map_err(|e| field_error(key, field, e)),
            None => Ok(0),
        }
    };
    Ok(Usage {
        inodes: read(INODES)?,
        size: read(SIZE)?,
    })
}

/// containerd's `boltutil.WriteLabels`: the old bucket goes; an empty map leaves none; a
/// non-empty one leaves a bucket holding its non-empty values (so a map of empty values
/// leaves an empty bucket). Returns what is stored.
fn write_labels<'tx, B: BucketRwApi<'tx>>(
    b: &mut B,
    labels: &BTreeMap<String, String>,
) -> SnapshotResult<BTreeMap<String, String>> {
    if b.bucket(LABELS).is_some() {
        b.delete_bucket(LABELS)?;
    }
    if labels.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut lb = b.create_bucket(LABELS)?;
    let mut stored = BTreeMap::new();
    for (k, v) in labels.iter().filter(|(_, v)| !v.is_empty()) {
        lb.put(k.as_bytes(), v.as_bytes())?;
        stored.insert(k.clone(), v.clone());
    }
    Ok(stored)
}

fn write_times<'tx, B: BucketRwApi<'tx>>(
    b: &mut B,
    created: Timestamp,
    updated: Timestamp,
) -> SnapshotResult<()> {
    b.put(CREATED_AT, encode_time(created))?;
    b.put(UPDATED_AT, encode_time(updated))?;
    Ok(())
}

/// containerd's `putSnapshot`: id, kind, parent (if any), times and labels. Returns the
/// labels as stored.
fn write_snapshot<'tx, B: BucketRwApi<'tx>>(
    b: &mut B,
    id: u64,
    info: &Info,
) -> SnapshotResult<BTreeMap<String, String>> {
    b.put(ID, encode_uvarint(id))?;
    b.put(KIND, [info.kind.as_byte()])?;
    if let Some(p) = info.parent.as_deref().filter(|p| !p.is_empty()) {
        b.put(PARENT, p.as_bytes())?;
    }
    write_times(b, info.created, info.updated)?;
    write_labels(b, &info.labels)
}

fn write_usage<'tx, B: BucketRwApi<'tx>>(b: &mut B, usage: Usage) -> SnapshotResult<()> {
    b.put(INODES, encode_varint(usage.inodes))?;
    b.put(SIZE, encode_varint(usage.size))?;
    Ok(())
}

/// The ids from the snapshot `first` up through its parents (containerd's `parents`).
fn parent_chain<'tx, B: BucketApi<'tx>>(sb: &B, first: &str) -> SnapshotResult<Vec<u64>> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut key = first.to_string();
    loop {
        let b = sb
            .bucket(key.as_bytes())
            .ok_or_else(|| not_found("missing parent"))?;
        if !seen.insert(key.clone()) {
            return Err(SnapshotError::Storage(format!(
                "the parents of {first:?} form a cycle through {key:?}"
            )));
        }
        ids.push(read_id(&b, &key)?);
        match b.get(PARENT).filter(|p| !p.is_empty()) {
            Some(p) => key = String::from_utf8_lossy(p).into_owned(),
            None => return Ok(ids),
        }
    }
}

/// A snapshot's id, info and usage (containerd's `GetInfo`).
pub fn get_info<'tx>(tx: &impl Reader<'tx>, key: &str) -> SnapshotResult<(u64, Info, Usage)> {
    let v1 = tx.v1().ok_or_else(|| not_found("bucket does not exist"))?;
    let sb = v1
        .bucket(SNAPSHOTS)
        .ok_or_else(|| not_found("snapshots bucket does not exist"))?;
    let b = sb
        .bucket(key.as_bytes())
        .ok_or_else(|| not_found("snapshot does not exist"))?;
    let usage = read_usage(&b, key)?;
    let info = read_info(&b, key)?;
    Ok((read_id(&b, key)?, info, usage))
}

/// An active or view snapshot with its parent chain, for its mounts (containerd's
/// `GetSnapshot`); a committed one is `FailedPrecondition`.
pub fn get_snapshot<'tx>(tx: &impl Reader<'tx>, key: &str) -> SnapshotResult<Snapshot> {
    let v1 = tx.v1().ok_or_else(|| not_found("bucket does not exist"))?;
    let sb = v1
        .bucket(SNAPSHOTS)
        .ok_or_else(|| not_found("snapshot does not exist"))?;
    let b = sb
        .bucket(key.as_bytes())
        .ok_or_else(|| not_found("snapshot does not exist"))?;
    let id = read_id(&b, key)?;
    let kind = read_kind(&b);
    if kind != Kind::Active && kind != Kind::View {
        return Err(SnapshotError::FailedPrecondition(format!(
            "requested snapshot {key} not active or view"
        )));
    }
    let mut parent_ids = Vec::new();
    if let Some(p) = b.get(PARENT).filter(|p| !p.is_empty()) {
        let p = String::from_utf8_lossy(p).into_owned();
        if sb.bucket(p.as_bytes()).is_none() {
            return Err(not_found("parent does not exist"));
        }
        parent_ids = parent_chain(&sb, &p).map_err(|e| e.context("failed to get parent chain"))?;
    }
    Ok(Snapshot {
        kind,
        id,
        parent_ids,
    })
}

/// Records a new active or view snapshot on a committed `parent` (containerd's
/// `CreateSnapshot`): the next id from the `snapshots` bucket's sequence, the record, and
/// the parents index entry.
pub fn create_snapshot(
    tx: &mut WriteTx<'_, '_>,
    kind: Kind,
    key: &str,
    parent: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> SnapshotResult<Snapshot> {
    if kind != Kind::Active && kind != Kind::View {
        return Err(SnapshotError::InvalidArgument(format!(
            "snapshot type {kind} invalid; only snapshots of type Active or View can be created"
        )));
    }
    if key.is_empty() {
        return Err(SnapshotError::InvalidArgument(
            "snapshot key must not be empty".into(),
        ));
    }
    let parent = parent.filter(|p| !p.is_empty());
    let mut parent_id = None;
    let mut parent_ids = Vec::new();
    if let Some(v1) = tx.v1() {
        let sb = v1.bucket(SNAPSHOTS);
        if let Some(p) = parent {
            let pb = sb
                .as_ref()
                .and_then(|sb| sb.bucket(p.as_bytes()))
                .ok_or_else(|| not_found(format!("missing parent {p:?} bucket")))?;
            if read_kind(&pb) != Kind::Committed {
                return Err(SnapshotError::InvalidArgument(format!(
                    "parent {p:?} is not committed snapshot"
                )));
            }
            parent_id = Some(read_id(&pb, p)?);
        }
        if let Some(sb) = &sb {
            if sb.bucket(key.as_bytes()).is_some() || sb.get(key.as_bytes()).is_some() {
                return Err(SnapshotError::AlreadyExists(format!("snapshot {key}")));
            }
            if let Some(p) = parent {
                parent_ids = parent_chain(sb, p).map_err(|e| {
                    e.context(format!("failed to get parent chain for snapshot {key:?}"))
                })?;
            }
        }
    } else if let Some(p) = parent {
        return Err(not_found(format!("missing parent {p:?} bucket")));
    }

    let now = Timestamp::now();
    let info = Info {
        kind,
        name: key.to_string(),
        parent: parent.map(str::to_string),
        labels: labels.clone(),
        created: now,
        updated: now,
    };
    let id = {
        let mut v1 = tx.v1_mut()?;
        let mut sb = v1.create_bucket_if_not_exists(SNAPSHOTS)?;
        let id = sb.next_sequence().map_err(|e| {
            SnapshotError::from(e).context(format!("unable to get identifier for snapshot {key:?}"))
        })?;
        let mut b = sb.create_bucket(key.as_bytes())?;
        write_snapshot(&mut b, id, &info)?;
        id
    };
    {
        let mut v1 = tx.v1_mut()?;
        let mut pb = v1.create_bucket_if_not_exists(PARENTS)?;
        if let Some(pid) = parent_id {
            pb.put(parent_key(pid, id), key.as_bytes()).map_err(|e| {
                SnapshotError::from(e)
                    .context(format!("failed to write parent link for snapshot {key:?}"))
            })?;
        }
    }
    Ok(Snapshot {
        kind,
        id,
        parent_ids,
    })
}

/// Turns active snapshot `key` into committed snapshot `name` with the same id (containerd's
/// `CommitActive`): usage stored, new times, labels replaced by `labels` (not inherited), the
/// parents index pointing at `name`. Returns the id.
pub fn commit_active(
    tx: &mut WriteTx<'_, '_>,
    key: &str,
    name: &str,
    usage: Usage,
    labels: &BTreeMap<String, String>,
) -> SnapshotResult<u64> {
    if name.is_empty() {
        return Err(SnapshotError::InvalidArgument(
            "committed snapshot name must not be empty".into(),
        ));
    }
    let (id, info, parent_id) = {
        let v1 = tx.v1().ok_or_else(|| not_found("bucket does not exist"))?;
        let sb = v1.bucket(SNAPSHOTS);
        let sb = sb
            .as_ref()
            .ok_or_else(|| not_found(format!("failed to get active snapshot {key:?}")))?;
        if sb.bucket(name.as_bytes()).is_some() || sb.get(name.as_bytes()).is_some() {
            return Err(SnapshotError::AlreadyExists(format!(
                "committed snapshot {name}"
            )));
        }
        let b = sb
            .bucket(key.as_bytes())
            .ok_or_else(|| not_found(format!("failed to get active snapshot {key:?}")))?;
        let id = read_id(&b, key)
            .map_err(|e| e.context(format!("failed to read active snapshot {key:?}")))?;
        let info = read_info(&b, key)
            .map_err(|e| e.context(format!("failed to read active snapshot {key:?}")))?;
        if info.kind != Kind::Active {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key:?} is not active"
            )));
        }
        let parent_id = match &info.parent {
            Some(p) => {
                let pb = sb.bucket(p.as_bytes()).ok_or_else(|| {
                    not_found(format!("missing parent {p:?} of snapshot {key:?}"))
                })?;
                Some(read_id(&pb, p)?)
            }
            None => None,
        };
        (id, info, parent_id)
    };

    let now = Timestamp::now();
    let committed = Info {
        kind: Kind::Committed,
        name: name.to_string(),
        parent: info.parent.clone(),
        labels: labels.clone(),
        created: now,
        updated: now,
    };
    {
        let mut v1 = tx.v1_mut()?;
        let mut sb = v1
            .bucket_mut(SNAPSHOTS)
            .ok_or_else(|| SnapshotError::Storage("the snapshots bucket vanished".into()))?;
        {
            let mut b = sb.create_bucket(name.as_bytes())?;
            write_snapshot(&mut b, id, &committed)?;
            write_usage(&mut b, usage)?;
        }
        sb.delete_bucket(key.as_bytes()).map_err(|e| {
            SnapshotError::from(e).context(format!("failed to delete active snapshot {key:?}"))
        })?;
    }
    if let Some(pid) = parent_id {
        let mut v1 = tx.v1_mut()?;
        let mut pb = v1.create_bucket_if_not_exists(PARENTS)?;
        pb.put(parent_key(pid, id), name.as_bytes()).map_err(|e| {
            SnapshotError::from(e).context(format!(
                "failed to update parent link {pid:?} from {key:?} to {name:?}"
            ))
        })?;
    }
    Ok(id)
}

/// Removes a snapshot's record (containerd's `Remove`); refused while another snapshot has it
/// as parent. Returns its id and kind, so the snapshotter can remove its directory.
pub fn remove(tx: &mut WriteTx<'_, '_>, key: &str) -> SnapshotResult<(u64, Kind)> {
    let (id, kind, link) = {
        let v1 = tx.v1().ok_or_else(|| not_found("bucket does not exist"))?;
        let sb = v1
            .bucket(SNAPSHOTS)
            .ok_or_else(|| not_found(format!("snapshot {key}")))?;
        let b = sb
            .bucket(key.as_bytes())
            .ok_or_else(|| not_found(format!("snapshot {key}")))?;
        let id = read_id(&b, key)?;
        let info =
            read_info(&b, key).map_err(|e| e.context(format!("failed to read snapshot {key}")))?;
        let mut link = None;
        if let Some(pb) = v1.bucket(PARENTS) {
            let mut c = pb.cursor();
            if let Some((k, _)) = c.seek(parent_prefix_key(id)) {
                if parent_of_key(k) == id {
                    return Err(SnapshotError::FailedPrecondition(
                        "cannot remove snapshot with child".into(),
                    ));
                }
            }
            if let Some(p) = &info.parent {
                let ppb = sb
                    .bucket(p.as_bytes())
                    .ok_or_else(|| not_found(format!("snapshot {key}")))?;
                link = Some(parent_key(read_id(&ppb, p)?, id));
            }
        }
        (id, info.kind, link)
    };
    let mut v1 = tx.v1_mut()?;
    if let Some(link) = link {
        if let Some(mut pb) = v1.bucket_mut(PARENTS) {
            pb.delete(link)
                .map_err(|e| SnapshotError::from(e).context("failed to delete parent link"))?;
        }
    }
    let mut sb = v1
        .bucket_mut(SNAPSHOTS)
        .ok_or_else(|| SnapshotError::Storage("the snapshots bucket vanished".into()))?;
    sb.delete_bucket(key.as_bytes())
        .map_err(|e| SnapshotError::from(e).context("failed to delete snapshot"))?;
    Ok((id, kind))
}

/// Updates a snapshot's labels (containerd's `UpdateInfo`). With no `field_paths` the labels
/// become `info.labels`; `labels` does the same; `labels.<key>` sets that one label to its
/// value in `info.labels` (absent: removed). Any other path is `InvalidArgument`.
/// `updatedat` becomes now. Returns the stored info.
pub fn update_info(
    tx: &mut WriteTx<'_, '_>,
    info: &Info,
    field_paths: &[String],
) -> SnapshotResult<Info> {
    let key = info.name.as_str();
    let mut updated = {
        let v1 = tx.v1().ok_or_else(|| not_found("bucket does not exist"))?;
        let b = v1
            .bucket(SNAPSHOTS)
            .and_then(|sb| sb.bucket(key.as_bytes()).map(|b| read_info(&b, key)))
            .ok_or_else(|| not_found("snapshot does not exist"))?;
        b?
    };
    if field_paths.is_empty() {
        updated.labels = info.labels.clone();
    }
    for path in field_paths {
        if let Some(label) = path.strip_prefix("labels.") {
            let value = info.labels.get(label).cloned().unwrap_or_default();
            updated.labels.insert(label.to_string(), value);
        } else if path == "labels" {
            updated.labels = info.labels.clone();
        } else {
            return Err(SnapshotError::InvalidArgument(format!(
                "cannot update {path:?} field on snapshot {key:?}"
            )));
        }
    }
    updated.updated = Timestamp::now();
    let mut v1 = tx.v1_mut()?;
    let mut sb = v1
        .bucket_mut(SNAPSHOTS)
        .ok_or_else(|| not_found("snapshot does not exist"))?;
    let mut b = sb
        .bucket_mut(key.as_bytes())
        .ok_or_else(|| not_found("snapshot does not exist"))?;
    write_times(&mut b, updated.created, updated.updated)?;
    updated.labels = write_labels(&mut b, &updated.labels)?;
    Ok(updated)
}

/// Every snapshot the filter matches, in key order (containerd's `WalkInfo`). A store with
/// no snapshots bucket yet has none (containerd would say `bucket does not exist`).
pub fn walk_info<'tx>(tx: &impl Reader<'tx>, filter: &Filter) -> SnapshotResult<Vec<Info>> {
    let Some(v1) = tx.v1() else {
        return Ok(Vec::new());
    };
    let Some(sb) = v1.bucket(SNAPSHOTS) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, b) in sb.iter_buckets() {
        let info = read_info(&b, &String::from_utf8_lossy(k))?;
        if filter.matches(&info) {
            out.push(info);
        }
    }
    Ok(out)
}

/// Every id (as the decimal directory name) with its snapshot's key (containerd's `IDMap`).
pub fn id_map<'tx>(tx: &impl Reader<'tx>) -> SnapshotResult<BTreeMap<String, String>> {
    let Some(v1) = tx.v1() else {
        return Ok(BTreeMap::new());
    };
    let Some(sb) = v1.bucket(SNAPSHOTS) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (k, b) in sb.iter_buckets() {
        let key = String::from_utf8_lossy(k).into_owned();
        out.insert(read_id(&b, &key)?.to_string(), key);
    }
    Ok(out)
}
