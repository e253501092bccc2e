//! What `tasks list`, `ps` and `metrics` print, laid out as ctr lays it out (Go's
//! `tabwriter`, `%v` of Go values, `json.MarshalIndent` with two spaces).

use corral_protocols::cgroups::stats::v1::metrics::Metrics as MetricsV1;
use corral_protocols::cgroups::v2::stats::metrics::Metrics as MetricsV2;
use corral_protocols::runtime::v2::runc::options::oci::ProcessDetails;
use corral_protocols::types::metrics::Metric;
use corral_protocols::types::task::task::{Process, ProcessInfo, Status as TaskStatus};
use corral_protocols::TypeUrl;
use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::commands::format::{go_time_string, message_json, tabwrite};
use crate::commands::{CtlError, CtlResult};

/// A task status as Go's generated `Status.String()` writes it.
fn status_name(p: &Process) -> String {
    match p.status.enum_value() {
        Ok(TaskStatus::UNKNOWN) => "UNKNOWN".into(),
        Ok(TaskStatus::CREATED) => "CREATED".into(),
        Ok(TaskStatus::RUNNING) => "RUNNING".into(),
        Ok(TaskStatus::STOPPED) => "STOPPED".into(),
        Ok(TaskStatus::PAUSED) => "PAUSED".into(),
        Ok(TaskStatus::PAUSING) => "PAUSING".into(),
        Err(n) => n.to_string(),
    }
}

/// `tasks list`: the ids, or ctr's TASK PID STATUS table.
pub fn list(tasks: &[Process], quiet: bool) -> String {
    if quiet {
        return tasks.iter().map(|t| format!("{}\n", t.id)).collect();
    }
    let mut text = String::from("TASK\tPID\tSTATUS\t\n");
    for t in tasks {
        text.push_str(&format!("{}\t{}\t{}\n", t.id, t.pid, status_name(t)));
    }
    tabwrite(&text, 4, 4)
}

/// The short name of an `Any`'s type: what follows the last `/`.
fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

/// typeurl's error for a type it does not know.
fn unknown_type(any: &Any) -> CtlError {
    CtlError::new(format!("type with url {}: not found", any.type_url))
}

/// One process's info as ctr prints it with `%+v`: `-` without any, runc's
/// `ProcessDetails` through its generated `String()`.
fn process_info(info: Option<&Any>) -> CtlResult<String> {
    let Some(any) = info else {
        return Ok("-".into());
    };
    if type_name(any) != ProcessDetails::TYPE_URL {
        return Err(unknown_type(any));
    }
    let details = ProcessDetails::parse_from_bytes(&any.value)
        .map_err(|e| CtlError::new(format!("decoding {}: {e}", any.type_url)))?;
    Ok(format!(
        "&ProcessDetails{{ExecID:{},XXX_unrecognized:[],}}",
        details.exec_id
    ))
}

/// `tasks ps`: ctr's PID INFO table.
pub fn ps(processes: &[ProcessInfo]) -> CtlResult<String> {
    let mut text = String::from("PID\tINFO\n");
    for p in processes {
        let info = process_info(p.info.as_ref())?;
        text.push_str(&format!("{}\t{}\n", p.pid, info));
    }
    Ok(tabwrite(&text, 1, 4))
}

/// A metric's data, decoded by its type.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsData {
    /// cgroups v1 (`io.containerd.cgroups.v1.Metrics`).
    V1(MetricsV1),
    /// cgroups v2 (`io.containerd.cgroups.v2.Metrics`).
    V2(MetricsV2),
}

impl MetricsData {
    /// Decodes `metric.data`; a type other than the cgroup metrics is an error, as in ctr.
    pub fn decode(metric: &Metric) -> CtlResult<MetricsData> {
        let Some(any) = metric.data.as_ref() else {
            return Err(CtlError::new(
                "cannot convert metric data to cgroups.Metrics or windows.Statistics",
            ));
        };
        let bad = |e: protobuf::Error| CtlError::new(format!("decoding {}: {e}", any.type_url));
        match type_name(any) {
            MetricsV1::TYPE_URL => MetricsV1::parse_from_bytes(&any.value)
                .map(MetricsData::V1)
                .map_err(bad),
            MetricsV2::TYPE_URL => MetricsV2::parse_from_bytes(&any.value)
                .map(MetricsData::V2)
                .map_err(bad),
            _ => Err(unknown_type(any)),
        }
    }

    /// `--format json`: the Go struct through `json.MarshalIndent(v, "", "  ")`.
    pub fn json(&self) -> String {
        let json = match self {
            MetricsData::V1(m) => message_json(m),
            MetricsData::V2(m) => message_json(m),
        };
        // `pretty` indents by four spaces; JSON strings hold no raw newline, so every
        // line's leading spaces are indentation alone.
        json.pretty()
            .lines()
            .map(|line| {
                let body = line.trim_start_matches(' ');
                let depth = (line.len() - body.len()) / 4;
                format!("{}{body}", "  ".repeat(depth))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Go's `%v` of a `[]uint64`.
fn go_list(values: &[u64]) -> String {
    let items: Vec<String> = values.iter().map(u64::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// `tasks metrics`: ctr's ID TIMESTAMP header, then METRIC VALUE rows for the cgroup
/// version at hand.
pub fn metrics_table(metric: &Metric, data: &MetricsData) -> String {
    let mut text = String::from("ID\tTIMESTAMP\t\n");
    text.push_str(&format!(
        "{}\t{}\t\n\n",
        metric.id,
        go_time_string(metric.timestamp.as_ref())
    ));
    text.push_str("METRIC\tVALUE\t\n");
    let mut row = |name: &str, value: String| text.push_str(&format!("{name}\t{value}\t\n"));
    match data {
        MetricsData::V1(m) => {
            if let Some(mem) = m.memory.as_ref() {
                let usage = mem.usage.as_ref();
                row(
                    "memory.usage_in_bytes",
                    usage.map_or(0, |u| u.usage).to_string(),
                );
                row(
                    "memory.limit_in_bytes",
                    usage.map_or(0, |u| u.limit).to_string(),
                );
                row("memory.stat.cache", mem.total_cache.to_string());
            }
            if let Some(cpu) = m.cpu.as_ref() {
                let usage = cpu.usage.as_ref();
                row("cpuacct.usage", usage.map_or(0, |u| u.total).to_string());
                row(
                    "cpuacct.usage_percpu",
                    go_list(usage.map(|u| u.per_cpu.as_slice()).unwrap_or_default()),
                );
            }
            if let Some(pids) = m.pids.as_ref() {
                row("pids.current", pids.current.to_string());
                row("pids.limit", pids.limit.to_string());
            }
        }
        MetricsData::V2(m) => {
            if let Some(pids) = m.pids.as_ref() {
                row("pids.current", pids.current.to_string());
                row("pids.limit", pids.limit.to_string());
            }
            if let Some(cpu) = m.cpu.as_ref() {
                row("cpu.usage_usec", cpu.usage_usec.to_string());
                row("cpu.user_usec", cpu.user_usec.to_string());
                row("cpu.system_usec", cpu.system_usec.to_string());
                row("cpu.nr_periods", cpu.nr_periods.to_string());
                row("cpu.nr_throttled", cpu.nr_throttled.to_string());
                row("cpu.throttled_usec", cpu.throttled_usec.to_string());
            }
            if let Some(mem) = m.memory.as_ref() {
                row("memory.usage", mem.usage.to_string());
                row("memory.usage_limit", mem.usage_limit.to_string());
                row("memory.swap_usage", mem.swap_usage.to_string());
                row("memory.swap_limit", mem.swap_limit.to_string());
            }
        }
    }
    tabwrite(&text, 1, 4)
}
