//! `corralctl content` and `corralctl snapshots` driven as a user drives them, against a
//! private corrald per test: every verb and alias, the same command sequences run through
//! ctr 1.6 on a private containerd with outputs compared (times and ages aside), a 5 MiB
//! ingest interrupted and resumed, `get` round trips, real mounts of what `snapshots`
//! prints, and errors that exit 1 with a clear message and never a panic.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral_daemon::content::digest::from_bytes;
use corral_protocols::rpc::CallContext;
use corral_protocols::services::content::v1::content::StatusRequest;
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::leases::v1::leases::{CreateRequest, DeleteRequest};
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_tests::bins::corral_binary;
use corral_tests::harness::containerd::NO_GC;
use corral_tests::harness::{
    mounts_under, require_root, require_tool, wait_for_some, ChildGuard, ContainerdOptions,
    Corrald, PrivateContainerd, TempRoot,
};
use nix::sys::signal::Signal;

/// Deadline of one command.
const DEADLINE: Duration = Duration::from_secs(60);
/// The namespace the tests work in.
const NS: &str = "e2";
/// 5 MiB, the size of the interrupted ingest.
const BIG: usize = 5 << 20;

/// A private corrald, stopped when dropped, after a first collection.
fn start_corrald(temp: &TempRoot) -> Corrald {
    let daemon = Corrald::start(temp, "corrald.log", "").unwrap();
    collect_now(&daemon);
    daemon
}

/// Runs a collection and waits for it (a lease deleted with `sync`), which takes the place
/// of the startup collection: from here on corrald collects only after a removal, so what a
/// test ingests lives until then without a root label, as under a containerd started with
/// [`NO_GC`].
fn collect_now(daemon: &Corrald) {
    let leases = LeasesClient::new(daemon.client().unwrap());
    let ctx = CallContext::new().with_namespace(NS);
    let mut create = CreateRequest::new();
    create.id = "collect-now".into();
    leases.create(&ctx, &create).unwrap();
    let mut delete = DeleteRequest::new();
    delete.id = create.id;
    delete.sync = true;
    leases.delete(&ctx, &delete).unwrap();
}

fn corralctl() -> Command {
    let mut cmd = Command::new(corral_binary("corralctl").unwrap());
    cmd.env_remove("CORRAL_ADDRESS")
        .env_remove("CORRAL_NAMESPACE")
        .env_remove("CORRAL_SNAPSHOTTER")
        .env_remove("EDITOR");
    cmd
}

static OUTPUTS: AtomicUsize = AtomicUsize::new(0);

/// Runs `cmd` with stdin from `stdin` (or nothing), its output captured in files under
/// `scratch`, killed after [`DEADLINE`].
fn run(mut cmd: Command, stdin: Option<&Path>, scratch: &Path) -> Output {
    let n = OUTPUTS.fetch_add(1, Ordering::SeqCst);
    let out_path = scratch.join(format!("stdout-{n}"));
    let err_path = scratch.join(format!("stderr-{n}"));
    let input = match stdin {
        Some(p) => Stdio::from(File::open(p).unwrap()),
        None => Stdio::null(),
    };
    cmd.stdin(input)
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let description = format!("{cmd:?}");
    let mut guard = ChildGuard::spawn("command", &mut cmd).unwrap();
    let status = guard
        .wait_timeout(DEADLINE)
        .unwrap()
        .unwrap_or_else(|| panic!("{description} did not finish within {DEADLINE:?}"));
    let out = Output {
        status,
        stdout: fs::read(&out_path).unwrap(),
        stderr: fs::read(&err_path).unwrap(),
    };
    let _ = fs::remove_file(out_path);
    let _ = fs::remove_file(err_path);
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{description}: {}",
        text(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256(data: &[u8]) -> String {
    from_bytes(data)
}

/// A user's view of corrald: corralctl commands in one namespace.
struct Ctl<'a> {
    daemon: &'a Corrald,
    scratch: PathBuf,
}

impl Ctl<'_> {
    fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = corralctl();
        cmd.arg("-a")
            .arg(self.daemon.socket())
            .args(["-n", ns])
            .args(args);
        cmd
    }

    fn output_in(&self, ns: &str, args: &[&str], stdin: Option<&Path>) -> Output {
        run(self.cmd(ns, args), stdin, &self.scratch)
    }

    fn output(&self, args: &[&str]) -> Output {
        self.output_in(NS, args, None)
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\ncorrald log:\n{}",
            text(&out.stderr),
            self.daemon.log_text()
        );
        text(&out.stdout)
    }

    fn ingest(&self, args: &[&str], stdin: &Path) -> Output {
        self.output_in(NS, args, Some(stdin))
    }

    /// The message of a command that must fail with exit status 1.
    fn fails(&self, args: &[&str]) -> String {
        failure_message(&self.output(args), "corralctl: ", args)
    }
}

/// The last stderr line of a command that exited 1, without the program's prefix.
fn failure_message(out: &Output, prefix: &str, args: &[&str]) -> String {
    assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    let err = text(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    last.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{args:?}: stderr does not end with {prefix:?}...: {err}"))
        .to_string()
}

fn setup(temp: &TempRoot) -> (Corrald, PathBuf) {
    let daemon = start_corrald(temp);
    let scratch = temp.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    (daemon, scratch)
}

// ----------------------------------------------------------------------------------------
// Comparison with ctr.

/// One side of a comparison: corralctl on corrald, or ctr on a private containerd.
enum Side<'a> {
    Corral(&'a Corrald),
    Ctr(&'a PrivateContainerd, &'a Path),
}

/// The same commands through corralctl and ctr.
struct Pair<'a> {
    corral: Side<'a>,
    ctr: Side<'a>,
    scratch: PathBuf,
    roots: [PathBuf; 2],
}

/// Both answers to one command.
struct Both {
    args: Vec<String>,
    corral: Output,
    ctr: Output,
}

impl Pair<'_> {
    fn run_on_env(
        &self,
        side: &Side,
        ns: &str,
        args: &[&str],
        stdin: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = match side {
            Side::Corral(d) => {
                let mut cmd = corralctl();
                cmd.arg("-a").arg(d.socket());
                cmd
            }
            Side::Ctr(c, ctr) => {
                let mut cmd = c.command(ctr);
                cmd.env_remove("CONTAINERD_SNAPSHOTTER")
                    .env_remove("EDITOR")
                    .arg("--address")
                    .arg(c.address());
                cmd
            }
        };
        cmd.args(["-n", ns]).args(args).envs(env.iter().copied());
        run(cmd, stdin, &self.scratch)
    }

    fn both_in(&self, ns: &str, args: &[&str], stdin: Option<&Path>) -> Both {
        self.both_env(ns, args, stdin, &[])
    }

    fn both_env(
        &self,
        ns: &str,
        args: &[&str],
        stdin: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Both {
        Both {
            args: args.iter().map(|a| a.to_string()).collect(),
            corral: self.run_on_env(&self.corral, ns, args, stdin, env),
            ctr: self.run_on_env(&self.ctr, ns, args, stdin, env),
        }
    }

    fn both(&self, args: &[&str]) -> Both {
        self.both_in(NS, args, None)
    }

    /// Both succeed with the same stdout once `normalize` has had it (roots replaced by
    /// `ROOT` first); returns corralctl's.
    fn same(&self, args: &[&str], normalize: fn(&str) -> String) -> String {
        self.same_with(self.both(args), normalize)
    }

    fn same_with(&self, b: Both, normalize: fn(&str) -> String) -> String {
        let ctx = b.context();
        assert!(b.corral.status.success(), "corralctl {ctx}");
        assert!(b.ctr.status.success(), "ctr {ctx}");
        let mine = normalize(&self.unroot(&text(&b.corral.stdout)));
        let theirs = normalize(&self.unroot(&text(&b.ctr.stdout)));
        assert_eq!(mine, theirs, "{ctx}");
        text(&b.corral.stdout)
    }

    /// Both fail with exit status 1 and the same last line on stderr (after the prefix);
    /// returns it.
    fn same_error(&self, args: &[&str]) -> String {
        self.same_error_with(self.both(args))
    }

    fn same_error_with(&self, b: Both) -> String {
        let ctx = b.context();
        let args: Vec<&str> = b.args.iter().map(String::as_str).collect();
        let mine = failure_message(&b.corral, "corralctl: ", &args);
        let theirs = failure_message(&b.ctr, "ctr: ", &args);
        assert_eq!(mine, theirs, "{ctx}");
        assert_eq!(text(&b.corral.stdout), text(&b.ctr.stdout), "{ctx}");
        mine
    }

    /// Both fail with exit status 1; returns the last stderr lines (after the prefixes) of
    /// corralctl and ctr, for a comparison of what differs on purpose.
    fn both_fail(&self, b: Both) -> (String, String) {
        let args: Vec<&str> = b.args.iter().map(String::as_str).collect();
        (
            failure_message(&b.corral, "corralctl: ", &args),
            failure_message(&b.ctr, "ctr: ", &args),
        )
    }

    fn unroot(&self, s: &str) -> String {
        self.roots.iter().fold(s.to_string(), |s, root| {
            s.replace(root.to_str().unwrap(), "ROOT")
        })
    }
}

impl Both {
    fn context(&self) -> String {
        format!(
            "{:?}\n--- corralctl ({}):\n{}{}\n--- ctr ({}):\n{}{}",
            self.args,
            self.corral.status,
            text(&self.corral.stdout),
            text(&self.corral.stderr),
            self.ctr.status,
            text(&self.ctr.stdout),
            text(&self.ctr.stderr)
        )
    }
}

fn exact(s: &str) -> String {
    s.to_string()
}

/// Comma-separated labels in order (ctr prints a Go map, in random order).
fn sorted_labels(s: &str) -> String {
    s.lines()
        .map(|l| {
            let mut parts: Vec<&str> = l.split(',').collect();
            parts.sort();
            parts.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tab-padded `content` table as cells, the AGE column (the third) blanked and the
/// labels of the fourth sorted.
fn content_table(s: &str) -> String {
    s.lines()
        .map(|l| {
            let mut cells: Vec<String> = l
                .split('\t')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            if cells.len() > 2 && cells[0] != "DIGEST" && cells[0] != "REF" {
                cells[2] = "<age>".into();
            }
            if cells.len() > 3 {
                cells[3] = sorted_labels(&cells[3]);
            }
            cells.join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`content_table`] with the rows after the header sorted: containerd lists active
/// transfers in Go map order.
fn content_rows(s: &str) -> String {
    let table = content_table(s);
    let mut lines: Vec<&str> = table.lines().collect();
    if lines.len() > 1 {
        lines[1..].sort();
    }
    lines.join("\n")
}

/// `snapshots info` JSON with times blanked, keeping the key order.
fn snapshot_info(s: &str) -> String {
    let keys: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("    \"") && !l.starts_with("     "))
        .filter_map(|l| l.trim().split('"').nth(1))
        .collect();
    let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
    for key in ["Created", "Updated"] {
        assert!(v[key].as_str().unwrap().ends_with('Z'), "{s}");
        v[key] = "<time>".into();
    }
    if let Some(root) = v["Labels"].get_mut("containerd.io/gc.root") {
        *root = "<time>".into();
    }
    format!("{keys:?} {v}")
}

/// `label` output with the time in a gc.root label blanked.
fn snapshot_labels(s: &str) -> String {
    sorted_labels(s)
        .split(',')
        .map(|l| match l.split_once('=') {
            Some(("containerd.io/gc.root", _)) => "containerd.io/gc.root=<time>".to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts a private containerd and returns it with ctr's path, or `None` (the test skips)
/// off CI when root, containerd or ctr is missing.
fn start_containerd() -> Option<(PrivateContainerd, PathBuf)> {
    if !require_root("runs corrald and a private containerd") {
        return None;
    }
    require_tool("containerd")?;
    let ctr = require_tool("ctr")?;
    let containerd = PrivateContainerd::start_with(ContainerdOptions {
        extra_config: NO_GC.to_string(),
        ..Default::default()
    })
    .unwrap();
    Some((containerd, ctr))
}

#[test]
fn content_commands_print_what_ctr_prints() {
    let Some((containerd, ctr)) = start_containerd() else {
        return;
    };
    let temp = TempRoot::new().unwrap();
    let (daemon, scratch) = setup(&temp);
    let p = Pair {
        corral: Side::Corral(&daemon),
        ctr: Side::Ctr(&containerd, &ctr),
        scratch: scratch.clone(),
        roots: [temp.root().to_path_buf(), containerd.root().to_path_buf()],
    };
    let file = |name: &str, data: &[u8]| {
        let path = scratch.join(name);
        fs::write(&path, data).unwrap();
        path
    };
    let blob_a: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let a = file("a", &blob_a);
    let da = sha256(&blob_a);
    let b = file("b", b"hello\n");
    let db = sha256(b"hello\n");

    // Ingest: no output; then a root label keeps each blob from the collector.
    assert_eq!(
        p.same_with(p.both_in(NS, &["content", "ingest", "a"], Some(&a)), exact),
        ""
    );
    let root = "containerd.io/gc.root=keep";
    assert_eq!(
        p.same(&["content", "label", &da, root], exact),
        format!("{root}\n")
    );
    let ingest_b = [
        "content",
        "ingest",
        "--expected-size",
        "6",
        "--expected-digest",
        &db,
        "b",
    ];
    p.same_with(p.both_in(NS, &ingest_b, Some(&b)), exact);
    p.same(&["content", "label", &db, root, "app=web"], sorted_labels);

    // list, ls, -q, filters.
    let ls = p.same(&["content", "ls"], content_table);
    assert!(ls.starts_with("DIGEST\t"), "{ls}");
    assert!(ls.contains(&format!("{da}\t3kB\t")), "{ls}");
    assert!(ls.contains("\t6B\t"), "{ls}");
    let mut want = [da.clone(), db.clone()];
    want.sort();
    assert_eq!(
        p.same(&["content", "list", "-q"], exact),
        format!("{}\n{}\n", want[0], want[1])
    );
    assert_eq!(
        p.same(&["content", "ls", "--quiet", "labels.app==web"], exact),
        format!("{db}\n")
    );
    p.same(&["content", "ls", &format!("digest=={da}")], content_table);

    // get: the bytes.
    let got = p.both(&["content", "get", &da]);
    assert_eq!(got.corral.stdout, blob_a, "{}", got.context());
    assert_eq!(got.ctr.stdout, blob_a, "{}", got.context());

    // label: show, clear, set.
    p.same(&["content", "label", &db], sorted_labels);
    assert_eq!(
        p.same(&["content", "label", &db, "app="], exact),
        format!("{root}\n")
    );

    // Ingests that fail keep their data as active transfers.
    let short = ["content", "ingest", "--expected-size", "100", "short"];
    assert_eq!(
        p.same_error_with(p.both_in(NS, &short, Some(&b))),
        "failed to read expected number of bytes: unexpected EOF"
    );
    let long = ["content", "ingest", "--expected-size", "3", "long"];
    let msg = p.same_error_with(p.both_in(NS, &long, Some(&b)));
    assert!(
        msg.starts_with("failed commit on ref \"long\": commit failed: "),
        "{msg}"
    );
    let active = p.same(&["content", "active"], content_rows);
    assert!(active.starts_with("REF\tSIZE\tAGE\t"), "{active}");
    assert!(active.contains("\nlong\t6B\t"), "{active}");
    assert!(active.contains("\nshort\t6B\t"), "{active}");
    assert_eq!(
        p.same(&["content", "active", "ref==short"], content_rows)
            .lines()
            .count(),
        2
    );
    p.same(
        &["content", "active", "-t", "5s", "--root", "/nowhere"],
        content_rows,
    );

    // An ingest of a blob that exists does nothing and succeeds.
    let dup = ["content", "ingest", "--expected-digest", &da, "dup"];
    p.same_with(p.both_in(NS, &dup, Some(&b)), exact);
    p.same(&["content", "ls"], content_table);
    p.same(&["content", "active"], content_rows);

    // Errors: same message, exit 1.
    let unknown = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        p.same_error(&["content", "get", &unknown]),
        format!("content digest {unknown}: not found")
    );
    for (bad, msg) in [
        ("foo", "invalid checksum digest format"),
        ("sha256:abc", "invalid checksum digest length"),
        ("md5:abc", "unsupported digest algorithm"),
    ] {
        assert_eq!(p.same_error(&["content", "get", bad]), msg);
        assert_eq!(p.same_error(&["content", "label", bad, "a=b"]), msg);
    }
    p.same_error(&["content", "label", &unknown, "a=b"]);
    assert_eq!(
        p.same_error(&["content", "ingest"]),
        "must specify a transaction reference"
    );
    let bad_expected = ["content", "ingest", "--expected-digest", "sha256:x", "r"];
    p.same_error_with(p.both_in(NS, &bad_expected, Some(&b)));
    // Another namespace does not see the blob; an empty one is refused.
    p.same_error_with(p.both_in("other", &["content", "get", &da], None));
    p.same_with(p.both_in("other", &["content", "ls", "-q"], None), exact);
    // (ctr prints the table's header before the error; corralctl prints no table.)
    let (mine, theirs) = p.both_fail(p.both_in("", &["content", "ls"], None));
    assert_eq!(mine, "namespace is required: failed precondition");
    assert_eq!(mine, theirs);

    // delete: prints what it deleted, skips unknown blobs, reports the first failure.
    let del = p.both(&["content", "rm", &unknown, &da, "foo"]);
    assert_eq!(
        text(&del.corral.stdout),
        format!("{da}\n"),
        "{}",
        del.context()
    );
    assert_eq!(p.same_error_with(del), "invalid checksum digest format");
    assert_eq!(p.same(&["content", "ls", "-q"], exact), format!("{db}\n"));
    for alias in ["delete", "del", "remove"] {
        assert_eq!(p.same(&["content", alias, &unknown], exact), "");
    }

    // edit: the blob through an editor (one that edits in place, as ctr needs), a new blob.
    let edited = p.both_env(
        NS,
        &["content", "edit", &db],
        None,
        &[("EDITOR", "truncate -s 2")],
    );
    assert_eq!(p.same_with(edited, exact), format!("{}\n", sha256(b"he")));
    assert_eq!(p.same(&["content", "get", &sha256(b"he")], exact), "he");
    assert_eq!(
        p.same_error(&["content", "edit", "--validate", "json", &db]),
        "validating the edit result not supported"
    );
    assert_eq!(
        p.same_error(&["content", "edit", &db]),
        "editor is required"
    );

    // prune references: layer labels go (only reported with --dry), the collector runs and
    // takes the layer nothing refers to any more; the config's legacy `.0` label stays.
    let layer = file("layer", b"layer\n");
    let dl = sha256(b"layer\n");
    let config = file("config", b"config\n");
    let dc = sha256(b"config\n");
    let manifest = file("manifest", b"manifest\n");
    let dm = sha256(b"manifest\n");
    for (path, reference) in [(&layer, "layer"), (&config, "config"), (&manifest, "m")] {
        p.same_with(
            p.both_in(NS, &["content", "ingest", reference], Some(path)),
            exact,
        );
    }
    let labels = [
        root.to_string(),
        format!("containerd.io/gc.ref.content.l.0={dl}"),
        format!("containerd.io/gc.ref.content.0={dc}"),
    ];
    let mut label_args = vec!["content", "label", &dm];
    label_args.extend(labels.iter().map(String::as_str));
    p.same(&label_args, sorted_labels);
    let dry = p.both(&["content", "prune", "references", "--dry"]);
    let ctx = dry.context();
    assert!(
        text(&dry.corral.stderr).contains("label=containerd.io/gc.ref.content.l.0"),
        "{ctx}"
    );
    p.same_with(dry, exact);
    let all = p.same(&["content", "ls", "-q"], exact);
    assert!(
        all.contains(&dl) && all.contains(&dc) && all.contains(&dm),
        "{all}"
    );
    p.same(&["content", "prune", "references"], exact);
    assert_eq!(
        p.same(&["content", "label", &dm], sorted_labels),
        format!("containerd.io/gc.ref.content.0={dc},{root}\n")
    );
    let left = p.same(&["content", "ls", "-q"], exact);
    assert!(!left.contains(&dl), "{left}");
    assert!(left.contains(&dc) && left.contains(&dm), "{left}");
    p.same(&["content", "prune", "references", "--async"], exact);
}

#[test]
fn snapshot_commands_print_what_ctr_prints() {
    let Some((containerd, ctr)) = start_containerd() else {
        return;
    };
    let temp = TempRoot::new().unwrap();
    let (daemon, scratch) = setup(&temp);
    let p = Pair {
        corral: Side::Corral(&daemon),
        ctr: Side::Ctr(&containerd, &ctr),
        scratch,
        roots: [temp.root().to_path_buf(), containerd.root().to_path_buf()],
    };
    for sn in ["overlayfs", "native"] {
        let s = |args: &[&str]| -> Vec<String> {
            ["snapshots", "--snapshotter", sn]
                .iter()
                .chain(args)
                .map(|a| a.to_string())
                .collect()
        };
        let same = |args: &[&str], f: fn(&str) -> String| {
            let args = s(args);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            p.same(&args, f)
        };
        let same_error = |args: &[&str]| {
            let args = s(args);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            p.same_error(&args)
        };
        assert_eq!(same(&["prepare", "base"], exact), "");
        assert_eq!(same(&["commit", "base-c", "base"], exact), "");
        let prepared = same(
            &["prepare", "--mounts", "-t", "/mnt/x", "work", "base-c"],
            exact,
        );
        assert!(prepared.starts_with("mount -t "), "{prepared}");
        assert!(
            prepared.contains("\n[\n    {\n        \"Type\": "),
            "{prepared}"
        );
        same(&["view", "ro", "base-c", "--mounts"], exact);
        same(&["view", "--target", "/mnt/y", "ro2", "base-c"], exact);
        // Views get no gc.root label; before the first removal lets corrald's collector run
        // (containerd's waits for its startup run, an hour away here), they get one.
        for view in ["ro", "ro2"] {
            same(
                &["label", view, "containerd.io/gc.root=keep"],
                snapshot_labels,
            );
        }
        let ls = same(&["ls"], exact);
        assert_eq!(
            ls.lines()
                .next()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["KEY", "PARENT", "KIND"]
        );
        assert!(ls.contains("work   base-c Active"), "{ls}");
        same(&["list"], exact);
        assert_eq!(
            same(&["tree"], exact),
            " base-c\n  \\_ ro\n  \\_ ro2\n  \\_ work\n"
        );
        let info = same(&["info", "work"], snapshot_info);
        assert!(
            info.starts_with(
                "{\n    \"Kind\": \"Active\",\n    \"Name\": \"work\",\n    \"Parent\": \"base-c\""
            ),
            "{info}"
        );
        same(&["info", "base-c"], snapshot_info);
        same(&["info", "ro"], snapshot_info);
        for alias in ["mounts", "m", "mount"] {
            let m = same(&[alias, "/mnt", "work"], exact);
            assert!(m.starts_with("mount -t ") && m.contains(" /mnt -o "), "{m}");
            same(&[alias, "/mnt", "ro"], exact);
        }
        same(&["usage"], exact);
        same(&["usage", "-b", "work", "base-c"], exact);
        same(&["label", "work", "a=b", "c"], snapshot_labels);
        same(&["label", "work", "a="], snapshot_labels);
        same(&["label", "work"], snapshot_labels);
        // Errors.
        same_error(&["label", "nope", "a=b"]);
        same_error(&["prepare", "base-c"]);
        same_error(&["prepare", "x", "missing"]);
        same_error(&["commit", "y", "base-c"]);
        same_error(&["usage", "missing"]);
        same_error(&["info", "missing"]);
        same_error(&["mounts", "/mnt", "missing"]);
        assert_eq!(
            same_error(&["rm", "ro", "nope", "work"]),
            "failed to remove \"nope\": snapshot nope does not exist: not found"
        );
        assert!(same_error(&["delete", "base-c"]).starts_with("failed to remove \"base-c\": "));
        same(&["ls"], exact);
        for alias in ["del", "remove"] {
            same(&[alias, "ro2"], exact);
            same(&["prepare", "ro2"], exact);
        }
        same(&["rm", "ro2", "work"], exact);
        same(&["tree"], exact);
    }
    // The noun's alias, the default snapshotter and an unknown one; other namespaces.
    p.same(&["snapshot", "ls"], exact);
    p.same(&["snapshot", "--snapshotter", "", "ls"], exact);
    assert_eq!(
        p.same_error(&["snapshots", "--snapshotter", "nope", "ls"]),
        "snapshotter not loaded: nope: invalid argument"
    );
    p.same_with(p.both_in("other", &["snapshots", "ls"], None), exact);
    // (ctr adds ": unknown" for an error ending a snapshot list.)
    let (mine, theirs) = p.both_fail(p.both_in("", &["snapshots", "ls"], None));
    assert_eq!(mine, "namespace is required: failed precondition");
    assert!(theirs.starts_with(&mine), "{theirs}");
}

// ----------------------------------------------------------------------------------------
// corralctl alone.

#[test]
fn ingest_resumes_after_an_interruption() {
    if !require_root("runs corrald on a private root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let (daemon, scratch) = setup(&temp);
    let ctl = Ctl {
        daemon: &daemon,
        scratch: scratch.clone(),
    };
    let data: Vec<u8> = (0..BIG as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = sha256(&data);
    let size = BIG.to_string();

    // From a file: the resumed ingest seeks past what corrald has, so garbage in front of
    // that offset never reaches it (a restart from 0 would fail the digest check).
    let offset = interrupt_ingest(&ctl, "big", &data);
    assert!(offset > 0 && (offset as usize) < BIG, "{offset}");
    let mut resumed = vec![0xffu8; offset as usize];
    resumed.extend_from_slice(&data[offset as usize..]);
    let file = scratch.join("resume");
    fs::write(&file, &resumed).unwrap();
    let args = [
        "--timeout",
        "30s",
        "content",
        "ingest",
        "--expected-size",
        &size,
        "--expected-digest",
        &digest,
        "big",
    ];
    let out = ctl.ingest(&args, &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let got = ctl.output(&["content", "get", &digest]);
    assert!(got.status.success(), "{}", text(&got.stderr));
    assert!(
        got.stdout == data,
        "get returned {} bytes unlike the input",
        got.stdout.len()
    );
    assert!(!ctl.ok(&["content", "active"]).contains("big"));
    let ls = ctl.ok(&["content", "ls"]);
    assert!(ls.contains(&format!("{digest}\t5.243MB\t")), "{ls}");

    // From a pipe: the resumed ingest reads and drops the bytes corrald already has.
    let other: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
    let other_digest = sha256(&other);
    let offset = interrupt_ingest(&ctl, "big2", &other);
    let mut cmd = ctl.cmd(
        NS,
        &[
            "--debug",
            "--timeout",
            "30s",
            "content",
            "ingest",
            "--expected-digest",
            &other_digest,
            "big2",
        ],
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = {
        let other = other.clone();
        std::thread::spawn(move || stdin.write_all(&other))
    };
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("resuming write of big2 at offset {offset}")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(ctl.output(&["content", "get", &other_digest]).stdout, other);
}

/// Starts `content ingest REF` from a pipe, feeds it 2.5 MiB of `data`, waits until corrald
/// holds at least 2 MiB of it, kills corralctl and returns the offset corrald kept.
fn interrupt_ingest(ctl: &Ctl, reference: &str, data: &[u8]) -> i64 {
    let mut cmd = ctl.cmd(NS, &["content", "ingest", reference]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("corralctl ingest", &mut cmd).unwrap();
    let mut stdin = guard.child_mut().stdin.take().unwrap();
    stdin.write_all(&data[..(5 << 19)]).unwrap();
    let client = ContentClient::new(ctl.daemon.client().unwrap());
    let ctx = CallContext::new().with_namespace(NS);
    let status = |client: &ContentClient| {
        let mut req = StatusRequest::new();
        req.ref_ = reference.to_string();
        client
            .status(&ctx, &req)
            .ok()
            .and_then(|r| r.status.into_option())
    };
    wait_for_some(Duration::from_secs(20), "2 MiB written", || {
        status(&client).filter(|s| s.offset >= 2 << 20)
    })
    .unwrap();
    guard.signal(Signal::SIGKILL).unwrap();
    let exit: ExitStatus = guard.wait_timeout(DEADLINE).unwrap().unwrap();
    assert!(!exit.success());
    drop(stdin);
    let st = status(&client).expect("the interrupted write is still there");
    assert_eq!(st.ref_, reference);
    let active = ctl.ok(&["content", "active"]);
    assert!(active.contains(&format!("\n{reference}\t")), "{active}");
    st.offset
}

#[test]
fn get_round_trips_every_byte() {
    if !require_root("runs corrald on a private root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let (daemon, scratch) = setup(&temp);
    let ctl = Ctl {
        daemon: &daemon,
        scratch: scratch.clone(),
    };
    for (name, data) in [
        ("empty", Vec::new()),
        (
            "bytes",
            (0..=255u8).cycle().take(3 * (1 << 20) + 17).collect(),
        ),
    ] {
        let path = scratch.join(name);
        fs::write(&path, &data).unwrap();
        let out = ctl.ingest(&["content", "ingest", name], &path);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let digest = sha256(&data);
        ctl.ok(&["content", "label", &digest, "containerd.io/gc.root=t"]);
        let got = ctl.output(&["content", "get", &digest]);
        assert!(got.status.success(), "{}", text(&got.stderr));
        assert!(
            got.stdout == data,
            "{name}: {} bytes back",
            got.stdout.len()
        );
        // Ingesting it again under another reference does nothing.
        let out = ctl.ingest(
            &["content", "ingest", "--expected-digest", &digest, "again"],
            &path,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(ctl.ok(&["content", "active"]), "REF\tSIZE\tAGE\t\n");
    assert_eq!(ctl.ok(&["content", "ls", "-q"]).lines().count(), 2);
}

#[test]
fn errors_say_what_is_wrong_and_exit_1() {
    if !require_root("runs corrald on a private root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let (daemon, scratch) = setup(&temp);
    let ctl = Ctl {
        daemon: &daemon,
        scratch: scratch.clone(),
    };
    let unknown = format!("sha256:{}", "1".repeat(64));
    assert_eq!(
        ctl.fails(&["content", "get", &unknown]),
        format!("content digest {unknown}: not found")
    );
    assert_eq!(
        ctl.fails(&["content", "get"]),
        "invalid checksum digest format"
    );
    assert_eq!(
        ctl.fails(&["content", "get", "sha256:12"]),
        "invalid checksum digest length"
    );
    assert_eq!(
        ctl.fails(&["content", "label", "sha1:ab"]),
        "unsupported digest algorithm"
    );
    assert_eq!(
        ctl.fails(&["content", "label", &unknown, "a=b"]),
        format!("content digest {unknown}: not found")
    );
    // A blob of one namespace is not in another.
    let path = scratch.join("x");
    fs::write(&path, b"x").unwrap();
    assert!(ctl
        .ingest(&["content", "ingest", "x"], &path)
        .status
        .success());
    let dx = sha256(b"x");
    let out = ctl.output_in("elsewhere", &["content", "get", &dx], None);
    assert_eq!(
        failure_message(&out, "corralctl: ", &["get"]),
        format!("content digest {dx}: not found")
    );
    let out = ctl.output_in("", &["content", "ls"], None);
    assert_eq!(
        failure_message(&out, "corralctl: ", &["ls"]),
        "namespace is required: failed precondition"
    );
    // delete goes on after a bad digest and fails at the end.
    let out = ctl.output(&["content", "delete", "nope", &dx]);
    assert_eq!(text(&out.stdout), format!("{dx}\n"));
    assert_eq!(
        failure_message(&out, "corralctl: ", &["delete"]),
        "invalid checksum digest format"
    );
    assert!(
        text(&out.stderr).contains("could not delete nope"),
        "{}",
        text(&out.stderr)
    );

    for sn in ["nope", "zfs"] {
        for verb in [
            &["ls"][..],
            &["prepare", "k"],
            &["usage"],
            &["tree"],
            &["info", "k"],
        ] {
            let mut args = vec!["snapshots", "--snapshotter", sn];
            args.extend_from_slice(verb);
            assert_eq!(
                ctl.fails(&args),
                format!("snapshotter not loaded: {sn}: invalid argument")
            );
        }
    }
    assert_eq!(
        ctl.fails(&["snapshots", "info", "missing"]),
        "snapshot missing does not exist: not found"
    );
    assert_eq!(
        ctl.fails(&["snapshots", "rm", "missing"]),
        "failed to remove \"missing\": snapshot missing does not exist: not found"
    );
    // The snapshotter also comes from the environment.
    let mut cmd = ctl.cmd(NS, &["snapshots", "ls"]);
    cmd.env("CORRAL_SNAPSHOTTER", "nope");
    let out = run(cmd, None, &scratch);
    assert_eq!(
        failure_message(&out, "corralctl: ", &["ls"]),
        "snapshotter not loaded: nope: invalid argument"
    );

    // Usage errors are clap's (exit 2), never a panic.
    for args in [
        &["snapshots", "prepare"][..],
        &["snapshots", "commit", "one"],
        &["snapshots", "mounts", "/mnt"],
        &["snapshots", "rm"],
        &["content", "prune"],
        &["content", "ingest", "--expected-size", "x", "r"],
    ] {
        assert_eq!(ctl.output(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn without_corrald_both_nouns_say_so() {
    let temp = TempRoot::new().unwrap();
    let sock = temp.join("absent.sock");
    for args in [
        &["content", "ls"][..],
        &["content", "get", &format!("sha256:{}", "2".repeat(64))],
        &["content", "active"],
        &["content", "prune", "references"],
        &["snapshots", "ls"],
        &["snapshot", "info", "k"],
    ] {
        let out = run(
            {
                let mut cmd = corralctl();
                cmd.arg("-a").arg(&sock).args(args);
                cmd
            },
            None,
            temp.path(),
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "corralctl: connect {}: no such file or directory — is corrald running?\n",
                sock.display()
            ),
            "{args:?}"
        );
    }
}

#[test]
fn help_lists_ctrs_verbs_and_aliases() {
    let temp = TempRoot::new().unwrap();
    let help = |args: &[&str]| {
        let mut cmd = corralctl();
        cmd.args(args).arg("--help");
        let out = run(cmd, None, temp.path());
        assert!(out.status.success(), "{args:?}: {out:?}");
        text(&out.stdout)
    };
    let top = help(&[]);
    for noun in ["content", "snapshots", "snapshot"] {
        assert!(top.contains(noun), "{noun}: {top}");
    }
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .map(String::from)
            .collect()
    };
    let content = words(&help(&["content"]));
    for verb in [
        "active", "delete", "del", "remove", "rm", "edit", "get", "ingest", "list", "ls", "label",
        "prune",
    ] {
        assert!(content.iter().any(|w| w == verb), "content lacks {verb}");
    }
    for noun in ["snapshots", "snapshot"] {
        let verbs = words(&help(&[noun]));
        for verb in [
            "commit",
            "info",
            "list",
            "ls",
            "mounts",
            "m",
            "mount",
            "prepare",
            "delete",
            "del",
            "remove",
            "rm",
            "label",
            "tree",
            "usage",
            "view",
            "unpack",
            "snapshotter",
        ] {
            assert!(verbs.iter().any(|w| w == verb), "{noun} lacks {verb}");
        }
    }
    for (args, flags) in [
        (&["content", "ls"][..], &["--quiet", "-q"][..]),
        (
            &["content", "ingest"],
            &["--expected-size", "--expected-digest"],
        ),
        (&["content", "edit"], &["--editor", "--validate"]),
        (&["content", "prune", "references"], &["--async", "--dry"]),
        (&["snapshots", "prepare"], &["--target", "-t", "--mounts"]),
        (&["snapshots", "view"], &["--target", "--mounts"]),
        (&["snapshots", "usage"], &["-b"]),
    ] {
        let h = help(args);
        for flag in flags {
            assert!(h.contains(flag), "{args:?} lacks {flag}:\n{h}");
        }
    }
}

#[test]
fn printed_mounts_mount_and_views_see_commits() {
    if !require_root("mounts overlay and bind snapshots") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    // Snapshots made on the command line hold no lease and no root label: a collection
    // that a commit schedules could take them between two commands (as containerd's would).
    // Here collections wait for an hour unless asked for.
    let daemon = Corrald::start(
        &temp,
        "corrald.log",
        "[plugins.\"io.containerd.gc.v1.scheduler\"]\nschedule_delay = \"1h\"\n",
    )
    .unwrap();
    collect_now(&daemon);
    let scratch = temp.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let ctl = Ctl {
        daemon: &daemon,
        scratch: scratch.clone(),
    };
    for sn in ["overlayfs", "native"] {
        let s = |args: &[&str]| -> Vec<String> {
            ["snapshots", "--snapshotter", sn]
                .iter()
                .chain(args)
                .map(|a| a.to_string())
                .collect()
        };
        let ok = |args: &[&str]| {
            let args = s(args);
            ctl.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let target = temp.join(format!("mnt-{sn}"));
        fs::create_dir_all(&target).unwrap();
        let t = target.to_str().unwrap();

        // prepare -t prints the commands that mount it; running them gives a writable tree.
        let commands = ok(&["prepare", "-t", t, "base"]);
        mount_printed(&commands, &target);
        fs::create_dir(target.join("etc")).unwrap();
        fs::write(target.join("etc/hello"), b"from base\n").unwrap();
        umount(&target);
        ok(&["commit", "base-c", "base"]);

        // A child sees its parent's files and keeps its own.
        let json = ok(&["prepare", "--mounts", "child", "base-c"]);
        let mounts: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(mounts.as_array().is_some_and(|m| !m.is_empty()), "{json}");
        mount_printed(&ok(&["mounts", t, "child"]), &target);
        assert_eq!(fs::read(target.join("etc/hello")).unwrap(), b"from base\n");
        fs::write(target.join("etc/hello"), b"from child\n").unwrap();
        umount(&target);
        ok(&["commit", "child-c", "child"]);

        // A view is read-only and sees the commit.
        mount_printed(&ok(&["view", "-t", t, "look", "child-c"]), &target);
        assert_eq!(fs::read(target.join("etc/hello")).unwrap(), b"from child\n");
        assert!(fs::write(target.join("etc/other"), b"x").is_err());
        umount(&target);
        let usage = ok(&["usage", "-b", "base-c"]);
        let row: Vec<&str> = usage.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[0], "base-c");
        assert!(row[1].parse::<u64>().unwrap() > 0, "{usage}");
        assert_eq!(ok(&["tree"]), " base-c\n  \\_ child-c\n    \\_ look\n");
        ok(&["rm", "look", "child-c", "base-c"]);
        assert_eq!(ok(&["ls"]), "KEY PARENT KIND \n");
    }
    assert!(mounts_under(temp.path()).unwrap().is_empty());
}

/// Runs the `mount ...` lines corralctl printed, checking they mount at `target`.
fn mount_printed(commands: &str, target: &Path) {
    let lines: Vec<&str> = commands.lines().collect();
    assert!(!lines.is_empty(), "no mount commands printed");
    for line in lines {
        assert!(line.starts_with("mount -t "), "{line}");
        assert!(
            line.contains(&format!(" {} -o ", target.display())),
            "{line}"
        );
        let status = Command::new("sh").arg("-c").arg(line).status().unwrap();
        assert!(status.success(), "{line}: {status}");
    }
    assert!(
        !mounts_under(target).unwrap().is_empty(),
        "nothing mounted at {target:?}"
    );
}

fn umount(target: &Path) {
    let status = Command::new("umount").arg(target).status().unwrap();
    assert!(status.success(), "umount {target:?}: {status}");
}
