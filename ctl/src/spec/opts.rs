//! containerd 1.6's spec options (oci/spec_opts.go, spec_opts_linux.go and
//! contrib/seccomp), as methods of [`Spec`] named after them (`WithEnv` is
//! [`Spec::with_env`]). Each changes the spec exactly as its Go namesake does, creating the
//! sections it needs, so applying them in ctr's order yields the spec ctr stores.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxSeccomp, Mount,
};

use super::defaults::DEFAULT_DEVICE_RULES;
use super::{caps, devices, Spec, SpecError};

/// containerd's `replaceOrAppendEnvValues`: each override replaces the variable of the same
/// name or is appended; a bare `NAME` (no `=`) removes `NAME`.
pub fn replace_or_append_env(defaults: &[String], overrides: &[String]) -> Vec<String> {
    let mut results: Vec<Option<String>> = defaults.iter().cloned().map(Some).collect();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, e) in defaults.iter().enumerate() {
        let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        index.insert(name.to_string(), i);
    }
    for value in overrides {
        match value.split_once('=') {
            None => {
                if let Some(&i) = index.get(value) {
                    results[i] = None;
                }
            }
            Some((name, _)) => match index.get(name) {
                Some(&i) => results[i] = Some(value.clone()),
                None => results.push(Some(value.clone())),
            },
        }
    }
    // Go marks removals with "" and then drops every "" entry.
    results
        .into_iter()
        .flatten()
        .filter(|e| !e.is_empty())
        .collect()
}

/// A device cgroup rule allowing `access` on one device.
fn allow_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    rule
}

/// One bind mount of a host file, read-only.
fn host_file_mount(path: &str) -> Mount {
    let mut m = Mount::default();
    m.set_destination(path.into())
        .set_typ(Some("bind".into()))
        .set_source(Some(path.into()))
        .set_options(Some(vec!["rbind".into(), "ro".into()]));
    m
}

impl Spec {
    /// `WithDefaultUnixDevices`: allows the default character devices (null, random, full,
    /// tty, zero, urandom, console, pts, ptmx).
    pub fn with_default_unix_devices(&mut self) {
        let rules = DEFAULT_DEVICE_RULES
            .iter()
            .map(|(major, minor)| allow_rule(LinuxDeviceType::C, Some(*major), *minor, "rwm"));
        let res = self.resources();
        let mut devices = res.devices().clone().unwrap_or_default();
        devices.extend(rules);
        res.set_devices(Some(devices));
    }

    /// `WithEnv`: replaces or appends `vars` (nothing at all when empty).
    pub fn with_env(&mut self, vars: &[String]) {
        if vars.is_empty() {
            return;
        }
        let process = self.process();
        let current = process.env().clone().unwrap_or_default();
        process.set_env(Some(replace_or_append_env(&current, vars)));
    }

    /// `WithEnvFile`: [`Spec::with_env`] with the lines of the file at `path`.
    pub fn with_env_file(&mut self, path: &Path) -> Result<(), SpecError> {
        let text = std::fs::read(path).map_err(|e| SpecError::io("open", path, &e))?;
        let text = String::from_utf8_lossy(&text);
        let vars: Vec<String> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        // A trailing newline ends the last line; it does not start an empty one.
        let vars = match vars.split_last() {
            Some((last, rest)) if last.is_empty() => rest.to_vec(),
            _ => vars,
        };
        self.with_env(&vars);
        Ok(())
    }

    /// `WithMounts`: appends `mounts`.
    pub fn with_mounts(&mut self, mounts: Vec<Mount>) {
        let mut all = self.oci.mounts().clone().unwrap_or_default();
        all.extend(mounts);
        self.oci.set_mounts(Some(all));
    }

    /// `WithRootFSPath`: the root filesystem is the directory `path`.
    pub fn with_rootfs_path(&mut self, path: &str) {
        self.root().set_path(path.into());
    }

    /// `WithRootFSReadonly`.
    pub fn with_rootfs_readonly(&mut self) {
        self.root().set_readonly(Some(true));
    }

    /// `WithProcessArgs`: the process runs `args`.
    pub fn with_process_args(&mut self, args: &[String]) {
        let process = self.process();
        process.set_args((!args.is_empty()).then(|| args.to_vec()));
        process.set_command_line(None);
    }

    /// `WithProcessCwd`.
    pub fn with_process_cwd(&mut self, cwd: &str) {
        self.process().set_cwd(cwd.into());
    }

    /// `WithTTY`: a terminal, and `TERM=xterm` appended to the environment.
    pub fn with_tty(&mut self) {
        let has_linux = self.oci.linux().is_some();
        let process = self.process();
        process.set_terminal(Some(true));
        if has_linux {
            let mut env = process.env().clone().unwrap_or_default();
            env.push("TERM=xterm".into());
            process.set_env(Some(env));
        }
    }

    /// `WithHostname`.
    pub fn with_hostname(&mut self, name: &str) {
        self.oci
            .set_hostname((!name.is_empty()).then(|| name.to_string()));
    }

    /// `WithPrivileged`: every capability this process has, no masked or read-only paths,
    /// writable sysfs and cgroupfs, no SELinux label, AppArmor profile or seccomp filter.
    pub fn with_privileged(&mut self) -> Result<(), SpecError> {
        self.with_capabilities(caps::current()?);
        let linux = self.linux();
        linux.set_masked_paths(None).set_readonly_paths(None);
        if let Some(mounts) = self.oci.mounts_mut() {
            for m in mounts.iter_mut() {
                let writable = matches!(m.typ().as_deref(), Some("sysfs") | Some("cgroup"));
                if let (true, Some(options)) = (writable, m.options().clone()) {
                    let options = options
                        .into_iter()
                        .map(|o| if o == "ro" { "rw".to_string() } else { o })
                        .collect();
                    m.set_options(Some(options));
                }
            }
        }
        let process = self.process();
        process.set_selinux_label(None).set_apparmor_profile(None);
        self.linux().set_seccomp(None);
        Ok(())
    }

    /// `WithCapabilities`: the bounding, effective and permitted sets are `caps`.
    pub fn with_capabilities(&mut self, caps: Vec<String>) {
        let sets = self.capabilities_mut();
        let list = (!caps.is_empty()).then_some(caps);
        sets.bounding = list.clone();
        sets.effective = list.clone();
        sets.permitted = list;
    }

    /// `WithAddedCapabilities`: each of `caps` appended to the bounding, effective and
    /// permitted sets that lack it.
    pub fn with_added_capabilities(&mut self, caps: &[String]) {
        let sets = self.capabilities_mut();
        for c in caps {
            for set in [&mut sets.bounding, &mut sets.effective, &mut sets.permitted] {
                let list = set.get_or_insert_with(Vec::new);
                if !list.contains(c) {
                    list.push(c.clone());
                }
            }
        }
    }

    /// `WithDroppedCapabilities`: each of `caps` removed from the bounding, effective and
    /// permitted sets.
    pub fn with_dropped_capabilities(&mut self, caps: &[String]) {
        let sets = self.capabilities_mut();
        for c in caps {
            for set in [&mut sets.bounding, &mut sets.effective, &mut sets.permitted] {
                // Go rebuilds the list, so one with nothing left becomes nil.
                let kept: Vec<String> = set
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| x != c)
                    .collect();
                *set = (!kept.is_empty()).then_some(kept);
            }
        }
    }

    /// `WithAllDevicesAllowed`: one rule allowing every device.
    pub fn with_all_devices_allowed(&mut self) {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true).set_access(Some("rwm".into()));
        self.resources().set_devices(Some(vec![rule]));
    }

    /// `WithHostDevices`: every device node of the host's `/dev`.
    pub fn with_host_devices(&mut self) -> Result<(), SpecError> {
        let host = devices::host_devices()?;
        let linux = self.linux();
        let mut all = linux.devices().clone().unwrap_or_default();
        all.extend(host);
        linux.set_devices(Some(all));
        Ok(())
    }

    /// `WithDevices(path, "", permissions)`: the node at `path`, or every node under it, each
    /// with a cgroup rule allowing `permissions`.
    pub fn with_devices(&mut self, path: &Path, permissions: &str) -> Result<(), SpecError> {
        let found = devices::devices(path)?;
        let rules: Vec<LinuxDeviceCgroup> = found
            .iter()
            .map(|d| allow_rule(d.typ(), Some(d.major()), Some(d.minor()), permissions))
            .collect();
        let linux = self.linux();
        let mut all = linux.devices().clone().unwrap_or_default();
        all.extend(found);
        linux.set_devices(Some(all));
        let res = self.resources();
        let mut all = res.devices().clone().unwrap_or_default();
        all.extend(rules);
        res.set_devices(Some(all));
        Ok(())
    }

    /// `WithHostNamespace`: the container shares the host's namespace of type `ns` (its
    /// entry removed).
    pub fn with_host_namespace(&mut self, ns: LinuxNamespaceType) {
        let linux = self.linux();
        if let Some(list) = linux.namespaces_mut() {
            if let Some(i) = list.iter().position(|n| n.typ() == ns) {
                list.remove(i);
            }
        }
    }

    /// `WithLinuxNamespace`: `ns` replaces the namespace of its type, or is appended.
    pub fn with_linux_namespace(&mut self, ns: LinuxNamespace) {
        let linux = self.linux();
        let mut list = linux.namespaces().clone().unwrap_or_default();
        match list.iter().position(|n| n.typ() == ns.typ()) {
            Some(i) => list[i] = ns,
            None => list.push(ns),
        }
        linux.set_namespaces(Some(list));
    }

    /// `WithHostHostsFile`: the host's `/etc/hosts`, bound read-only.
    pub fn with_host_hosts_file(&mut self) {
        self.with_mounts(vec![host_file_mount("/etc/hosts")]);
    }

    /// `WithHostResolvconf`: the host's `/etc/resolv.conf`, bound read-only.
    pub fn with_host_resolvconf(&mut self) {
        self.with_mounts(vec![host_file_mount("/etc/resolv.conf")]);
    }

    /// `WithAnnotations`: sets each annotation.
    pub fn with_annotations(&mut self, annotations: &BTreeMap<String, String>) {
        let mut all = self.oci.annotations().clone().unwrap_or_default();
        all.extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.oci.set_annotations(Some(all));
    }

    /// `WithNewPrivileges`: turns `noNewPrivileges` off.
    pub fn with_new_privileges(&mut self) {
        self.process().set_no_new_privileges(None);
    }

    /// `WithCgroup`: the cgroups path (`""` leaves cgroups to the runtime's default).
    pub fn with_cgroup(&mut self, path: &str) {
        self.linux()
            .set_cgroups_path((!path.is_empty()).then(|| path.into()));
    }

    fn cpu(&mut self) -> &mut LinuxCpu {
        self.resources()
            .cpu_mut()
            .get_or_insert_with(Default::default)
    }

    /// `WithCPUCFS`: CFS quota and period.
    pub fn with_cpu_cfs(&mut self, quota: i64, period: u64) {
        self.cpu().set_quota(Some(quota)).set_period(Some(period));
    }

    /// `WithCPUShares`.
    pub fn with_cpu_shares(&mut self, shares: u64) {
        self.cpu().set_shares(Some(shares));
    }

    /// `WithMemoryLimit`: the memory limit in bytes (set only with a Linux section, as in
    /// containerd; the Windows half of the option has no place in a Linux spec).
    pub fn with_memory_limit(&mut self, limit: u64) {
        if self.oci.linux().is_none() {
            return;
        }
        let memory = self
            .resources()
            .memory_mut()
            .get_or_insert_with(LinuxMemory::default);
        memory.set_limit(Some(limit as i64));
    }

    /// The rootfs mount propagation (`shared`, `slave`, `private`, ...), as ctr sets it.
    pub fn with_rootfs_propagation(&mut self, propagation: &str) {
        self.linux()
            .set_rootfs_propagation((!propagation.is_empty()).then(|| propagation.into()));
    }

    /// containerd's `seccomp.WithProfile`: the seccomp filter read from the JSON file at
    /// `path`.
    pub fn with_seccomp_profile(&mut self, path: &Path) -> Result<(), SpecError> {
        let text = std::fs::read(path).map_err(|e| {
            SpecError::io("open", path, &e).context(&format!(
                "cannot load seccomp profile {:?}",
                path.display().to_string()
            ))
        })?;
        let decode = |e: String| {
            SpecError::InvalidArgument(format!(
                "decoding seccomp profile failed {:?}: {e}",
                path.display().to_string()
            ))
        };
        let seccomp: LinuxSeccomp =
            serde_json::from_slice(&text).map_err(|e| decode(e.to_string()))?;
        self.linux().set_seccomp(Some(seccomp));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_replaces_appends_and_unsets() {
        let got = replace_or_append_env(
            &strings(&["PATH=/bin", "A=1", "B=2"]),
            &strings(&["A=3", "C=4", "B", "D", "PATH=/usr/bin", "E="]),
        );
        assert_eq!(got, strings(&["PATH=/usr/bin", "A=3", "C=4", "E="]));
    }

    #[test]
    fn env_file_lines_become_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "A=1\r\nB=2\n").unwrap();
        let mut spec = Spec::default_unix("n", "c").unwrap();
        spec.with_env_file(&file).unwrap();
        spec.with_env(&strings(&["A=0"]));
        spec.with_tty();
        assert_eq!(
            spec.to_json().unwrap()["process"]["env"],
            json!(["A=0", "B=2", "TERM=xterm"])
        );
        let e = spec.with_env_file(&dir.path().join("nope")).unwrap_err();
        assert!(
            e.to_string().ends_with("/nope: no such file or directory"),
            "{e}"
        );
    }

    #[test]
    fn capabilities_add_and_drop_in_order() {
        let mut spec = Spec::default_unix("n", "c").unwrap();
        spec.with_added_capabilities(&strings(&["CAP_SYS_ADMIN", "CAP_KILL"]));
        spec.with_dropped_capabilities(&strings(&["CAP_CHOWN"]));
        let v = spec.to_json().unwrap();
        let bounding = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.first().unwrap(), "CAP_DAC_OVERRIDE");
        assert_eq!(bounding.last().unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(bounding.len(), 14);
        assert_eq!(
            v["process"]["capabilities"]["permitted"],
            v["process"]["capabilities"]["bounding"]
        );
    }

    #[test]
    fn host_network_and_resources() {
        let mut spec = Spec::default_unix("n", "c").unwrap();
        spec.with_host_namespace(LinuxNamespaceType::Network);
        spec.with_host_hosts_file();
        spec.with_cpu_cfs(150_000, 100_000);
        spec.with_cpu_shares(512);
        spec.with_memory_limit(1 << 20);
        spec.with_cgroup("");
        spec.with_new_privileges();
        let v = spec.to_json().unwrap();
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 4);
        assert_eq!(
            v["mounts"][7],
            json!({"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts",
                "options": ["rbind", "ro"]})
        );
        assert_eq!(
            v["linux"]["resources"]["cpu"],
            json!({"shares": 512, "quota": 150000, "period": 100000})
        );
        assert_eq!(v["linux"]["resources"]["memory"], json!({"limit": 1048576}));
        assert!(v["linux"].get("cgroupsPath").is_none());
        assert!(v["process"].get("noNewPrivileges").is_none());
    }

    #[test]
    fn privileged_opens_everything() {
        let mut spec = Spec::default_unix("n", "c").unwrap();
        spec.with_privileged().unwrap();
        spec.with_all_devices_allowed();
        let v = spec.to_json().unwrap();
        assert!(v["linux"].get("maskedPaths").is_none());
        assert!(v["linux"].get("readonlyPaths").is_none());
        assert_eq!(v["mounts"][5]["options"][3], "rw");
        assert_eq!(
            v["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
    }

    #[test]
    fn seccomp_profiles_load_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(
            &file,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let mut spec = Spec::default_unix("n", "c").unwrap();
        spec.with_seccomp_profile(&file).unwrap();
        assert_eq!(
            spec.to_json().unwrap()["linux"]["seccomp"],
            json!({"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
        );
        let e = spec
            .with_seccomp_profile(&dir.path().join("x"))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("cannot load seccomp profile"),
            "{e}"
        );
    }
}
