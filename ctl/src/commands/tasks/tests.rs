//! Tables, specs and argument checks of the task commands, without a daemon.

use corral_protocols::cgroups::stats::v1::metrics as v1;
use corral_protocols::cgroups::v2::stats::metrics as v2;
use corral_protocols::runtime::v2::runc::options::oci::ProcessDetails;
use corral_protocols::types::metrics::Metric;
use corral_protocols::types::task::task::{Process, ProcessInfo, Status as TaskStatus};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{EnumOrUnknown, MessageField};

use super::exec::exec_process;
use super::output::{self, MetricsData};
use super::*;

fn task(id: &str, pid: u32, status: TaskStatus) -> Process {
    Process {
        id: id.into(),
        pid,
        status: EnumOrUnknown::new(status),
        ..Default::default()
    }
}

#[test]
fn list_prints_ctrs_table() {
    let tasks = [
        task("web", 4242, TaskStatus::RUNNING),
        task("job-with-a-long-name", 17, TaskStatus::STOPPED),
        task("paused", 9, TaskStatus::PAUSED),
    ];
    assert_eq!(
        output::list(&tasks, false),
        "TASK                    PID     STATUS    \n\
         web                     4242    RUNNING\n\
         job-with-a-long-name    17      STOPPED\n\
         paused                  9       PAUSED\n"
    );
    assert_eq!(
        output::list(&tasks, true),
        "web\njob-with-a-long-name\npaused\n"
    );
    assert_eq!(output::list(&[], false), "TASK    PID    STATUS    \n");
    let mut odd = task("x", 1, TaskStatus::CREATED);
    odd.status = EnumOrUnknown::from_i32(9);
    assert_eq!(
        output::list(&[odd], false),
        "TASK    PID    STATUS    \nx       1      9\n"
    );
}

#[test]
fn ps_prints_runcs_process_details_as_go_does() {
    let details = ProcessDetails {
        exec_id: "sh1".into(),
        ..Default::default()
    };
    let procs = [
        ProcessInfo {
            pid: 100,
            info: MessageField::none(),
            ..Default::default()
        },
        ProcessInfo {
            pid: 20031,
            info: MessageField::some(corral_protocols::pack(&details).unwrap()),
            ..Default::default()
        },
    ];
    assert_eq!(
        output::ps(&procs).unwrap(),
        "PID      INFO\n100      -\n20031    &ProcessDetails{ExecID:sh1,XXX_unrecognized:[],}\n"
    );
    let odd = ProcessInfo {
        pid: 1,
        info: MessageField::some(Any {
            type_url: "example.com/Other".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        output::ps(&[odd]).unwrap_err().to_string(),
        "type with url example.com/Other: not found"
    );
}

fn sample(data: Any) -> Metric {
    Metric {
        id: "web".into(),
        timestamp: MessageField::some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000,
            ..Default::default()
        }),
        data: MessageField::some(data),
        ..Default::default()
    }
}

#[test]
fn cgroup_v2_metrics_print_as_ctr_prints_them() {
    let m = v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: 3,
            limit: 100,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: 1500,
            user_usec: 1000,
            system_usec: 500,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            usage: 4096,
            usage_limit: 1 << 20,
            ..Default::default()
        }),
        ..Default::default()
    };
    let metric = sample(corral_protocols::pack(&m).unwrap());
    let data = MetricsData::decode(&metric).unwrap();
    assert_eq!(data, MetricsData::V2(m));
    assert_eq!(
        output::metrics_table(&metric, &data),
        "ID     TIMESTAMP                               \n\
         web    2023-11-14 22:13:20.000005 +0000 UTC    \n\
         \n\
         METRIC                VALUE      \n\
         pids.current          3          \n\
         pids.limit            100        \n\
         cpu.usage_usec        1500       \n\
         cpu.user_usec         1000       \n\
         cpu.system_usec       500        \n\
         cpu.nr_periods        0          \n\
         cpu.nr_throttled      0          \n\
         cpu.throttled_usec    0          \n\
         memory.usage          4096       \n\
         memory.usage_limit    1048576    \n\
         memory.swap_usage     0          \n\
         memory.swap_limit     0          \n"
    );
    assert_eq!(
        data.json(),
        "{\n  \"pids\": {\n    \"current\": 3,\n    \"limit\": 100\n  },\n  \"cpu\": {\n    \"usage_usec\": 1500,\n    \"user_usec\": 1000,\n    \"system_usec\": 500\n  },\n  \"memory\": {\n    \"usage\": 4096,\n    \"usage_limit\": 1048576\n  }\n}"
    );
}

#[test]
fn cgroup_v1_metrics_print_as_ctr_prints_them() {
    let m = v1::Metrics {
        memory: MessageField::some(v1::MemoryStat {
            total_cache: 7,
            usage: MessageField::some(v1::MemoryEntry {
                usage: 8192,
                limit: 9000,
                ..Default::default()
            }),
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: 99,
                per_cpu: vec![40, 59],
                ..Default::default()
            }),
            ..Default::default()
        }),
        pids: MessageField::some(v1::PidsStat {
            current: 1,
            limit: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let metric = sample(corral_protocols::pack(&m).unwrap());
    let data = MetricsData::decode(&metric).unwrap();
    let table = output::metrics_table(&metric, &data);
    let rows: Vec<&str> = table.lines().skip(3).map(str::trim_end).collect();
    assert_eq!(
        rows,
        [
            "METRIC                   VALUE",
            "memory.usage_in_bytes    8192",
            "memory.limit_in_bytes    9000",
            "memory.stat.cache        7",
            "cpuacct.usage            99",
            "cpuacct.usage_percpu     [40 59]",
            "pids.current             1",
            "pids.limit               0",
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&data.json()).unwrap();
    assert_eq!(json["cpu"]["usage"]["per_cpu"], serde_json::json!([40, 59]));
    assert_eq!(json["memory"]["usage"]["usage"], 8192);
    assert!(json["pids"].get("limit").is_none(), "omitempty, as Go");
    let other = sample(Any {
        type_url: "example.com/X".into(),
        ..Default::default()
    });
    assert_eq!(
        MetricsData::decode(&other).unwrap_err().to_string(),
        "type with url example.com/X: not found"
    );
}

#[test]
fn an_exec_spec_is_the_containers_process_changed_as_ctr_changes_it() {
    let container_spec = br#"{
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sleep", "100"],
            "env": ["PATH=/bin", "A=1"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "/r"}
    }"#;
    let mut spec = crate::spec::Spec::from_json(container_spec).unwrap();
    let args = vec!["sh".to_string(), "-c".to_string(), "id".to_string()];
    let size = crate::cio::WinSize {
        width: 100,
        height: 40,
    };
    let bytes = exec_process(&mut spec, &args, false, Some("/tmp"), Some(size)).unwrap();
    let p: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(p["args"], serde_json::json!(["sh", "-c", "id"]));
    assert!(p.get("terminal").is_none(), "false is left out, as Go does");
    assert_eq!(p["cwd"], "/tmp");
    assert_eq!(p["env"], serde_json::json!(["PATH=/bin", "A=1"]));
    assert_eq!(p["noNewPrivileges"], true);
    assert_eq!(p["user"]["uid"], 0);
    assert!(p.get("consoleSize").is_none(), "no terminal, no size");
    let bytes = exec_process(&mut spec, &[], true, None, Some(size)).unwrap();
    let p: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(p["terminal"], true);
    assert_eq!(
        p["consoleSize"],
        serde_json::json!({"height": 40, "width": 100})
    );
    assert!(p.get("args").is_none());
    assert_eq!(p["cwd"], "/tmp");
}

#[test]
fn pid_files_are_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.pid");
    write_pid_file(path.to_str().unwrap(), 4242).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242");
    assert!(!dir.path().join(".task.pid").exists());
    // A leftover temporary file is not overwritten: ctr fails the same way.
    std::fs::write(dir.path().join(".task.pid"), "x").unwrap();
    assert!(write_pid_file(path.to_str().unwrap(), 1)
        .unwrap_err()
        .to_string()
        .contains(".task.pid"));
}

#[test]
fn ids_are_required_with_ctrs_words() {
    assert_eq!(
        required_id(None).unwrap_err().to_string(),
        "container id must be provided"
    );
    assert_eq!(required_id(Some("web".into())).unwrap(), "web");
}

#[test]
fn status_words_are_containerds() {
    use super::process::status_word;
    assert_eq!(status_word(TaskStatus::RUNNING), "running");
    assert_eq!(status_word(TaskStatus::PAUSING), "pausing");
}
