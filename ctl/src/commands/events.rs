//! `corralctl events` (`event`): print corrald's events as they happen, as ctr does.

use std::io::Write as _;

use corral_protocols::services::events::v1::events::{Envelope, SubscribeRequest};
use corral_protocols::services::events::v1::events_rpc::EventsClient;
use protobuf::reflect::FileDescriptor;
use protobuf::well_known_types::any::Any;

use super::format::{go_time_string, message_json, Json};
use super::{CtlError, CtlResult, Env};

/// Subscribes with `filters` and prints every event until the stream ends or the process is
/// interrupted.
pub fn run(env: &Env, filters: Vec<String>) -> CtlResult {
    let client = EventsClient::new(env.connect()?);
    let mut req = SubscribeRequest::new();
    req.filters = filters;
    // The subscription runs until interrupted: no per-call timeout applies to it.
    let ctx = env.ctx.clone();
    let stream = client.subscribe(&ctx, &req)?;
    let stdout = std::io::stdout();
    for envelope in stream {
        let envelope = envelope?;
        let line = event_line(&envelope);
        let mut out = stdout.lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| CtlError::new(format!("writing an event: {e}")))?;
    }
    Ok(())
}

/// One line of output: `<timestamp> <namespace> <topic> <event as JSON>`.
pub fn event_line(e: &Envelope) -> String {
    let json = e.event.as_ref().map(event_json).unwrap_or_default();
    format!(
        "{} {} {} {}",
        go_time_string(e.timestamp.as_ref()),
        e.namespace,
        e.topic,
        json
    )
}

fn event_files() -> [&'static FileDescriptor; 6] {
    use corral_protocols::events::{container, content, image, namespace, snapshot, task};
    [
        container::file_descriptor(),
        content::file_descriptor(),
        image::file_descriptor(),
        namespace::file_descriptor(),
        snapshot::file_descriptor(),
        task::file_descriptor(),
    ]
}

/// An event decoded by its type (`containerd.events.*`) as compact JSON; an unknown or
/// undecodable type prints as the `Any` itself.
pub fn event_json(any: &Any) -> String {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let name = name.trim_start_matches('.');
    for fd in event_files() {
        if let Some(md) = fd.message_by_full_name(&format!(".{name}")) {
            if let Ok(msg) = md.parse_from_bytes(&any.value) {
                return message_json(&*msg).compact();
            }
        }
    }
    Json::any(any).compact()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_protocols::events::container::ContainerCreate;
    use corral_protocols::events::namespace::NamespaceCreate;
    use protobuf::well_known_types::timestamp::Timestamp;
    use protobuf::Message;

    fn any_of(type_url: &str, msg: &dyn protobuf::MessageDyn) -> Any {
        let mut a = Any::new();
        a.type_url = type_url.into();
        a.value = msg.write_to_bytes_dyn().unwrap();
        a
    }

    #[test]
    fn known_events_decode() {
        let mut ns = NamespaceCreate::new();
        ns.name = "edge".into();
        let mut e = Envelope::new();
        e.timestamp = Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000,
            ..Default::default()
        })
        .into();
        e.namespace = "edge".into();
        e.topic = "/namespaces/create".into();
        e.event = Some(any_of("containerd.events.NamespaceCreate", &ns)).into();
        assert_eq!(
            event_line(&e),
            r#"2023-11-14 22:13:20.000123 +0000 UTC edge /namespaces/create {"name":"edge"}"#
        );

        let mut c = ContainerCreate::new();
        c.id = "web".into();
        c.image = "img".into();
        let rt = c.runtime.mut_or_insert_default();
        rt.name = "io.containerd.runc.v2".into();
        let any = any_of("types.containerd.io/containerd.events.ContainerCreate", &c);
        assert_eq!(
            event_json(&any),
            r#"{"id":"web","image":"img","runtime":{"name":"io.containerd.runc.v2"}}"#
        );
        let _ = c.write_to_bytes();
    }

    #[test]
    fn unknown_events_print_the_any() {
        let mut a = Any::new();
        a.type_url = "example.com/Unknown".into();
        a.value = b"foo".to_vec();
        assert_eq!(
            event_json(&a),
            r#"{"type_url":"example.com/Unknown","value":"Zm9v"}"#
        );
    }
}
