//! corrald's Snapshots service against containerd 1.6: snapshots prepared, committed and
//! viewed over corrald's API are, once corrald has stopped, listed by a containerd on the same
//! root with the same parents and kinds, and `ctr snapshots mounts` gives the mounts corrald
//! returned.

use std::collections::HashMap;
use std::time::Duration;

use corral_protocols::rpc::CallContext;
use corral_protocols::services::leases::v1::leases::CreateRequest;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_protocols::services::snapshots::v1::snapshots::{
    CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, ViewSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::types::mount::Mount;
use corral_tests::harness::containerd::{ContainerdOptions, PrivateContainerd, NO_GC};
use corral_tests::harness::{require_root, require_tool, Corrald, TempRoot};

const DEADLINE: Duration = Duration::from_secs(10);
const NS: &str = "corral-snap";
const SNAPSHOTTERS: &[&str] = &["overlayfs", "native"];

/// What corrald answered for one snapshotter.
struct Made {
    snapshotter: &'static str,
    work: Vec<Mount>,
    ro: Vec<Mount>,
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// base (committed), work (active on base) and ro (a view of base), under a lease so that
/// corrald's collector keeps them.
fn build(c: &SnapshotsClient, ctx: &CallContext, snapshotter: &'static str) -> Made {
    c.prepare(
        ctx,
        &PrepareSnapshotRequest {
            snapshotter: snapshotter.into(),
            key: "base-work".into(),
            ..Default::default()
        },
    )
    .unwrap();
    c.commit(
        ctx,
        &CommitSnapshotRequest {
            snapshotter: snapshotter.into(),
            name: "base".into(),
            key: "base-work".into(),
            labels: labels(&[("made-by", "corrald")]),
            ..Default::default()
        },
    )
    .unwrap();
    let work = c
        .prepare(
            ctx,
            &PrepareSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: "work".into(),
                parent: "base".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    let ro = c
        .view(
            ctx,
            &ViewSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: "ro".into(),
                parent: "base".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    let again = c
        .mounts(
            ctx,
            &MountsRequest {
                snapshotter: snapshotter.into(),
                key: "work".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    assert_eq!(again, work, "{snapshotter}");
    Made {
        snapshotter,
        work,
        ro,
    }
}

/// `ctr snapshots mounts` prints `mount -t <type> <source> <target> -o <options>`.
fn parse_ctr_mount(line: &str) -> Mount {
    let t: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (t.len(), t.first(), t.get(1), t.get(5)),
        (7, Some(&"mount"), Some(&"-t"), Some(&"-o")),
        "{line}"
    );
    Mount {
        type_: t[2].to_string(),
        source: t[3].to_string(),
        options: t[6].split(',').map(str::to_string).collect(),
        ..Default::default()
    }
}

/// Rows of a `ctr` table, split on whitespace, header included.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn containerd_lists_and_mounts_what_corrald_prepared() {
    if !require_root("corrald chowns its socket and a private containerd needs root") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let temp = TempRoot::new().unwrap();
    let d = Corrald::start(&temp, "corrald.log", "").unwrap();
    let made: Vec<Made> = {
        let client = d.client().unwrap();
        let ctx = CallContext::new().with_namespace(NS).with_lease("interop");
        LeasesClient::new(client.clone())
            .create(
                &CallContext::new().with_namespace(NS),
                &CreateRequest {
                    id: "interop".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let c = SnapshotsClient::new(client);
        SNAPSHOTTERS.iter().map(|sn| build(&c, &ctx, sn)).collect()
    };
    // A clean exit within the deadline (its bolt locks released).
    d.stop_ok(DEADLINE);

    let c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        extra_config: NO_GC.into(),
        root: Some(temp.root().to_path_buf()),
        ..ContainerdOptions::default()
    })
    .unwrap();
    for m in &made {
        let name = m.snapshotter;
        let snap = |args: &[&str]| -> String {
            let mut all = vec!["-n", NS, "snapshots", "--snapshotter", name];
            all.extend_from_slice(args);
            c.ctr(all)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", c.log_tail(20)))
        };
        // containerd reads corrald's records (keys, parents) and asks the backend for kinds.
        assert_eq!(
            rows(&snap(&["ls"])),
            [
                vec!["KEY", "PARENT", "KIND"],
                vec!["base", "Committed"],
                vec!["ro", "base", "View"],
                vec!["work", "base", "Active"],
            ],
            "{name}"
        );
        let info: serde_json::Value = serde_json::from_str(&snap(&["info", "base"])).unwrap();
        assert_eq!(info["Labels"]["made-by"], "corrald", "{name}: {info}");
        // containerd's mounts are the ones corrald handed out.
        let target = temp.join(format!("target-{name}"));
        let printed = snap(&["mounts", target.to_str().unwrap(), "work"]);
        assert_eq!(vec![parse_ctr_mount(printed.trim())], m.work, "{name}");
        let printed = snap(&["mounts", target.to_str().unwrap(), "ro"]);
        assert_eq!(vec![parse_ctr_mount(printed.trim())], m.ro, "{name}");
    }
    c.stop().unwrap();
}
