//! Containers written by Corral into a meta.db are what a real containerd 1.6 reads (`ctr c
//! ls`, `ctr c info`), and what containerd changes there (`ctr c label`, `ctr c rm`) Corral
//! reads back.

use corral_tests::labels;
use std::path::{Path, PathBuf};

use corral_daemon::metadata::container::{self, AnyValue, Container, Runtime};
use corral_daemon::metadata::namespace::{self, Namespace};
use corral_daemon::metadata::schema::db_path;
use corral_daemon::metadata::store::Store;
use corral_tests::harness::{
    require_root, require_tool, ContainerdOptions, PrivateContainerd, TempRoot,
};
use serde_json::Value;

const NS: &str = "corral-meta";
const SPEC_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const OPTIONS_URL: &str = "containerd.runc.v1.Options";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn containers() -> (Container, Container) {
    let web = Container {
        id: "web".into(),
        labels: labels(&[("app", "web"), ("tier", "edge")]),
        image: "docker.io/corral/busybox:latest".into(),
        runtime: Runtime {
            name: "io.containerd.runc.v2".into(),
            options: Some(AnyValue::new(OPTIONS_URL, b"\x10\x01".to_vec())),
        },
        spec: Some(AnyValue::new(
            SPEC_URL,
            std::fs::read(fixture("job-spec.json")).unwrap(),
        )),
        snapshotter: "overlayfs".into(),
        snapshot_key: "web".into(),
        extensions: [(
            "corral.test/ext".to_string(),
            AnyValue::new("corral.test/Ext", b"hello".to_vec()),
        )]
        .into(),
        ..Default::default()
    };
    let db = Container {
        id: "db".into(),
        labels: labels(&[("app", "db")]),
        image: String::new(),
        runtime: Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        },
        spec: Some(AnyValue::new(
            SPEC_URL,
            br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        )),
        snapshotter: "overlayfs".into(),
        snapshot_key: "db".into(),
        ..Default::default()
    };
    (web, db)
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn containerd_reads_and_changes_corrals_containers() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let dir = TempRoot::new().unwrap();
    let root = dir.root().to_path_buf();
    let (web, db) = containers();
    {
        let store = Store::open(db_path(&root)).unwrap();
        store
            .update(|tx| {
                namespace::create(
                    tx,
                    &Namespace {
                        name: NS.into(),
                        labels: labels(&[("owner", "corral")]),
                    },
                )?;
                container::create(tx, NS, &web)?;
                container::create(tx, NS, &db)?;
                Ok(())
            })
            .unwrap();
    }
    let written = Store::open_read_only(db_path(&root))
        .unwrap()
        .view(|tx| container::list(tx, NS))
        .unwrap();
    assert_eq!(written.len(), 2);

    let mut c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        extra_config: corral_tests::harness::containerd::NO_GC.into(),
        root: Some(root.clone()),
        ..ContainerdOptions::default()
    })
    .unwrap();

    let ls = c.ctr(["-n", NS, "c", "ls"]).unwrap();
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["CONTAINER", "IMAGE", "RUNTIME"],
            vec!["db", "-", "io.containerd.runc.v2"],
            vec![
                "web",
                "docker.io/corral/busybox:latest",
                "io.containerd.runc.v2"
            ],
        ],
        "{ls}"
    );

    let info: Value =
        serde_json::from_str(&c.ctr(["-n", NS, "c", "info", "web"]).unwrap()).unwrap();
    assert_eq!(info["ID"], "web");
    assert_eq!(
        info["Labels"],
        serde_json::json!({"app": "web", "tier": "edge"})
    );
    assert_eq!(info["Image"], "docker.io/corral/busybox:latest");
    assert_eq!(info["Runtime"]["Name"], "io.containerd.runc.v2");
    assert_eq!(info["Runtime"]["Options"]["type_url"], OPTIONS_URL);
    assert_eq!(info["Runtime"]["Options"]["value"], b64(b"\x10\x01"));
    assert_eq!(info["Snapshotter"], "overlayfs");
    assert_eq!(info["SnapshotKey"], "web");
    let ext = &info["Extensions"]["corral.test/ext"];
    assert_eq!(ext["type_url"], "corral.test/Ext");
    assert_eq!(ext["value"], b64(b"hello"));
    assert_eq!(info["Spec"]["process"]["args"], serde_json::json!(["env"]));
    assert!(info["Spec"]["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("A=1")));
    assert_ne!(info["CreatedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(info["CreatedAt"], info["UpdatedAt"]);

    let info: Value = serde_json::from_str(&c.ctr(["-n", NS, "c", "info", "db"]).unwrap()).unwrap();
    assert_eq!(info["Image"], "");
    assert!(info["Runtime"]["Options"].is_null(), "{info}");
    assert_eq!(info["Spec"]["ociVersion"], "1.0.2");

    c.ctr(["-n", NS, "c", "label", "web", "k=v", "tier="])
        .unwrap();
    c.ctr(["-n", NS, "c", "rm", "db"]).unwrap();
    c.stop_daemon().unwrap();

    let store = Store::open_read_only(db_path(&root)).unwrap();
    let after = store.view(|tx| container::list(tx, NS)).unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    let got = &after[0];
    let before = written.iter().find(|c| c.id == "web").unwrap();
    assert_eq!(got.labels, labels(&[("app", "web"), ("k", "v")]));
    assert_eq!(got.created_at, before.created_at);
    assert!(got.updated_at > before.updated_at);
    assert_eq!(
        Container {
            labels: before.labels.clone(),
            updated_at: before.updated_at,
            ..got.clone()
        },
        *before
    );
    let ns = store.view(|tx| namespace::get(tx, NS)).unwrap();
    assert_eq!(ns.labels, labels(&[("owner", "corral")]));
    c.stop().unwrap();
}
