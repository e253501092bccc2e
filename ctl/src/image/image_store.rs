//! Image records (`images.Image`) and the store that keeps them ([`ImageStore`]), over
//! corrald's `Images` service ([`RemoteImages`]).

use std::collections::BTreeMap;

use corral_protocols::rpc::CallContext;
use corral_protocols::services::images::v1::images::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image as ImagePb, ListImagesRequest,
    UpdateImageRequest,
};
use corral_protocols::services::images::v1::images_rpc::ImagesClient;
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::MessageField;

use super::error::Result;
use super::ocispec::Descriptor;

/// An image: a name for a target descriptor (an index or a manifest), with labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    /// The image's name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// Labels decorating the record.
    pub labels: BTreeMap<String, String>,
    /// The root of the image's content.
    pub target: Descriptor,
    /// When the record was created.
    pub created_at: Option<Timestamp>,
    /// When it last changed.
    pub updated_at: Option<Timestamp>,
}

impl Image {
    /// A record named `name` for `target`.
    pub fn new(name: &str, target: Descriptor) -> Image {
        Image {
            name: name.to_string(),
            target,
            ..Image::default()
        }
    }

    fn to_pb(&self) -> ImagePb {
        ImagePb {
            name: self.name.clone(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            target: MessageField::some(self.target.to_pb()),
            ..Default::default()
        }
    }

    fn from_pb(pb: &ImagePb) -> Image {
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
                .map(Descriptor::from_pb)
                .unwrap_or_default(),
            created_at: pb.created_at.as_ref().cloned(),
            updated_at: pb.updated_at.as_ref().cloned(),
        }
    }
}

/// The image records of one namespace.
pub trait ImageStore {
    /// The record named `name`.
    fn get(&self, name: &str) -> Result<Image>;
    /// Every record matching any of `filters`.
    fn list(&self, filters: &[String]) -> Result<Vec<Image>>;
    /// Creates `image`; `AlreadyExists` when the name is taken.
    fn create(&self, image: &Image) -> Result<Image>;
    /// Updates the fields `fields` names (`target`, `labels`, `labels.<key>`), all without.
    fn update(&self, image: &Image, fields: &[String]) -> Result<Image>;
    /// Deletes `name`; with `sync`, returns after the collector removed what it held.
    fn delete(&self, name: &str, sync: bool) -> Result<()>;
}

/// The image store behind corrald's `Images` service.
#[derive(Clone)]
pub struct RemoteImages {
    client: ImagesClient,
    ctx: CallContext,
}

impl RemoteImages {
    /// The store `client` reaches, calling with `ctx`.
    pub fn new(client: ImagesClient, ctx: CallContext) -> RemoteImages {
        RemoteImages { client, ctx }
    }
}

impl ImageStore for RemoteImages {
    fn get(&self, name: &str) -> Result<Image> {
        let req = GetImageRequest {
            name: name.to_string(),
            ..Default::default()
        };
        let resp = self.client.get(&self.ctx, &req)?;
        Ok(Image::from_pb(resp.image.as_ref().unwrap_or_default()))
    }

    fn list(&self, filters: &[String]) -> Result<Vec<Image>> {
        let req = ListImagesRequest {
            filters: filters.to_vec(),
            ..Default::default()
        };
        let resp = self.client.list(&self.ctx, &req)?;
        Ok(resp.images.iter().map(Image::from_pb).collect())
    }

    fn create(&self, image: &Image) -> Result<Image> {
        let req = CreateImageRequest {
            image: MessageField::some(image.to_pb()),
            ..Default::default()
        };
        let resp = self.client.create(&self.ctx, &req)?;
        Ok(Image::from_pb(resp.image.as_ref().unwrap_or_default()))
    }

    fn update(&self, image: &Image, fields: &[String]) -> Result<Image> {
        let req = UpdateImageRequest {
            image: MessageField::some(image.to_pb()),
            update_mask: if fields.is_empty() {
                MessageField::none()
            } else {
                MessageField::some(FieldMask {
                    paths: fields.to_vec(),
                    ..Default::default()
                })
            },
            ..Default::default()
        };
        let resp = self.client.update(&self.ctx, &req)?;
        Ok(Image::from_pb(resp.image.as_ref().unwrap_or_default()))
    }

    fn delete(&self, name: &str, sync: bool) -> Result<()> {
        let req = DeleteImageRequest {
            name: name.to_string(),
            sync,
            ..Default::default()
        };
        self.client.delete(&self.ctx, &req)?;
        Ok(())
    }
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`ImageStore`] for unit tests.

    use super::*;
    use crate::image::error::ImageError;
    use std::cell::RefCell;

    /// Records in memory, by name.
    #[derive(Default)]
    pub struct MemoryImages(pub RefCell<BTreeMap<String, Image>>);

    impl ImageStore for MemoryImages {
        fn get(&self, name: &str) -> Result<Image> {
            self.0
                .borrow()
                .get(name)
                .cloned()
                .ok_or_else(|| ImageError::NotFound(format!("image {name:?}: not found")))
        }

        fn list(&self, _filters: &[String]) -> Result<Vec<Image>> {
            Ok(self.0.borrow().values().cloned().collect())
        }

        fn create(&self, image: &Image) -> Result<Image> {
            let mut m = self.0.borrow_mut();
            if m.contains_key(&image.name) {
                return Err(ImageError::AlreadyExists(format!(
                    "image {:?}: already exists",
                    image.name
                )));
            }
            let mut stored = image.clone();
            stored.target.platform = None;
            m.insert(image.name.clone(), stored.clone());
            Ok(stored)
        }

        fn update(&self, image: &Image, fields: &[String]) -> Result<Image> {
            let mut m = self.0.borrow_mut();
            let Some(old) = m.get_mut(&image.name) else {
                return Err(ImageError::NotFound(format!(
                    "image {:?}: not found",
                    image.name
                )));
            };
            for f in fields {
                if f == "target" {
                    old.target = image.target.clone();
                    old.target.platform = None;
                }
            }
            Ok(old.clone())
        }

        fn delete(&self, name: &str, _sync: bool) -> Result<()> {
            self.0
                .borrow_mut()
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| ImageError::NotFound(format!("image {name:?}: not found")))
        }
    }
}
