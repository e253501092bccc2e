//! `corralctl containers` (`container`, `c`): create, list, inspect, label and delete container
//! records.

use clap::{Args, Subcommand};
use corral_protocols::rpc::Client;
use corral_protocols::rpc::{Code, Status};
use corral_protocols::services::containers::v1::containers::{
    Container, DeleteContainerRequest, GetContainerRequest, ListContainersRequest,
    UpdateContainerRequest,
};
use corral_protocols::services::containers::v1::containers_rpc::{
    ContainersClient, CONTAINERS_SERVICE,
};
use corral_protocols::services::snapshots::v1::snapshots::RemoveSnapshotRequest;
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::services::tasks::v1::tasks::{
    DeleteTaskRequest, GetRequest as GetTaskRequest,
};
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use corral_protocols::types::task::task::Status as TaskStatus;
use protobuf::well_known_types::field_mask::FieldMask;

use super::container_flags::{ContainerArgs, ContainerFlags};
use super::format::{rfc3339_nano, tabwrite, Json};
use super::new_container::{container_record, CREATE_CPU_SHARES};
use super::{join_labels, parse_labels, CtlError, CtlResult, Env};

/// `containers create`'s flags and arguments.
#[derive(Debug, Clone, Args)]
pub struct CreateCommand {
    /// What the container is made of.
    #[command(flatten)]
    pub flags: ContainerFlags,
    /// `IMAGE|ROOTFS CONTAINER [COMMAND [ARG...]]`, or `CONTAINER` with `--config`.
    #[command(flatten)]
    pub args: ContainerArgs,
}

/// The subcommands of `containers`.
#[derive(Debug, Subcommand)]
pub enum ContainersCommand {
    /// create container
    #[command(
        override_usage = "corralctl containers create [flags] IMAGE CONTAINER [COMMAND] [ARG...]\n       corralctl containers create [flags] --rootfs ROOTFS CONTAINER [COMMAND] [ARG...]\n       corralctl containers create [flags] --config SPEC.json CONTAINER",
        after_help = "An IMAGE is unpacked for the snapshotter if it is not yet, and the container gets a new snapshot keyed by its id, which `containers delete` removes again."
    )]
    Create(Box<CreateCommand>),
    /// delete one or more existing containers
    #[command(visible_aliases = ["del", "remove", "rm"])]
    Delete {
        /// do not clean up snapshot with container
        #[arg(long)]
        keep_snapshot: bool,
        /// The containers to delete.
        #[arg(required = true, value_name = "CONTAINER")]
        ids: Vec<String>,
    },
    /// get info about a container
    Info {
        /// only display the spec
        #[arg(long)]
        spec: bool,
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: String,
    },
    /// list containers
    #[command(visible_alias = "ls")]
    List {
        /// print only the container id
        #[arg(short, long)]
        quiet: bool,
        /// Filters, as containerd reads them (e.g. labels.app==web).
        filters: Vec<String>,
    },
    /// set and clear labels for a container
    Label {
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: String,
        /// Labels, KEY=VALUE; an empty value clears the label.
        labels: Vec<String>,
    },
}

/// Runs one `containers` subcommand.
pub fn run(env: &Env, cmd: ContainersCommand) -> CtlResult {
    let client = || env.connect().map(ContainersClient::new);
    match cmd {
        ContainersCommand::Create(create) => self::create(env, &create),
        ContainersCommand::List { quiet, filters } => {
            let conn = env.connect()?;
            let containers = list(&conn, &ContainersClient::new(conn.clone()), env, filters)?;
            print!("{}", list_output(&containers, quiet));
            Ok(())
        }
        ContainersCommand::Info { spec, id } => {
            let c = get(&client()?, env, &id)?;
            if spec {
                println!("{}", spec_json(&c).unwrap_or_else(Json::null).pretty());
            } else {
                println!("{}", info_json(&c).pretty());
            }
            Ok(())
        }
        ContainersCommand::Label { id, labels } => {
            let client = client()?;
            let labels = parse_labels(&labels);
            if labels.is_empty() {
                let c = get(&client, env, &id)?;
                println!("{}", join_labels(&c.labels));
                return Ok(());
            }
            let mut c = Container::new();
            c.id = id;
            let mut mask = FieldMask::new();
            for (k, v) in labels {
                mask.paths.push(format!("labels.{k}"));
                c.labels.insert(k, v);
            }
            let mut req = UpdateContainerRequest::new();
            req.container = Some(c).into();
            req.update_mask = Some(mask).into();
            let resp = client.update(&env.ctx, &req)?;
            let labels = resp.container.labels.clone();
            println!("{}", join_labels(&labels));
            Ok(())
        }
        ContainersCommand::Delete { keep_snapshot, ids } => {
            let conn = env.connect()?;
            let mut first_err = None;
            for id in ids {
                let deleted = delete_stopped_task(&conn, env, &id)
                    .and_then(|()| delete_container(&conn, env, &id, keep_snapshot));
                if let Err(e) = deleted {
                    log::error!("failed to delete container {id:?}: {e}");
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        }
    }
}

/// ctr's `containers delete` first deletes a task that is stopped or only created (and the
/// fifos it was given), and refuses a container whose task runs.
fn delete_stopped_task(conn: &Client, env: &Env, id: &str) -> CtlResult {
    let tasks = TasksClient::new(conn.clone());
    let req = GetTaskRequest {
        container_id: id.to_string(),
        ..Default::default()
    };
    let process = match tasks.get(&env.ctx, &req) {
        Ok(r) => r.process.unwrap_or_default(),
        // No task (or no Tasks service): nothing to do first.
        Err(_) => return Ok(()),
    };
    let status = process.status.enum_value_or_default();
    if !matches!(status, TaskStatus::STOPPED | TaskStatus::CREATED) {
        // Go prints containerd.Status with %v: {status code exited-at}.
        let exited = match process.exited_at.as_ref() {
            Some(t) if t.seconds != 0 || t.nanos != 0 => rfc3339_nano(Some(t)),
            _ => "0001-01-01 00:00:00 +0000 UTC".to_string(),
        };
        return Err(CtlError::new(format!(
            "cannot delete a non stopped container: {{{} {} {exited}}}",
            format!("{status:?}").to_lowercase(),
            process.exit_status
        )));
    }
    let req = DeleteTaskRequest {
        container_id: id.to_string(),
        ..Default::default()
    };
    tasks.delete(&env.ctx, &req)?;
    // Only fifos (not file:// or binary:// URIs) are removed, with their directory.
    let paths: Vec<std::path::PathBuf> = [&process.stdin, &process.stdout, &process.stderr]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .collect();
    if let Err(e) = crate::cio::fifo::remove_fifos(&paths) {
        log::warn!("removing the fifos of {id}: {e}");
    }
    Ok(())
}

/// `containers create`: creates the container as ctr does; prints nothing.
fn create(env: &Env, cmd: &CreateCommand) -> CtlResult {
    let target = cmd.args.target(cmd.flags.config.is_some())?;
    container_record(env, &cmd.flags, &target, CREATE_CPU_SHARES)?.release_lease();
    Ok(())
}

/// Deletes container `id` as containerd's `Container.Delete` does: refused while it has a
/// task; its snapshot removed first unless `keep_snapshot` (`WithSnapshotCleanup`: a
/// snapshot already gone is fine), then the record.
pub fn delete_container(client: &Client, env: &Env, id: &str, keep_snapshot: bool) -> CtlResult {
    let task = GetTaskRequest {
        container_id: id.to_string(),
        ..Default::default()
    };
    // Any answer but a task (none, or no Tasks service) lets the delete go on.
    if TasksClient::new(client.clone())
        .get(&env.ctx, &task)
        .is_ok()
    {
        return Err(CtlError::new(format!(
            "cannot delete running task {id}: failed precondition"
        )));
    }
    let c = get(&ContainersClient::new(client.clone()), env, id)?;
    remove_container(client, env, &c, keep_snapshot)
}

/// Deletes the container `c` (its record as read from corrald) whose task is known to be
/// gone: its snapshot unless `keep_snapshot`, then the record (the tail of
/// [`delete_container`]).
pub fn remove_container(
    client: &Client,
    env: &Env,
    c: &Container,
    keep_snapshot: bool,
) -> CtlResult {
    if !keep_snapshot && !c.snapshot_key.is_empty() {
        if c.snapshotter.is_empty() {
            return Err(CtlError::new(
                "container.Snapshotter must be set to cleanup rootfs snapshot: invalid argument",
            ));
        }
        let req = RemoveSnapshotRequest {
            snapshotter: c.snapshotter.clone(),
            key: c.snapshot_key.clone(),
            ..Default::default()
        };
        match SnapshotsClient::new(client.clone()).remove(&env.ctx, &req) {
            Err(s) if s.code() != Code::NOT_FOUND => return Err(s.into()),
            _ => {}
        }
    }
    let req = DeleteContainerRequest {
        id: c.id.clone(),
        ..Default::default()
    };
    ContainersClient::new(client.clone()).delete(&env.ctx, &req)?;
    Ok(())
}

/// Lists through `ListStream`, as containerd's client does (one small message per container,
/// so neither side holds the whole list in one buffer), falling back to `List` on a daemon
/// without it. Only what the table shows is decoded from the stream ([`Row`]): the specs,
/// most of every message, are skipped unread.
fn list(
    conn: &Client,
    client: &ContainersClient,
    env: &Env,
    filters: Vec<String>,
) -> CtlResult<Vec<Container>> {
    let mut req = ListContainersRequest::new();
    req.filters = filters;
    let unimplemented = |s: &Status| s.code() == Code::UNIMPLEMENTED;
    let mut out = Vec::new();
    let streamed =
        match conn.server_stream::<_, RowMessage>(&env.ctx, CONTAINERS_SERVICE, "ListStream", &req)
        {
            Ok(mut stream) => loop {
                match stream.recv() {
                    Ok(Some(m)) => out.push(m.row.into_container()),
                    Ok(None) => break true,
                    Err(s) if out.is_empty() && unimplemented(&s) => break false,
                    Err(s) => return Err(s.into()),
                }
            },
            Err(s) if unimplemented(&s) => false,
            Err(s) => return Err(s.into()),
        };
    if !streamed {
        out = client
            .list(&env.ctx, &req)?
            .containers
            .into_iter()
            .map(|mut c| {
                c.spec = Default::default();
                c.extensions.clear();
                c
            })
            .collect();
    }
    Ok(out)
}

/// The fields of a `Container` the `ls` table shows: `id` (1), `image` (3) and the runtime's
/// `name` (4.1). Every other field is skipped as it is read, not kept.
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    id: String,
    image: String,
    runtime: String,
    special_fields: protobuf::SpecialFields,
}

impl Row {
    fn into_container(self) -> Container {
        let mut c = Container::new();
        c.id = self.id;
        c.image = self.image;
        let mut r =
            corral_protocols::services::containers::v1::containers::container::Runtime::new();
        r.name = self.runtime;
        c.runtime = Some(r).into();
        c
    }
}

/// Skips the field whose tag is `tag`.
fn skip(is: &mut protobuf::CodedInputStream, tag: u32) -> protobuf::Result<()> {
    match protobuf::rt::WireType::new(tag & 7) {
        Some(wt) => is.skip_field(wt),
        None => Err(protobuf::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("wire type {} of tag {tag}", tag & 7),
        ))),
    }
}

impl protobuf::Message for Row {
    const NAME: &'static str = "Container";

    fn is_initialized(&self) -> bool {
        true
    }

    fn merge_from(&mut self, is: &mut protobuf::CodedInputStream) -> protobuf::Result<()> {
        while let Some(tag) = is.read_raw_tag_or_eof()? {
            match tag {
                10 => is.read_string_into(&mut self.id)?,
                26 => is.read_string_into(&mut self.image)?,
                34 => {
                    let len = is.read_raw_varint64()?;
                    let old = is.push_limit(len)?;
                    while let Some(t) = is.read_raw_tag_or_eof()? {
                        match t {
                            10 => is.read_string_into(&mut self.runtime)?,
                            _ => skip(is, t)?,
                        }
                    }
                    is.pop_limit(old);
                }
                _ => skip(is, tag)?,
            }
        }
        Ok(())
    }

    fn compute_size(&self) -> u64 {
        self.to_container().compute_size()
    }

    fn write_to_with_cached_sizes(
        &self,
        os: &mut protobuf::CodedOutputStream,
    ) -> protobuf::Result<()> {
        self.to_container().write_to(os)
    }

    fn special_fields(&self) -> &protobuf::SpecialFields {
        &self.special_fields
    }

    fn mut_special_fields(&mut self) -> &mut protobuf::SpecialFields {
        &mut self.special_fields
    }

    fn new() -> Self {
        Row::default()
    }

    fn default_instance() -> &'static Self {
        static DEFAULT: std::sync::OnceLock<Row> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(Row::default)
    }
}

impl Row {
    /// The same fields as a full `Container` (encoding a row is only ever done in tests).
    fn to_container(&self) -> Container {
        self.clone().into_container()
    }
}

/// `ListContainerMessage { container = 1 }` with the container read as a [`Row`].
#[derive(Debug, Clone, Default, PartialEq)]
struct RowMessage {
    row: Row,
    special_fields: protobuf::SpecialFields,
}

impl protobuf::Message for RowMessage {
    const NAME: &'static str = "ListContainerMessage";

    fn is_initialized(&self) -> bool {
        true
    }

    fn merge_from(&mut self, is: &mut protobuf::CodedInputStream) -> protobuf::Result<()> {
        while let Some(tag) = is.read_raw_tag_or_eof()? {
            match tag {
                10 => is.merge_message(&mut self.row)?,
                _ => skip(is, tag)?,
            }
        }
        Ok(())
    }

    fn compute_size(&self) -> u64 {
        let n = self.row.compute_size();
        1 + protobuf::rt::compute_raw_varint64_size(n) + n
    }

    fn write_to_with_cached_sizes(
        &self,
        os: &mut protobuf::CodedOutputStream,
    ) -> protobuf::Result<()> {
        os.write_raw_varint32(10)?;
        os.write_raw_varint64(self.row.compute_size())?;
        self.row.write_to_with_cached_sizes(os)
    }

    fn special_fields(&self) -> &protobuf::SpecialFields {
        &self.special_fields
    }

    fn mut_special_fields(&mut self) -> &mut protobuf::SpecialFields {
        &mut self.special_fields
    }

    fn new() -> Self {
        RowMessage::default()
    }

    fn default_instance() -> &'static Self {
        static DEFAULT: std::sync::OnceLock<RowMessage> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(RowMessage::default)
    }
}

fn get(client: &ContainersClient, env: &Env, id: &str) -> CtlResult<Container> {
    let mut req = GetContainerRequest::new();
    req.id = id.to_string();
    let resp = client.get(&env.ctx, &req)?;
    resp.container
        .into_option()
        .ok_or_else(|| CtlError::new(format!("container {id:?}: corrald sent no container")))
}

/// `containers list` output: the ids, or ctr's CONTAINER IMAGE RUNTIME table.
pub fn list_output(containers: &[Container], quiet: bool) -> String {
    if quiet {
        return containers.iter().map(|c| format!("{}\n", c.id)).collect();
    }
    let mut text = String::from("CONTAINER\tIMAGE\tRUNTIME\t\n");
    for c in containers {
        let image = if c.image.is_empty() { "-" } else { &c.image };
        text.push_str(&format!("{}\t{}\t{}\t\n", c.id, image, c.runtime.name));
    }
    tabwrite(&text, 4, 4)
}

/// The spec decoded from its `Any`: OCI specs travel as JSON.
pub fn spec_json(c: &Container) -> Option<Json> {
    let any = c.spec.as_ref()?;
    if any.value.is_empty() {
        return None;
    }
    Some(
        match serde_json::from_slice::<serde_json::Value>(&any.value) {
            Ok(v) => Json::from(v),
            Err(_) => Json::any(any),
        },
    )
}

/// `containers info` output: containerd's `containers.Container` as Go's `encoding/json`
/// writes it, with the spec decoded.
pub fn info_json(c: &Container) -> Json {
    let runtime = Json::Object(vec![
        ("Name".into(), Json::str(&c.runtime.name)),
        (
            "Options".into(),
            c.runtime
                .options
                .as_ref()
                .map(Json::any)
                .unwrap_or_else(Json::null),
        ),
    ]);
    let extensions = if c.extensions.is_empty() {
        Json::null()
    } else {
        let mut pairs: Vec<(String, Json)> = c
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), Json::any(v)))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Json::Object(pairs)
    };
    let mut fields = vec![
        ("ID".to_string(), Json::str(&c.id)),
        ("Labels".to_string(), Json::string_map(&c.labels)),
        ("Image".to_string(), Json::str(&c.image)),
        ("Runtime".to_string(), runtime),
        ("SnapshotKey".to_string(), Json::str(&c.snapshot_key)),
        ("Snapshotter".to_string(), Json::str(&c.snapshotter)),
        (
            "CreatedAt".to_string(),
            Json::str(rfc3339_nano(c.created_at.as_ref())),
        ),
        (
            "UpdatedAt".to_string(),
            Json::str(rfc3339_nano(c.updated_at.as_ref())),
        ),
        ("Extensions".to_string(), extensions),
    ];
    match spec_json(c) {
        Some(spec) => fields.push(("Spec".to_string(), spec)),
        // Without a decodable spec ctr prints the Any itself, in its struct position.
        None => fields.insert(
            4,
            (
                "Spec".to_string(),
                c.spec.as_ref().map(Json::any).unwrap_or_else(Json::null),
            ),
        ),
    }
    Json::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_only_what_the_table_shows() {
        use corral_protocols::services::containers::v1::containers::ListContainerMessage;
        use protobuf::Message;
        let mut c = Container::new();
        c.id = "web".into();
        c.image = "docker.io/library/busybox:latest".into();
        let mut r =
            corral_protocols::services::containers::v1::containers::container::Runtime::new();
        r.name = "io.containerd.corral.v2".into();
        r.options = Some(Any::new()).into();
        c.runtime = Some(r).into();
        c.labels.insert("app".into(), "web".into());
        let mut spec = Any::new();
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec".into();
        spec.value = vec![b'x'; 5000];
        c.spec = Some(spec).into();
        c.snapshot_key = "web-snap".into();
        c.created_at = Some(Timestamp::now()).into();
        let mut m = ListContainerMessage::new();
        m.container = Some(c.clone()).into();
        let bytes = m.write_to_bytes().unwrap();
        let row = RowMessage::parse_from_bytes(&bytes).unwrap().row;
        assert_eq!(
            (row.id.as_str(), row.image.as_str()),
            ("web", c.image.as_str())
        );
        assert_eq!(row.runtime, "io.containerd.corral.v2");
        assert_eq!(
            list_output(&[row.clone().into_container()], false),
            list_output(&[c], false)
        );
        // A row encodes back to a container the full type reads.
        let back = Container::parse_from_bytes(&row.write_to_bytes().unwrap()).unwrap();
        assert_eq!(back.id, "web");
        // Garbage is an error, not a panic.
        assert!(RowMessage::parse_from_bytes(&[0x0a, 0xff, 0xff]).is_err());
    }
    use protobuf::well_known_types::any::Any;
    use protobuf::well_known_types::timestamp::Timestamp;

    fn container(id: &str, image: &str) -> Container {
        let mut c = Container::new();
        c.id = id.into();
        c.image = image.into();
        c.runtime.mut_or_insert_default().name = "io.containerd.runc.v2".into();
        c
    }

    #[test]
    fn list_prints_ctrs_table() {
        let list = [
            container("web", "docker.io/library/nginx:latest"),
            container("job", ""),
        ];
        assert_eq!(
            list_output(&list, false),
            "CONTAINER    IMAGE                             RUNTIME                  \n\
             web          docker.io/library/nginx:latest    io.containerd.runc.v2    \n\
             job          -                                 io.containerd.runc.v2    \n"
        );
        assert_eq!(list_output(&list, true), "web\njob\n");
    }

    #[test]
    fn info_mirrors_containerds_struct() {
        let mut c = container("web", "");
        c.labels.insert("app".into(), "web".into());
        c.snapshotter = "overlayfs".into();
        c.created_at = Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
            ..Default::default()
        })
        .into();
        let mut spec = Any::new();
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec".into();
        spec.value = br#"{"ociVersion":"1.0.2","process":{"args":["sh"]}}"#.to_vec();
        c.spec = Some(spec).into();
        let out = info_json(&c).pretty();
        let keys: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("    \"") && !l.starts_with("        "))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "ID",
                "Labels",
                "Image",
                "Runtime",
                "SnapshotKey",
                "Snapshotter",
                "CreatedAt",
                "UpdatedAt",
                "Extensions",
                "Spec"
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Labels"]["app"], "web");
        assert_eq!(v["Runtime"]["Name"], "io.containerd.runc.v2");
        assert_eq!(v["Runtime"]["Options"], serde_json::Value::Null);
        assert_eq!(v["CreatedAt"], "2023-11-14T22:13:20.000000005Z");
        assert_eq!(v["UpdatedAt"], "0001-01-01T00:00:00Z");
        assert_eq!(v["Extensions"], serde_json::Value::Null);
        assert_eq!(v["Spec"]["process"]["args"][0], "sh");
    }
}
