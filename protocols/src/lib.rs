//! containerd's API and shim v2 types for Corral, generated at build time from `.proto` files
//! vendored unmodified from containerd 1.6.20 (see `protocols/README.md`), and [`rpc`], the
//! sync ttrpc layer that serves and calls them, streaming methods included.
//!
//! Modules follow containerd's Go packages: [`types`] (`api/types`), [`events`]
//! (`api/events`), `services::<name>::v1` (`api/services/...`), [`runtime::v2::task`] (the
//! shim's Task service), [`runtime::v2::runc::options`], and the cgroup metrics in
//! [`cgroups`]. Each package module holds one module per `.proto` file, named after it; files
//! with services also get `<file>_rpc` with a server trait, `register_<service>` and a
//! `<Service>Client` per service.

pub mod duration;
pub mod identifiers;
pub mod mount;
pub mod rpc;
pub mod xattr;

include!(concat!(env!("OUT_DIR"), "/gen/mod.rs"));

/// A message's type URL as containerd's `typeurl` package gives it: the message's full proto
/// name (`containerd.events.TaskExit`), with no `type.googleapis.com/` prefix. Every generated
/// top-level message has one, as a constant, so that packing an `Any` links no protobuf
/// reflection (rust-protobuf's `Any::pack` reads descriptors and adds the prefix).
pub trait TypeUrl: protobuf::Message {
    /// The full proto name.
    const TYPE_URL: &'static str;
}

include!(concat!(env!("OUT_DIR"), "/gen/type_urls.rs"));

impl TypeUrl for protobuf::well_known_types::empty::Empty {
    const TYPE_URL: &'static str = "google.protobuf.Empty";
}

impl TypeUrl for protobuf::well_known_types::timestamp::Timestamp {
    const TYPE_URL: &'static str = "google.protobuf.Timestamp";
}

/// Packs `msg` into an `Any` the way containerd's `typeurl.MarshalAny` does.
pub fn pack<M: TypeUrl>(msg: &M) -> protobuf::Result<protobuf::well_known_types::any::Any> {
    let mut any = protobuf::well_known_types::any::Any::new();
    any.type_url = M::TYPE_URL.to_string();
    any.value = msg.write_to_bytes()?;
    Ok(any)
}

/// Every `/service/method` path of the vendored services, with its kind.
pub mod methods {
    include!(concat!(env!("OUT_DIR"), "/gen/methods.rs"));
}

/// Corral's version, shared by its three programs.
pub mod version {
    /// The release version.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// The source revision, when the build was given one (`CORRAL_REVISION`, set by the
    /// Makefile from git).
    pub const REVISION: &str = match option_env!("CORRAL_REVISION") {
        Some(r) => r,
        None => "unknown",
    };
}

#[cfg(test)]
mod tests {
    use protobuf::well_known_types::empty::Empty;
    use protobuf::well_known_types::timestamp::Timestamp;
    use protobuf::{Message, MessageFull};

    use super::{pack, TypeUrl};

    #[test]
    fn well_known_type_urls_are_their_full_names() {
        assert_eq!(Empty::TYPE_URL, Empty::descriptor().full_name());
        assert_eq!(Timestamp::TYPE_URL, Timestamp::descriptor().full_name());
    }

    #[test]
    fn pack_uses_the_plain_full_name_and_the_encoding() {
        let mut exit = crate::events::task::TaskExit::new();
        exit.container_id = "c1".into();
        exit.exit_status = 3;
        let any = pack(&exit).unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        let back = crate::events::task::TaskExit::parse_from_bytes(&any.value).unwrap();
        assert_eq!(back, exit);
    }
}
