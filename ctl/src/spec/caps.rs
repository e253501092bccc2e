//! Linux capabilities as containerd's `pkg/cap` names them: the kernel's capability numbers
//! to `CAP_` names (up to Linux 5.9), and the effective set of this process, which
//! `--privileged` gives the container (`oci.WithAllCurrentCapabilities`).

use super::SpecError;

/// Capability names by number, as the kernel numbers them (containerd's `capsLatest`).
pub const KNOWN: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the known capabilities set in `bitmap`, lowest bit first (unknown bits are
/// skipped, as `cap.FromBitmap` leaves them out of the names).
pub fn from_bitmap(bitmap: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| bitmap >> bit & 1 == 1)
        .filter_map(|bit| KNOWN.get(bit).map(|n| n.to_string()))
        .collect()
}

/// The `CapEff:` bitmap of a `/proc/<pid>/status` text.
pub fn effective_bitmap(status: &str) -> Result<u64, SpecError> {
    for line in status.lines() {
        if let Some((key, value)) = line.split_once(':') {
            if key.trim() == "CapEff" {
                return u64::from_str_radix(value.trim(), 16)
                    .map_err(|_| SpecError::Unknown(format!("failed to parse line {line:?}")));
            }
        }
    }
    Ok(0)
}

/// This process's effective capabilities (containerd's `cap.Current`).
pub fn current() -> Result<Vec<String>, SpecError> {
    let path = std::path::Path::new("/proc/self/status");
    let status = std::fs::read_to_string(path).map_err(|e| SpecError::io("open", path, &e))?;
    Ok(from_bitmap(effective_bitmap(&status)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_become_names_in_kernel_order() {
        assert_eq!(from_bitmap(0), Vec::<String>::new());
        assert_eq!(from_bitmap(0b1_0000_0001), ["CAP_CHOWN", "CAP_SETPCAP"]);
        assert_eq!(from_bitmap(u64::MAX).len(), KNOWN.len());
        assert_eq!(KNOWN[21], "CAP_SYS_ADMIN");
        assert_eq!(KNOWN[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn status_gives_the_effective_set() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n";
        assert_eq!(effective_bitmap(status).unwrap(), 0xa80425fb);
        assert!(effective_bitmap("CapEff:\tzz\n").is_err());
        assert!(current().is_ok());
    }
}
