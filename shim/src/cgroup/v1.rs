//! cgroup v1 statistics, from the same files and into the same fields as containerd's
//! cgroups library v1.0.4 (`cgroup.Stat(cgroups.IgnoreNotExist)`, as containerd's runc shim
//! calls it).
//!
//! Controllers read: pids, cpu, cpuacct, memory, hugetlb, blkio, rdma. A controller that is
//! not mounted, or whose directory for the process is missing, leaves its fields unset.
//! Within a controller, a missing file leaves its own fields at zero; containerd stops the
//! controller at the first missing file instead (so without swap accounting, no
//! `memory.memsw.*`, it also loses the kernel memory figures). Malformed content is an error.
//!
//! Fields containerd fills: `cpu` (always, with `usage` and `throttling`), `pids`, `memory`
//! (with `usage`, `swap`, `kernel`, `kernel_tcp`), `memory_oom_control`, `hugetlb`, `blkio`,
//! `rdma`. It never fills `network` or `cgroup_stats`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use corral_protocols::cgroups::stats::v1::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryOomControl,
    MemoryStat, Metrics, PidsStat, RdmaEntry, RdmaStat, Throttle,
};
use protobuf::MessageField;

use super::fs::{CgroupFs, ProcCgroups};
use super::parse::{kv_numbers, parse_uint, read_optional, read_uint};
use super::{rdma, CgroupError};

/// `USER_HZ`, the unit of `cpuacct.stat`; containerd hard-codes it too.
const CLOCK_TICKS: u64 = 100;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

type Reader = fn(&CgroupFs, &Path, &mut Metrics) -> Result<(), CgroupError>;

/// The controllers read, in containerd's order.
const CONTROLLERS: [(&str, Reader); 7] = [
    ("pids", pids),
    ("cpu", cpu),
    ("cpuacct", cpuacct),
    ("memory", memory),
    ("blkio", blkio),
    ("rdma", rdma_stat),
    ("hugetlb", hugetlb),
];

/// The metrics of the v1 cgroups `cgroups` names. [`CgroupError::CgroupNotFound`] when none
/// of the controllers' directories exists any more; [`CgroupError::NotMounted`] when none of
/// the controllers is mounted.
pub fn stats(fs: &CgroupFs, cgroups: &ProcCgroups) -> Result<Metrics, CgroupError> {
    let mut m = Metrics::new();
    m.cpu = MessageField::some(CPUStat {
        usage: MessageField::some(CPUUsage::new()),
        throttling: MessageField::some(Throttle::new()),
        ..Default::default()
    });
    let mut active = false;
    let mut missing: Option<PathBuf> = None;
    for (name, read) in CONTROLLERS {
        let Some(dir) = fs.v1_dir(cgroups, name) else {
            continue;
        };
        if std::fs::symlink_metadata(&dir).is_err() {
            missing.get_or_insert(dir);
            continue;
        }
        active = true;
        read(fs, &dir, &mut m)?;
    }
    if active {
        return Ok(m);
    }
    Err(match missing {
        Some(path) => CgroupError::CgroupNotFound { path },
        None => CgroupError::NotMounted {
            what: "cgroup v1 controllers for this process".into(),
        },
    })
}

/// A plain decimal, as Go's `strconv.ParseUint` reads it (no sign).
fn plain_u64(path: &Path, what: &str, s: &str) -> Result<u64, CgroupError> {
    match s.bytes().all(|b| b.is_ascii_digit()) {
        true => s.parse().ok(),
        false => None,
    }
    .ok_or_else(|| CgroupError::malformed(path, format!("{what}: expected a number, got {s:?}")))
}

/// `pids.current` and `pids.max` (`max` is 0 here, as containerd reports it in v1).
fn pids(_: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    let Some(current) = read_uint(&dir.join("pids.current"))? else {
        return Ok(());
    };
    let max_path = dir.join("pids.max");
    let Some(max) = read_optional(&max_path)? else {
        return Ok(());
    };
    let limit = match max.trim() {
        "max" => 0,
        t => parse_uint(t).ok_or_else(|| {
            CgroupError::malformed(
                &max_path,
                format!("expected a number or \"max\", got {t:?}"),
            )
        })?,
    };
    m.pids = MessageField::some(PidsStat {
        current,
        limit,
        ..Default::default()
    });
    Ok(())
}

/// `cpu.stat`: the CFS throttling counters.
fn cpu(_: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    let path = dir.join("cpu.stat");
    let Some(text) = read_optional(&path)? else {
        return Ok(());
    };
    let raw = kv_numbers(&path, &text)?;
    let t = m
        .cpu
        .mut_or_insert_default()
        .throttling
        .mut_or_insert_default();
    if let Some(v) = raw.get("nr_periods") {
        t.periods = *v;
    }
    if let Some(v) = raw.get("nr_throttled") {
        t.throttled_periods = *v;
    }
    if let Some(v) = raw.get("throttled_time") {
        t.throttled_time = *v;
    }
    Ok(())
}

/// `cpuacct.stat` (user and system ticks, turned into nanoseconds), `cpuacct.usage` (total
/// nanoseconds) and `cpuacct.usage_percpu`; set together, only when all three are there.
fn cpuacct(_: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    let stat_path = dir.join("cpuacct.stat");
    let Some(stat) = read_optional(&stat_path)? else {
        return Ok(());
    };
    let fields: Vec<&str> = stat.split_whitespace().collect();
    let [user_key, user, system_key, system] = fields[..] else {
        return Err(CgroupError::malformed(&stat_path, "expected 4 fields"));
    };
    for (want, got) in [("user", user_key), ("system", system_key)] {
        if want != got {
            return Err(CgroupError::malformed(
                &stat_path,
                format!("expected field {want:?} but found {got:?}"),
            ));
        }
    }
    let ticks_to_nanos =
        |t: u64| (u128::from(t) * u128::from(NANOS_PER_SECOND) / u128::from(CLOCK_TICKS)) as u64;
    let user = ticks_to_nanos(plain_u64(&stat_path, "user", user)?);
    let kernel = ticks_to_nanos(plain_u64(&stat_path, "system", system)?);
    let Some(total) = read_uint(&dir.join("cpuacct.usage"))? else {
        return Ok(());
    };
    let percpu_path = dir.join("cpuacct.usage_percpu");
    let Some(percpu) = read_optional(&percpu_path)? else {
        return Ok(());
    };
    let per_cpu = percpu
        .split_whitespace()
        .map(|v| plain_u64(&percpu_path, "usage", v))
        .collect::<Result<Vec<_>, _>>()?;
    let u = m.cpu.mut_or_insert_default().usage.mut_or_insert_default();
    u.total = total;
    u.user = user;
    u.kernel = kernel;
    u.per_cpu = per_cpu;
    Ok(())
}

/// `memory.stat`, `memory.oom_control`, and the usage/max/failcnt/limit files of the memory,
/// memsw, kmem and kmem.tcp counters.
fn memory(_: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    let stat_path = dir.join("memory.stat");
    let Some(text) = read_optional(&stat_path)? else {
        return Ok(());
    };
    let raw = kv_numbers(&stat_path, &text)?;
    let mut ms = memory_stat(&raw);
    if let Some(oom) = oom_control(dir)? {
        m.memory_oom_control = MessageField::some(oom);
    }
    for (module, entry) in [
        ("", &mut ms.usage),
        ("memsw.", &mut ms.swap),
        ("kmem.", &mut ms.kernel),
        ("kmem.tcp.", &mut ms.kernel_tcp),
    ] {
        let e = entry.mut_or_insert_default();
        for (name, field) in [
            ("usage_in_bytes", &mut e.usage),
            ("max_usage_in_bytes", &mut e.max),
            ("failcnt", &mut e.failcnt),
            ("limit_in_bytes", &mut e.limit),
        ] {
            if let Some(v) = read_uint(&dir.join(format!("memory.{module}{name}")))? {
                *field = v;
            }
        }
    }
    m.memory = MessageField::some(ms);
    Ok(())
}

/// The `memory.stat` keys containerd maps, to their fields.
fn memory_stat(raw: &HashMap<String, u64>) -> MemoryStat {
    let g = |k: &str| raw.get(k).copied().unwrap_or(0);
    MemoryStat {
        cache: g("cache"),
        rss: g("rss"),
        rss_huge: g("rss_huge"),
        mapped_file: g("mapped_file"),
        dirty: g("dirty"),
        writeback: g("writeback"),
        pg_pg_in: g("pgpgin"),
        pg_pg_out: g("pgpgout"),
        pg_fault: g("pgfault"),
        pg_maj_fault: g("pgmajfault"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit"),
        hierarchical_swap_limit: g("hierarchical_memsw_limit"),
        total_cache: g("total_cache"),
        total_rss: g("total_rss"),
        total_rss_huge: g("total_rss_huge"),
        total_mapped_file: g("total_mapped_file"),
        total_dirty: g("total_dirty"),
        total_writeback: g("total_writeback"),
        total_pg_pg_in: g("total_pgpgin"),
        total_pg_pg_out: g("total_pgpgout"),
        total_pg_fault: g("total_pgfault"),
        total_pg_maj_fault: g("total_pgmajfault"),
        total_inactive_anon: g("total_inactive_anon"),
        total_active_anon: g("total_active_anon"),
        total_inactive_file: g("total_inactive_file"),
        total_active_file: g("total_active_file"),
        total_unevictable: g("total_unevictable"),
        usage: MessageField::some(MemoryEntry::new()),
        swap: MessageField::some(MemoryEntry::new()),
        kernel: MessageField::some(MemoryEntry::new()),
        kernel_tcp: MessageField::some(MemoryEntry::new()),
        ..Default::default()
    }
}

/// `memory.oom_control`: `oom_kill_disable`, `under_oom`, `oom_kill`.
fn oom_control(dir: &Path) -> Result<Option<MemoryOomControl>, CgroupError> {
    let path = dir.join("memory.oom_control");
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let raw = kv_numbers(&path, &text)?;
    let g = |k: &str| raw.get(k).copied().unwrap_or(0);
    Ok(Some(MemoryOomControl {
        oom_kill_disable: g("oom_kill_disable"),
        under_oom: g("under_oom"),
        oom_kill: g("oom_kill"),
        ..Default::default()
    }))
}

/// The huge page sizes of `/sys/kernel/mm/hugepages` (`hugepages-2048kB`), named the way the
/// hugetlb controller names its files (`2MB`), sorted by directory name as Go's `ReadDir`.
fn hugepage_sizes(fs: &CgroupFs) -> Result<Vec<String>, CgroupError> {
    let dir = fs.host_path("/sys/kernel/mm/hugepages");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if super::parse::is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::io(&dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    names
        .iter()
        .map(|name| {
            let size = name
                .split('-')
                .nth(1)
                .and_then(ram_in_bytes)
                .ok_or_else(|| {
                    CgroupError::malformed(
                        &dir,
                        format!("unexpected huge page size entry {name:?}"),
                    )
                })?;
            Ok(custom_size(size))
        })
        .collect()
}

/// go-units `RAMInBytes`: `2048kB`, `1G`, `1.5MiB` (binary multiples).
fn ram_in_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    Some(value * 1024f64.powi(power))
}

/// go-units `CustomSize("%g%s", size, 1024, ["B", "KB", ...])`: `2097152` is `2MB`.
fn custom_size(mut size: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{size}{}", UNITS[i])
}

/// `hugetlb.<size>.usage_in_bytes`, `.max_usage_in_bytes`, `.failcnt` per huge page size
/// (an entry per size that has any of them).
fn hugetlb(fs: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    for size in hugepage_sizes(fs)? {
        let mut s = HugetlbStat {
            pagesize: size.clone(),
            ..Default::default()
        };
        let mut any = false;
        for (name, field) in [
            ("usage_in_bytes", &mut s.usage),
            ("max_usage_in_bytes", &mut s.max),
            ("failcnt", &mut s.failcnt),
        ] {
            if let Some(v) = read_uint(&dir.join(format!("hugetlb.{size}.{name}")))? {
                *field = v;
                any = true;
            }
        }
        if any {
            m.hugetlb.push(s);
        }
    }
    Ok(())
}

type BlkioField = fn(&mut BlkIOStat) -> &mut Vec<BlkIOEntry>;

/// The CFQ files containerd reads when `blkio.io_serviced_recursive` exists.
const CFQ_FILES: [(&str, BlkioField); 8] = [
    ("sectors_recursive", |b| &mut b.sectors_recursive),
    ("io_service_bytes_recursive", |b| {
        &mut b.io_service_bytes_recursive
    }),
    ("io_serviced_recursive", |b| &mut b.io_serviced_recursive),
    ("io_queued_recursive", |b| &mut b.io_queued_recursive),
    ("io_service_time_recursive", |b| {
        &mut b.io_service_time_recursive
    }),
    ("io_wait_time_recursive", |b| &mut b.io_wait_time_recursive),
    ("io_merged_recursive", |b| &mut b.io_merged_recursive),
    ("time_recursive", |b| &mut b.io_time_recursive),
];

/// The throttle files it falls back to when the CFQ ones gave nothing.
const THROTTLE_FILES: [(&str, BlkioField); 2] = [
    ("throttle.io_serviced", |b| &mut b.io_serviced_recursive),
    ("throttle.io_service_bytes", |b| {
        &mut b.io_service_bytes_recursive
    }),
];

/// blkio: the CFQ `*_recursive` files, or when they are absent or empty the
/// `throttle.io_serviced` / `throttle.io_service_bytes` files; device names from
/// `/proc/partitions`.
fn blkio(fs: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    let b = m.blkio.mut_or_insert_default();
    let partitions = fs.host_path("/proc/partitions");
    let Some(text) = read_optional(&partitions)? else {
        return Ok(());
    };
    let devices = parse_partitions(&partitions, &text)?;
    if std::fs::symlink_metadata(dir.join("blkio.io_serviced_recursive")).is_ok() {
        let mut size = 0;
        for (name, field) in CFQ_FILES {
            let entries = read_blkio_entries(&dir.join(format!("blkio.{name}")), &devices)?;
            size += entries.len();
            field(b).extend(entries);
        }
        if size > 0 {
            return Ok(());
        }
    }
    for (name, field) in THROTTLE_FILES {
        let entries = read_blkio_entries(&dir.join(format!("blkio.{name}")), &devices)?;
        field(b).extend(entries);
    }
    Ok(())
}

/// `/proc/partitions` to `(major, minor) -> /dev/<name>`, the first name of a number winning.
fn parse_partitions(path: &Path, text: &str) -> Result<BTreeMap<(u64, u64), String>, CgroupError> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [major, minor, _, name, ..] = fields[..] else {
            continue;
        };
        let key = (
            plain_u64(path, "major", major)?,
            plain_u64(path, "minor", minor)?,
        );
        out.entry(key).or_insert_with(|| format!("/dev/{name}"));
    }
    Ok(out)
}

/// A blkio statistics file: `major:minor op value` or `major:minor value` lines, a `Total`
/// line; missing file, no entries.
fn read_blkio_entries(
    path: &Path,
    devices: &BTreeMap<(u64, u64), String>,
) -> Result<Vec<BlkIOEntry>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
        if fields.is_empty() || (fields.len() == 2 && fields[0] == "Total") {
            continue;
        }
        if fields.len() < 3 {
            return Err(CgroupError::malformed(
                path,
                format!("invalid line {line:?}"),
            ));
        }
        let major = plain_u64(path, "major", fields[0])?;
        let minor = plain_u64(path, "minor", fields[1])?;
        let (op, value) = match fields.len() {
            4 => (fields[2], fields[3]),
            _ => ("", fields[2]),
        };
        out.push(BlkIOEntry {
            op: op.to_string(),
            device: devices.get(&(major, minor)).cloned().unwrap_or_default(),
            major,
            minor,
            value: plain_u64(path, "value", value)?,
            ..Default::default()
        });
    }
    Ok(out)
}

/// `rdma.current` and `rdma.max`, when both exist and have as many lines.
fn rdma_stat(_: &CgroupFs, dir: &Path, m: &mut Metrics) -> Result<(), CgroupError> {
    let (Some(current), Some(max)) = (
        read_optional(&dir.join("rdma.current"))?,
        read_optional(&dir.join("rdma.max"))?,
    ) else {
        return Ok(());
    };
    // containerd compares the counts of `\n`-separated pieces: a device that went away
    // between the two reads means no statistics.
    if current.split('\n').count() != max.split('\n').count() {
        return Ok(());
    }
    let entries = |text: &str| -> Vec<RdmaEntry> {
        rdma::parse_lines(text.split('\n'))
            .into_iter()
            .map(|l| RdmaEntry {
                device: l.device,
                hca_handles: l.hca_handles,
                hca_objects: l.hca_objects,
                ..Default::default()
            })
            .collect()
    };
    m.rdma = MessageField::some(RdmaStat {
        current: entries(&current),
        limit: entries(&max),
        ..Default::default()
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_size_names() {
        assert_eq!(ram_in_bytes("2048kB"), Some(2097152.0));
        assert_eq!(ram_in_bytes("1048576kB"), Some(1073741824.0));
        assert_eq!(ram_in_bytes("64KiB"), Some(65536.0));
        assert_eq!(ram_in_bytes("kB"), None);
        assert_eq!(ram_in_bytes("12xB"), None);
        assert_eq!(custom_size(2097152.0), "2MB");
        assert_eq!(custom_size(1073741824.0), "1GB");
        assert_eq!(custom_size(65536.0), "64KB");
        assert_eq!(custom_size(1572864.0), "1.5MB");
        assert_eq!(custom_size(512.0), "512B");
    }

    #[test]
    fn blkio_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blkio.throttle.io_serviced");
        let devices = BTreeMap::from([((8, 0), "/dev/sda".to_string())]);
        std::fs::write(&p, "8:0 Read 10\n8:0 Write 5\n8:16 7\nTotal 22\n").unwrap();
        let got = read_blkio_entries(&p, &devices).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].op.as_str(), got[0].device.as_str(), got[0].value),
            ("Read", "/dev/sda", 10)
        );
        assert_eq!(
            (
                got[2].op.as_str(),
                got[2].device.as_str(),
                got[2].minor,
                got[2].value
            ),
            ("", "", 16, 7)
        );
        std::fs::write(&p, "8:0 Read\n8:0\n").unwrap();
        let e = read_blkio_entries(&p, &devices).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("value: expected a number, got \"Read\""),
            "{e}"
        );
        std::fs::write(&p, "8:0\n").unwrap();
        let e = read_blkio_entries(&p, &devices).unwrap_err();
        assert!(e.to_string().ends_with("invalid line \"8:0\""), "{e}");
        assert!(read_blkio_entries(&dir.path().join("none"), &devices)
            .unwrap()
            .is_empty());
    }
}
