//! containerd's `Content` service (`services/content/contentserver`) over the namespaced
//! content store. Namespaced; writes and deletes honour the request's lease.
//!
//! `Write` is containerd's bidirectional protocol: the first message names the reference
//! (and may give the total and expected digest); `STAT` reports, `WRITE` appends at the
//! current offset (an offset of 0 on a write that has bytes starts it over), `COMMIT`
//! appends its data and commits, and every message gets one response with the offset. `Read`
//! streams the blob in chunks of up to 1 MiB; `List` sends infos in blocks of 100.
//! containerd publishes no events from this service.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_protocols::rpc::{
    Code, RequestContext, RpcResult, ServiceSet, Status, StreamReceiver, StreamSender,
};
use corral_protocols::services::content::v1::content::{
    AbortRequest, DeleteContentRequest, Info as InfoPb, InfoRequest, InfoResponse,
    ListContentRequest, ListContentResponse, ListStatusesRequest, ListStatusesResponse,
    ReadContentRequest, ReadContentResponse, Status as StatusPb, StatusRequest, StatusResponse,
    UpdateRequest, UpdateResponse, WriteAction, WriteContentRequest, WriteContentResponse,
};
use corral_protocols::services::content::v1::content_rpc::{register_content, Content};
use protobuf::well_known_types::empty::Empty;
use protobuf::{EnumOrUnknown, MessageField};

use super::containers::time_to_pb;
use super::{namespace, Context};
use crate::content::namespaced::{Content as Store, WriteStatus};
use crate::filter::{check_map, Adaptor, Filter};
use crate::metadata::content::{validate_digest, Info};

/// Bytes per `Read` response (containerd's 1 MiB buffer).
const READ_CHUNK: usize = 1 << 20;
/// Infos per `List` response (containerd's blocks of 100).
const LIST_BLOCK: usize = 100;

/// The `containerd.services.content.v1.Content` service.
pub struct ContentService {
    ctx: Arc<Context>,
    store: Store,
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    let store = ctx.namespaced_content();
    register_content(
        set,
        Arc::new(ContentService {
            ctx: Arc::clone(ctx),
            store,
        }),
    );
}

/// A blob's fields as filters see them (containerd's `content.AdaptInfo`).
struct InfoFields<'a>(&'a Info);

impl Adaptor for InfoFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["digest"] => Some(self.0.digest.clone()),
            ["size"] => None,
            ["labels", rest @ ..] => check_map(rest, &self.0.labels),
            _ => None,
        }
    }
}

/// A write's fields as filters see them (containerd's `adaptContentStatus`).
struct StatusFields<'a>(&'a WriteStatus);

impl Adaptor for StatusFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["ref"] => Some(self.0.reference.clone()),
            _ => None,
        }
    }
}

fn info_to_pb(i: &Info, with_updated: bool) -> InfoPb {
    InfoPb {
        digest: i.digest.clone(),
        size: i.size,
        created_at: time_to_pb(i.created_at),
        updated_at: if with_updated {
            time_to_pb(i.updated_at)
        } else {
            MessageField::none()
        },
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn status_to_pb(s: &WriteStatus) -> StatusPb {
    StatusPb {
        started_at: time_to_pb(s.started_at),
        updated_at: time_to_pb(s.updated_at),
        ref_: s.reference.clone(),
        offset: s.offset as i64,
        total: s.total as i64,
        expected: s.expected.clone(),
        ..Default::default()
    }
}

/// containerd's `digest.Validate` check on a request's digest.
fn check_digest(d: &str) -> RpcResult<()> {
    validate_digest(d).map_err(|_| Status::invalid_argument(format!("{d:?} failed validation")))
}

impl Content for ContentService {
    fn info(&self, ctx: &RequestContext, req: InfoRequest) -> RpcResult<InfoResponse> {
        let ns = namespace(ctx)?;
        check_digest(&req.digest)?;
        let info = self.store.info(&ns, &req.digest)?;
        Ok(InfoResponse {
            info: MessageField::some(info_to_pb(&info, true)),
            ..Default::default()
        })
    }

    fn update(&self, ctx: &RequestContext, req: UpdateRequest) -> RpcResult<UpdateResponse> {
        let ns = namespace(ctx)?;
        let pb = req.info.as_ref().unwrap_or_default();
        check_digest(&pb.digest)?;
        let info = Info {
            digest: pb.digest.clone(),
            size: pb.size,
            labels: pb
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        };
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        let updated = self.store.update(&ns, &info, &paths)?;
        self.ctx.gc.mutated(false);
        Ok(UpdateResponse {
            info: MessageField::some(info_to_pb(&updated, true)),
            ..Default::default()
        })
    }

    fn list(
        &self,
        ctx: &RequestContext,
        req: ListContentRequest,
        out: &StreamSender<ListContentResponse>,
    ) -> RpcResult<()> {
        let ns = namespace(ctx)?;
        let filter = Filter::parse_all(&req.filters).map_err(Status::from)?;
        let infos: Vec<InfoPb> = self
            .store
            .list(&ns)?
            .iter()
            .filter(|i| filter.matches(&InfoFields(i)))
            .map(|i| info_to_pb(i, false))
            .collect();
        out.send_all(infos.chunks(LIST_BLOCK).map(|block| ListContentResponse {
            info: block.to_vec(),
            ..Default::default()
        }))
    }

    fn delete(&self, ctx: &RequestContext, req: DeleteContentRequest) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        if let Err(e) = validate_digest(&req.digest) {
            return Err(Status::invalid_argument(e.to_string()));
        }
        self.store.delete(&ns, ctx.lease(), &req.digest)?;
        self.ctx.gc.mutated(true);
        Ok(Empty::new())
    }

    fn read(
        &self,
        ctx: &RequestContext,
        req: ReadContentRequest,
        out: &StreamSender<ReadContentResponse>,
    ) -> RpcResult<()> {
        let ns = namespace(ctx)?;
        if let Err(e) = validate_digest(&req.digest) {
            return Err(Status::invalid_argument(format!("{}: {e}", req.digest)));
        }
        let (info, reader) = self.store.reader(&ns, &req.digest)?;
        let size = info.size;
        let offset = req.offset.max(0);
        if offset > size {
            return Err(Status::new(
                Code::OUT_OF_RANGE,
                format!("read past object length {size} bytes"),
            ));
        }
        let len = if req.size <= 0 || offset + req.size > size {
            size - offset
        } else {
            req.size
        };
        let mut buf = vec![0u8; READ_CHUNK.min(len.max(0) as usize)];
        let mut at = offset as u64;
        let end = (offset + len) as u64;
        while at < end {
            if ctx.is_cancelled() {
                return Err(ctx.cancelled_status());
            }
            let want = ((end - at) as usize).min(buf.len());
            let n = reader
                .read_at(&mut buf[..want], at)
                .map_err(|e| Status::unknown(format!("reading {}: {e}", req.digest)))?;
            if n == 0 {
                return Err(Status::unknown(format!(
                    "reading {}: unexpected end at {at} of {size} bytes",
                    req.digest
                )));
            }
            out.send(&ReadContentResponse {
                offset: at as i64,
                data: buf[..n].to_vec(),
                ..Default::default()
            })?;
            at += n as u64;
        }
        Ok(())
    }

    fn status(&self, ctx: &RequestContext, req: StatusRequest) -> RpcResult<StatusResponse> {
        let ns = namespace(ctx)?;
        let st = self.store.status(&ns, &req.ref_).map_err(|e| {
            let s = Status::from(e);
            Status::new(
                s.code(),
                format!(
                    "could not get status for ref {:?}: {}",
                    req.ref_,
                    s.message()
                ),
            )
        })?;
        Ok(StatusResponse {
            status: MessageField::some(status_to_pb(&st)),
            ..Default::default()
        })
    }

    fn list_statuses(
        &self,
        ctx: &RequestContext,
        req: ListStatusesRequest,
    ) -> RpcResult<ListStatusesResponse> {
        let ns = namespace(ctx)?;
        let filter = Filter::parse_all(&req.filters).map_err(Status::from)?;
        Ok(ListStatusesResponse {
            statuses: self
                .store
                .list_statuses(&ns)?
                .iter()
                .filter(|s| filter.matches(&StatusFields(s)))
                .map(status_to_pb)
                .collect(),
            ..Default::default()
        })
    }

    fn write(
        &self,
        ctx: &RequestContext,
        input: &mut StreamReceiver<WriteContentRequest>,
        out: &StreamSender<WriteContentResponse>,
    ) -> RpcResult<()> {
        let ns = namespace(ctx)?;
        let Some(mut req) = input.recv()? else {
            return Ok(());
        };
        let reference = req.ref_.clone();
        if reference.is_empty() {
            return Err(Status::invalid_argument(
                "first message must have a reference",
            ));
        }
        let mut total = req.total;
        let mut expected = req.expected.clone();
        let lease = ctx.lease();
        let mut w = self
            .store
            .writer(&ns, lease, &reference, total, &expected)?;
        loop {
            let action = req.action.enum_value_or(WriteAction::STAT);
            let st = w.status();
            let mut msg = WriteContentResponse {
                action: EnumOrUnknown::new(action),
                offset: st.offset as i64,
                ..Default::default()
            };
            if !req.expected.is_empty() {
                expected = req.expected.clone();
                if self.store.info(&ns, &req.expected).is_ok() {
                    drop(w);
                    if let Err(e) = self.store.abort(&ns, lease, &reference) {
                        log::debug!("content write {reference}: abort after exists: {e}");
                    }
                    return Err(Status::already_exists(format!(
                        "blob with expected digest {} exists",
                        req.expected
                    )));
                }
            }
            if req.total > 0 {
                total = req.total;
            }
            match action {
                WriteAction::STAT => {
                    msg.digest = w.digest();
                    msg.started_at = time_to_pb(st.started_at);
                    msg.updated_at = time_to_pb(st.updated_at);
                    msg.total = total;
                }
                WriteAction::WRITE | WriteAction::COMMIT => {
                    if req.offset > 0 && req.offset as u64 != st.offset {
                        return Err(Status::new(
                            Code::OUT_OF_RANGE,
                            format!(
                                "write @{} must occur at current offset {}",
                                req.offset, st.offset
                            ),
                        ));
                    }
                    if req.offset == 0 && st.offset > 0 {
                        w.truncate(0)
                            .map_err(|e| Status::unknown(format!("truncate failed: {e}")))?;
                        msg.offset = 0;
                    }
                    if !req.data.is_empty() {
                        w.write(&req.data)?;
                        msg.offset += req.data.len() as i64;
                    }
                    if action == WriteAction::COMMIT {
                        let labels: BTreeMap<String, String> = req
                            .labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        w.commit(total, &expected, &labels)?;
                        self.ctx.gc.mutated(false);
                    }
                    msg.digest = w.digest();
                }
            }
            out.send(&msg)?;
            if action == WriteAction::COMMIT {
                return Ok(());
            }
            match input.recv()? {
                Some(next) => req = next,
                None => return Ok(()),
            }
        }
    }

    fn abort(&self, ctx: &RequestContext, req: AbortRequest) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        self.store.abort(&ns, ctx.lease(), &req.ref_)?;
        self.ctx.gc.mutated(true);
        Ok(Empty::new())
    }
}
