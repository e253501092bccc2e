//! containerd's `Images` service (`services/images/local.go`) over the metadata store.
//! Namespaced.
//!
//! Events after commit: `/images/create`, `/images/update`, `/images/delete`. A delete with
//! `sync` returns after a garbage collection that began after the delete, as containerd's
//! `ScheduleAndWait` does; without it the collector runs soon after on its own.
//! Filters on `List` select on containerd's image fields (`name`, `target.digest`,
//! `target.mediatype`, `labels.<key>`, `annotations.<key>`), as its `adaptImage` does.

use std::sync::Arc;

use corral_protocols::events::image::{ImageCreate, ImageDelete, ImageUpdate};
use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status};
use corral_protocols::services::images::v1::images::{
    CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest, GetImageResponse,
    Image as ImagePb, ListImagesRequest, ListImagesResponse, UpdateImageRequest,
    UpdateImageResponse,
};
use corral_protocols::services::images::v1::images_rpc::{register_images, Images};
use corral_protocols::types::descriptor::Descriptor as DescriptorPb;
use protobuf::well_known_types::empty::Empty;
use protobuf::MessageField;

use super::containers::time_to_pb;
use super::namespaces::publish;
use super::{namespace, Context};
use crate::filter::{check_map, Adaptor, Filter};
use crate::metadata::image::{self as store, Descriptor, Image};

/// The `containerd.services.images.v1.Images` service.
pub struct ImagesService {
    ctx: Arc<Context>,
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_images(
        set,
        Arc::new(ImagesService {
            ctx: Arc::clone(ctx),
        }),
    );
}

/// An image's fields as filters see them (containerd's `adaptImage`).
pub struct ImageFields<'a>(pub &'a Image);

impl Adaptor for ImageFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        let i = self.0;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match path {
            ["name"] => non_empty(&i.name),
            ["target", "digest"] => non_empty(&i.target.digest),
            ["target", "mediatype"] => non_empty(&i.target.media_type),
            ["labels", rest @ ..] => check_map(rest, &i.labels),
            ["annotations", rest @ ..] => check_map(rest, &i.target.annotations),
            _ => None,
        }
    }
}

/// A descriptor on the wire.
pub fn descriptor_to_pb(d: &Descriptor) -> DescriptorPb {
    DescriptorPb {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

/// A descriptor from the wire.
pub fn descriptor_from_pb(d: &DescriptorPb) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A record as containerd's `imageToProto` sends it.
pub fn image_to_pb(i: &Image) -> ImagePb {
    ImagePb {
        name: i.name.clone(),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target: MessageField::some(descriptor_to_pb(&i.target)),
        created_at: time_to_pb(i.created_at),
        updated_at: time_to_pb(i.updated_at),
        ..Default::default()
    }
}

/// A request's image as containerd's `imageFromProto` reads it.
pub fn image_from_pb(pb: &ImagePb) -> Image {
    Image {
        name: pb.name.clone(),
        labels: pb
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target: pb
            .target
            .as_ref()
            .map(descriptor_from_pb)
            .unwrap_or_default(),
        ..Default::default()
    }
}

impl Images for ImagesService {
    fn get(&self, ctx: &RequestContext, req: GetImageRequest) -> RpcResult<GetImageResponse> {
        let ns = namespace(ctx)?;
        let image = self.ctx.store.view(|tx| store::get(tx, &ns, &req.name))?;
        Ok(GetImageResponse {
            image: MessageField::some(image_to_pb(&image)),
            ..Default::default()
        })
    }

    fn list(&self, ctx: &RequestContext, req: ListImagesRequest) -> RpcResult<ListImagesResponse> {
        let ns = namespace(ctx)?;
        let filter = Filter::parse_all(&req.filters).map_err(Status::from)?;
        let all = self.ctx.store.view(|tx| store::list(tx, &ns))?;
        Ok(ListImagesResponse {
            images: all
                .iter()
                .filter(|i| filter.matches(&ImageFields(i)))
                .map(image_to_pb)
                .collect(),
            ..Default::default()
        })
    }

    fn create(
        &self,
        ctx: &RequestContext,
        req: CreateImageRequest,
    ) -> RpcResult<CreateImageResponse> {
        let ns = namespace(ctx)?;
        let image = image_from_pb(req.image.as_ref().unwrap_or_default());
        if image.name.is_empty() {
            return Err(Status::invalid_argument("Image.Name required"));
        }
        let created = self.ctx.store.update(|tx| store::create(tx, &ns, &image))?;
        self.ctx.gc.mutated(false);
        publish(
            &self.ctx,
            &ns,
            "/images/create",
            &ImageCreate {
                name: created.name.clone(),
                labels: created
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ..Default::default()
            },
        );
        Ok(CreateImageResponse {
            image: MessageField::some(image_to_pb(&created)),
            ..Default::default()
        })
    }

    fn update(
        &self,
        ctx: &RequestContext,
        req: UpdateImageRequest,
    ) -> RpcResult<UpdateImageResponse> {
        let ns = namespace(ctx)?;
        let image = image_from_pb(req.image.as_ref().unwrap_or_default());
        if image.name.is_empty() {
            return Err(Status::invalid_argument("Image.Name required"));
        }
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        let updated = self
            .ctx
            .store
            .update(|tx| store::update(tx, &ns, &image, &paths))?;
        // A new target or dropped labels may leave content unreferenced.
        self.ctx.gc.mutated(false);
        publish(
            &self.ctx,
            &ns,
            "/images/update",
            &ImageUpdate {
                name: updated.name.clone(),
                labels: updated
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ..Default::default()
            },
        );
        Ok(UpdateImageResponse {
            image: MessageField::some(image_to_pb(&updated)),
            ..Default::default()
        })
    }

    fn delete(&self, ctx: &RequestContext, req: DeleteImageRequest) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        self.ctx
            .store
            .update(|tx| store::delete(tx, &ns, &req.name))?;
        self.ctx.gc.mutated(true);
        publish(
            &self.ctx,
            &ns,
            "/images/delete",
            &ImageDelete {
                name: req.name.clone(),
                ..Default::default()
            },
        );
        if req.sync {
            self.ctx
                .gc
                .collect_and_wait()
                .map_err(|e| Status::unknown(format!("garbage collection failed: {e}")))?;
        }
        Ok(Empty::new())
    }
}
