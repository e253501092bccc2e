//! cgroup v2 statistics, from the same files and into the same fields as containerd's
//! cgroups library v1.0.4 (`cgroupsv2.Manager.Stat`).
//!
//! `cpu.stat` and `memory.stat` are read only when `cpu` / `memory` are listed in
//! `cgroup.controllers`, as containerd does. `pids`, `cpu`, `memory`, `io` and `rdma` are
//! always set (zeros when their files are missing); `memory_events` only when
//! `memory.events` has entries. Single-value files saying `max` read as `u64::MAX`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use corral_protocols::cgroups::v2::stats::metrics::{
    CPUStat, HugeTlbStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PidsStat, RdmaEntry,
    RdmaStat,
};
use protobuf::MessageField;

use super::parse::{kv_values, parse_uint, read_optional, KvValue};
use super::{rdma, CgroupError};

/// The metrics of the cgroup v2 group at `dir`; [`CgroupError::CgroupNotFound`] when the
/// directory is gone.
pub fn stats(dir: &Path) -> Result<Metrics, CgroupError> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Err(CgroupError::CgroupNotFound {
            path: dir.to_path_buf(),
        });
    }
    let controllers = read_optional(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    let mut out: HashMap<String, KvValue> = HashMap::new();
    for c in controllers.split_whitespace() {
        if c == "cpu" || c == "memory" {
            let path = dir.join(format!("{c}.stat"));
            if let Some(text) = read_optional(&path)? {
                out.extend(kv_values(&path, &text)?);
            }
        }
    }
    for name in ["pids.current", "pids.max"] {
        if let Some(text) = read_optional(&dir.join(name))? {
            let t = text.trim();
            let v = match parse_uint(t) {
                Some(n) => KvValue::Num(n),
                None => KvValue::Text(t.to_string()),
            };
            out.insert(name.to_string(), v);
        }
    }
    let events_path = dir.join("memory.events");
    let events = match read_optional(&events_path)? {
        Some(text) => kv_values(&events_path, &text)?,
        None => HashMap::new(),
    };

    let g = |k: &str| num(&out, k);
    let pid = |k: &str| match out.get(k) {
        Some(KvValue::Num(n)) => *n,
        Some(KvValue::Text(t)) if t == "max" => u64::MAX,
        _ => 0,
    };
    let mut m = Metrics::new();
    m.pids = MessageField::some(PidsStat {
        current: pid("pids.current"),
        limit: pid("pids.max"),
        ..Default::default()
    });
    m.cpu = MessageField::some(CPUStat {
        usage_usec: g("usage_usec"),
        user_usec: g("user_usec"),
        system_usec: g("system_usec"),
        nr_periods: g("nr_periods"),
        nr_throttled: g("nr_throttled"),
        throttled_usec: g("throttled_usec"),
        ..Default::default()
    });
    m.memory = MessageField::some(MemoryStat {
        anon: g("anon"),
        file: g("file"),
        kernel_stack: g("kernel_stack"),
        slab: g("slab"),
        sock: g("sock"),
        shmem: g("shmem"),
        file_mapped: g("file_mapped"),
        file_dirty: g("file_dirty"),
        file_writeback: g("file_writeback"),
        anon_thp: g("anon_thp"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        pgfault: g("pgfault"),
        pgmajfault: g("pgmajfault"),
        workingset_refault: g("workingset_refault"),
        workingset_activate: g("workingset_activate"),
        workingset_nodereclaim: g("workingset_nodereclaim"),
        pgrefill: g("pgrefill"),
        pgscan: g("pgscan"),
        pgsteal: g("pgsteal"),
        pgactivate: g("pgactivate"),
        pgdeactivate: g("pgdeactivate"),
        pglazyfree: g("pglazyfree"),
        pglazyfreed: g("pglazyfreed"),
        thp_fault_alloc: g("thp_fault_alloc"),
        thp_collapse_alloc: g("thp_collapse_alloc"),
        usage: single_value(&dir.join("memory.current"))?,
        usage_limit: single_value(&dir.join("memory.max"))?,
        swap_usage: single_value(&dir.join("memory.swap.current"))?,
        swap_limit: single_value(&dir.join("memory.swap.max"))?,
        ..Default::default()
    });
    if !events.is_empty() {
        let e = |k: &str| num(&events, k);
        m.memory_events = MessageField::some(MemoryEvents {
            low: e("low"),
            high: e("high"),
            max: e("max"),
            oom: e("oom"),
            oom_kill: e("oom_kill"),
            ..Default::default()
        });
    }
    m.io = MessageField::some(IOStat {
        usage: io_stat(&dir.join("io.stat"))?,
        ..Default::default()
    });
    m.rdma = MessageField::some(RdmaStat {
        current: rdma_entries(&dir.join("rdma.current"))?,
        limit: rdma_entries(&dir.join("rdma.max"))?,
        ..Default::default()
    });
    m.hugetlb = hugetlb(dir)?;
    Ok(m)
}

fn num(map: &HashMap<String, KvValue>, key: &str) -> u64 {
    match map.get(key) {
        Some(KvValue::Num(n)) => *n,
        _ => 0,
    }
}

/// `memory.current`-like files: missing is 0, `max` is `u64::MAX`, content that is not a
/// number is logged and read as 0 (as containerd does).
fn single_value(path: &Path) -> Result<u64, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(0);
    };
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    Ok(parse_uint(t).unwrap_or_else(|| {
        log::warn!(
            "unable to parse {t:?} as a number from cgroup file {}",
            path.display()
        );
        0
    }))
}

/// `io.stat`: `major:minor rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..` per device.
/// Like containerd, a line whose device numbers do not parse ends the list.
fn io_stat(path: &Path) -> Result<Vec<IOEntry>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in text.split('\n') {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.len() < 2 {
            continue;
        }
        let majmin: Vec<&str> = parts[0].split(':').collect();
        let [major, minor] = majmin[..] else {
            continue;
        };
        let (Some(major), Some(minor)) = (plain(major), plain(minor)) else {
            break;
        };
        let mut e = IOEntry {
            major,
            minor,
            ..Default::default()
        };
        for kv in &parts[1..] {
            let mut it = kv.split('=');
            let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Some(v) = plain(v) else {
                continue;
            };
            match k {
                "rbytes" => e.rbytes = v,
                "wbytes" => e.wbytes = v,
                "rios" => e.rios = v,
                "wios" => e.wios = v,
                _ => {}
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// An unsigned decimal without sign, as Go's `strconv.ParseUint`.
fn plain(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn rdma_entries(path: &Path) -> Result<Vec<RdmaEntry>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    Ok(rdma::parse_lines(text.split('\n'))
        .into_iter()
        .map(|l| RdmaEntry {
            device: l.device,
            hca_handles: l.hca_handles,
            hca_objects: l.hca_objects,
            ..Default::default()
        })
        .collect())
}

/// `hugetlb.<size>.current` and `hugetlb.<size>.max` for every size the directory has
/// files for (as in containerd, any readable `hugetlb.*` file ending in `max` or `current`,
/// `hugetlb.2MB.rsvd.max` included, makes an entry for its size). Sorted by size name;
/// containerd's order is a Go map's.
fn hugetlb(dir: &Path) -> Result<Vec<HugeTlbStat>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if super::parse::is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::io(dir, e)),
    };
    let mut by_size: BTreeMap<String, HugeTlbStat> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.contains("hugetlb") || !(name.ends_with("max") || name.ends_with("current")) {
            continue;
        }
        let parts: Vec<&str> = name.split('.').collect();
        let (Some(size), Some(kind)) = (parts.get(1), parts.get(2)) else {
            continue;
        };
        let Some(text) = read_optional(&entry.path())? else {
            continue;
        };
        let t = text.trim();
        let value = match t {
            "max" => u64::MAX,
            _ => match plain(t) {
                Some(v) => v,
                None => continue,
            },
        };
        let stat = by_size
            .entry(size.to_string())
            .or_insert_with(|| HugeTlbStat {
                pagesize: size.to_string(),
                ..Default::default()
            });
        match *kind {
            "max" => stat.max = value,
            "current" => stat.current = value,
            _ => {}
        }
    }
    Ok(by_size.into_values().collect())
}
