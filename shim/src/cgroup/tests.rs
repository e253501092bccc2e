//! Statistics against fake cgroup trees in a temporary directory, the type URLs, v2 OOM
//! detection on a plain file, and (as root) real cgroup v1 / v2 groups.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_protocols::cgroups::stats::v1::metrics as m1;
use corral_protocols::cgroups::v2::stats::metrics as m2;
use protobuf::{Message, MessageField, MessageFull};

use super::fs::tests::{HYBRID_MOUNTINFO, UNIFIED_MOUNTINFO};
use super::*;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A legacy host with every controller the statistics read, co-mounted cpu,cpuacct aside.
const LEGACY_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
27 25 0:24 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,pids
28 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu
29 25 0:26 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,blkio
32 25 0:29 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,hugetlb
33 25 0:30 / /sys/fs/cgroup/rdma rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,rdma
";

const V1_PROC_CGROUP: &str = "\
9:rdma:/corral/c1
8:hugetlb:/corral/c1
7:blkio:/corral/c1
6:memory:/corral/c1
5:cpuacct:/corral/c1
4:cpu:/corral/c1
3:pids:/corral/c1
1:name=systemd:/corral/c1
";

/// This host's `/proc/partitions`, plus a second disk.
const PARTITIONS: &str = "\
major minor  #blocks  name

 254        0  268435456 vda
   8        0   10485760 sda
   8        1   10484736 sda1
";

/// `memory.stat` of a memory cgroup on this host (kernel 6.18, cgroup v1).
const V1_MEMORY_STAT: &str = "\
cache 9641984
rss 1875968
rss_huge 2097152
shmem 0
mapped_file 32768
dirty 49152
writeback 4096
workingset_refault_anon 0
workingset_refault_file 2545
swap 0
swapcached 0
pgpgin 39425
pgpgout 36612
pgfault 86260
pgmajfault 18
inactive_anon 1753088
active_anon 12288
inactive_file 6844416
active_file 2797568
unevictable 8192
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 9641985
total_rss 1875969
total_rss_huge 2097153
total_shmem 0
total_mapped_file 32769
total_dirty 49153
total_writeback 4097
total_workingset_refault_anon 0
total_workingset_refault_file 2545
total_swap 0
total_swapcached 0
total_pgpgin 39426
total_pgpgout 36613
total_pgfault 86261
total_pgmajfault 19
total_inactive_anon 1753089
total_active_anon 12289
total_inactive_file 6844417
total_active_file 2797569
total_unevictable 8193
";

fn v1_tree() -> (tempfile::TempDir, CgroupFs) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "proc/self/mountinfo", LEGACY_MOUNTINFO);
    write(r, "proc/100/cgroup", V1_PROC_CGROUP);
    write(r, "proc/partitions", PARTITIONS);
    std::fs::create_dir_all(r.join("sys/kernel/mm/hugepages/hugepages-1048576kB")).unwrap();
    std::fs::create_dir_all(r.join("sys/kernel/mm/hugepages/hugepages-2048kB")).unwrap();
    let c = "sys/fs/cgroup";
    let g = "corral/c1";
    write(r, &format!("{c}/pids/{g}/pids.current"), "3\n");
    write(r, &format!("{c}/pids/{g}/pids.max"), "max\n");
    write(
        r,
        &format!("{c}/cpu/{g}/cpu.stat"),
        "nr_periods 120\nnr_throttled 7\nthrottled_time 91500000\nnr_bursts 0\nburst_time 0\n",
    );
    write(
        r,
        &format!("{c}/cpuacct/{g}/cpuacct.stat"),
        "user 82911\nsystem 20898\n",
    );
    write(
        r,
        &format!("{c}/cpuacct/{g}/cpuacct.usage"),
        "1038099879991\n",
    );
    // The kernel leaves a trailing space.
    write(
        r,
        &format!("{c}/cpuacct/{g}/cpuacct.usage_percpu"),
        "490786408334 547315169099 \n",
    );
    let mem = format!("{c}/memory/{g}");
    write(r, &format!("{mem}/memory.stat"), V1_MEMORY_STAT);
    write(
        r,
        &format!("{mem}/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    for (module, base) in [
        ("", 1000),
        ("memsw.", 2000),
        ("kmem.", 3000),
        ("kmem.tcp.", 4000),
    ] {
        write(
            r,
            &format!("{mem}/memory.{module}usage_in_bytes"),
            &format!("{}\n", base + 1),
        );
        write(
            r,
            &format!("{mem}/memory.{module}max_usage_in_bytes"),
            &format!("{}\n", base + 2),
        );
        write(
            r,
            &format!("{mem}/memory.{module}failcnt"),
            &format!("{}\n", base + 3),
        );
        write(
            r,
            &format!("{mem}/memory.{module}limit_in_bytes"),
            "9223372036854771712\n",
        );
    }
    let h = format!("{c}/hugetlb/{g}");
    write(r, &format!("{h}/hugetlb.2MB.usage_in_bytes"), "4194304\n");
    write(
        r,
        &format!("{h}/hugetlb.2MB.max_usage_in_bytes"),
        "6291456\n",
    );
    write(r, &format!("{h}/hugetlb.2MB.failcnt"), "1\n");
    write(r, &format!("{h}/hugetlb.1GB.usage_in_bytes"), "0\n");
    write(r, &format!("{h}/hugetlb.1GB.max_usage_in_bytes"), "0\n");
    write(r, &format!("{h}/hugetlb.1GB.failcnt"), "0\n");
    // Like this host: BFQ rather than CFQ files, so the throttle files are read.
    let b = format!("{c}/blkio/{g}");
    write(
        r,
        &format!("{b}/blkio.bfq.io_serviced_recursive"),
        "Total 0\n",
    );
    write(
        r,
        &format!("{b}/blkio.throttle.io_serviced"),
        "254:0 Read 120\n254:0 Write 30\n254:0 Sync 100\n254:0 Async 50\n254:0 Discard 0\n254:0 Total 150\n8:16 Read 1\nTotal 151\n",
    );
    write(
        r,
        &format!("{b}/blkio.throttle.io_service_bytes"),
        "254:0 Read 4915200\n254:0 Write 122880\nTotal 5038080\n",
    );
    write(
        r,
        &format!("{c}/rdma/{g}/rdma.current"),
        "mlx4_0 hca_handle=2 hca_object=2000\n",
    );
    write(
        r,
        &format!("{c}/rdma/{g}/rdma.max"),
        "mlx4_0 hca_handle=max hca_object=10000\n",
    );
    let fs = CgroupFs::load(r).unwrap();
    (dir, fs)
}

fn blk(op: &str, device: &str, major: u64, minor: u64, value: u64) -> m1::BlkIOEntry {
    m1::BlkIOEntry {
        op: op.into(),
        device: device.into(),
        major,
        minor,
        value,
        ..Default::default()
    }
}

fn mem_entry(base: u64) -> MessageField<m1::MemoryEntry> {
    MessageField::some(m1::MemoryEntry {
        usage: base + 1,
        max: base + 2,
        failcnt: base + 3,
        limit: 9223372036854771712,
        ..Default::default()
    })
}

#[test]
fn v1_stats_map_every_file_to_containerds_field() {
    let (_dir, fs) = v1_tree();
    assert_eq!(fs.mode(), CgroupMode::Legacy);
    let Stats::V1(got) = stats_for_pid(&fs, 100).unwrap() else {
        panic!("expected v1 metrics");
    };
    let want = m1::Metrics {
        hugetlb: vec![
            m1::HugetlbStat {
                usage: 0,
                max: 0,
                failcnt: 0,
                pagesize: "1GB".into(),
                ..Default::default()
            },
            m1::HugetlbStat {
                usage: 4194304,
                max: 6291456,
                failcnt: 1,
                pagesize: "2MB".into(),
                ..Default::default()
            },
        ],
        pids: MessageField::some(m1::PidsStat {
            current: 3,
            limit: 0,
            ..Default::default()
        }),
        cpu: MessageField::some(m1::CPUStat {
            usage: MessageField::some(m1::CPUUsage {
                total: 1038099879991,
                kernel: 208_980_000_000,
                user: 829_110_000_000,
                per_cpu: vec![490786408334, 547315169099],
                ..Default::default()
            }),
            throttling: MessageField::some(m1::Throttle {
                periods: 120,
                throttled_periods: 7,
                throttled_time: 91500000,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(m1::MemoryStat {
            cache: 9641984,
            rss: 1875968,
            rss_huge: 2097152,
            mapped_file: 32768,
            dirty: 49152,
            writeback: 4096,
            pg_pg_in: 39425,
            pg_pg_out: 36612,
            pg_fault: 86260,
            pg_maj_fault: 18,
            inactive_anon: 1753088,
            active_anon: 12288,
            inactive_file: 6844416,
            active_file: 2797568,
            unevictable: 8192,
            hierarchical_memory_limit: 9223372036854771712,
            hierarchical_swap_limit: 9223372036854771712,
            total_cache: 9641985,
            total_rss: 1875969,
            total_rss_huge: 2097153,
            total_mapped_file: 32769,
            total_dirty: 49153,
            total_writeback: 4097,
            total_pg_pg_in: 39426,
            total_pg_pg_out: 36613,
            total_pg_fault: 86261,
            total_pg_maj_fault: 19,
            total_inactive_anon: 1753089,
            total_active_anon: 12289,
            total_inactive_file: 6844417,
            total_active_file: 2797569,
            total_unevictable: 8193,
            usage: mem_entry(1000),
            swap: mem_entry(2000),
            kernel: mem_entry(3000),
            kernel_tcp: mem_entry(4000),
            ..Default::default()
        }),
        blkio: MessageField::some(m1::BlkIOStat {
            io_service_bytes_recursive: vec![
                blk("Read", "/dev/vda", 254, 0, 4915200),
                blk("Write", "/dev/vda", 254, 0, 122880),
            ],
            io_serviced_recursive: vec![
                blk("Read", "/dev/vda", 254, 0, 120),
                blk("Write", "/dev/vda", 254, 0, 30),
                blk("Sync", "/dev/vda", 254, 0, 100),
                blk("Async", "/dev/vda", 254, 0, 50),
                blk("Discard", "/dev/vda", 254, 0, 0),
                blk("Total", "/dev/vda", 254, 0, 150),
                blk("Read", "", 8, 16, 1),
            ],
            ..Default::default()
        }),
        rdma: MessageField::some(m1::RdmaStat {
            current: vec![m1::RdmaEntry {
                device: "mlx4_0".into(),
                hca_handles: 2,
                hca_objects: 2000,
                ..Default::default()
            }],
            limit: vec![m1::RdmaEntry {
                device: "mlx4_0".into(),
                hca_handles: u32::MAX,
                hca_objects: 10000,
                ..Default::default()
            }],
            ..Default::default()
        }),
        memory_oom_control: MessageField::some(m1::MemoryOomControl {
            oom_kill_disable: 0,
            under_oom: 0,
            oom_kill: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(got, want);
}

#[test]
fn v1_blkio_prefers_cfq_files_when_they_have_entries() {
    let (dir, fs) = v1_tree();
    let b = dir.path().join("sys/fs/cgroup/blkio/corral/c1");
    let cfq = [
        ("sectors_recursive", "8:0 80\n"),
        ("io_service_bytes_recursive", "8:0 Read 4096\nTotal 4096\n"),
        ("io_serviced_recursive", "8:0 Read 1\nTotal 1\n"),
        ("io_queued_recursive", "8:0 Read 2\n"),
        ("io_service_time_recursive", "8:0 Read 3\n"),
        ("io_wait_time_recursive", "8:0 Read 4\n"),
        ("io_merged_recursive", "8:0 Read 5\n"),
        ("time_recursive", "8:0 6\n"),
    ];
    for (name, content) in cfq {
        std::fs::write(b.join(format!("blkio.{name}")), content).unwrap();
    }
    let Stats::V1(got) = stats_for_pid(&fs, 100).unwrap() else {
        panic!("expected v1 metrics");
    };
    let want = m1::BlkIOStat {
        io_service_bytes_recursive: vec![blk("Read", "/dev/sda", 8, 0, 4096)],
        io_serviced_recursive: vec![blk("Read", "/dev/sda", 8, 0, 1)],
        io_queued_recursive: vec![blk("Read", "/dev/sda", 8, 0, 2)],
        io_service_time_recursive: vec![blk("Read", "/dev/sda", 8, 0, 3)],
        io_wait_time_recursive: vec![blk("Read", "/dev/sda", 8, 0, 4)],
        io_merged_recursive: vec![blk("Read", "/dev/sda", 8, 0, 5)],
        io_time_recursive: vec![blk("", "/dev/sda", 8, 0, 6)],
        sectors_recursive: vec![blk("", "/dev/sda", 8, 0, 80)],
        ..Default::default()
    };
    assert_eq!(got.blkio.as_ref(), Some(&want));

    // CFQ files present but empty: the throttle files are read instead.
    for (name, _) in cfq {
        std::fs::write(b.join(format!("blkio.{name}")), "Total 0\n").unwrap();
    }
    let Stats::V1(got) = stats_for_pid(&fs, 100).unwrap() else {
        panic!("expected v1 metrics");
    };
    assert_eq!(got.blkio.io_serviced_recursive.len(), 7);
    assert_eq!(got.blkio.io_service_bytes_recursive.len(), 2);
    assert!(got.blkio.sectors_recursive.is_empty());
}

#[test]
fn v1_missing_controllers_and_files_leave_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "proc/self/mountinfo", HYBRID_MOUNTINFO);
    write(
        r,
        "proc/5/cgroup",
        "4:memory:/c\n3:pids:/c\n2:cpuacct:/c\n1:cpu:/c\n0::/\n",
    );
    // Only memory.stat in the memory cgroup; the pids directory without files; cpu and
    // cpuacct directories missing; no /proc/partitions, no huge pages.
    write(r, "sys/fs/cgroup/memory/c/memory.stat", "cache 5\nrss 6\n");
    std::fs::create_dir_all(r.join("sys/fs/cgroup/pids/c")).unwrap();
    let fs = CgroupFs::load(r).unwrap();
    assert_eq!(fs.mode(), CgroupMode::Hybrid);
    let Stats::V1(got) = stats_for_pid(&fs, 5).unwrap() else {
        panic!("hybrid hosts report v1 metrics");
    };
    let want = m1::Metrics {
        cpu: MessageField::some(m1::CPUStat {
            usage: MessageField::some(m1::CPUUsage::new()),
            throttling: MessageField::some(m1::Throttle::new()),
            ..Default::default()
        }),
        memory: MessageField::some(m1::MemoryStat {
            cache: 5,
            rss: 6,
            usage: MessageField::some(m1::MemoryEntry::new()),
            swap: MessageField::some(m1::MemoryEntry::new()),
            kernel: MessageField::some(m1::MemoryEntry::new()),
            kernel_tcp: MessageField::some(m1::MemoryEntry::new()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(got, want);

    // Without swap accounting the other counters are still read.
    write(
        r,
        "sys/fs/cgroup/memory/c/memory.kmem.usage_in_bytes",
        "77\n",
    );
    let Stats::V1(got) = stats_for_pid(&fs, 5).unwrap() else {
        panic!("expected v1 metrics");
    };
    assert_eq!(got.memory.kernel.usage, 77);
    assert_eq!(got.memory.swap.usage, 0);

    // Every directory gone: the cgroup is.
    std::fs::remove_dir_all(r.join("sys/fs/cgroup/memory/c")).unwrap();
    std::fs::remove_dir_all(r.join("sys/fs/cgroup/pids/c")).unwrap();
    let e = stats_for_pid(&fs, 5).unwrap_err();
    assert!(matches!(e, CgroupError::CgroupNotFound { .. }), "{e:?}");
    assert!(e.is_not_found());
    let e = stats_for_pid(&fs, 6).unwrap_err();
    assert!(
        matches!(e, CgroupError::ProcessNotFound { pid: 6 }),
        "{e:?}"
    );
}

#[test]
fn v1_malformed_files_are_clear_errors() {
    let (dir, fs) = v1_tree();
    let mem = dir.path().join("sys/fs/cgroup/memory/corral/c1");
    std::fs::write(mem.join("memory.stat"), "cache 1\nrss\n").unwrap();
    let e = stats_for_pid(&fs, 100).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 2: expected \"key value\", got \"rss\"",
            mem.join("memory.stat").display()
        )
    );
    std::fs::write(mem.join("memory.stat"), V1_MEMORY_STAT).unwrap();
    std::fs::write(mem.join("memory.usage_in_bytes"), "lots\n").unwrap();
    let e = stats_for_pid(&fs, 100).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("memory.usage_in_bytes: expected a number, got \"lots\""),
        "{e}"
    );
    std::fs::write(mem.join("memory.usage_in_bytes"), "1\n").unwrap();
    let acct = dir
        .path()
        .join("sys/fs/cgroup/cpuacct/corral/c1/cpuacct.stat");
    std::fs::write(&acct, "user 1\n").unwrap();
    let e = stats_for_pid(&fs, 100).unwrap_err();
    assert!(
        e.to_string().ends_with("cpuacct.stat: expected 4 fields"),
        "{e}"
    );
    std::fs::write(&acct, "usr 1\nsystem 2\n").unwrap();
    let e = stats_for_pid(&fs, 100).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("expected field \"user\" but found \"usr\""),
        "{e}"
    );
    assert_eq!(e.code(), corral_protocols::rpc::Code::INTERNAL);
}

/// `memory.stat` of a 5.4-era kernel (the keys containerd maps all exist there), distinct
/// values so any mix-up shows.
const V2_MEMORY_STAT: &str = "\
anon 1
file 2
kernel_stack 3
slab 4
sock 5
shmem 6
file_mapped 7
file_dirty 8
file_writeback 9
anon_thp 10
inactive_anon 11
active_anon 12
inactive_file 13
active_file 14
unevictable 15
slab_reclaimable 16
slab_unreclaimable 17
pgfault 18
pgmajfault 19
workingset_refault 20
workingset_activate 21
workingset_nodereclaim 22
pgrefill 23
pgscan 24
pgsteal 25
pgactivate 26
pgdeactivate 27
pglazyfree 28
pglazyfreed 29
thp_fault_alloc 30
thp_collapse_alloc 31
percpu 99
pagetables 98
";

fn v2_tree() -> (tempfile::TempDir, CgroupFs, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "proc/self/mountinfo", UNIFIED_MOUNTINFO);
    write(r, "proc/200/cgroup", "0::/system.slice/corral-c2.scope\n");
    let g = r.join("sys/fs/cgroup/system.slice/corral-c2.scope");
    let w = |name: &str, content: &str| write(&g, name, content);
    w(
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    w(
        "cpu.stat",
        "usage_usec 101\nuser_usec 102\nsystem_usec 103\nnr_periods 104\nnr_throttled 105\nthrottled_usec 106\nnr_bursts 0\nburst_usec 0\n",
    );
    w("memory.stat", V2_MEMORY_STAT);
    w("memory.current", "8286208\n");
    w("memory.max", "max\n");
    w("memory.swap.current", "4096\n");
    w("memory.swap.max", "536870912\n");
    w(
        "memory.events",
        "low 41\nhigh 42\nmax 43\noom 44\noom_kill 45\noom_group_kill 0\n",
    );
    w("pids.current", "4\n");
    w("pids.max", "1024\n");
    w(
        "io.stat",
        "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n",
    );
    w("hugetlb.2MB.current", "2097152\n");
    w("hugetlb.2MB.max", "max\n");
    w("hugetlb.2MB.events", "max 0\n");
    w("hugetlb.1GB.current", "0\n");
    w("hugetlb.1GB.max", "1073741824\n");
    w("hugetlb.1GB.rsvd.max", "max\n");
    w("rdma.current", "mlx4_0 hca_handle=1 hca_object=20\n");
    w("rdma.max", "mlx4_0 hca_handle=max hca_object=max\n");
    let fs = CgroupFs::load(r).unwrap();
    (dir, fs, g)
}

#[test]
fn v2_stats_map_every_file_to_containerds_field() {
    let (_dir, fs, _) = v2_tree();
    assert_eq!(fs.mode(), CgroupMode::Unified);
    let Stats::V2(got) = stats_for_pid(&fs, 200).unwrap() else {
        panic!("expected v2 metrics");
    };
    let want = m2::Metrics {
        pids: MessageField::some(m2::PidsStat {
            current: 4,
            limit: 1024,
            ..Default::default()
        }),
        cpu: MessageField::some(m2::CPUStat {
            usage_usec: 101,
            user_usec: 102,
            system_usec: 103,
            nr_periods: 104,
            nr_throttled: 105,
            throttled_usec: 106,
            ..Default::default()
        }),
        memory: MessageField::some(m2::MemoryStat {
            anon: 1,
            file: 2,
            kernel_stack: 3,
            slab: 4,
            sock: 5,
            shmem: 6,
            file_mapped: 7,
            file_dirty: 8,
            file_writeback: 9,
            anon_thp: 10,
            inactive_anon: 11,
            active_anon: 12,
            inactive_file: 13,
            active_file: 14,
            unevictable: 15,
            slab_reclaimable: 16,
            slab_unreclaimable: 17,
            pgfault: 18,
            pgmajfault: 19,
            workingset_refault: 20,
            workingset_activate: 21,
            workingset_nodereclaim: 22,
            pgrefill: 23,
            pgscan: 24,
            pgsteal: 25,
            pgactivate: 26,
            pgdeactivate: 27,
            pglazyfree: 28,
            pglazyfreed: 29,
            thp_fault_alloc: 30,
            thp_collapse_alloc: 31,
            usage: 8286208,
            usage_limit: u64::MAX,
            swap_usage: 4096,
            swap_limit: 536870912,
            ..Default::default()
        }),
        rdma: MessageField::some(m2::RdmaStat {
            current: vec![m2::RdmaEntry {
                device: "mlx4_0".into(),
                hca_handles: 1,
                hca_objects: 20,
                ..Default::default()
            }],
            limit: vec![m2::RdmaEntry {
                device: "mlx4_0".into(),
                hca_handles: u32::MAX,
                hca_objects: u32::MAX,
                ..Default::default()
            }],
            ..Default::default()
        }),
        io: MessageField::some(m2::IOStat {
            usage: vec![
                m2::IOEntry {
                    major: 8,
                    minor: 16,
                    rbytes: 1459200,
                    wbytes: 314773504,
                    rios: 192,
                    wios: 353,
                    ..Default::default()
                },
                m2::IOEntry {
                    major: 8,
                    minor: 0,
                    rbytes: 90430464,
                    wbytes: 299008000,
                    rios: 8950,
                    wios: 1252,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        hugetlb: vec![
            m2::HugeTlbStat {
                current: 0,
                max: 1073741824,
                pagesize: "1GB".into(),
                ..Default::default()
            },
            m2::HugeTlbStat {
                current: 2097152,
                max: u64::MAX,
                pagesize: "2MB".into(),
                ..Default::default()
            },
        ],
        memory_events: MessageField::some(m2::MemoryEvents {
            low: 41,
            high: 42,
            max: 43,
            oom: 44,
            oom_kill: 45,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(got, want);
}

#[test]
fn v2_follows_cgroup_controllers_and_tolerates_missing_files() {
    let (_dir, fs, g) = v2_tree();
    // Without the cpu and memory controllers their stat files are not read, as in
    // containerd; memory.current and friends still are.
    std::fs::write(g.join("cgroup.controllers"), "pids\n").unwrap();
    std::fs::write(g.join("pids.max"), "max\n").unwrap();
    for f in [
        "memory.events",
        "io.stat",
        "rdma.current",
        "rdma.max",
        "memory.swap.max",
    ] {
        std::fs::remove_file(g.join(f)).unwrap();
    }
    let Stats::V2(got) = stats_for_pid(&fs, 200).unwrap() else {
        panic!("expected v2 metrics");
    };
    assert_eq!(got.cpu.as_ref(), Some(&m2::CPUStat::new()));
    assert_eq!(got.memory.anon, 0);
    assert_eq!(got.memory.usage, 8286208);
    assert_eq!(got.memory.swap_limit, 0);
    assert_eq!(got.pids.limit, u64::MAX);
    assert!(got.memory_events.is_none());
    assert_eq!(got.io.as_ref(), Some(&m2::IOStat::new()));
    assert_eq!(got.rdma.as_ref(), Some(&m2::RdmaStat::new()));

    std::fs::write(g.join("cgroup.controllers"), "cpu memory\n").unwrap();
    std::fs::write(g.join("memory.stat"), "anon 1 2\n").unwrap();
    let e = stats_for_pid(&fs, 200).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("memory.stat: line 1: expected \"key value\", got \"anon 1 2\""),
        "{e}"
    );

    std::fs::remove_dir_all(&g).unwrap();
    let e = stats_for_pid(&fs, 200).unwrap_err();
    assert!(matches!(e, CgroupError::CgroupNotFound { .. }), "{e:?}");
}

#[test]
fn stats_on_a_host_without_cgroups() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "proc/self/mountinfo",
        "22 1 254:0 / / rw - ext4 /dev/vda rw\n",
    );
    let fs = CgroupFs::load(dir.path()).unwrap();
    let e = stats_for_pid(&fs, 1).unwrap_err();
    assert_eq!(e.to_string(), "cgroup file system: not mounted");
}

#[test]
fn type_urls_are_containerds() {
    // typeurl.MarshalAny falls back to gogo's proto.MessageName: the full proto name.
    assert_eq!(m1::Metrics::descriptor().full_name(), V1_METRICS_TYPE_URL);
    assert_eq!(m2::Metrics::descriptor().full_name(), V2_METRICS_TYPE_URL);
    let (_dir, fs) = v1_tree();
    let stats = stats_for_pid(&fs, 100).unwrap();
    let any = stats.to_any();
    assert_eq!(stats.try_to_any().unwrap(), any);
    assert_eq!(stats.type_url(), V1_METRICS_TYPE_URL);
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    let Stats::V1(m) = &stats else {
        panic!("expected v1 metrics");
    };
    assert_eq!(&m1::Metrics::parse_from_bytes(&any.value).unwrap(), m);

    let (_dir, fs, _) = v2_tree();
    let stats = stats_for_pid(&fs, 200).unwrap();
    let any = stats.to_any();
    assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
    let Stats::V2(m) = &stats else {
        panic!("expected v2 metrics");
    };
    assert_eq!(&m2::Metrics::parse_from_bytes(&any.value).unwrap(), m);
}

/// Waits for the watcher to be readable, then drains it.
fn drain_within(w: &mut OomWatcher, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if w.wait(Some(left)).unwrap() {
            return w.drain();
        }
        if left.is_zero() {
            return Vec::new();
        }
    }
}

fn events(oom: u64, oom_kill: u64) -> String {
    format!("low 0\nhigh 0\nmax 7\noom {oom}\noom_kill {oom_kill}\n")
}

/// Rewrites a file in place (truncate and write), as the kernel's updates look to inotify.
fn rewrite(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
}

#[test]
fn v2_oom_reported_once_per_oom_kill_increase() {
    let (dir, fs, g) = v2_tree();
    let ev = g.join("memory.events");
    rewrite(&ev, &events(1, 1));
    let mut w = OomWatcher::new(fs).unwrap();
    w.add("c2", 200).unwrap();
    assert!(w.contains("c2"));
    assert_eq!(w.len(), 1);
    // The kill before `add` is not news.
    assert!(!w.wait(Some(Duration::from_millis(20))).unwrap());
    assert!(w.drain().is_empty());

    rewrite(&ev, &events(2, 2));
    assert_eq!(
        drain_within(&mut w, Duration::from_secs(5)),
        vec!["c2".to_string()]
    );
    assert!(w.drain().is_empty());
    assert!(!w.wait(Some(Duration::from_millis(20))).unwrap());

    // A change that is not a kill (an `oom` without kill, `max` events) reports nothing.
    rewrite(&ev, &events(3, 2));
    assert_eq!(
        drain_within(&mut w, Duration::from_secs(5)),
        Vec::<String>::new()
    );
    assert!(!w.wait(Some(Duration::from_millis(20))).unwrap());

    // Several kills between two drains: one report.
    rewrite(&ev, &events(4, 3));
    rewrite(&ev, &events(5, 4));
    assert_eq!(
        drain_within(&mut w, Duration::from_secs(5)),
        vec!["c2".to_string()]
    );

    // A second container in another group; both OOM.
    let g2 = dir.path().join("sys/fs/cgroup/other");
    write(&g2, "memory.events", &events(0, 0));
    w.add_v2_dir("c3", &g2).unwrap();
    rewrite(&ev, &events(6, 5));
    rewrite(&g2.join("memory.events"), &events(1, 1));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(drain_within(&mut w, Duration::from_millis(500)));
    }
    got.sort();
    assert_eq!(got, vec!["c2".to_string(), "c3".to_string()]);

    // Re-adding an id replaces its watch; removing closes it.
    w.add_v2_dir("c3", &g2).unwrap();
    assert_eq!(w.len(), 2);
    w.remove("c3");
    w.remove("c3");
    assert!(!w.contains("c3"));
    rewrite(&g2.join("memory.events"), &events(2, 2));
    assert!(!w.wait(Some(Duration::from_millis(50))).unwrap());

    // The cgroup goes away: the watch is dropped, nothing reported, nothing logged loudly.
    std::fs::remove_file(&ev).unwrap();
    assert_eq!(
        drain_within(&mut w, Duration::from_secs(5)),
        Vec::<String>::new()
    );
    assert!(w.is_empty());
    assert!(!w.wait(Some(Duration::from_millis(20))).unwrap());
}

#[test]
fn watcher_can_move_to_the_event_loop_thread() {
    fn send<T: Send>() {}
    send::<OomWatcher>();
    send::<CgroupFs>();
    send::<Stats>();
}

#[test]
fn oom_watch_errors() {
    let (dir, fs, g) = v2_tree();
    let mut w = OomWatcher::new(fs).unwrap();
    let e = w.add("x", 999).unwrap_err();
    assert!(
        matches!(e, CgroupError::ProcessNotFound { pid: 999 }),
        "{e:?}"
    );
    let e = w.add_v2_dir("x", &dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, CgroupError::CgroupNotFound { .. }), "{e:?}");
    std::fs::remove_file(g.join("memory.events")).unwrap();
    let e = w.add("x", 200).unwrap_err();
    assert!(matches!(e, CgroupError::NotMounted { .. }), "{e:?}");
    let e = w.add_v1_dir("x", &dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, CgroupError::CgroupNotFound { .. }), "{e:?}");
    let e = w.add_v1_dir("x", &g).unwrap_err();
    assert!(matches!(e, CgroupError::NotMounted { .. }), "{e:?}");
    assert!(w.is_empty());
    // A v1 host whose process is not in a memory cgroup.
    let (_d, fs) = v1_tree();
    let mut w = OomWatcher::new(fs.clone()).unwrap();
    std::fs::write(fs.host_path("/proc/100/cgroup"), "3:pids:/corral/c1\n").unwrap();
    let e = w.add("x", 100).unwrap_err();
    assert_eq!(e.to_string(), "cgroup v1 memory controller: not mounted");
}

/// Real cgroups, as root.
mod real {
    use std::io::Write as _;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// False (after saying why) when the test cannot run here; panics on CI instead.
    fn runnable(test: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root (CI=true)");
        }
        eprintln!("skipping {test}: needs root");
        false
    }

    fn unique_name() -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!(
            "corral-test-{}-{nanos:x}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Cgroup directories this test created and the child in them; all removed on drop,
    /// even when the test fails. Only ever touches what it created.
    #[derive(Default)]
    struct Guard {
        dirs: Vec<PathBuf>,
        child: Option<Child>,
    }

    impl Guard {
        fn mkdir(&mut self, dir: PathBuf) {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            self.dirs.push(dir);
        }

        fn cleanup(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            for dir in std::mem::take(&mut self.dirs).into_iter().rev() {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    // Anything still inside is ours (forked by our child).
                    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                        for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    match std::fs::remove_dir(&dir) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e) if Instant::now() >= deadline => {
                            eprintln!("could not remove {}: {e}", dir.display());
                            break;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.cleanup();
        }
    }

    /// Waits until `cond` holds, panicking after `limit`.
    fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn mount_of<'a>(fs: &'a CgroupFs, controller: &str) -> Option<&'a CgroupMount> {
        fs.mounts()
            .iter()
            .find(|m| m.has_controller(controller) && m.root == "/")
    }

    fn v1_host(test: &str) -> Option<CgroupFs> {
        if !runnable(test) {
            return None;
        }
        let fs = CgroupFs::host().unwrap();
        if !matches!(fs.mode(), CgroupMode::Legacy | CgroupMode::Hybrid)
            || mount_of(&fs, "memory").is_none()
        {
            eprintln!(
                "skipping {test}: no cgroup v1 memory controller here ({:?})",
                fs.mode()
            );
            return None;
        }
        Some(fs)
    }

    /// `sh` that joins `dirs` (cgroup.procs), waits for a line on stdin, then execs `cmd`.
    fn spawn_in(dirs: &[PathBuf], cmd: &str) -> Child {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(format!(
                "for d in \"$@\"; do echo $$ > \"$d/cgroup.procs\" || exit 1; done; read _ || exit 1; exec {cmd}"
            ))
            .arg("sh")
            .args(dirs)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    }

    fn in_cgroup(pid: u32, controller: &str, path: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|t| {
                t.lines().any(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == controller))
                        && l.ends_with(&format!(":{path}"))
                })
            })
            .unwrap_or(false)
    }

    #[test]
    fn real_v1_stats() {
        let Some(fs) = v1_host("real_v1_stats") else {
            return;
        };
        let name = unique_name();
        let mut guard = Guard::default();
        let mut dirs = Vec::new();
        for c in ["memory", "pids", "cpu", "cpuacct"] {
            if let Some(m) = mount_of(&fs, c) {
                let dir = m.mount_point.join(&name);
                if !dirs.contains(&dir) {
                    guard.mkdir(dir.clone());
                    dirs.push(dir);
                }
            }
        }
        let mut child = spawn_in(&dirs, "sleep 60");
        let pid = child.id();
        writeln!(child.stdin.take().unwrap()).unwrap();
        guard.child = Some(child);
        let path = format!("/{name}");
        wait_for(
            "the child to exec sleep in its cgroup",
            Duration::from_secs(10),
            || {
                in_cgroup(pid, "memory", &path)
                    && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
            },
        );

        let Stats::V1(m) = stats_for_pid(&fs, pid as i32).unwrap() else {
            panic!("expected v1 metrics on a {:?} host", fs.mode());
        };
        assert!(m.memory.usage.usage > 0, "memory usage: {:?}", m.memory);
        assert!(m.memory.usage.limit > 0);
        assert!(m.memory_oom_control.is_some());
        if mount_of(&fs, "pids").is_some() {
            assert!(m.pids.current >= 1, "pids: {:?}", m.pids);
        }
        if mount_of(&fs, "cpuacct").is_some() {
            assert!(m.cpu.usage.total > 0, "cpu: {:?}", m.cpu);
        }
        assert_eq!(
            stats_for_pid(&fs, pid as i32).unwrap().to_any().type_url,
            V1_METRICS_TYPE_URL
        );

        guard.cleanup();
        assert!(dirs.iter().all(|d| !d.exists()), "cgroups left behind");
    }

    #[test]
    fn real_v1_oom() {
        let Some(fs) = v1_host("real_v1_oom") else {
            return;
        };
        let name = unique_name();
        let mut guard = Guard::default();
        let dir = mount_of(&fs, "memory").unwrap().mount_point.join(&name);
        guard.mkdir(dir.clone());
        let limit = (8u64 << 20).to_string();
        std::fs::write(dir.join("memory.limit_in_bytes"), &limit).unwrap();
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            std::fs::write(dir.join("memory.memsw.limit_in_bytes"), &limit).unwrap();
        }
        // dd's 64 MiB buffer, filled from /dev/zero, cannot fit in 8 MiB.
        let mut child = spawn_in(
            std::slice::from_ref(&dir),
            "dd if=/dev/zero of=/dev/null bs=64M count=1",
        );
        let pid = child.id();
        let stdin = child.stdin.take().unwrap();
        guard.child = Some(child);
        wait_for(
            "the child to join its cgroup",
            Duration::from_secs(10),
            || in_cgroup(pid, "memory", &format!("/{name}")),
        );

        let mut w = OomWatcher::new(fs.clone()).unwrap();
        w.add("oom-victim", pid as i32).unwrap();
        assert!(w.drain().is_empty());
        let mut stdin = stdin;
        writeln!(stdin).unwrap();
        drop(stdin);

        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.is_empty() && Instant::now() < deadline {
            got = drain_within(&mut w, Duration::from_secs(1));
        }
        assert_eq!(got, vec!["oom-victim".to_string()]);
        let status = guard.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "dd should be OOM-killed: {status:?}"
        );

        // The files agree.
        let cg = ProcCgroups {
            v1: [("memory".to_string(), format!("/{name}"))].into(),
            unified: None,
        };
        let m = v1::stats(&fs, &cg).unwrap();
        assert!(
            m.memory_oom_control.oom_kill >= 1,
            "{:?}",
            m.memory_oom_control
        );
        assert_eq!(m.memory.usage.limit, 8 << 20);

        // Removing the cgroup signals the eventfd once more: the watch goes, silently.
        guard.cleanup();
        assert!(!dir.exists(), "cgroup left behind");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !w.is_empty() && Instant::now() < deadline {
            assert_eq!(
                drain_within(&mut w, Duration::from_millis(200)),
                Vec::<String>::new()
            );
        }
        assert!(
            w.is_empty(),
            "watch not dropped after the cgroup was removed"
        );
    }

    /// The same on a cgroup v2 host (skips on legacy and hybrid hosts).
    #[test]
    fn real_v2_stats_and_oom() {
        let test = "real_v2_stats_and_oom";
        if !runnable(test) {
            return;
        }
        let fs = CgroupFs::host().unwrap();
        let Some(mount) = fs
            .unified_mount()
            .filter(|_| fs.mode() == CgroupMode::Unified)
        else {
            eprintln!(
                "skipping {test}: host is not cgroup v2 unified ({:?})",
                fs.mode()
            );
            return;
        };
        let root = mount.mount_point.clone();
        let subtree =
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        if !subtree.split_whitespace().any(|c| c == "memory") {
            eprintln!(
                "skipping {test}: memory controller not enabled in {}",
                root.display()
            );
            return;
        }
        let name = unique_name();
        let mut guard = Guard::default();
        let dir = root.join(&name);
        guard.mkdir(dir.clone());
        std::fs::write(dir.join("memory.max"), (8u64 << 20).to_string()).unwrap();
        if dir.join("memory.swap.max").exists() {
            std::fs::write(dir.join("memory.swap.max"), "0").unwrap();
        }
        let mut child = spawn_in(
            std::slice::from_ref(&dir),
            "dd if=/dev/zero of=/dev/null bs=64M count=1",
        );
        let pid = child.id();
        let mut stdin = child.stdin.take().unwrap();
        guard.child = Some(child);
        wait_for(
            "the child to join its cgroup",
            Duration::from_secs(10),
            || {
                // The v2 line has no controllers: `0::/path`.
                in_cgroup(pid, "", &format!("/{name}"))
            },
        );
        let Stats::V2(m) = stats_for_pid(&fs, pid as i32).unwrap() else {
            panic!("expected v2 metrics");
        };
        assert!(m.pids.current >= 1 || !subtree.contains("pids"));
        assert_eq!(m.memory.usage_limit, 8 << 20);

        let mut w = OomWatcher::new(fs.clone()).unwrap();
        w.add("oom-victim", pid as i32).unwrap();
        writeln!(stdin).unwrap();
        drop(stdin);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.is_empty() && Instant::now() < deadline {
            got = drain_within(&mut w, Duration::from_secs(1));
        }
        assert_eq!(got, vec!["oom-victim".to_string()]);
        guard.cleanup();
        assert!(!dir.exists(), "cgroup left behind");
        w.remove("oom-victim");
        assert!(w.is_empty());
    }
}
