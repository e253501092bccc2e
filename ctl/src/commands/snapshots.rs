//! `corralctl snapshots` (`snapshot`): prepare, view, commit, list, inspect, label, mount,
//! measure and remove the snapshots of one snapshotter, as ctr 1.6's `snapshots` command does
//! over containerd's `Snapshots` service (`cmd/ctr/commands/snapshots`).
//!
//! Like ctr, `prepare` and `commit` label what they create `containerd.io/gc.root` (the
//! current time) instead of taking a lease, so the collector keeps it.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use corral_protocols::services::snapshots::v1::snapshots::{
    CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
    ViewSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::types::mount::Mount;
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::MessageField;

use super::format::{rfc3339, rfc3339_nano, tabwrite, Json};
use super::{join_labels, parse_labels, status_message, CtlError, CtlResult, Env};

/// The snapshotter used when none is named (ctr's default on Linux).
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// The label that keeps a snapshot from the garbage collector.
pub const GC_ROOT_LABEL: &str = "containerd.io/gc.root";

/// `snapshots`: the snapshotter to work on and the subcommand.
#[derive(Debug, Args)]
pub struct SnapshotsCommand {
    /// snapshotter name. Empty value stands for the default value.
    #[arg(
        long,
        env = "CORRAL_SNAPSHOTTER",
        default_value = "",
        hide_default_value = true,
        global = true
    )]
    pub snapshotter: String,
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotsVerb,
}

/// `prepare`'s and `view`'s flags and arguments.
#[derive(Debug, Args)]
pub struct NewSnapshotArgs {
    /// mount target path, will print mount, if provided
    #[arg(short = 't', long)]
    pub target: Option<String>,
    /// Print out snapshot mounts as JSON
    #[arg(long)]
    pub mounts: bool,
    /// The new snapshot's key.
    #[arg(value_name = "KEY")]
    pub key: String,
    /// The committed snapshot it starts from.
    #[arg(value_name = "PARENT")]
    pub parent: Option<String>,
}

/// The subcommands of `snapshots`.
#[derive(Debug, Subcommand)]
pub enum SnapshotsVerb {
    /// unpack applies layers from a manifest to a snapshot
    Unpack {
        /// The image's target (manifest or index) digest.
        #[arg(value_name = "DIGEST")]
        digest: String,
    },
    /// commit an active snapshot into the provided name
    Commit {
        /// The name of the committed snapshot.
        #[arg(value_name = "NAME")]
        name: String,
        /// The active snapshot to commit.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// get info about a snapshot
    Info {
        /// The snapshot.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// list snapshots
    #[command(visible_alias = "ls")]
    List,
    /// mount gets mount commands for the snapshots
    #[command(visible_aliases = ["m", "mount"])]
    Mounts {
        /// Where the printed commands mount.
        #[arg(value_name = "TARGET")]
        target: String,
        /// The snapshot.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// prepare a snapshot from a committed snapshot
    Prepare(NewSnapshotArgs),
    /// remove snapshots
    #[command(visible_aliases = ["del", "remove", "rm"])]
    Delete {
        /// The snapshots to remove, in order; the first failure stops.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// add labels to content
    Label {
        /// The snapshot.
        #[arg(value_name = "KEY")]
        key: String,
        /// Labels, KEY=VALUE; an empty value clears the label.
        labels: Vec<String>,
    },
    /// display tree view of snapshot branches
    Tree,
    /// usage snapshots
    Usage {
        /// display size in bytes
        #[arg(short = 'b')]
        bytes: bool,
        /// The snapshots to measure; every one when none is given.
        #[arg(value_name = "KEY")]
        keys: Vec<String>,
    },
    /// create a read-only snapshot from a committed snapshot
    View(NewSnapshotArgs),
}

/// Runs one `snapshots` subcommand.
pub fn run(env: &Env, cmd: SnapshotsCommand) -> CtlResult {
    let sn = if cmd.snapshotter.is_empty() {
        DEFAULT_SNAPSHOTTER.to_string()
    } else {
        cmd.snapshotter
    };
    let client = SnapshotsClient::new(env.connect()?);
    let s = Snapshotter {
        client: &client,
        env,
        name: &sn,
    };
    match cmd.command {
        SnapshotsVerb::Unpack { digest } => super::images::unpack_by_digest(env, &digest, &sn),
        SnapshotsVerb::Commit { name, key } => {
            let mut req = CommitSnapshotRequest::new();
            req.snapshotter = sn.clone();
            req.name = name;
            req.key = key;
            req.labels = gc_root_labels();
            client.commit(&env.ctx, &req)?;
            Ok(())
        }
        SnapshotsVerb::Info { key } => {
            let info = s.stat(&key)?;
            println!("{}", info_json(&info).pretty());
            Ok(())
        }
        SnapshotsVerb::List => {
            print!("{}", list_output(&s.walk()?));
            Ok(())
        }
        SnapshotsVerb::Mounts { target, key } => {
            let mut req = MountsRequest::new();
            req.snapshotter = sn.clone();
            req.key = key;
            let mounts = client.mounts(&env.ctx, &req)?.mounts;
            print!("{}", mount_commands(&target, &mounts));
            Ok(())
        }
        SnapshotsVerb::Prepare(args) => {
            let mut req = PrepareSnapshotRequest::new();
            req.snapshotter = sn.clone();
            req.key = args.key.clone();
            req.parent = args.parent.clone().unwrap_or_default();
            req.labels = gc_root_labels();
            let mounts = client.prepare(&env.ctx, &req)?.mounts;
            print_new_mounts(&args, &mounts);
            Ok(())
        }
        SnapshotsVerb::View(args) => {
            let mut req = ViewSnapshotRequest::new();
            req.snapshotter = sn.clone();
            req.key = args.key.clone();
            req.parent = args.parent.clone().unwrap_or_default();
            let mounts = client.view(&env.ctx, &req)?.mounts;
            print_new_mounts(&args, &mounts);
            Ok(())
        }
        SnapshotsVerb::Delete { keys } => {
            for key in keys {
                let mut req = RemoveSnapshotRequest::new();
                req.snapshotter = sn.clone();
                req.key = key.clone();
                client.remove(&env.ctx, &req).map_err(|e| {
                    CtlError::new(format!("failed to remove {key:?}: {}", status_message(&e)))
                })?;
            }
            Ok(())
        }
        SnapshotsVerb::Label { key, labels } => {
            let labels = parse_labels(&labels);
            let info = if labels.is_empty() {
                s.stat(&key)?
            } else {
                let mut info = Info::new();
                info.name = key;
                let mut mask = FieldMask::new();
                for (k, v) in labels {
                    mask.paths.push(format!("labels.{k}"));
                    if !v.is_empty() {
                        info.labels.insert(k, v);
                    }
                }
                let req = UpdateSnapshotRequest {
                    snapshotter: sn.clone(),
                    info: MessageField::some(info),
                    update_mask: MessageField::some(mask),
                    ..Default::default()
                };
                client.update(&env.ctx, &req)?.info.unwrap_or_default()
            };
            println!("{}", join_labels(&info.labels));
            Ok(())
        }
        SnapshotsVerb::Tree => {
            print!("{}", tree_output(&s.walk()?));
            Ok(())
        }
        SnapshotsVerb::Usage { bytes, keys } => {
            let keys = if keys.is_empty() {
                s.walk()?.into_iter().map(|i| i.name).collect()
            } else {
                keys
            };
            let mut rows = Vec::with_capacity(keys.len());
            for key in keys {
                let mut req = UsageRequest::new();
                req.snapshotter = sn.clone();
                req.key = key.clone();
                let usage = client.usage(&env.ctx, &req)?;
                rows.push((key, usage.size, usage.inodes));
            }
            print!("{}", usage_output(&rows, bytes));
            Ok(())
        }
    }
}

/// The calls several subcommands share, on one snapshotter.
struct Snapshotter<'a> {
    client: &'a SnapshotsClient,
    env: &'a Env,
    name: &'a str,
}

impl Snapshotter<'_> {
    fn stat(&self, key: &str) -> CtlResult<Info> {
        let mut req = StatSnapshotRequest::new();
        req.snapshotter = self.name.to_string();
        req.key = key.to_string();
        let resp = self.client.stat(&self.env.ctx, &req)?;
        resp.info
            .into_option()
            .ok_or_else(|| CtlError::new(format!("snapshot {key:?}: corrald sent no info")))
    }

    /// Every snapshot, in the order corrald walks them.
    fn walk(&self) -> CtlResult<Vec<Info>> {
        let mut req = ListSnapshotsRequest::new();
        req.snapshotter = self.name.to_string();
        let mut out = Vec::new();
        for msg in self.client.list(&self.env.ctx, &req)? {
            out.extend(msg?.info);
        }
        Ok(out)
    }
}

/// ctr's labels on what `prepare` and `commit` create: `containerd.io/gc.root` = now.
fn gc_root_labels() -> HashMap<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    HashMap::from([(GC_ROOT_LABEL.to_string(), rfc3339(now.as_secs() as i64))])
}

fn print_new_mounts(args: &NewSnapshotArgs, mounts: &[Mount]) {
    if let Some(target) = args.target.as_deref().filter(|t| !t.is_empty()) {
        print!("{}", mount_commands(target, mounts));
    }
    if args.mounts {
        println!("{}", mounts_json(mounts).pretty());
    }
}

/// A kind as ctr names it (`snapshots.Kind.String()`).
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::VIEW => "View",
        Kind::ACTIVE => "Active",
        Kind::COMMITTED => "Committed",
        Kind::UNKNOWN => "Unknown",
    }
}

fn kind_of(info: &Info) -> &'static str {
    info.kind.enum_value().map_or("Unknown", kind_name)
}

/// The shell commands that would mount `mounts` at `target`, one a line, as ctr prints them.
pub fn mount_commands(target: &str, mounts: &[Mount]) -> String {
    mounts
        .iter()
        .map(|m| {
            format!(
                "mount -t {} {} {target} -o {}\n",
                m.type_,
                m.source,
                m.options.join(",")
            )
        })
        .collect()
}

/// Mounts as ctr prints them with `--mounts`: containerd's `[]mount.Mount` in JSON.
pub fn mounts_json(mounts: &[Mount]) -> Json {
    Json::Array(
        mounts
            .iter()
            .map(|m| {
                let options = if m.options.is_empty() {
                    Json::null()
                } else {
                    Json::Array(m.options.iter().map(Json::str).collect())
                };
                Json::Object(vec![
                    ("Type".into(), Json::str(&m.type_)),
                    ("Source".into(), Json::str(&m.source)),
                    ("Options".into(), options),
                ])
            })
            .collect(),
    )
}

/// `snapshots info` output: containerd's `snapshots.Info` as Go's `encoding/json` writes it
/// (`Parent` and `Labels` left out when empty).
pub fn info_json(info: &Info) -> Json {
    let mut fields = vec![
        ("Kind".to_string(), Json::str(kind_of(info))),
        ("Name".to_string(), Json::str(&info.name)),
    ];
    if !info.parent.is_empty() {
        fields.push(("Parent".to_string(), Json::str(&info.parent)));
    }
    if !info.labels.is_empty() {
        fields.push(("Labels".to_string(), Json::string_map(&info.labels)));
    }
    fields.push((
        "Created".to_string(),
        Json::str(rfc3339_nano(info.created_at.as_ref())),
    ));
    fields.push((
        "Updated".to_string(),
        Json::str(rfc3339_nano(info.updated_at.as_ref())),
    ));
    Json::Object(fields)
}

/// `snapshots list` output: ctr's KEY PARENT KIND table.
pub fn list_output(infos: &[Info]) -> String {
    let mut text = String::from("KEY\tPARENT\tKIND\t\n");
    for i in infos {
        text.push_str(&format!("{}\t{}\t{}\t\n", i.name, i.parent, kind_of(i)));
    }
    tabwrite(&text, 1, 1)
}

/// pkg/progress's `Bytes`: binary units with one decimal (`4.0 KiB`, `0.0 B`).
pub fn progress_bytes(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// `snapshots usage` output: ctr's KEY SIZE INODES table, sizes in bytes with `-b`.
pub fn usage_output(rows: &[(String, i64, i64)], bytes: bool) -> String {
    let mut text = String::from("KEY\tSIZE\tINODES\t\n");
    for (key, size, inodes) in rows {
        let size = if bytes {
            size.to_string()
        } else {
            progress_bytes(*size)
        };
        text.push_str(&format!("{key}\t{size}\t{inodes}\t\n"));
    }
    tabwrite(&text, 1, 1)
}

/// `snapshots tree` output, built as ctr builds it: nodes in the order they are first met
/// (a parent not yet walked gets a placeholder where its first child names it), children
/// in walk order, every parent-less node a root; a root prints as ` <name>`, a child two
/// spaces deeper per level after `\_`.
pub fn tree_output(infos: &[Info]) -> String {
    struct Node {
        name: String,
        parent: String,
        children: Vec<usize>,
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    fn add(
        nodes: &mut Vec<Node>,
        index: &mut HashMap<String, usize>,
        name: &str,
        parent: &str,
    ) -> usize {
        let at = match index.get(name) {
            Some(&i) => {
                nodes[i].parent = parent.to_string();
                i
            }
            None => {
                nodes.push(Node {
                    name: name.to_string(),
                    parent: parent.to_string(),
                    children: Vec::new(),
                });
                index.insert(name.to_string(), nodes.len() - 1);
                nodes.len() - 1
            }
        };
        if !parent.is_empty() {
            let p = match index.get(parent) {
                Some(&p) => p,
                None => add(nodes, index, parent, ""),
            };
            nodes[p].children.push(at);
        }
        at
    }
    for info in infos {
        add(&mut nodes, &mut index, &info.name, &info.parent);
    }
    fn print(nodes: &[Node], at: usize, level: usize, out: &mut String, depth_left: usize) {
        let mut prefix = "  ".repeat(level);
        if level > 0 {
            prefix.push_str("\\_");
        }
        out.push_str(&format!("{prefix} {}\n", nodes[at].name));
        // A parent loop cannot come from a snapshotter; stop rather than recurse forever.
        if depth_left == 0 {
            return;
        }
        for &child in &nodes[at].children {
            print(nodes, child, level + 1, out, depth_left - 1);
        }
    }
    let mut out = String::new();
    for (i, node) in nodes.iter().enumerate() {
        if node.parent.is_empty() {
            print(&nodes, i, 0, &mut out, nodes.len());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as CliCommand};
    use clap::Parser;
    use protobuf::well_known_types::timestamp::Timestamp;
    use protobuf::EnumOrUnknown;

    fn info(name: &str, parent: &str, kind: Kind) -> Info {
        let mut i = Info::new();
        i.name = name.into();
        i.parent = parent.into();
        i.kind = EnumOrUnknown::new(kind);
        i
    }

    #[test]
    fn list_prints_ctrs_table() {
        let infos = [
            info("base", "", Kind::COMMITTED),
            info("work", "base", Kind::ACTIVE),
            info("ro", "base", Kind::VIEW),
        ];
        assert_eq!(
            list_output(&infos),
            "KEY  PARENT KIND      \n\
             base        Committed \n\
             work base   Active    \n\
             ro   base   View      \n"
        );
        assert_eq!(list_output(&[]), "KEY PARENT KIND \n");
    }

    #[test]
    fn tree_prints_like_ctr() {
        let infos = [
            info("a", "", Kind::COMMITTED),
            info("b", "a", Kind::COMMITTED),
            info("c", "b", Kind::ACTIVE),
            info("d", "a", Kind::VIEW),
            info("e", "", Kind::ACTIVE),
        ];
        assert_eq!(tree_output(&infos), " a\n  \\_ b\n    \\_ c\n  \\_ d\n e\n");
        // A child walked before its parent: the parent's placeholder comes after it.
        let infos = [
            info("a-child", "z", Kind::ACTIVE),
            info("z", "", Kind::COMMITTED),
        ];
        assert_eq!(tree_output(&infos), " z\n  \\_ a-child\n");
        // A parent never walked (filtered out) still roots its children.
        let infos = [info("x", "gone", Kind::ACTIVE)];
        assert_eq!(tree_output(&infos), " gone\n  \\_ x\n");
        assert_eq!(tree_output(&[]), "");
    }

    #[test]
    fn info_is_containerds_json() {
        let mut i = info("work", "base", Kind::ACTIVE);
        i.labels
            .insert(GC_ROOT_LABEL.into(), "2023-11-14T22:13:20Z".into());
        i.created_at = MessageField::some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 120_000_000,
            ..Default::default()
        });
        i.updated_at = i.created_at.clone();
        assert_eq!(
            info_json(&i).pretty(),
            "{\n    \"Kind\": \"Active\",\n    \"Name\": \"work\",\n    \"Parent\": \"base\",\n    \
             \"Labels\": {\n        \"containerd.io/gc.root\": \"2023-11-14T22:13:20Z\"\n    },\n    \
             \"Created\": \"2023-11-14T22:13:20.12Z\",\n    \"Updated\": \"2023-11-14T22:13:20.12Z\"\n}"
        );
        let bare = info("base", "", Kind::COMMITTED);
        assert_eq!(
            info_json(&bare).compact(),
            r#"{"Kind":"Committed","Name":"base","Created":"0001-01-01T00:00:00Z","Updated":"0001-01-01T00:00:00Z"}"#
        );
    }

    #[test]
    fn mounts_print_as_commands_and_json() {
        let mut m = Mount::new();
        m.type_ = "overlay".into();
        m.source = "overlay".into();
        m.options = vec!["index=off".into(), "lowerdir=/l".into()];
        let mut bind = Mount::new();
        bind.type_ = "bind".into();
        bind.source = "/s/1/fs".into();
        assert_eq!(
            mount_commands("/mnt", &[m.clone(), bind.clone()]),
            "mount -t overlay overlay /mnt -o index=off,lowerdir=/l\nmount -t bind /s/1/fs /mnt -o \n"
        );
        assert_eq!(
            mounts_json(&[m, bind]).compact(),
            r#"[{"Type":"overlay","Source":"overlay","Options":["index=off","lowerdir=/l"]},{"Type":"bind","Source":"/s/1/fs","Options":null}]"#
        );
        assert_eq!(mounts_json(&[]).pretty(), "[]");
    }

    #[test]
    fn usage_prints_progress_bytes() {
        assert_eq!(progress_bytes(0), "0.0 B");
        assert_eq!(progress_bytes(1023), "1023.0 B");
        assert_eq!(progress_bytes(4096), "4.0 KiB");
        assert_eq!(progress_bytes(5 << 20), "5.0 MiB");
        assert_eq!(progress_bytes(1536), "1.5 KiB");
        let rows = [("base".to_string(), 4096, 2), ("w".to_string(), 0, 1)];
        assert_eq!(
            usage_output(&rows, false),
            "KEY  SIZE    INODES \nbase 4.0 KiB 2      \nw    0.0 B   1      \n"
        );
        assert_eq!(
            usage_output(&rows, true),
            "KEY  SIZE INODES \nbase 4096 2      \nw    0    1      \n"
        );
    }

    fn parse(args: &[&str]) -> SnapshotsCommand {
        match Cli::try_parse_from(args) {
            Ok(Cli {
                command: CliCommand::Snapshots(cmd),
                ..
            }) => cmd,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn verbs_flags_and_aliases_are_ctrs() {
        let cmd = parse(&["corralctl", "snapshots", "--snapshotter", "native", "ls"]);
        assert_eq!(cmd.snapshotter, "native");
        // Given after the verb too, as a global flag.
        let cmd = parse(&["corralctl", "snapshot", "list", "--snapshotter", "native"]);
        assert_eq!(cmd.snapshotter, "native");
        let cmd = parse(&[
            "corralctl",
            "snapshots",
            "prepare",
            "-t",
            "/mnt",
            "--mounts",
            "k",
            "p",
        ]);
        match cmd.command {
            SnapshotsVerb::Prepare(a) => {
                assert_eq!(a.target.as_deref(), Some("/mnt"));
                assert!(a.mounts);
                assert_eq!((a.key.as_str(), a.parent.as_deref()), ("k", Some("p")));
            }
            other => panic!("{other:?}"),
        }
        for args in [
            &["corralctl", "snapshots", "view", "--target", "/mnt", "k"][..],
            &["corralctl", "snapshots", "commit", "name", "key"],
            &["corralctl", "snapshots", "info", "k"],
            &["corralctl", "snapshots", "mounts", "/mnt", "k"],
            &["corralctl", "snapshots", "mount", "/mnt", "k"],
            &["corralctl", "snapshots", "m", "/mnt", "k"],
            &["corralctl", "snapshots", "delete", "a", "b"],
            &["corralctl", "snapshots", "del", "a"],
            &["corralctl", "snapshots", "remove", "a"],
            &["corralctl", "snapshots", "rm", "a"],
            &["corralctl", "snapshots", "label", "k", "a=b", "c="],
            &["corralctl", "snapshots", "tree"],
            &["corralctl", "snapshots", "usage", "-b", "a", "b"],
            &["corralctl", "snapshots", "usage"],
        ] {
            parse(args);
        }
        for bad in [
            &["corralctl", "snapshots", "prepare"][..],
            &["corralctl", "snapshots", "prepare", "a", "b", "c"],
            &["corralctl", "snapshots", "commit", "a"],
            &["corralctl", "snapshots", "mounts", "/mnt"],
            &["corralctl", "snapshots", "rm"],
            &["corralctl", "snapshots", "unpack"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
