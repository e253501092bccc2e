//! The `delete` action: containerd runs it after every task delete and for shims that died.
//! It force-deletes the runc container, unmounts the rootfs and answers a `DeleteResponse`.
//! Idempotent: a container that is already gone is no error.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use corral_protocols::runtime::v2::task::shim::DeleteResponse;
use protobuf::MessageField;

use crate::events::timestamp;
use crate::flags::Flags;
use crate::options::RuncOptions;
use crate::runc::{self, Runc};
use crate::runner::DirectRunner;

/// Exit status containerd reports for a task whose shim had to be cleaned up (SIGKILL).
pub const KILLED: u32 = 128 + 9;

/// Cleans up the container of `flags.id` in `bundle`.
pub fn delete(flags: &Flags, bundle: &Path) -> io::Result<DeleteResponse> {
    let options = RuncOptions::read_from_bundle(bundle)?;
    let root = crate::address::runc_root(&flags.address, &options.root, &flags.namespace)?;
    let runc = Runc::new(runc::Config {
        binary: options.binary().to_string(),
        root,
        log: bundle.join("log.json"),
        systemd_cgroup: options.systemd_cgroup,
        criu: None,
        debug: flags.debug,
    })
    .map_err(|e| io::Error::other(e.to_string()))?;
    if let Err(e) = runc.delete(&DirectRunner, &flags.id, true) {
        if !e.is_not_found() {
            log::warn!("deleting runc container {}: {e}", flags.id);
        }
    }
    crate::mount::unmount_all(&bundle.join("rootfs"))?;
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let mut resp = DeleteResponse::new();
    resp.pid = pid;
    resp.exit_status = KILLED;
    resp.exited_at = MessageField::some(timestamp(SystemTime::now()));
    Ok(resp)
}
