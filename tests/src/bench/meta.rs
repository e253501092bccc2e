//! The metadata store (meta.db) against Go bbolt, measured in the same run.
//!
//! Both sides do containerd 1.6's container operations in containerd's layout,
//! `v1/default/containers/<id>/` with `createdat`, `updatedat`, `image`, `snapshotter`,
//! `snapshotKey`, `runtime/name` and two labels, on files in one temporary directory:
//! 1,000 creates each in its own transaction (fsynced), 10,000 creates in one transaction,
//! listing the 10,000 (every field, in one read transaction), getting one of them (every field,
//! in its own read transaction), and the file sizes. Corral: `corral_daemon::metadata` (its
//! bolt layer for the writes, [`Store::view`] for the reads). Reference:
//! `tests/go/src/corral-bolt-bench`, on Debian's Go bbolt (the one containerd 1.6 links).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bbolt_rs::{BucketApi, BucketRwApi, TxRwRefApi};
use corral_daemon::metadata::bolt::{open_db, Db, OpenMode};
use corral_daemon::metadata::encoding::{encode_time, Timestamp};
use corral_daemon::metadata::error::MetaError;
use corral_daemon::metadata::record::{read_map, read_string, read_time};
use corral_daemon::metadata::schema::{
    CONTAINERS, CREATED_AT, IMAGE, LABELS, NAME, RUNTIME, SCHEMA_V1, SNAPSHOTTER, SNAPSHOT_KEY,
    UPDATED_AT,
};
use corral_daemon::metadata::store::{Reader, Store};

use super::{ratio, Spread};

/// Creates in their own transactions.
pub const SINGLE: usize = 1_000;
/// Creates in one transaction, then listed and read from.
pub const BULK: usize = 10_000;
/// Repetitions of the list.
pub const LISTS: usize = 7;
/// Single gets.
pub const GETS: usize = 1_000;

/// Targets besides "within 1.5x of Go's".
const LIST_TARGET_MS: f64 = 20.0;
const GET_TARGET_US: f64 = 50.0;
const GO_FACTOR: f64 = 1.5;

/// Go package and binary of the reference.
pub const GO_PKG: &str = "corral-bolt-bench";
const NAMESPACE: &str = "default";

/// One run's figures (times in microseconds), the same for Corral and Go.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub create_each_p50_us: f64,
    pub create_each_p99_us: f64,
    pub create_each_file_bytes: f64,
    pub create_bulk_us: f64,
    pub bulk_file_bytes: f64,
    pub list_min_us: f64,
    pub list_median_us: f64,
    pub list_max_us: f64,
    pub get_p50_us: f64,
    pub get_p99_us: f64,
}

impl Figures {
    /// Reads the Go program's JSON line.
    pub fn from_json(text: &str) -> Result<Figures, String> {
        let v: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("{e} in {text:?}"))?;
        let f = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("no number {k:?} in {text:?}"))
        };
        Ok(Figures {
            create_each_p50_us: f("create_each_p50_us")?,
            create_each_p99_us: f("create_each_p99_us")?,
            create_each_file_bytes: f("create_each_file_bytes")?,
            create_bulk_us: f("create_bulk_us")?,
            bulk_file_bytes: f("bulk_file_bytes")?,
            list_min_us: f("list_min_us")?,
            list_median_us: f("list_median_us")?,
            list_max_us: f("list_max_us")?,
            get_p50_us: f("get_p50_us")?,
            get_p99_us: f("get_p99_us")?,
        })
    }
}

/// A container as containerd stores it (the fields this benchmark writes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Container {
    id: String,
    labels: BTreeMap<String, String>,
    image: String,
    runtime: String,
    snapshot_key: String,
    snapshotter: String,
    created_at: Option<Timestamp>,
    updated_at: Option<Timestamp>,
}

fn record(i: usize) -> Container {
    let id = format!("ctr-{i:05}");
    Container {
        labels: BTreeMap::from([
            ("app".to_string(), format!("web-{id}")),
            (
                "io.cri-containerd.kind".to_string(),
                "container".to_string(),
            ),
        ]),
        image: "docker.io/library/busybox:latest".into(),
        runtime: "io.containerd.runc.v2".into(),
        snapshot_key: id.clone(),
        snapshotter: "overlayfs".into(),
        id,
        created_at: None,
        updated_at: None,
    }
}

/// What containerd's `containerStore.Create` does inside its transaction. Stands in for the
/// container module until it has a `create`.
fn create<'tx>(tx: &mut impl TxRwRefApi<'tx>, c: &Container) -> bbolt_rs::Result<()> {
    let mut v1 = tx.create_bucket_if_not_exists(SCHEMA_V1)?;
    let mut ns = v1.create_bucket_if_not_exists(NAMESPACE.as_bytes())?;
    let mut cs = ns.create_bucket_if_not_exists(CONTAINERS)?;
    let mut b = cs.create_bucket(c.id.as_bytes())?;
    let now = encode_time(Timestamp::now());
    b.put(CREATED_AT, now)?;
    b.put(UPDATED_AT, now)?;
    b.put(IMAGE, c.image.as_bytes())?;
    b.put(SNAPSHOTTER, c.snapshotter.as_bytes())?;
    b.put(SNAPSHOT_KEY, c.snapshot_key.as_bytes())?;
    let mut rt = b.create_bucket(RUNTIME)?;
    rt.put(NAME, c.runtime.as_bytes())?;
    let mut labels = b.create_bucket(LABELS)?;
    for (k, v) in &c.labels {
        labels.put(k.as_bytes(), v.as_bytes())?;
    }
    Ok(())
}

/// Every field of one container bucket.
fn read<'tx, B: BucketApi<'tx>>(id: &[u8], b: &B) -> Result<Container, MetaError> {
    let id = String::from_utf8_lossy(id).into_owned();
    let path = format!("v1/{NAMESPACE}/containers/{id}");
    Ok(Container {
        created_at: read_time(b, CREATED_AT, &path)?,
        updated_at: read_time(b, UPDATED_AT, &path)?,
        image: read_string(b, IMAGE),
        snapshotter: read_string(b, SNAPSHOTTER),
        snapshot_key: read_string(b, SNAPSHOT_KEY),
        runtime: b
            .bucket(RUNTIME)
            .map(|rt| read_string(&rt, NAME))
            .unwrap_or_default(),
        labels: read_map(b, LABELS),
        id,
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The value at fraction `p` of `sorted` (nearest rank), as the Go program computes it.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64 + 0.5) as usize)
        .min(sorted.len() - 1)
        .saturating_sub(1);
    sorted[i]
}

fn file_size(path: &Path) -> f64 {
    std::fs::metadata(path)
        .map(|m| m.len() as f64)
        .unwrap_or(0.0)
}

/// A fresh store file, with containerd's schema bucket and version, opened for raw writes.
fn fresh(path: &Path) -> Result<Db, String> {
    drop(Store::open(path).map_err(|e| format!("creating {}: {e}", path.display()))?);
    open_db(path, OpenMode::ReadWrite).map_err(|e| e.to_string())
}

/// Corral's figures, measured in this process on files under `dir`.
pub fn measure_corral(dir: &Path) -> Result<Figures, String> {
    let mut out = Figures::default();

    let p1 = dir.join("single.db");
    let db = fresh(&p1)?;
    let mut each = Vec::with_capacity(SINGLE);
    for i in 0..SINGLE {
        let c = record(i);
        let mut db = db.clone();
        let start = Instant::now();
        db.update(|mut tx| create(&mut tx, &c))
            .map_err(|e| format!("create {}: {e}", c.id))?;
        each.push(micros(start.elapsed()));
    }
    drop(db);
    each.sort_by(f64::total_cmp);
    out.create_each_p50_us = percentile(&each, 0.50);
    out.create_each_p99_us = percentile(&each, 0.99);
    out.create_each_file_bytes = file_size(&p1);

    let p2 = dir.join("bulk.db");
    let mut db = fresh(&p2)?;
    let start = Instant::now();
    db.update(|mut tx| {
        for i in 0..BULK {
            create(&mut tx, &record(i))?;
        }
        Ok(())
    })
    .map_err(|e| format!("{BULK} creates: {e}"))?;
    out.create_bulk_us = micros(start.elapsed());
    drop(db);
    out.bulk_file_bytes = file_size(&p2);

    let store = Store::open(&p2).map_err(|e| e.to_string())?;
    let mut listed = Vec::with_capacity(LISTS);
    for _ in 0..LISTS {
        let start = Instant::now();
        let all = store
            .view(|tx| {
                let mut all = Vec::new();
                let v1 = tx.v1().ok_or_else(|| MetaError::NotFound("v1".into()))?;
                let Some(ns) = v1.bucket(NAMESPACE.as_bytes()) else {
                    return Ok(all);
                };
                let Some(cs) = ns.bucket(CONTAINERS) else {
                    return Ok(all);
                };
                for (id, b) in cs.iter_buckets() {
                    all.push(read(id, &b)?);
                }
                Ok(all)
            })
            .map_err(|e| format!("list: {e}"))?;
        listed.push(micros(start.elapsed()));
        let last = all.last().cloned().unwrap_or_default();
        if all.len() != BULK || last.runtime.is_empty() || last.labels.len() != 2 {
            return Err(format!(
                "listed {} containers, want {BULK} with every field",
                all.len()
            ));
        }
    }
    let s = Spread::of(&listed).ok_or("no lists")?;
    (out.list_min_us, out.list_median_us, out.list_max_us) = (s.min, s.median, s.max);

    let mut got = Vec::with_capacity(GETS);
    for g in 0..GETS {
        let id = record((g * 7919) % BULK).id;
        let start = Instant::now();
        let c = store
            .view(|tx| {
                let missing = || MetaError::NotFound(format!("container {id:?}"));
                let v1 = tx.v1().ok_or_else(missing)?;
                let ns = v1.bucket(NAMESPACE.as_bytes()).ok_or_else(missing)?;
                let cs = ns.bucket(CONTAINERS).ok_or_else(missing)?;
                let b = cs.bucket(id.as_bytes()).ok_or_else(missing)?;
                read(id.as_bytes(), &b)
            })
            .map_err(|e| format!("get: {e}"))?;
        got.push(micros(start.elapsed()));
        if c.image.is_empty() || c.created_at.is_none() {
            return Err(format!("get {id} returned an empty container"));
        }
    }
    got.sort_by(f64::total_cmp);
    out.get_p50_us = percentile(&got, 0.50);
    out.get_p99_us = percentile(&got, 0.99);
    Ok(out)
}

/// Go bbolt's figures: builds and runs the reference program on files under `dir`.
pub fn measure_go(go_out: &Path, dir: &Path) -> Result<Figures, String> {
    let bin = crate::go::build_package(go_out, GO_PKG, GO_PKG)
        .map_err(|e| format!("building the Go bbolt benchmark: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-dir")
        .arg(dir)
        .arg("-single")
        .arg(SINGLE.to_string())
        .arg("-n")
        .arg(BULK.to_string())
        .arg("-lists")
        .arg(LISTS.to_string())
        .arg("-gets")
        .arg(GETS.to_string());
    let (_, output) = super::timed(&mut cmd, Duration::from_secs(300))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed with {}: {}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Figures::from_json(&String::from_utf8_lossy(&output.stdout))
}

/// One table row: `ours` against `go` (values in the unit of `shown`, the texts shown), with
/// the verdict on "within 1.5x of Go" and, when given, an absolute bound in that unit.
fn row(out: &mut String, what: &str, ours: (f64, String), go: (f64, String), abs: Option<&str>) {
    let mut target = format!("≤ {GO_FACTOR}× Go");
    let mut met = ours.0 <= go.0 * GO_FACTOR;
    if let Some(bound) = abs {
        let value: f64 = bound
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::INFINITY);
        target = format!("≤ {bound} and {target}");
        met &= ours.0 <= value;
    }
    let _ = writeln!(
        out,
        "| {what} | {} | {} | {} | {target} | {} |",
        ours.1,
        go.1,
        ratio(ours.0, go.0),
        if met { "met" } else { "**not met**" },
    );
}

fn us(v: f64) -> (f64, String) {
    (v, format!("{v:.1} µs"))
}

fn ms(v: f64) -> (f64, String) {
    (v / 1e3, format!("{:.1} ms", v / 1e3))
}

fn size(v: f64) -> (f64, String) {
    (v, format!("{:.0} KiB", v / 1024.0))
}

/// `min / median / max` in ms; the median is what is judged.
fn spread_ms(min: f64, median: f64, max: f64) -> (f64, String) {
    let s = Spread {
        min: min / 1e3,
        median: median / 1e3,
        max: max / 1e3,
    };
    (s.median, s.show(1, " ms"))
}

/// The report section from both sides' figures.
pub fn section(ours: &Figures, go: &Figures) -> String {
    let mut out = String::from(
        "## Metadata store (meta.db)\n\n\
         containerd 1.6's container operations on a meta.db in containerd's layout \
         (`v1/default/containers/<id>/`: createdat, updatedat, image, snapshotter, snapshotKey, \
         runtime/name, two labels), files in one temporary directory. Corral: \
         `corral_daemon::metadata` on bbolt-rs 1.3.10, in process (writes through its bolt layer \
         with a containerd-shaped create, reads through `Store::view`). Reference: Go bbolt \
         1.3.6 (Debian's, what containerd 1.6.20 links) doing the same, \
         `tests/go/src/corral-bolt-bench`. Each create commits with fsync; list and get read \
         every field, each in its own read transaction. Ratios are Corral / Go (below 1 is \
         better).\n\n\
         | figure | Corral | Go bbolt | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    let (o, g) = (ours, go);
    row(
        &mut out,
        "create, own transaction (1,000): p50",
        us(o.create_each_p50_us),
        us(g.create_each_p50_us),
        None,
    );
    row(
        &mut out,
        "create, own transaction (1,000): p99",
        us(o.create_each_p99_us),
        us(g.create_each_p99_us),
        None,
    );
    row(
        &mut out,
        "10,000 creates in one transaction",
        ms(o.create_bulk_us),
        ms(g.create_bulk_us),
        None,
    );
    row(
        &mut out,
        "list 10,000, min / median / max of 7 (median judged)",
        spread_ms(o.list_min_us, o.list_median_us, o.list_max_us),
        spread_ms(g.list_min_us, g.list_median_us, g.list_max_us),
        Some(&format!("{LIST_TARGET_MS} ms")),
    );
    row(
        &mut out,
        "get one of 10,000: p50 of 1,000",
        us(o.get_p50_us),
        us(g.get_p50_us),
        Some(&format!("{GET_TARGET_US} µs")),
    );
    row(
        &mut out,
        "get one of 10,000: p99 of 1,000",
        us(o.get_p99_us),
        us(g.get_p99_us),
        Some(&format!("{GET_TARGET_US} µs")),
    );
    row(
        &mut out,
        "file size after 1,000 creates",
        size(o.create_each_file_bytes),
        size(g.create_each_file_bytes),
        None,
    );
    row(
        &mut out,
        "file size after 10,000 creates",
        size(o.bulk_file_bytes),
        size(g.bulk_file_bytes),
        None,
    );
    out.push('\n');
    out
}

/// Measures both sides (Corral first, then Go) and returns the report section. The Go program
/// is built into `go_out`.
pub fn run(go_out: &Path) -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let dir = tmp.path().join("corral");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ours = measure_corral(&dir).map_err(|e| format!("Corral's metadata benchmark: {e}"))?;
    let go = measure_go(go_out, &tmp.path().join("go"))?;
    Ok(section(&ours, &go))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_go_programs_json() {
        let f = Figures::from_json(
            r#"{"bulk_file_bytes":58621952,"create_bulk_us":811658.5,"create_each_file_bytes":8388608,
            "create_each_p50_us":471.8,"create_each_p99_us":708.0,"get_p50_us":3.1,"get_p99_us":9.6,
            "list_max_us":89868.5,"list_median_us":62586.1,"list_min_us":26256.0}"#,
        )
        .unwrap();
        assert_eq!(f.get_p50_us, 3.1);
        assert!(Figures::from_json(r#"{"get_p50_us":1}"#).is_err());
    }

    #[test]
    fn a_record_round_trips_in_containerds_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let mut db = fresh(&path).unwrap();
        let c = record(7);
        db.update(|mut tx| create(&mut tx, &c)).unwrap();
        drop(db);
        let store = Store::open_read_only(&path).unwrap();
        let got = store
            .view(|tx| {
                let v1 = tx.v1().unwrap();
                let ns = v1.bucket(NAMESPACE.as_bytes()).unwrap();
                let cs = ns.bucket(CONTAINERS).unwrap();
                let b = cs.bucket(b"ctr-00007").unwrap();
                read(b"ctr-00007", &b)
            })
            .unwrap();
        assert!(got.created_at.is_some() && got.created_at == got.updated_at);
        assert_eq!(
            Container {
                created_at: None,
                updated_at: None,
                ..got
            },
            c
        );
        drop(store);
        let db = open_db(&path, OpenMode::ReadOnly).unwrap();
        let problems = corral_daemon::metadata::check::check(&db).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn percentiles_and_verdicts() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        let mut out = String::new();
        row(&mut out, "x", us(30.0), us(25.0), Some("50 µs"));
        assert!(out.ends_with("| met |\n"), "{out}");
        out.clear();
        row(&mut out, "x", us(40.0), us(25.0), Some("50 µs"));
        assert!(out.contains("not met"), "{out}");
        out.clear();
        row(&mut out, "x", us(60.0), us(50.0), Some("50 µs"));
        assert!(out.contains("not met"), "{out}");
        assert!(section(&Figures::default(), &Figures::default())
            .starts_with("## Metadata store (meta.db)\n"));
    }
}
