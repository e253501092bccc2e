//! `corralctl images pull` and `push` against a private `docker-registry` on 127.0.0.1 (no
//! internet): the busybox fixture pushed, removed, pulled back and run; basic auth through
//! htpasswd (right and wrong password); TLS with a self-signed CA given in `hosts.toml`; a
//! mirror from `hosts.toml` used first; a corrupted blob refused with nothing left visible;
//! an interrupted pull resumed from the stored offsets.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::content::v1::content::ListStatusesRequest;
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_tests::ctl::{corralctl, ctl, fails, ok, stderr, stdout};
use corral_tests::harness::registry::{free_port, Registry, RegistryOptions, ThrottledProxy};
use corral_tests::harness::{
    require_root, require_tool, wait_for, wait_for_some, ChildGuard, ContainerdOptions, Corrald,
    PrivateContainerd, TempRoot,
};
use corral_tests::oci_archive;

const LOCAL: &str = "docker.io/corral/busybox:latest";
const MANIFEST: &str = "sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6";
const LAYER: &str = "sha256:bd45cf941c51781cb1b4cc87cb6a526cf6bb5e3e85bf34876acfb6992c3b1029";
const CHAIN: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
const NS: &str = "corral-registry";

/// Removes the cgroups runc made for namespace `ns` (`<hierarchy>/<ns>`), once empty.
struct NamespaceCgroups(String);

impl Drop for NamespaceCgroups {
    fn drop(&mut self) {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(&self.0)];
        if let Ok(rd) = fs::read_dir(root) {
            dirs.extend(rd.flatten().map(|e| e.path().join(&self.0)));
        }
        let until = Instant::now() + Duration::from_secs(10);
        for dir in dirs.into_iter().filter(|d| d.is_dir()) {
            while fs::remove_dir(&dir).is_err() && dir.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar")
}

/// A corrald and what a test needs around it; `None` when the test is skipped.
struct Env {
    _temp: TempRoot,
    daemon: Corrald,
    registry_bin: PathBuf,
}

impl Env {
    fn start() -> Option<Env> {
        if !require_root("runs corrald on a private root") {
            return None;
        }
        let registry_bin = require_tool("docker-registry")?;
        require_tool("htpasswd")?;
        require_tool("openssl")?;
        let temp = TempRoot::new().unwrap();
        let daemon = Corrald::start(&temp, "corrald.log", "").unwrap();
        Some(Env {
            _temp: temp,
            daemon,
            registry_bin,
        })
    }

    fn a(&self) -> &Path {
        self.daemon.socket()
    }

    fn registry(&self, opts: &RegistryOptions) -> Registry {
        Registry::start(&self.registry_bin, opts).unwrap()
    }

    /// Imports the busybox fixture as [`LOCAL`].
    fn import(&self) {
        ok(
            self.a(),
            NS,
            &[
                "images",
                "import",
                "--base-name",
                "docker.io/corral/busybox",
                fixture().to_str().unwrap(),
            ],
        );
    }

    /// The digests of the namespace's blobs.
    fn content(&self) -> Vec<String> {
        ok(self.a(), NS, &["content", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn images(&self) -> String {
        ok(self.a(), NS, &["images", "ls", "-q"])
    }

    /// Removes every image and collects what nothing holds any more.
    fn clear(&self) {
        for name in self.images().lines() {
            ok(self.a(), NS, &["images", "rm", "--sync", name]);
        }
        let id = ok(self.a(), NS, &["leases", "create", "--expires", "0"]);
        ok(self.a(), NS, &["leases", "rm", "--sync", id.trim()]);
    }
}

#[test]
fn push_remove_pull_and_run() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions::default());
    let remote = format!("{}/corral/busybox:1.0", reg.host());
    env.import();
    ok(
        env.a(),
        NS,
        &["images", "push", "--plain-http", &remote, LOCAL],
    );
    assert!(reg.blob_path(LAYER).exists(), "{}", reg.log());
    // Pushing again finds everything there (one upload at a time, as ctr's flag asks).
    ok(
        env.a(),
        NS,
        &[
            "images",
            "push",
            "--plain-http",
            "--max-concurrent-uploaded-layers",
            "1",
            &remote,
            LOCAL,
        ],
    );

    env.clear();
    assert!(env.content().is_empty(), "{:?}", env.content());

    let out = ok(
        env.a(),
        NS,
        &["images", "pull", "--plain-http", "--print-chainid", &remote],
    );
    assert!(
        out.contains(&format!("unpacking linux/amd64 {MANIFEST}...")),
        "{out}"
    );
    assert!(out.contains(&format!("image chain ID: {CHAIN}")), "{out}");
    assert_eq!(env.images().trim(), remote);
    let content = env.content();
    assert!(content.contains(&LAYER.to_string()), "{content:?}");
    let check = ok(env.a(), NS, &["images", "check"]);
    assert!(check.contains("complete (2/2)"), "{check}");
    // The blobs remember where they came from, as containerd's do.
    let labels = ok(env.a(), NS, &["content", "ls"]);
    assert!(
        labels.contains(&format!(
            "containerd.io/distribution.source.{}=corral/busybox",
            reg.host()
        )),
        "{labels}"
    );
    // Pulling again fetches nothing new and succeeds.
    ok(env.a(), NS, &["images", "pull", &remote]);
    // Pushed to another repository of the registry, the blobs are mounted, not uploaded.
    let copy = format!("{}/corral/copy:1", reg.host());
    ok(env.a(), NS, &["images", "push", &copy, &remote]);
    let log = reg.log();
    let mounted = log.lines().any(|l| {
        l.contains("POST /v2/corral/copy/blobs/uploads/?mount=")
            && l.contains("from=corral%2Fbusybox")
            && l.contains("\" 201 ")
    });
    assert!(mounted, "{log}");

    if require_tool("runc").is_some() {
        let _cgroups = NamespaceCgroups(NS.to_string());
        let out = ctl(
            env.a(),
            NS,
            &["run", "--rm", &remote, "pulled", "echo", "pulled"],
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout(&out), "pulled\n");
    }

    // A tag the registry does not have.
    let err = fails(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            &format!("{}/corral/busybox:nope", reg.host()),
        ],
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_manifest_is_pushed_by_its_digest() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions::default());
    let remote = format!("{}/bydigest/busybox:v1", reg.host());
    env.import();
    // ctr's --manifest: no local image named, the digest and --manifest-type instead.
    ok(
        env.a(),
        NS,
        &[
            "images",
            "push",
            "--manifest",
            MANIFEST,
            "--manifest-type",
            "application/vnd.oci.image.manifest.v1+json",
            &remote,
        ],
    );
    env.clear();
    ok(env.a(), NS, &["images", "pull", &remote]);
    let listed = ok(env.a(), NS, &["images", "ls"]);
    assert!(
        listed.contains(&remote) && listed.contains(MANIFEST),
        "{listed}"
    );

    let err = fails(
        env.a(),
        NS,
        &["images", "push", "--manifest", "sha256:nope", &remote],
    );
    assert!(err.contains("invalid manifest digest"), "{err}");
    let absent = format!("sha256:{}", "0".repeat(64));
    let err = fails(
        env.a(),
        NS,
        &["images", "push", "--manifest", &absent, &remote],
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn basic_auth_through_htpasswd() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions {
        htpasswd: Some(("edge".into(), "s3cret".into())),
        ..Default::default()
    });
    let remote = format!("{}/private/busybox:latest", reg.host());
    env.import();
    let err = fails(env.a(), NS, &["images", "push", &remote, LOCAL]);
    assert!(err.contains("401") || err.contains("denied"), "{err}");
    ok(
        env.a(),
        NS,
        &["images", "push", "-u", "edge:s3cret", &remote, LOCAL],
    );
    env.clear();

    let err = fails(
        env.a(),
        NS,
        &["images", "pull", "-u", "edge:wrong", &remote],
    );
    assert!(err.contains("401") || err.contains("denied"), "{err}");
    assert!(!err.contains("wrong"), "the password is printed: {err}");
    assert!(env.images().trim().is_empty());
    let err = fails(env.a(), NS, &["images", "pull", &remote]);
    assert!(err.contains("401") || err.contains("denied"), "{err}");
    // ctr's --http-dump shows each exchange's head, credentials masked.
    let out = ctl(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            "--http-dump",
            "--user",
            "edge:s3cret",
            &remote,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let dump = stderr(&out);
    let manifest = format!(
        "HEAD http://{}/v2/private/busybox/manifests/latest HTTP/1.1",
        reg.host()
    );
    assert!(dump.contains(&manifest), "{dump}");
    assert!(dump.contains("HTTP/1.1 200 OK"), "{dump}");
    assert!(dump.contains("authorization: <redacted>"), "{dump}");
    // "edge:s3cret" in base64, as a Basic header carries it.
    for secret in ["s3cret", "ZWRnZTpzM2NyZXQ"] {
        assert!(!dump.contains(secret), "a credential is printed: {dump}");
    }
    assert_eq!(env.images().trim(), remote);
}

/// A hosts directory naming `reg` by https, with `extra` lines in its `hosts.toml`.
fn https_hosts_dir(reg: &Registry, extra: &str) -> tempfile::TempDir {
    let hosts = tempfile::tempdir().unwrap();
    let dir = hosts.path().join(reg.host());
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("hosts.toml"),
        format!("server = \"https://{}\"\n{extra}", reg.host()),
    )
    .unwrap();
    hosts
}

#[test]
fn tls_with_a_ca_from_hosts_toml() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions {
        tls: true,
        ..Default::default()
    });
    let hosts = https_hosts_dir(&reg, "ca = \"ca.crt\"\n");
    fs::copy(
        reg.ca_cert().unwrap(),
        hosts.path().join(reg.host()).join("ca.crt"),
    )
    .unwrap();
    let hosts_dir = hosts.path().to_str().unwrap();
    let remote = format!("{}/secure/busybox:latest", reg.host());
    env.import();

    ok(
        env.a(),
        NS,
        &["images", "push", "--hosts-dir", hosts_dir, &remote, LOCAL],
    );
    env.clear();
    ok(
        env.a(),
        NS,
        &["images", "pull", "--hosts-dir", hosts_dir, &remote],
    );
    assert_eq!(env.images().trim(), remote);

    // The same server named https without its CA: refused as a TLS failure.
    let bad = https_hosts_dir(&reg, "");
    env.clear();
    let err = fails(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            "--hosts-dir",
            bad.path().to_str().unwrap(),
            &remote,
        ],
    );
    eprintln!("unknown CA: {err}");
    assert!(err.contains("tls") || err.contains("certificate"), "{err}");
    ok(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            "--skip-verify",
            "--hosts-dir",
            bad.path().to_str().unwrap(),
            &remote,
        ],
    );

    // The CA on the command line instead (ctr's --tlscacert), read before any request.
    let ca = reg.ca_cert().unwrap();
    env.clear();
    let bad_dir = bad.path().to_str().unwrap();
    ok(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            "--tlscacert",
            ca.to_str().unwrap(),
            "--hosts-dir",
            bad_dir,
            &remote,
        ],
    );
    assert_eq!(env.images().trim(), remote);
    let missing = hosts.path().join("missing.pem");
    let not_pem = hosts.path().join("not.pem");
    fs::write(&not_pem, "no certificates here\n").unwrap();
    for (args, want) in [
        (
            vec!["--tlscacert", missing.to_str().unwrap()],
            format!("failed to read {:?}", missing.display().to_string()),
        ),
        (
            vec!["--tlscacert", not_pem.to_str().unwrap()],
            format!(
                "failed to load TLS CAs from {:?}: invalid data",
                not_pem.display().to_string()
            ),
        ),
        (
            vec!["--tlscert", ca.to_str().unwrap()],
            "flags --tlscert and --tlskey must be set together".to_string(),
        ),
        (
            vec![
                "--tlscert",
                ca.to_str().unwrap(),
                "--tlskey",
                not_pem.to_str().unwrap(),
            ],
            "failed to load TLS client credentials".to_string(),
        ),
    ] {
        let mut argv = vec!["images", "pull", "--hosts-dir", bad_dir];
        argv.extend(args);
        argv.push(&remote);
        let err = fails(env.a(), NS, &argv);
        assert!(err.contains(&want), "{argv:?}: {err}");
    }
}

#[test]
fn a_registry_asking_for_a_client_certificate_gets_the_one_on_the_command_line() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions {
        tls: true,
        client_certs: true,
        ..Default::default()
    });
    let hosts = https_hosts_dir(&reg, "");
    let hosts_dir = hosts.path().to_str().unwrap();
    let ca = reg.ca_cert().unwrap();
    let (cert, key) = reg.client_pair().unwrap();
    let remote = format!("{}/mutual/busybox:latest", reg.host());
    let tls = [
        "--hosts-dir",
        hosts_dir,
        "--tlscacert",
        ca.to_str().unwrap(),
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ];
    env.import();
    let mut push = vec!["images", "push"];
    push.extend(tls);
    push.extend([remote.as_str(), LOCAL]);
    ok(env.a(), NS, &push);
    env.clear();

    // Without a client certificate the registry ends the handshake.
    let err = fails(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            "--hosts-dir",
            hosts_dir,
            "--tlscacert",
            ca.to_str().unwrap(),
            &remote,
        ],
    );
    eprintln!("no client certificate: {err}");
    assert!(env.images().trim().is_empty());
    let mut pull = vec!["images", "pull"];
    pull.extend(tls);
    pull.push(&remote);
    ok(env.a(), NS, &pull);
    assert_eq!(env.images().trim(), remote);
}

#[test]
fn a_mirror_in_hosts_toml_is_used_first() {
    let Some(env) = Env::start() else {
        return;
    };
    let mirror = env.registry(&RegistryOptions::default());
    env.import();
    ok(
        env.a(),
        NS,
        &[
            "images",
            "push",
            &format!("{}/corral/busybox:latest", mirror.host()),
            LOCAL,
        ],
    );
    env.clear();
    // The upstream does not even listen: only the mirror can serve the pull.
    let upstream = format!("127.0.0.1:{}", free_port().unwrap());
    let hosts = tempfile::tempdir().unwrap();
    let dir = hosts.path().join(&upstream);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{upstream}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.host()
        ),
    )
    .unwrap();
    let remote = format!("{upstream}/corral/busybox:latest");
    ok(
        env.a(),
        NS,
        &[
            "images",
            "pull",
            "--hosts-dir",
            hosts.path().to_str().unwrap(),
            &remote,
        ],
    );
    assert_eq!(env.images().trim(), remote);
    assert!(env.content().contains(&LAYER.to_string()));
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_left() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions::default());
    let remote = format!("{}/corral/busybox:latest", reg.host());
    env.import();
    ok(env.a(), NS, &["images", "push", &remote, LOCAL]);
    env.clear();
    // Same size, one byte changed: only the digest tells.
    let path = reg.blob_path(LAYER);
    let mut data = fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&path, &data).unwrap();

    let out = ctl(env.a(), NS, &["images", "pull", &remote]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    eprintln!("corrupted blob: {err}");
    assert!(err.contains("digest"), "{err}");
    assert!(env.images().trim().is_empty(), "{}", env.images());
    assert!(!env.content().contains(&LAYER.to_string()));
    env.clear();
    assert!(env.content().is_empty(), "{:?}", env.content());
}

/// The ingests in progress: reference to offset.
fn active_ingests(a: &Path) -> Vec<(String, i64)> {
    let client = ContentClient::new(Client::connect(a.to_str().unwrap()).unwrap());
    let ctx = CallContext::new().with_namespace(NS);
    client
        .list_statuses(&ctx, &ListStatusesRequest::new())
        .unwrap()
        .statuses
        .into_iter()
        .map(|s| (s.ref_, s.offset))
        .collect()
}

#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions::default());
    // Two layers of about 2.5 MiB each once compressed.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("big.tar");
    oci_archive::write_image(
        &archive,
        "docker.io/corral/big:latest",
        &oci_archive::generated_layers(16 << 20, 2, 7),
    )
    .unwrap();
    ok(
        env.a(),
        NS,
        &["images", "import", "--no-unpack", archive.to_str().unwrap()],
    );
    let local = env.images().lines().next().unwrap().to_string();
    let remote = format!("{}/corral/big:latest", reg.host());
    ok(env.a(), NS, &["images", "push", &remote, &local]);
    let layer_bytes: u64 = fs::read_dir(reg.storage().join("docker/registry/v2/blobs/sha256"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|b| fs::metadata(b.unwrap().path().join("data")).unwrap().len())
        .filter(|len| *len > 1 << 20)
        .sum();
    assert!(layer_bytes > 2 << 20, "{layer_bytes}");
    env.clear();

    // Through a slow proxy (about 3 MiB/s), killed once a good part has arrived.
    let proxy = ThrottledProxy::start(&reg.host(), 16 << 10, Duration::from_millis(5)).unwrap();
    let via_proxy = format!("{}/corral/big:latest", proxy.host());
    let mut cmd = corralctl();
    cmd.arg("-a")
        .arg(env.a())
        .args(["-n", NS, "images", "pull", &via_proxy])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn("corralctl pull", &mut cmd).unwrap();
    wait_for(
        Duration::from_secs(60),
        "half of the layers to arrive",
        || proxy.forwarded() > layer_bytes / 2,
    )
    .unwrap();
    child.kill().unwrap();
    let ingests = wait_for_some(Duration::from_secs(10), "the interrupted ingests", || {
        let i: Vec<(String, i64)> = active_ingests(env.a())
            .into_iter()
            .filter(|(r, o)| r.starts_with("layer-sha256:") && *o > 0)
            .collect();
        (!i.is_empty()).then_some(i)
    })
    .unwrap();
    let stored: i64 = ingests.iter().map(|(_, o)| o).sum::<i64>()
        + env
            .content()
            .iter()
            .map(|d| ok(env.a(), NS, &["content", "get", d]).len() as i64)
            .filter(|len| *len > 1 << 20)
            .sum::<i64>();
    assert!(stored > 0);
    assert!(env.images().trim().is_empty());

    // The second pull fetches only what is missing (HTTP ranges from the stored offsets).
    let before = proxy.forwarded();
    ok(env.a(), NS, &["images", "pull", &via_proxy]);
    let second = proxy.forwarded() - before;
    let missing = layer_bytes - stored as u64;
    eprintln!("first pull stored {stored} of {layer_bytes} layer bytes; the second moved {second}");
    assert!(
        second < missing + (256 << 10),
        "second pull moved {second} bytes; {missing} of {layer_bytes} were missing"
    );
    assert_eq!(env.images().trim(), via_proxy);
    let check = ok(env.a(), NS, &["images", "check"]);
    assert!(check.contains("complete (3/3)"), "{check}");
    assert!(active_ingests(env.a()).is_empty());
}

/// An OCI layout archive of an index with a linux/amd64 and a linux/arm64 image, each of one
/// small uncompressed layer holding `arch.txt`; the digests of the two layers.
fn multi_platform_archive(out: &Path) -> (String, String) {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests = Vec::new();
    let mut layers = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = oci_archive::layer_tar(&[oci_archive::File {
            path: "arch.txt".into(),
            data: format!("{arch}\n").into_bytes(),
        }])
        .unwrap();
        let layer_d = oci_archive::digest(&layer);
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_d]},
        })
        .to_string();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": oci_archive::digest(config.as_bytes()),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_d,
                "size": layer.len(),
            }],
        })
        .to_string();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": oci_archive::digest(manifest.as_bytes()),
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        layers.push(layer_d.clone());
        blobs.push((layer_d, layer));
        blobs.push((oci_archive::digest(config.as_bytes()), config.into_bytes()));
        blobs.push((
            oci_archive::digest(manifest.as_bytes()),
            manifest.into_bytes(),
        ));
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string();
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", index.as_bytes());
    for (d, data) in &blobs {
        add(&format!("blobs/sha256/{}", &d[7..]), data);
    }
    b.finish().unwrap();
    (layers[0].clone(), layers[1].clone())
}

#[test]
fn a_multi_platform_index_pulls_the_hosts_platform() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipping: the generated index has linux/amd64 as the host's platform");
        return;
    }
    let Some(env) = Env::start() else {
        return;
    };
    let reg = env.registry(&RegistryOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("multi.tar");
    let (amd64, arm64) = multi_platform_archive(&archive);
    ok(
        env.a(),
        NS,
        &[
            "images",
            "import",
            "--all-platforms",
            "--no-unpack",
            "--index-name",
            "docker.io/corral/multi:latest",
            archive.to_str().unwrap(),
        ],
    );
    let remote = format!("{}/corral/multi:latest", reg.host());
    ok(
        env.a(),
        NS,
        &["images", "push", &remote, "docker.io/corral/multi:latest"],
    );
    assert!(reg.blob_path(&arm64).exists());
    env.clear();

    let out = ok(env.a(), NS, &["images", "pull", &remote]);
    assert!(out.contains("unpacking linux/amd64 sha256:"), "{out}");
    let content = env.content();
    assert!(content.contains(&amd64), "{content:?}");
    assert!(!content.contains(&arm64), "{content:?}");
    let list = ok(env.a(), NS, &["images", "ls"]);
    assert!(
        list.contains("application/vnd.oci.image.index.v1+json"),
        "{list}"
    );

    // --platform asks for another one, --all-platforms for every one.
    env.clear();
    ok(
        env.a(),
        NS,
        &["images", "pull", "--platform", "linux/arm64", &remote],
    );
    let content = env.content();
    assert!(
        content.contains(&arm64) && !content.contains(&amd64),
        "{content:?}"
    );
    let out = ok(env.a(), NS, &["images", "pull", "--all-platforms", &remote]);
    assert!(out.contains("unpacking linux/arm64"), "{out}");
    let content = env.content();
    assert!(
        content.contains(&arm64) && content.contains(&amd64),
        "{content:?}"
    );
}

#[test]
fn interop_with_containerd_both_ways() {
    let Some(env) = Env::start() else {
        return;
    };
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    if require_tool("runc").is_none() {
        return;
    }
    let _cgroups = NamespaceCgroups(NS.to_string());
    let reg = env.registry(&RegistryOptions::default());
    let options = ContainerdOptions {
        binary: containerd,
        ctr,
        ..ContainerdOptions::default()
    };

    // containerd's ctr pushes, Corral pulls and runs.
    let pushed_by_ctr = format!("{}/from/containerd:latest", reg.host());
    {
        let c = PrivateContainerd::start_with(options.clone()).unwrap();
        let ctr = |args: &[&str]| -> String {
            let mut all = vec!["-n", NS];
            all.extend_from_slice(args);
            c.ctr(&all)
                .unwrap_or_else(|e| panic!("ctr {args:?}: {e}\n{}", c.log_tail(30)))
        };
        ctr(&["images", "import", fixture().to_str().unwrap()]);
        ctr(&["images", "push", "--plain-http", &pushed_by_ctr, LOCAL]);
        c.stop().unwrap();
    }
    let out = ok(
        env.a(),
        NS,
        &["images", "pull", "--print-chainid", &pushed_by_ctr],
    );
    assert!(out.contains(&format!("image chain ID: {CHAIN}")), "{out}");
    let run = ctl(
        env.a(),
        NS,
        &["run", "--rm", &pushed_by_ctr, "c1", "echo", "hi"],
    );
    assert!(run.status.success(), "{run:?}");
    assert_eq!(stdout(&run), "hi\n");

    // Corral pushes, containerd pulls the same digests.
    let pushed_by_corral = format!("{}/from/corral:latest", reg.host());
    ok(
        env.a(),
        NS,
        &["images", "push", &pushed_by_corral, &pushed_by_ctr],
    );
    {
        let c = PrivateContainerd::start_with(options.clone()).unwrap();
        let out = c
            .ctr([
                "-n",
                NS,
                "images",
                "pull",
                "--plain-http",
                &pushed_by_corral,
            ])
            .unwrap_or_else(|e| panic!("ctr pull: {e}\n{}", c.log_tail(30)));
        assert!(out.contains(MANIFEST), "{out}");
        c.stop().unwrap();
    }

    // An image Corral pulled runs under containerd on Corral's root.
    let Env {
        _temp: temp,
        daemon,
        ..
    } = env;
    daemon.stop_clean(Duration::from_secs(30));
    let c = PrivateContainerd::start_with(ContainerdOptions {
        root: Some(temp.root().to_path_buf()),
        ..options
    })
    .unwrap();
    let ctr = |args: &[&str]| -> String {
        let mut all = vec!["-n", NS];
        all.extend_from_slice(args);
        c.ctr(&all)
            .unwrap_or_else(|e| panic!("ctr {args:?}: {e}\n{}", c.log_tail(30)))
    };
    let ls = ctr(&["images", "ls", "-q"]);
    assert!(ls.contains(&pushed_by_ctr), "{ls}");
    assert_eq!(
        ctr(&["run", "--rm", &pushed_by_ctr, "c2", "echo", "hello"]),
        "hello\n"
    );
    c.stop().unwrap();
}

#[test]
fn large_blobs_go_up_in_chunks_and_come_back_by_range() {
    use corral_ctl::image::ocispec::Descriptor;
    use corral_ctl::registry::hosts::HostOptions;
    use corral_ctl::registry::resolver::{Pushed, Resolver};
    use std::io::Read;

    let Some(registry_bin) = require_tool("docker-registry") else {
        return;
    };
    let reg = Registry::start(&registry_bin, &RegistryOptions::default()).unwrap();
    let resolver = Resolver::new(HostOptions::default(), None);
    let repo = resolver
        .repository(&format!("{}/corral/chunks:latest", reg.host()))
        .unwrap()
        .with_chunk_size(1 << 20);
    let data = oci_archive::filler((3 << 20) + 12345, 11);
    let desc = Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar",
        &oci_archive::digest(&data),
        data.len() as i64,
    );
    let pushed = repo
        .push_blob(&desc, None, &mut || {
            Ok(Box::new(std::io::Cursor::new(data.clone())) as Box<dyn Read>)
        })
        .unwrap();
    assert_eq!(pushed, Pushed::Uploaded);
    let log = reg.log();
    let patches = log
        .lines()
        .filter(|l| l.contains("\"PATCH /v2/corral/chunks/blobs/uploads/"))
        .count();
    assert_eq!(patches, 4, "{log}");
    assert_eq!(fs::read(reg.blob_path(&desc.digest)).unwrap(), data);
    // Pushed again: the registry has it.
    let again = repo
        .push_blob(&desc, None, &mut || {
            unreachable!("nothing is uploaded twice")
        })
        .unwrap();
    assert_eq!(again, Pushed::Exists);
    // Read back from an offset.
    let mut tail = Vec::new();
    repo.fetch(&desc, 3 << 20)
        .unwrap()
        .read_to_end(&mut tail)
        .unwrap();
    assert_eq!(tail, &data[3 << 20..]);
}
