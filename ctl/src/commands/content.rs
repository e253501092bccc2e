//! `corralctl content`: list, read, write, edit, label, prune and delete the blobs of
//! corrald's content store, as ctr 1.6's `content` command does over containerd's `Content`
//! service (`cmd/ctr/commands/content`, `content/helpers.go`, `content/proxy`).
//!
//! Like ctr, nothing here takes a lease: a blob ingested without a `containerd.io/gc.root`
//! label or a reference from an image is the garbage collector's at its next run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use corral_protocols::rpc::{BidiStream, Code, Status};
use corral_protocols::services::content::v1::content::{
    DeleteContentRequest, Info, InfoRequest, ListContentRequest, ListStatusesRequest,
    ReadContentRequest, Status as WriteStatus, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::leases::v1::leases::DeleteRequest;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{EnumOrUnknown, MessageField};

use super::leases::create_request;
use super::{io_reason, join_labels, parse_labels, status_message, CtlError, CtlResult, Env};

/// Bytes per `Write` message and per read of the input (ctr's 1 MiB copy buffer).
const CHUNK: usize = 1 << 20;
/// Prefix of the gc labels by which a manifest refers to its layers.
const LAYER_LABEL_PREFIX: &str = "containerd.io/gc.ref.content.l.";
/// Prefix of every gc content-reference label (legacy layer labels are `<prefix><n>`, n > 0).
const CONTENT_LABEL_PREFIX: &str = "containerd.io/gc.ref.content.";
/// How long the lease `prune references` creates to trigger a collection lives at most.
const PRUNE_LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// The subcommands of `content`.
#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// display active transfers
    Active {
        /// total timeout for fetch (accepted and unused, as in ctr)
        #[arg(short = 't', value_name = "DURATION", value_parser = crate::cli::parse_duration)]
        fetch_timeout: Option<Duration>,
        /// path to content store root (accepted and unused, as in ctr)
        #[arg(long, default_value = "/tmp/content", hide_default_value = true)]
        root: PathBuf,
        /// A filter on the transfers, as containerd reads them (e.g. ref~=layer).
        #[arg(value_name = "FILTER")]
        filter: Option<String>,
    },
    /// permanently delete one or more blobs
    #[command(visible_aliases = ["del", "remove", "rm"])]
    Delete {
        /// The blobs to delete; deleted ones are printed, unknown ones skipped.
        #[arg(value_name = "DIGEST")]
        digests: Vec<String>,
    },
    /// edit a blob and return a new digest
    Edit {
        /// validate the result against a format (json, mediatype, etc.)
        #[arg(long, default_value = "")]
        validate: String,
        /// select editor (vim, emacs, etc.)
        #[arg(long, env = "EDITOR", default_value = "", hide_default_value = true)]
        editor: String,
        /// The blob to edit.
        #[arg(value_name = "DIGEST")]
        digest: Option<String>,
    },
    /// get the data for an object
    Get {
        /// The blob to write to stdout.
        #[arg(value_name = "DIGEST")]
        digest: Option<String>,
    },
    /// accept content into the store
    Ingest {
        /// validate against provided size
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        expected_size: i64,
        /// verify content against expected digest
        #[arg(long, default_value = "")]
        expected_digest: String,
        /// The transaction reference: a write interrupted under it resumes where it stopped.
        #[arg(value_name = "REF")]
        reference: Option<String>,
    },
    /// list all blobs in the store
    #[command(visible_alias = "ls")]
    List {
        /// print only the blob digest
        #[arg(short, long)]
        quiet: bool,
        /// Filters, as containerd reads them (e.g. labels.app==web).
        filters: Vec<String>,
    },
    /// add labels to content
    Label {
        /// The blob.
        #[arg(value_name = "DIGEST")]
        digest: Option<String>,
        /// Labels, KEY=VALUE; an empty value clears the label.
        labels: Vec<String>,
    },
    /// prunes content from the content store
    #[command(subcommand)]
    Prune(PruneCommand),
}

/// The subcommands of `content prune`.
#[derive(Debug, Subcommand)]
pub enum PruneCommand {
    /// prunes preference labels from the content store (layers only by default)
    References {
        /// allow garbage collection to cleanup asynchronously
        #[arg(long = "async")]
        asynchronous: bool,
        /// just show updates without applying (enables debug logging)
        #[arg(long)]
        dry: bool,
    },
}

/// Runs one `content` subcommand.
pub fn run(env: &Env, cmd: ContentCommand) -> CtlResult {
    let client = || env.connect().map(ContentClient::new);
    match cmd {
        ContentCommand::Active { filter, .. } => {
            let mut req = ListStatusesRequest::new();
            req.filters = filter.into_iter().filter(|f| !f.is_empty()).collect();
            let resp = client()?.list_statuses(&env.ctx, &req)?;
            print!("{}", active_output(&resp.statuses, SystemTime::now()));
            Ok(())
        }
        ContentCommand::Delete { digests } => delete(&client()?, env, &digests),
        ContentCommand::Edit {
            validate,
            editor,
            digest,
        } => edit(
            env,
            &validate,
            &editor,
            digest.as_deref().unwrap_or_default(),
        ),
        ContentCommand::Get { digest } => {
            let digest = parse_digest(digest.as_deref().unwrap_or_default())?;
            let client = client()?;
            let stdout = io::stdout();
            let mut out = stdout.lock();
            read_blob(&client, env, &digest, &mut out)?;
            match out.flush() {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CtlError::new(format!(
                    "write /dev/stdout: {}",
                    io_reason(&e)
                ))),
                _ => Ok(()),
            }
        }
        ContentCommand::Ingest {
            expected_size,
            expected_digest,
            reference,
        } => {
            if !expected_digest.is_empty() {
                parse_digest(&expected_digest)?;
            }
            let reference = reference.unwrap_or_default();
            if reference.is_empty() {
                return Err(CtlError::new("must specify a transaction reference"));
            }
            let client = client()?;
            write_blob(
                &client,
                env,
                &reference,
                Input::stdin(),
                expected_size,
                &expected_digest,
            )
        }
        ContentCommand::List { quiet, filters } => {
            let infos = list(&client()?, env, filters)?;
            print!("{}", list_output(&infos, quiet, SystemTime::now()));
            Ok(())
        }
        ContentCommand::Label { digest, labels } => {
            let client = client()?;
            let digest = parse_digest(digest.as_deref().unwrap_or_default())?;
            let labels = parse_labels(&labels);
            let info = if labels.is_empty() {
                info(&client, env, &digest)?
            } else {
                let mut info = Info::new();
                info.digest = digest;
                let mut mask = FieldMask::new();
                for (k, v) in labels {
                    mask.paths.push(format!("labels.{k}"));
                    if !v.is_empty() {
                        info.labels.insert(k, v);
                    }
                }
                update(&client, env, info, mask)?
            };
            println!("{}", join_labels(&info.labels));
            Ok(())
        }
        ContentCommand::Prune(PruneCommand::References { asynchronous, dry }) => {
            prune_references(env, asynchronous, dry)
        }
    }
}

/// go-digest's `Parse`: `<algorithm>:<hex>` with sha256, sha384 or sha512 and the hex of the
/// right length, refused with go-digest's messages as ctr prints them. corralctl does not
/// link the daemon, so these are the rules of corrald's `validate_digest` once more, until
/// that check moves to corral_protocols.
pub fn parse_digest(d: &str) -> CtlResult<String> {
    const FORMAT: &str = "invalid checksum digest format";
    let Some((alg, hex)) = d
        .split_once(':')
        .filter(|(a, h)| !a.is_empty() && !h.is_empty())
    else {
        return Err(CtlError::new(FORMAT));
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            // go-digest tells a well-formed unknown algorithm from garbage.
            let alg_ok = alg.split(['.', '+', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            let hex_ok = hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
            return Err(CtlError::new(if alg_ok && hex_ok {
                "unsupported digest algorithm"
            } else {
                FORMAT
            }));
        }
    };
    if hex.len() != len {
        return Err(CtlError::new("invalid checksum digest length"));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(CtlError::new(FORMAT));
    }
    Ok(d.to_string())
}

fn info(client: &ContentClient, env: &Env, digest: &str) -> CtlResult<Info> {
    let mut req = InfoRequest::new();
    req.digest = digest.to_string();
    Ok(client.info(&env.ctx, &req)?.info.unwrap_or_default())
}

fn update(client: &ContentClient, env: &Env, info: Info, mask: FieldMask) -> CtlResult<Info> {
    let req = UpdateRequest {
        info: MessageField::some(info),
        update_mask: MessageField::some(mask),
        ..Default::default()
    };
    Ok(client.update(&env.ctx, &req)?.info.unwrap_or_default())
}

/// Every blob the filters select, in the order corrald sends them.
fn list(client: &ContentClient, env: &Env, filters: Vec<String>) -> CtlResult<Vec<Info>> {
    let mut req = ListContentRequest::new();
    req.filters = filters;
    let mut out = Vec::new();
    for msg in client.list(&env.ctx, &req)? {
        out.extend(msg?.info);
    }
    Ok(out)
}

/// `content delete`: prints each blob deleted, skips unknown ones silently and goes on after
/// a failure, which it logs; the first failure is the command's error (ctr's behaviour).
fn delete(client: &ContentClient, env: &Env, digests: &[String]) -> CtlResult {
    let mut first_err = None;
    for arg in digests {
        let result = parse_digest(arg).and_then(|digest| {
            let mut req = DeleteContentRequest::new();
            req.digest = digest;
            match client.delete(&env.ctx, &req) {
                Ok(_) => Ok(true),
                Err(s) if s.code() == Code::NOT_FOUND => Ok(false),
                Err(s) => Err(CtlError::from(s)),
            }
        });
        match result {
            Ok(true) => println!("{arg}"),
            Ok(false) => log::debug!("{arg} was not there"),
            Err(e) => {
                log::error!("could not delete {arg}: {e}");
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Streams blob `digest` into `out` through one `Read` call, checking that the chunks follow
/// each other and add up to the size `Info` gives.
fn read_blob(client: &ContentClient, env: &Env, digest: &str, out: &mut dyn Write) -> CtlResult {
    let size = info(client, env, digest)?.size;
    let mut req = ReadContentRequest::new();
    req.digest = digest.to_string();
    let mut at = 0i64;
    for msg in client.read(&env.ctx, &req)? {
        let msg = msg?;
        if msg.offset != at {
            return Err(CtlError::new(format!(
                "reading {digest}: corrald sent offset {} where {at} was due",
                msg.offset
            )));
        }
        match out.write_all(&msg.data) {
            Ok(()) => {}
            // The reader went away (`get ... | head`): stop quietly, as a shell user expects.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => {
                return Err(CtlError::new(format!(
                    "write /dev/stdout: {}",
                    io_reason(&e)
                )))
            }
        }
        at += msg.data.len() as i64;
    }
    if at != size {
        return Err(CtlError::new(format!(
            "reading {digest}: unexpected EOF after {at} of {size} bytes"
        )));
    }
    Ok(())
}

/// What `ingest` and `edit` copy from. A resumed write skips what was already written by
/// seeking when the input is a regular file and, unlike ctr (whose seek on a pipe fails),
/// by reading and dropping those bytes otherwise, as containerd's `seekReader` does for a
/// reader that cannot seek.
struct Input {
    reader: Box<dyn Read>,
    /// The input again when it is a regular file, to seek on.
    file: Option<File>,
}

impl Input {
    fn stdin() -> Input {
        let file = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from)
            .filter(|f| f.metadata().is_ok_and(|m| m.file_type().is_file()));
        match file.as_ref().map(File::try_clone) {
            Some(Ok(reader)) => Input {
                reader: Box::new(reader),
                file,
            },
            _ => Input {
                reader: Box::new(io::stdin()),
                file: None,
            },
        }
    }

    fn from_file(file: File) -> Input {
        match file.try_clone() {
            Ok(reader) => Input {
                reader: Box::new(reader),
                file: Some(file),
            },
            Err(_) => Input {
                reader: Box::new(file),
                file: None,
            },
        }
    }

    /// Moves past the first `offset` bytes (containerd's `seekReader`).
    fn skip(&mut self, offset: u64) -> Result<(), String> {
        if let Some(file) = self.file.as_mut() {
            return match file.seek(SeekFrom::Start(offset)) {
                Ok(n) if n == offset => Ok(()),
                Ok(n) => Err(format!("failed to seek to offset {offset}: at {n}")),
                Err(e) => Err(format!(
                    "failed to seek to offset {offset}: {}",
                    io_reason(&e)
                )),
            };
        }
        let n = io::copy(&mut (&mut self.reader).take(offset), &mut io::sink())
            .map_err(|e| format!("failed to discard to offset: {}", io_reason(&e)))?;
        if n != offset {
            return Err("unable to discard to offset".to_string());
        }
        Ok(())
    }

    /// Fills `buf` as far as the input goes (Go's `io.ReadAtLeast` over the whole buffer).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// One `Content.Write` session on a reference (containerd's remote content writer): every
/// message is answered before the next is sent.
struct RemoteWriter {
    stream: BidiStream<WriteContentRequest, WriteContentResponse>,
    reference: String,
    offset: i64,
    digest: String,
}

impl RemoteWriter {
    /// Opens the session with a `STAT` naming the reference, as containerd's client does,
    /// waiting (with ctr's backoff) while another writer holds the reference.
    fn open(
        client: &ContentClient,
        env: &Env,
        reference: &str,
        total: i64,
        expected: &str,
    ) -> Result<RemoteWriter, Status> {
        let started = Instant::now();
        let mut retry_ms = 16u64;
        let mut warned = false;
        loop {
            match Self::negotiate(client, env, reference, total, expected) {
                Err(s) if s.code() == Code::UNAVAILABLE => {
                    if env.ctx.timeout().is_some_and(|t| started.elapsed() >= t) {
                        return Err(s);
                    }
                    if !warned {
                        log::warn!("{}; waiting for it", status_message(&s));
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(random_below(retry_ms)));
                    if retry_ms < 2048 {
                        retry_ms <<= 1;
                    }
                }
                other => return other,
            }
        }
    }

    fn negotiate(
        client: &ContentClient,
        env: &Env,
        reference: &str,
        total: i64,
        expected: &str,
    ) -> Result<RemoteWriter, Status> {
        let mut w = RemoteWriter {
            stream: client.write(&env.ctx)?,
            reference: reference.to_string(),
            offset: 0,
            digest: String::new(),
        };
        let resp = w.exchange(WriteContentRequest {
            action: EnumOrUnknown::new(WriteAction::STAT),
            ref_: reference.to_string(),
            total,
            expected: expected.to_string(),
            ..Default::default()
        })?;
        w.offset = resp.offset;
        Ok(w)
    }

    /// Sends one message and takes its answer.
    fn exchange(&mut self, req: WriteContentRequest) -> Result<WriteContentResponse, Status> {
        // A server that failed the call closed the stream; its status is in the answer.
        let sent = self.stream.send(&req);
        let resp = match self.stream.recv() {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                sent?;
                return Err(Status::unavailable("corrald closed the write stream"));
            }
            Err(s) => return Err(s),
        };
        if !resp.digest.is_empty() {
            self.digest = resp.digest.clone();
        }
        Ok(resp)
    }

    /// Appends `data` at the current offset.
    fn write(&mut self, data: &[u8]) -> CtlResult {
        let resp = self
            .exchange(WriteContentRequest {
                action: EnumOrUnknown::new(WriteAction::WRITE),
                offset: self.offset,
                data: data.to_vec(),
                ..Default::default()
            })
            .map_err(|s| CtlError::new(format!("failed to send write: {}", status_message(&s))))?;
        let written = resp.offset - self.offset;
        self.offset += written.max(0);
        if written < data.len() as i64 {
            return Err(CtlError::new("short write"));
        }
        Ok(())
    }

    /// Commits what was written as a blob of `size` bytes (0: any) and digest `expected`
    /// (empty: any). `Ok(false)` when the blob already existed.
    fn commit(mut self, size: i64, expected: &str) -> CtlResult<bool> {
        let failed = |reference: &str, msg: String| {
            CtlError::new(format!("failed commit on ref {reference:?}: {msg}"))
        };
        let resp = self.exchange(WriteContentRequest {
            action: EnumOrUnknown::new(WriteAction::COMMIT),
            total: size,
            offset: self.offset,
            expected: expected.to_string(),
            ..Default::default()
        });
        let _ = self.stream.close_send();
        let resp = match resp {
            Ok(resp) => resp,
            Err(s) if s.code() == Code::ALREADY_EXISTS => return Ok(false),
            Err(s) => {
                let msg = format!("commit failed: {}", status_message(&s));
                return Err(failed(&self.reference, msg));
            }
        };
        if size != 0 && resp.offset != size {
            let msg = format!("unexpected size: {} != {size}", resp.offset);
            return Err(failed(&self.reference, msg));
        }
        if !expected.is_empty() && resp.digest != expected {
            let msg = format!("unexpected digest: {} != {expected}", resp.digest);
            return Err(failed(&self.reference, msg));
        }
        Ok(true)
    }
}

/// containerd's `content.WriteBlob`: opens (or resumes) the write under `reference`, copies
/// the rest of `input` and commits. A blob that already exists is success, and its input is
/// left unread.
fn write_blob(
    client: &ContentClient,
    env: &Env,
    reference: &str,
    mut input: Input,
    size: i64,
    expected: &str,
) -> CtlResult {
    let mut w = match RemoteWriter::open(client, env, reference, size, expected) {
        Ok(w) => w,
        Err(s) if s.code() == Code::ALREADY_EXISTS => return Ok(()),
        Err(s) => {
            return Err(CtlError::new(format!(
                "failed to open writer: {}",
                status_message(&s)
            )))
        }
    };
    let start = w.offset;
    if start > 0 {
        log::debug!("resuming write of {reference} at offset {start}");
        input
            .skip(start as u64)
            .map_err(|e| CtlError::new(format!("unable to resume write to {reference}: {e}")))?;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0i64;
    loop {
        let n = input
            .fill(&mut buf)
            .map_err(|e| CtlError::new(format!("failed to copy: {}", io_reason(&e))))?;
        if n > 0 {
            w.write(&buf[..n])
                .map_err(|e| CtlError::new(format!("failed to copy: {e}")))?;
            copied += n as i64;
        }
        if n < buf.len() {
            break;
        }
    }
    if size != 0 && copied < size - start {
        return Err(CtlError::new(
            "failed to read expected number of bytes: unexpected EOF",
        ));
    }
    w.commit(size, expected).map(|_| ())
}

/// `content edit`: the blob into a temporary file, the editor on it, the result written back
/// as a new blob whose digest is printed (ctr's reference `edit-<digest>`).
fn edit(env: &Env, validate: &str, editor: &str, object: &str) -> CtlResult {
    if !validate.is_empty() {
        return Err(CtlError::new("validating the edit result not supported"));
    }
    let digest = parse_digest(object)?;
    let client = ContentClient::new(env.connect()?);
    if editor.is_empty() {
        return Err(CtlError::new("editor is required"));
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let (path, mut tmp) = create_temp(&dir, "edit-")?;
    let _cleanup = RemoveOnDrop(path.clone());
    read_blob(&client, env, &digest, &mut tmp)?;
    drop(tmp);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} {}", path.display()))
        .status()
        .map_err(|e| CtlError::new(format!("running {editor}: {}", io_reason(&e))))?;
    if !status.success() {
        // Go's words for a failed command, as ctr reports it.
        return Err(CtlError::new(match status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("{editor}: {status}"),
        }));
    }
    let file = File::open(&path)
        .map_err(|e| CtlError::new(format!("open {}: {}", path.display(), io_reason(&e))))?;
    let mut input = Input::from_file(file);
    let reference = format!("edit-{object}");
    let mut w = RemoteWriter::open(&client, env, &reference, 0, "").map_err(CtlError::from)?;
    if w.offset > 0 {
        // A stale write of an earlier edit: start it over.
        w.offset = 0;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = input
            .fill(&mut buf)
            .map_err(|e| CtlError::new(io_reason(&e)))?;
        if n > 0 {
            w.write(&buf[..n])?;
        }
        if n < buf.len() {
            break;
        }
    }
    let new_digest = w.digest.clone();
    w.commit(0, &new_digest)?;
    println!("{new_digest}");
    Ok(())
}

/// Creates `<dir>/<prefix><random>` that did not exist, for writing.
fn create_temp(dir: &std::path::Path, prefix: &str) -> CtlResult<(PathBuf, File)> {
    for _ in 0..100 {
        let path = dir.join(format!("{prefix}{}", random_below(u64::from(u32::MAX))));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(CtlError::new(format!(
                    "open {}: {}",
                    path.display(),
                    io_reason(&e)
                )))
            }
        }
    }
    Err(CtlError::new(format!(
        "no free temporary file name in {}",
        dir.display()
    )))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            log::debug!("removing {}: {e}", self.0.display());
        }
    }
}

/// Whether `key` is a gc label by which a manifest refers to a layer: `...content.l.<x>`, or
/// the legacy `...content.<n>` with a number other than 0 (0 was the config).
pub fn is_layer_label(key: &str) -> bool {
    if key.starts_with(LAYER_LABEL_PREFIX) {
        return true;
    }
    match key.strip_prefix(CONTENT_LABEL_PREFIX) {
        Some(rest) => rest != "0" && rest.chars().all(|c| c.is_numeric()),
        None => false,
    }
}

/// `content prune references`: drops the layer reference labels from every blob (only
/// reports them with `--dry`), then creates and deletes a lease, which makes the collector
/// run (and the delete wait for it unless `--async`), as ctr does in both modes.
fn prune_references(env: &Env, asynchronous: bool, dry: bool) -> CtlResult {
    let conn = env.connect()?;
    let client = ContentClient::new(conn.clone());
    if dry {
        eprintln!("dry run, no changes will be applied");
    }
    for mut info in list(&client, env, Vec::new())? {
        let mut removed: Vec<String> = info
            .labels
            .keys()
            .filter(|k| is_layer_label(k))
            .cloned()
            .collect();
        removed.sort();
        for key in &removed {
            // ctr logs these at debug level, which --dry turns on.
            if dry {
                eprintln!("removing label digest={} label={key}", info.digest);
            } else {
                log::debug!("removing label digest={} label={key}", info.digest);
            }
        }
        if dry || removed.is_empty() {
            continue;
        }
        let mut mask = FieldMask::new();
        for key in removed {
            info.labels.remove(&key);
            mask.paths.push(format!("labels.{key}"));
        }
        update(&client, env, info, mask)?;
    }
    let leases = LeasesClient::new(conn);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let id = format!("{}-{}", now.subsec_nanos(), random_suffix());
    let req = create_request(Some(id), PRUNE_LEASE_EXPIRY, &[], now);
    let lease = leases.create(&env.ctx, &req)?.lease.unwrap_or_default();
    let mut del = DeleteRequest::new();
    del.id = if lease.id.is_empty() {
        req.id
    } else {
        lease.id
    };
    del.sync = !asynchronous;
    leases.delete(&env.ctx, &del)?;
    Ok(())
}

/// A number below `bound` (at least 1) from the kernel's random source, or the clock when
/// that cannot be read.
fn random_below(bound: u64) -> u64 {
    let mut buf = [0u8; 8];
    let n = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map(|_| u64::from_le_bytes(buf))
        .unwrap_or_else(|_| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            u64::from(now.subsec_nanos()) ^ u64::from(std::process::id())
        });
    n % bound.max(1)
}

/// Four characters in place of ctr's base64 of three random bytes, from the alphabet an
/// identifier allows everywhere.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..4)
        .map(|_| ALPHABET[random_below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// How long ago `ts` was at `now`, as Go's `time.Since` gives it: zero for a time in the
/// future, Go's zero time when unset, saturating at the longest `time.Duration`.
fn since(ts: Option<&Timestamp>, now: SystemTime) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_ns = now.as_nanos() as i128;
    // Go's zero time, 0001-01-01, is 62135596800 s before the epoch.
    let then_ns = match ts {
        Some(t) => i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos),
        None => -62_135_596_800i128 * 1_000_000_000,
    };
    let ns = (now_ns - then_ns).clamp(0, i128::from(i64::MAX));
    Duration::from_nanos(ns as u64)
}

/// go-units' `HumanSize`: decimal units, four significant digits (`5.243MB`, `100B`).
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(size, 4), UNITS[unit])
}

/// Go's `%.<digits>g` for a value below 10^digits: rounded to `digits` significant digits,
/// trailing zeros of the fraction dropped.
fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let exponent = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - exponent).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// go-units' `HumanDuration` (`Less than a second`, `5 seconds`, `About a minute`, ...).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", d.as_secs() / 3600 / 24 / 365)
}

/// Lays out `text` as Go's `tabwriter.NewWriter(w, minwidth, tabwidth, padding, '\t', 0)`
/// does for a table whose lines all have the same number of cells: each tab-terminated cell
/// is padded with tabs to its column's width (widest cell plus `padding`, at least
/// `minwidth`) rounded up to a multiple of `tabwidth`; the text after a line's last tab is
/// written as it is.
pub fn tabwrite_tabs(text: &str, minwidth: usize, tabwidth: usize, padding: usize) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return String::new();
    }
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|j| {
            lines
                .iter()
                .filter(|l| j + 1 < l.len())
                .map(|l| l[j].chars().count() + padding)
                .fold(minwidth, usize::max)
        })
        .collect();
    let tabwidth = tabwidth.max(1);
    let mut out = String::with_capacity(text.len() * 2);
    for line in &lines {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let cellw = widths[j].div_ceil(tabwidth) * tabwidth;
                let pad = cellw.saturating_sub(cell.chars().count());
                for _ in 0..pad.div_ceil(tabwidth) {
                    out.push('\t');
                }
            }
        }
        out.push('\n');
    }
    out
}

/// `content list` output at `now`: the digests, or ctr's DIGEST SIZE AGE LABELS table
/// (tab-padded, labels sorted where ctr prints them in map order).
pub fn list_output(infos: &[Info], quiet: bool, now: SystemTime) -> String {
    if quiet {
        return infos.iter().map(|i| format!("{}\n", i.digest)).collect();
    }
    let mut text = String::from("DIGEST\tSIZE\tAGE\tLABELS\n");
    for i in infos {
        let labels = if i.labels.is_empty() {
            "-".to_string()
        } else {
            join_labels(&i.labels)
        };
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            i.digest,
            human_size(i.size),
            human_duration(since(i.created_at.as_ref(), now)),
            labels
        ));
    }
    tabwrite_tabs(&text, 1, 8, 1)
}

/// `content active` output at `now`: ctr's REF SIZE AGE table of the writes in progress.
pub fn active_output(statuses: &[WriteStatus], now: SystemTime) -> String {
    let mut text = String::from("REF\tSIZE\tAGE\t\n");
    for s in statuses {
        text.push_str(&format!(
            "{}\t{}\t{}\t\n",
            s.ref_,
            human_size(s.offset),
            human_duration(since(s.started_at.as_ref(), now))
        ));
    }
    tabwrite_tabs(&text, 1, 8, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as CliCommand};
    use clap::Parser;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_parse_like_go_digest() {
        assert_eq!(parse_digest(D).unwrap(), D);
        for (bad, msg) in [
            ("", "invalid checksum digest format"),
            ("sha256", "invalid checksum digest format"),
            ("sha256:", "invalid checksum digest format"),
            ("sha256:abc", "invalid checksum digest length"),
            ("md5:abc", "unsupported digest algorithm"),
            ("MD5:abc", "invalid checksum digest format"),
            (
                &D.to_uppercase().replace("SHA256", "sha256"),
                "invalid checksum digest format",
            ),
        ] {
            assert_eq!(parse_digest(bad).unwrap_err().to_string(), msg, "{bad}");
        }
    }

    #[test]
    fn sizes_read_like_go_units() {
        for (n, s) in [
            (0, "0B"),
            (1, "1B"),
            (100, "100B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.234kB"),
            (1500, "1.5kB"),
            (12_345, "12.35kB"),
            (123_456, "123.5kB"),
            (999_999, "1000kB"),
            (5 << 20, "5.243MB"),
            (2_000_000_000, "2GB"),
        ] {
            assert_eq!(human_size(n), s, "{n}");
        }
    }

    #[test]
    fn durations_read_like_go_units() {
        for (secs, s) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86_400, "2 weeks"),
            (60 * 86_400, "2 months"),
            (2 * 365 * 86_400, "2 years"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(secs)), s, "{secs}");
        }
    }

    #[test]
    fn tab_padding_rounds_cells_up_to_tab_stops() {
        let text = "REF\tSIZE\tAGE\t\nlayer-1\t5.243MB\t2 seconds\t\n";
        assert_eq!(
            tabwrite_tabs(text, 1, 8, 1),
            "REF\tSIZE\tAGE\t\t\nlayer-1\t5.243MB\t2 seconds\t\n"
        );
        let text = format!("DIGEST\tSIZE\nx\t1B\n{D}\t2B\n");
        let out = tabwrite_tabs(&text, 1, 8, 1);
        let lines: Vec<&str> = out.lines().collect();
        // 71 characters plus the padding make a 72-wide column: nine tab stops.
        assert_eq!(lines[0], format!("DIGEST{}SIZE", "\t".repeat(9)));
        assert_eq!(lines[1], format!("x{}1B", "\t".repeat(9)));
        assert_eq!(lines[2], format!("{D}\t2B"));
        assert_eq!(tabwrite_tabs("", 1, 8, 1), "");
    }

    #[test]
    fn list_prints_ctrs_table() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_200);
        let mut a = Info::new();
        a.digest = D.into();
        a.size = 1234;
        a.created_at = MessageField::some(Timestamp {
            seconds: 1_700_000_000,
            ..Default::default()
        });
        let mut b = a.clone();
        b.labels.insert("z".into(), "1".into());
        b.labels.insert("containerd.io/gc.root".into(), "x".into());
        b.created_at = MessageField::some(Timestamp {
            seconds: 1_700_000_199,
            nanos: 500_000_000,
            ..Default::default()
        });
        let out = list_output(&[a.clone(), b], false, now);
        let tab9 = "\t".repeat(9);
        assert_eq!(
            out,
            format!(
                "DIGEST{tab9}SIZE\tAGE\t\t\tLABELS\n\
                 {D}\t1.234kB\t3 minutes\t\t-\n\
                 {D}\t1.234kB\tLess than a second\tcontainerd.io/gc.root=x,z=1\n"
            )
        );
        assert_eq!(list_output(&[a], true, now), format!("{D}\n"));
    }

    #[test]
    fn active_prints_ctrs_table() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_005);
        let mut s = WriteStatus::new();
        s.ref_ = "upload".into();
        s.offset = 2 << 20;
        s.started_at = MessageField::some(Timestamp {
            seconds: 1_700_000_000,
            ..Default::default()
        });
        assert_eq!(
            active_output(&[s], now),
            "REF\tSIZE\tAGE\t\t\nupload\t2.097MB\t5 seconds\t\n"
        );
        assert_eq!(active_output(&[], now), "REF\tSIZE\tAGE\t\n");
    }

    #[test]
    fn layer_labels_are_the_ones_prune_drops() {
        assert!(is_layer_label("containerd.io/gc.ref.content.l.0"));
        assert!(is_layer_label("containerd.io/gc.ref.content.l.12"));
        assert!(is_layer_label("containerd.io/gc.ref.content.3"));
        assert!(!is_layer_label("containerd.io/gc.ref.content.0"));
        assert!(!is_layer_label("containerd.io/gc.ref.content.config"));
        assert!(!is_layer_label("containerd.io/gc.ref.content.m.0"));
        assert!(!is_layer_label("containerd.io/gc.ref.snapshot.overlayfs"));
        assert!(!is_layer_label("containerd.io/gc.root"));
    }

    #[test]
    fn unset_times_are_go_zero_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(human_duration(since(None, now)), "292 years");
        let future = Timestamp {
            seconds: 1_800_000_000,
            ..Default::default()
        };
        assert_eq!(since(Some(&future), now), Duration::ZERO);
    }

    #[test]
    fn verbs_flags_and_aliases_are_ctrs() {
        for args in [
            &["corralctl", "content", "ls", "-q", "labels.a==b"][..],
            &["corralctl", "content", "list", "--quiet"],
            &[
                "corralctl",
                "content",
                "active",
                "-t",
                "10s",
                "--root",
                "/x",
                "ref~=l",
            ],
            &["corralctl", "content", "del", D],
            &["corralctl", "content", "remove", D, D],
            &["corralctl", "content", "rm"],
            &["corralctl", "content", "delete", D],
            &["corralctl", "content", "get", D],
            &[
                "corralctl",
                "content",
                "edit",
                "--editor",
                "vi",
                "--validate",
                "",
                D,
            ],
            &["corralctl", "content", "label", D, "a=b", "c="],
            &[
                "corralctl",
                "content",
                "prune",
                "references",
                "--async",
                "--dry",
            ],
            &[
                "corralctl",
                "content",
                "ingest",
                "--expected-size",
                "5",
                "--expected-digest",
                D,
                "ref",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(matches!(cli.command, CliCommand::Content(_)), "{args:?}");
        }
        assert!(Cli::try_parse_from(["corralctl", "content", "prune"]).is_err());
        assert!(Cli::try_parse_from(["corralctl", "content", "fetch"]).is_err());
    }
}
