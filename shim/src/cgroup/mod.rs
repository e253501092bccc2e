//! cgroup v1 and v2: metrics for `Task.Stats`, and OOM notifications.
//!
//! * [`CgroupFs`] finds cgroups: the cgroup mounts from `mountinfo`, the host's
//!   [`CgroupMode`], and a process's directories from `/proc/<pid>/cgroup`. All paths are read
//!   under a root directory (`/` for [`CgroupFs::host`]) so tests can fake a host.
//! * [`stats_for_pid`] reads a process's cgroup metrics into containerd's protos, cgroup v1 on
//!   legacy and hybrid hosts and v2 on unified ones (as containerd's runc shim decides), and
//!   [`Stats::to_any`] packs them the way containerd's `Task.Stats` answers.
//! * [`OomWatcher`] turns OOM kills into container ids for the shim's event loop.
//!
//! File-to-field mappings follow containerd's cgroups library v1.0.4 (the version containerd
//! 1.6 uses); see [`v1`] and [`v2`] for the details and the few deliberate differences.

mod error;
pub mod fs;
mod oom;
mod parse;
mod rdma;
pub mod v1;
pub mod v2;

#[cfg(test)]
mod tests;

use corral_protocols::cgroups::stats::v1::metrics::Metrics as V1Metrics;
use corral_protocols::cgroups::v2::stats::metrics::Metrics as V2Metrics;
use protobuf::well_known_types::any::Any;
use protobuf::Message;

pub use error::CgroupError;
pub use fs::{CgroupFs, CgroupMode, CgroupMount, CgroupVersion, ProcCgroups};
pub use oom::OomWatcher;

/// Type URL of cgroup v1 metrics in `StatsResponse.stats`: containerd's `typeurl.MarshalAny`
/// falls back to the gogo proto registry's full name, without any URL prefix.
pub const V1_METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
/// Type URL of cgroup v2 metrics in `StatsResponse.stats`.
pub const V2_METRICS_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// A process's cgroup metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Stats {
    /// From cgroup v1 controllers (legacy and hybrid hosts).
    V1(V1Metrics),
    /// From the cgroup v2 hierarchy (unified hosts).
    V2(V2Metrics),
}

impl Stats {
    /// The type URL the metrics travel under.
    pub fn type_url(&self) -> &'static str {
        match self {
            Stats::V1(_) => V1_METRICS_TYPE_URL,
            Stats::V2(_) => V2_METRICS_TYPE_URL,
        }
    }

    /// The metrics as `StatsResponse.stats` carries them. Encoding a proto3 message only
    /// fails beyond 2 GiB; should it ever fail, the error is logged and the `Any` carries
    /// empty metrics (see [`try_to_any`](Self::try_to_any)).
    pub fn to_any(&self) -> Any {
        self.try_to_any().unwrap_or_else(|e| {
            log::error!("{e}");
            Any {
                type_url: self.type_url().to_string(),
                ..Default::default()
            }
        })
    }

    /// [`to_any`](Self::to_any), with the encoding error.
    pub fn try_to_any(&self) -> Result<Any, CgroupError> {
        let value = match self {
            Stats::V1(m) => m.write_to_bytes(),
            Stats::V2(m) => m.write_to_bytes(),
        }
        .map_err(|source| CgroupError::Encode {
            what: self.type_url(),
            source,
        })?;
        Ok(Any {
            type_url: self.type_url().to_string(),
            value,
            ..Default::default()
        })
    }
}

/// The cgroup metrics of process `pid` (a container's init): v1 on legacy and hybrid hosts,
/// v2 on unified ones. Missing controllers or files leave fields unset; malformed files are
/// errors; a gone process or cgroup is a not-found error.
pub fn stats_for_pid(fs: &CgroupFs, pid: i32) -> Result<Stats, CgroupError> {
    if fs.mode() == CgroupMode::Unavailable {
        return Err(CgroupError::NotMounted {
            what: "cgroup file system".into(),
        });
    }
    let cgroups = fs.proc_cgroups(pid)?;
    match fs.mode() {
        CgroupMode::Unified => {
            let dir = fs.v2_dir(&cgroups).ok_or_else(|| CgroupError::NotMounted {
                what: format!("cgroup v2 group of process {pid}"),
            })?;
            v2::stats(&dir).map(Stats::V2)
        }
        _ => v1::stats(fs, &cgroups).map(Stats::V1),
    }
}
