//! The Namespaces, Containers and Leases services through the wire: a real ttrpc server and
//! client over a socket pair, the store in a temporary directory.

mod common;

use common::{ns, Harness};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use corral_daemon::events::Subscription;
use corral_protocols::rpc::{CallContext, Code};
use corral_protocols::services::containers::v1::containers::{
    container, Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
    ListContainersRequest, UpdateContainerRequest,
};
use corral_protocols::services::containers::v1::containers_rpc::ContainersClient;
use corral_protocols::services::images::v1::images::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use corral_protocols::services::images::v1::images_rpc::ImagesClient;
use corral_protocols::services::leases::v1::leases::{
    AddResourceRequest, CreateRequest, DeleteRequest, DeleteResourceRequest, ListRequest,
    ListResourcesRequest, Resource,
};
use corral_protocols::services::namespaces::v1::namespace::{
    CreateNamespaceRequest, DeleteNamespaceRequest, GetNamespaceRequest, ListNamespacesRequest,
    Namespace, UpdateNamespaceRequest,
};
use corral_protocols::services::namespaces::v1::namespace_rpc::NamespacesClient;
use corral_protocols::types::descriptor::Descriptor;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::MessageField;

fn namespaces(h: &Harness) -> NamespacesClient {
    NamespacesClient::new(h.client.clone())
}

fn containers(h: &Harness) -> ContainersClient {
    ContainersClient::new(h.client.clone())
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn spec() -> Any {
    Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
        value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        ..Default::default()
    }
}

fn container(id: &str) -> Container {
    Container {
        id: id.into(),
        image: "docker.io/library/alpine:latest".into(),
        runtime: MessageField::some(container::Runtime {
            name: "io.containerd.runc.v2".into(),
            ..Default::default()
        }),
        spec: MessageField::some(spec()),
        snapshotter: "overlayfs".into(),
        snapshot_key: format!("{id}-snapshot"),
        ..Default::default()
    }
}

fn create_req(c: Container) -> CreateContainerRequest {
    CreateContainerRequest {
        container: MessageField::some(c),
        ..Default::default()
    }
}

/// The (namespace, topic) of every event that arrives within a short while.
fn drain(sub: &Subscription) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(Some(env)) = sub.recv_timeout(Duration::from_millis(200)) {
        out.push((env.namespace.clone(), env.topic.clone()));
    }
    out
}

fn topics(evs: &[(String, String)]) -> Vec<&str> {
    evs.iter().map(|(_, t)| t.as_str()).collect()
}

#[test]
fn namespaces_through_the_wire() {
    let h = Harness::new();
    let sub = h.ctx.exchange.subscribe(&[]).expect("subscribe");
    let c = namespaces(&h);
    let none = CallContext::new();

    let created = c
        .create(
            &none,
            &CreateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "edge".into(),
                    labels: labels(&[("site", "lab"), ("tier", "1")]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("create");
    assert_eq!(created.namespace.name, "edge");
    assert_eq!(
        created.namespace.labels,
        labels(&[("site", "lab"), ("tier", "1")])
    );

    let dup = c
        .create(
            &none,
            &CreateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "edge".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect_err("duplicate");
    assert_eq!(dup.code(), Code::ALREADY_EXISTS, "{dup:?}");

    let bad = c
        .create(
            &none,
            &CreateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "no/slash".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::INVALID_ARGUMENT, "{bad:?}");

    let got = c
        .get(
            &none,
            &GetNamespaceRequest {
                name: "edge".into(),
                ..Default::default()
            },
        )
        .expect("get");
    assert_eq!(
        got.namespace.labels.get("site").map(String::as_str),
        Some("lab")
    );
    let missing = c
        .get(
            &none,
            &GetNamespaceRequest {
                name: "nowhere".into(),
                ..Default::default()
            },
        )
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NOT_FOUND);

    // labels.<key>: set one, remove another; the rest stay.
    let upd = c
        .update(
            &none,
            &UpdateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "edge".into(),
                    labels: labels(&[("site", "field")]),
                    ..Default::default()
                }),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["labels.site".into(), "labels.tier".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update mask");
    assert_eq!(upd.namespace.labels, labels(&[("site", "field")]));

    // An empty mask replaces every label.
    let upd = c
        .update(
            &none,
            &UpdateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "edge".into(),
                    labels: labels(&[("owner", "ops")]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update all");
    assert_eq!(upd.namespace.labels, labels(&[("owner", "ops")]));

    let bad_path = c
        .update(
            &none,
            &UpdateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "edge".into(),
                    ..Default::default()
                }),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["name".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect_err("bad path");
    assert_eq!(bad_path.code(), Code::INVALID_ARGUMENT);
    let upd_missing = c
        .update(
            &none,
            &UpdateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: "nowhere".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect_err("update missing");
    assert_eq!(upd_missing.code(), Code::NOT_FOUND);

    // A namespace holding a container cannot go.
    containers(&h)
        .create(&ns("edge"), &create_req(container("web")))
        .expect("container");
    let busy = c
        .delete(
            &none,
            &DeleteNamespaceRequest {
                name: "edge".into(),
                ..Default::default()
            },
        )
        .expect_err("not empty");
    assert_eq!(busy.code(), Code::FAILED_PRECONDITION, "{busy:?}");
    containers(&h)
        .delete(
            &ns("edge"),
            &DeleteContainerRequest {
                id: "web".into(),
                ..Default::default()
            },
        )
        .expect("delete container");

    let list = c
        .list(&none, &ListNamespacesRequest::default())
        .expect("list");
    let names: Vec<_> = list.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["edge"]);

    c.delete(
        &none,
        &DeleteNamespaceRequest {
            name: "edge".into(),
            ..Default::default()
        },
    )
    .expect("delete");
    let again = c
        .delete(
            &none,
            &DeleteNamespaceRequest {
                name: "edge".into(),
                ..Default::default()
            },
        )
        .expect_err("gone");
    assert_eq!(again.code(), Code::NOT_FOUND);
    assert!(c
        .list(&none, &ListNamespacesRequest::default())
        .expect("list")
        .namespaces
        .is_empty());

    let evs = drain(&sub);
    assert_eq!(
        topics(&evs),
        [
            "/namespaces/create",
            "/namespaces/update",
            "/namespaces/update",
            "/containers/create",
            "/containers/delete",
            "/namespaces/delete",
        ]
    );
    assert!(evs.iter().all(|(n, _)| n == "edge"), "{evs:?}");
}

#[test]
fn containers_through_the_wire() {
    let h = Harness::new();
    let sub = h.ctx.exchange.subscribe(&[]).expect("subscribe");
    let c = containers(&h);
    let cx = ns("default");

    let mut web = container("web");
    web.labels = labels(&[("app", "web")]);
    web.extensions.insert("ext.a".into(), spec());
    let created = c.create(&cx, &create_req(web)).expect("create").container;
    assert_eq!(created.id, "web");
    assert_eq!(created.runtime.name, "io.containerd.runc.v2");
    assert_eq!(created.spec.value, spec().value);
    assert_eq!(created.extensions.len(), 1);
    assert!(created.created_at.is_some() && created.created_at.seconds > 0);
    assert_eq!(created.created_at, created.updated_at);

    let dup = c
        .create(&cx, &create_req(container("web")))
        .expect_err("dup");
    assert_eq!(dup.code(), Code::ALREADY_EXISTS);
    let mut nospec = container("nospec");
    nospec.spec = MessageField::none();
    let bad = c.create(&cx, &create_req(nospec)).expect_err("no spec");
    assert_eq!(bad.code(), Code::INVALID_ARGUMENT, "{bad:?}");
    let bad_id = c
        .create(&cx, &create_req(container("bad id")))
        .expect_err("id");
    assert_eq!(bad_id.code(), Code::INVALID_ARGUMENT);

    let mut db = container("db");
    db.image = "docker.io/library/postgres:16".into();
    db.labels = labels(&[("app", "db")]);
    c.create(&cx, &create_req(db)).expect("create db");

    let got = c
        .get(
            &cx,
            &GetContainerRequest {
                id: "web".into(),
                ..Default::default()
            },
        )
        .expect("get")
        .container;
    assert_eq!(got, created);
    let missing = c
        .get(
            &cx,
            &GetContainerRequest {
                id: "nope".into(),
                ..Default::default()
            },
        )
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NOT_FOUND);
    // Another namespace does not see them.
    let other = c
        .list(&ns("other"), &ListContainersRequest::default())
        .expect("list other");
    assert!(other.containers.is_empty());

    let list = |filters: &[&str]| -> Vec<String> {
        c.list(
            &cx,
            &ListContainersRequest {
                filters: filters.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .expect("list")
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
    };
    assert_eq!(list(&[]), ["db", "web"]);
    assert_eq!(list(&["labels.app==web"]), ["web"]);
    assert_eq!(list(&["id==db"]), ["db"]);
    assert_eq!(list(&["image==docker.io/library/postgres:16"]), ["db"]);
    assert_eq!(
        list(&["runtime.name==io.containerd.runc.v2"]),
        ["db", "web"]
    );
    assert_eq!(list(&["id==web", "id==db"]), ["db", "web"]);
    assert_eq!(list(&["id==web,labels.app==db"]), Vec::<String>::new());

    // Update with a mask: one label and the image.
    let mut change = container("web");
    change.labels = labels(&[("tier", "front")]);
    change.image = "docker.io/library/nginx:latest".into();
    let upd = c
        .update(
            &cx,
            &UpdateContainerRequest {
                container: MessageField::some(change),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["labels.tier".into(), "image".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update")
        .container;
    assert_eq!(upd.labels, labels(&[("app", "web"), ("tier", "front")]));
    assert_eq!(upd.image, "docker.io/library/nginx:latest");
    assert_eq!(upd.created_at, created.created_at);
    assert!(upd.updated_at.seconds >= created.updated_at.seconds);

    let immut = c
        .update(
            &cx,
            &UpdateContainerRequest {
                container: MessageField::some(container("web")),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["runtime".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect_err("runtime");
    assert_eq!(immut.code(), Code::INVALID_ARGUMENT);
    let mut other_snap = container("web");
    other_snap.snapshotter = "native".into();
    let immut = c
        .update(
            &cx,
            &UpdateContainerRequest {
                container: MessageField::some(other_snap),
                ..Default::default()
            },
        )
        .expect_err("snapshotter");
    assert_eq!(immut.code(), Code::INVALID_ARGUMENT);
    let no_id = c
        .update(&cx, &UpdateContainerRequest::default())
        .expect_err("no id");
    assert_eq!(no_id.code(), Code::INVALID_ARGUMENT);
    let upd_missing = c
        .update(
            &cx,
            &UpdateContainerRequest {
                container: MessageField::some(container("nope")),
                ..Default::default()
            },
        )
        .expect_err("missing");
    assert_eq!(upd_missing.code(), Code::NOT_FOUND);

    // ListStream returns every container, one message each.
    let mut stream = c
        .list_stream(&cx, &ListContainersRequest::default())
        .expect("stream");
    let mut streamed = Vec::new();
    while let Some(m) = stream.recv().expect("recv") {
        streamed.push(m.container.id.clone());
    }
    assert_eq!(streamed, ["db", "web"]);

    c.delete(
        &cx,
        &DeleteContainerRequest {
            id: "web".into(),
            ..Default::default()
        },
    )
    .expect("delete");
    let gone = c
        .delete(
            &cx,
            &DeleteContainerRequest {
                id: "web".into(),
                ..Default::default()
            },
        )
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NOT_FOUND);
    assert_eq!(list(&[]), ["db"]);

    let evs = drain(&sub);
    assert_eq!(
        topics(&evs),
        [
            "/containers/create",
            "/containers/create",
            "/containers/update",
            "/containers/delete"
        ]
    );
    assert!(evs.iter().all(|(n, _)| n == "default"));
}

#[test]
fn leases_through_the_wire() {
    let h = Harness::new();
    let sub = h.ctx.exchange.subscribe(&[]).expect("subscribe");
    let c = h.leases();
    let cx = ns("default");

    let l = c
        .create(
            &cx,
            &CreateRequest {
                id: "build-1".into(),
                labels: labels(&[("containerd.io/gc.expire", "2030-01-01T00:00:00Z")]),
                ..Default::default()
            },
        )
        .expect("create")
        .lease;
    assert_eq!(l.id, "build-1");
    assert!(l.created_at.seconds > 0);
    c.create(
        &cx,
        &CreateRequest {
            id: "pull-1".into(),
            ..Default::default()
        },
    )
    .expect("create 2");

    let dup = c
        .create(
            &cx,
            &CreateRequest {
                id: "build-1".into(),
                ..Default::default()
            },
        )
        .expect_err("dup");
    assert_eq!(dup.code(), Code::ALREADY_EXISTS);
    let empty = c.create(&cx, &CreateRequest::default()).expect_err("no id");
    assert_eq!(empty.code(), Code::INVALID_ARGUMENT);

    let list = |filters: &[&str]| -> Vec<String> {
        c.list(
            &cx,
            &ListRequest {
                filters: filters.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .expect("list")
        .leases
        .into_iter()
        .map(|l| l.id)
        .collect()
    };
    assert_eq!(list(&[]), ["build-1", "pull-1"]);
    assert_eq!(list(&["id==pull-1"]), ["pull-1"]);
    assert_eq!(list(&["labels.\"containerd.io/gc.expire\""]), ["build-1"]);

    let digest = format!("sha256:{}", "ab".repeat(32));
    let res = |typ: &str, id: &str| {
        MessageField::some(Resource {
            id: id.into(),
            type_: typ.into(),
            ..Default::default()
        })
    };
    for (typ, id) in [
        ("content", digest.as_str()),
        ("snapshots/overlayfs", "layer-1"),
        ("ingests", "ref-1"),
    ] {
        c.add_resource(
            &cx,
            &AddResourceRequest {
                id: "build-1".into(),
                resource: res(typ, id),
                ..Default::default()
            },
        )
        .expect("add");
    }
    let bad = c
        .add_resource(
            &cx,
            &AddResourceRequest {
                id: "build-1".into(),
                resource: res("content", "not-a-digest"),
                ..Default::default()
            },
        )
        .expect_err("bad digest");
    assert_eq!(bad.code(), Code::INVALID_ARGUMENT);
    let unknown = c
        .add_resource(
            &cx,
            &AddResourceRequest {
                id: "build-1".into(),
                resource: res("images", "x"),
                ..Default::default()
            },
        )
        .expect_err("unknown type");
    assert_eq!(unknown.code(), Code::UNIMPLEMENTED);
    let no_lease = c
        .add_resource(
            &cx,
            &AddResourceRequest {
                id: "nope".into(),
                resource: res("ingests", "x"),
                ..Default::default()
            },
        )
        .expect_err("no lease");
    assert_eq!(no_lease.code(), Code::NOT_FOUND);

    let rs = |id: &str| -> Vec<(String, String)> {
        c.list_resources(
            &cx,
            &ListResourcesRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .expect("resources")
        .resources
        .into_iter()
        .map(|r| (r.type_, r.id))
        .collect()
    };
    assert_eq!(
        rs("build-1"),
        [
            ("content".to_string(), digest.clone()),
            ("ingests".to_string(), "ref-1".to_string()),
            ("snapshots/overlayfs".to_string(), "layer-1".to_string()),
        ]
    );
    c.delete_resource(
        &cx,
        &DeleteResourceRequest {
            id: "build-1".into(),
            resource: res("ingests", "ref-1"),
            ..Default::default()
        },
    )
    .expect("delete resource");
    assert_eq!(rs("build-1").len(), 2);

    c.delete(
        &cx,
        &DeleteRequest {
            id: "build-1".into(),
            sync: true,
            ..Default::default()
        },
    )
    .expect("delete");
    let gone = c
        .delete(
            &cx,
            &DeleteRequest {
                id: "build-1".into(),
                ..Default::default()
            },
        )
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NOT_FOUND);
    let gone = c
        .list_resources(
            &cx,
            &ListResourcesRequest {
                id: "build-1".into(),
                ..Default::default()
            },
        )
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NOT_FOUND);
    assert_eq!(list(&[]), ["pull-1"]);

    // containerd publishes no lease events.
    assert!(drain(&sub).is_empty());
}

#[test]
fn namespaced_services_require_a_namespace() {
    let h = Harness::new();
    let none = CallContext::new();
    let cs = containers(&h);
    let ls = h.leases();
    let fp = |r: Result<(), corral_protocols::rpc::Status>| {
        let e = r.expect_err("no namespace");
        assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e:?}");
        assert!(e.message().contains("namespace is required"), "{e:?}");
    };
    fp(cs.create(&none, &create_req(container("web"))).map(drop));
    fp(cs.get(&none, &GetContainerRequest::default()).map(drop));
    fp(cs.list(&none, &ListContainersRequest::default()).map(drop));
    fp(cs
        .update(&none, &UpdateContainerRequest::default())
        .map(drop));
    fp(cs
        .delete(&none, &DeleteContainerRequest::default())
        .map(drop));
    fp((|| {
        let mut s = cs.list_stream(&none, &ListContainersRequest::default())?;
        while s.recv()?.is_some() {}
        Ok(())
    })());
    fp(ls
        .create(
            &none,
            &CreateRequest {
                id: "l".into(),
                ..Default::default()
            },
        )
        .map(drop));
    fp(ls.list(&none, &ListRequest::default()).map(drop));
    fp(ls.delete(&none, &DeleteRequest::default()).map(drop));
    fp(ls
        .add_resource(&none, &AddResourceRequest::default())
        .map(drop));
    fp(ls
        .delete_resource(&none, &DeleteResourceRequest::default())
        .map(drop));
    fp(ls
        .list_resources(&none, &ListResourcesRequest::default())
        .map(drop));
    // An invalid namespace is an invalid argument.
    let e = cs
        .list(&ns("bad/ns"), &ListContainersRequest::default())
        .expect_err("bad namespace");
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    assert_eq!(
        e.message(),
        "namespace validation: identifier \"bad/ns\" must match \
         ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument"
    );
    // Nothing was written.
    let all = namespaces(&h)
        .list(&none, &ListNamespacesRequest::default())
        .expect("list");
    assert!(all.namespaces.is_empty());
}

#[test]
fn concurrent_create_list_delete_loses_nothing() {
    const THREADS: usize = 50;
    const PER_THREAD: usize = 6;
    let h = Arc::new(Harness::new());
    let sub = h.ctx.exchange.subscribe(&[]).expect("subscribe");
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                // Half the threads share the harness connection, half have their own.
                let client = if t % 2 == 0 {
                    h.client.clone()
                } else {
                    h.connect()
                };
                let c = ContainersClient::new(client);
                let cx = ns("busy");
                for i in 0..PER_THREAD {
                    let id = format!("c-{t}-{i}");
                    c.create(&cx, &create_req(container(&id))).expect("create");
                    let listed = c
                        .list(&cx, &ListContainersRequest::default())
                        .expect("list");
                    assert!(listed.containers.iter().any(|x| x.id == id));
                    // Delete every odd one again.
                    if i % 2 == 1 {
                        c.delete(
                            &cx,
                            &DeleteContainerRequest {
                                id: id.clone(),
                                ..Default::default()
                            },
                        )
                        .expect("delete");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let got: Vec<String> = containers(&h)
        .list(&ns("busy"), &ListContainersRequest::default())
        .expect("list")
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "duplicates in {got:?}");
    let want: BTreeSet<String> = (0..THREADS)
        .flat_map(|t| {
            (0..PER_THREAD)
                .filter(|i| i % 2 == 0)
                .map(move |i| format!("c-{t}-{i}"))
        })
        .collect();
    assert_eq!(unique, want.iter().collect());

    let evs = drain(&sub);
    let creates = evs
        .iter()
        .filter(|(_, t)| t == "/containers/create")
        .count();
    let deletes = evs
        .iter()
        .filter(|(_, t)| t == "/containers/delete")
        .count();
    assert_eq!(creates, THREADS * PER_THREAD);
    assert_eq!(deletes, THREADS * PER_THREAD / 2);
}

fn image(name: &str, digest: &str, l: &[(&str, &str)]) -> Image {
    Image {
        name: name.into(),
        labels: labels(l),
        target: MessageField::some(Descriptor {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: digest.into(),
            size: 314,
            annotations: labels(&[("org.opencontainers.image.ref.name", "latest")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn images_through_the_wire() {
    let h = Harness::new();
    let sub = h.ctx.exchange.subscribe(&[]).expect("subscribe");
    let is = ImagesClient::new(h.client.clone());
    let ctx = ns("default");
    let create = |i: Image| {
        is.create(
            &ctx,
            &CreateImageRequest {
                image: MessageField::some(i),
                ..Default::default()
            },
        )
    };
    let created = create(image(
        "docker.io/library/busybox:latest",
        D1,
        &[("app", "web")],
    ))
    .expect("create")
    .image
    .unwrap();
    assert_eq!(created.name, "docker.io/library/busybox:latest");
    assert!(created.created_at.is_some() && created.updated_at.is_some());
    assert_eq!(created.target.digest, D1);
    create(image("docker.io/library/alpine:3.20", D2, &[])).expect("create 2");

    // Errors with containerd's codes.
    let dup = create(image("docker.io/library/alpine:3.20", D2, &[])).unwrap_err();
    assert_eq!(dup.code(), Code::ALREADY_EXISTS, "{dup:?}");
    let no_name = create(image("", D2, &[])).unwrap_err();
    assert_eq!(no_name.code(), Code::INVALID_ARGUMENT);
    assert_eq!(no_name.message(), "Image.Name required");
    let bad_digest = create(image("x", "sha256:nothex", &[])).unwrap_err();
    assert_eq!(bad_digest.code(), Code::INVALID_ARGUMENT, "{bad_digest:?}");
    let missing = is
        .get(
            &ctx,
            &GetImageRequest {
                name: "nope".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(missing.code(), Code::NOT_FOUND);
    assert_eq!(missing.message(), "image \"nope\": not found");

    // Get, list with containerd's image filters.
    let got = is
        .get(
            &ctx,
            &GetImageRequest {
                name: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            },
        )
        .expect("get")
        .image
        .unwrap();
    assert_eq!(got.labels, labels(&[("app", "web")]));
    let names = |filters: &[&str]| -> Vec<String> {
        is.list(
            &ctx,
            &ListImagesRequest {
                filters: filters.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            },
        )
        .expect("list")
        .images
        .into_iter()
        .map(|i| i.name)
        .collect()
    };
    assert_eq!(names(&[]).len(), 2);
    assert_eq!(
        names(&["labels.app==web"]),
        ["docker.io/library/busybox:latest"]
    );
    assert_eq!(
        names(&[&format!("target.digest=={D2}")]),
        ["docker.io/library/alpine:3.20"]
    );
    assert_eq!(names(&["name~=alpine"]), ["docker.io/library/alpine:3.20"]);
    assert_eq!(
        names(&["annotations.\"org.opencontainers.image.ref.name\"==latest"]).len(),
        2
    );
    assert_eq!(
        names(&["name==a", "name==docker.io/library/alpine:3.20"]).len(),
        1
    );
    assert!(names(&["target.mediatype==text/plain"]).is_empty());
    let bad = is
        .list(
            &ctx,
            &ListImagesRequest {
                filters: vec!["labels.\"unclosed==x".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(bad.code(), Code::INVALID_ARGUMENT);
    // Namespaces are separate.
    assert!(is
        .list(&ns("other"), &ListImagesRequest::default())
        .unwrap()
        .images
        .is_empty());

    // Update: one label by mask, then the target as a unit, then a field it cannot set.
    let mut upd = image("docker.io/library/busybox:latest", D2, &[("tier", "edge")]);
    let updated = is
        .update(
            &ctx,
            &UpdateImageRequest {
                image: MessageField::some(upd.clone()),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["labels.tier".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update label")
        .image
        .unwrap();
    assert_eq!(updated.labels, labels(&[("app", "web"), ("tier", "edge")]));
    assert_eq!(
        updated.target.digest, D1,
        "target untouched by a label mask"
    );
    assert_eq!(updated.created_at, created.created_at);
    let updated = is
        .update(
            &ctx,
            &UpdateImageRequest {
                image: MessageField::some(upd.clone()),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["target".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update target")
        .image
        .unwrap();
    assert_eq!(updated.target.digest, D2);
    upd.name = "docker.io/library/busybox:latest".into();
    let e = is
        .update(
            &ctx,
            &UpdateImageRequest {
                image: MessageField::some(upd),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["createdat".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{e:?}");

    // Delete, with and without sync; a second delete is NotFound.
    is.delete(
        &ctx,
        &DeleteImageRequest {
            name: "docker.io/library/alpine:3.20".into(),
            ..Default::default()
        },
    )
    .expect("delete");
    is.delete(
        &ctx,
        &DeleteImageRequest {
            name: "docker.io/library/busybox:latest".into(),
            sync: true,
            ..Default::default()
        },
    )
    .expect("delete sync");
    let again = is
        .delete(
            &ctx,
            &DeleteImageRequest {
                name: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(again.code(), Code::NOT_FOUND);
    assert!(names(&[]).is_empty());

    let evs = drain(&sub);
    assert_eq!(
        topics(&evs),
        [
            "/images/create",
            "/images/create",
            "/images/update",
            "/images/update",
            "/images/delete",
            "/images/delete",
        ]
    );
    assert!(evs.iter().all(|(n, _)| n == "default"));
}
