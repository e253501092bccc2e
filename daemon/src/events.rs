//! The event exchange: containerd's `events/exchange` on plain threads.
//!
//! Services [`publish`](Exchange::publish_event) what changed after it commits; shims and
//! other daemons [`forward`](Exchange::publish_envelope) envelopes they built themselves;
//! [`subscribe`](Exchange::subscribe) hands out a [`Subscription`] that receives every
//! envelope its filters select (containerd's filter language over the envelope's fields
//! `topic` and `namespace`).
//!
//! Every subscriber has a bounded queue of its own ([`SUBSCRIBER_QUEUE`] envelopes). A
//! publisher never blocks on a subscriber: one that falls that far behind is dropped, and its
//! next [`recv_timeout`](Subscription::recv_timeout) reports [`EventError::Lagged`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_protocols::rpc::{Code, Status};
use corral_protocols::services::events::v1::events::Envelope;
use corral_protocols::TypeUrl;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageField};

use crate::filter::{Adaptor, Filter};
use crate::metadata::validate::{validate_identifier, ValidationError};

/// Envelopes queued per subscriber before it is dropped for falling behind.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// Why an event was refused or a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A topic containerd would refuse (`InvalidArgument`).
    #[error("envelope topic {topic:?}: {reason}: invalid argument")]
    InvalidTopic { topic: String, reason: String },
    /// A namespace that is not an identifier (`InvalidArgument`).
    #[error("event envelope has invalid namespace: {0}")]
    InvalidNamespace(ValidationError),
    /// A forwarded envelope without a timestamp (`InvalidArgument`).
    #[error("timestamp must be set on forwarded event: invalid argument")]
    MissingTimestamp,
    /// A forwarded envelope without an event (`InvalidArgument`).
    #[error("event must be set on forwarded event: invalid argument")]
    MissingEvent,
    /// Subscription filters that do not parse (`InvalidArgument`).
    #[error("failed parsing subscription filters: {0}")]
    Filter(String),
    /// An event that does not encode (`Internal`).
    #[error("encoding event {type_url:?}: {message}")]
    Encode { type_url: String, message: String },
    /// The subscriber fell [`SUBSCRIBER_QUEUE`] envelopes behind and was dropped
    /// (`ResourceExhausted`).
    #[error("event subscriber fell behind by {0} events and was dropped")]
    Lagged(usize),
    /// The subscription was closed (`Cancelled`).
    #[error("event subscription closed")]
    Closed,
}

impl EventError {
    /// The gRPC code containerd's errdefs would give this error.
    pub fn code(&self) -> Code {
        match self {
            EventError::InvalidTopic { .. }
            | EventError::InvalidNamespace(_)
            | EventError::MissingTimestamp
            | EventError::MissingEvent
            | EventError::Filter(_) => Code::INVALID_ARGUMENT,
            EventError::Encode { .. } => Code::INTERNAL,
            EventError::Lagged(_) => Code::RESOURCE_EXHAUSTED,
            EventError::Closed => Code::CANCELLED,
        }
    }
}

impl From<EventError> for Status {
    fn from(e: EventError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// containerd's `validateTopic`: `/` followed by one or more identifiers joined by `/`.
pub fn validate_topic(topic: &str) -> Result<(), EventError> {
    let invalid = |reason: String| EventError::InvalidTopic {
        topic: topic.to_string(),
        reason,
    };
    if topic.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    let Some(rest) = topic.strip_prefix('/') else {
        return Err(invalid("must start with '/'".into()));
    };
    if rest.is_empty() {
        return Err(invalid("must have at least one component".into()));
    }
    for component in rest.split('/') {
        if let Err(e) = validate_identifier("topic component", component) {
            return Err(invalid(format!(
                "failed validation on component {component:?}: {e}"
            )));
        }
    }
    Ok(())
}

/// containerd's `validateEnvelope`: a valid namespace and topic, a timestamp; Corral also
/// requires the event itself.
pub fn validate_envelope(envelope: &Envelope) -> Result<(), EventError> {
    validate_identifier("namespace", &envelope.namespace).map_err(EventError::InvalidNamespace)?;
    validate_topic(&envelope.topic)?;
    if envelope.timestamp.is_none() {
        return Err(EventError::MissingTimestamp);
    }
    if envelope.event.is_none() {
        return Err(EventError::MissingEvent);
    }
    Ok(())
}

/// The fields containerd's envelope adaptor knows: `topic` and `namespace`. `event.*` would
/// need the event decoded; it matches nothing.
impl Adaptor for Envelope {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["topic"] => Some(self.topic.clone()),
            ["namespace"] => Some(self.namespace.clone()),
            _ => None,
        }
    }
}

/// Why a subscriber's queue stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueState {
    Open,
    Lagged,
    Closed,
}

struct QueueInner {
    items: VecDeque<Arc<Envelope>>,
    state: QueueState,
}

struct Subscriber {
    id: u64,
    filter: Option<Filter>,
    queue: Mutex<QueueInner>,
    ready: Condvar,
}

impl Subscriber {
    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `env`; false when the subscriber is (now) gone and must be removed.
    fn offer(&self, env: &Arc<Envelope>) -> bool {
        let mut q = self.lock();
        if q.state != QueueState::Open {
            return false;
        }
        if q.items.len() >= SUBSCRIBER_QUEUE {
            q.state = QueueState::Lagged;
            q.items.clear();
            drop(q);
            self.ready.notify_all();
            log::warn!("events: dropping subscriber {} that fell behind", self.id);
            return false;
        }
        q.items.push_back(Arc::clone(env));
        drop(q);
        self.ready.notify_one();
        true
    }

    fn close(&self) {
        let mut q = self.lock();
        if q.state == QueueState::Open {
            q.state = QueueState::Closed;
        }
        drop(q);
        self.ready.notify_all();
    }
}

#[derive(Default)]
struct Inner {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    next_id: AtomicU64,
}

impl Inner {
    fn subscribers(&self) -> MutexGuard<'_, Vec<Arc<Subscriber>>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, id: u64) {
        self.subscribers().retain(|s| s.id != id);
    }
}

/// Fans events out to subscribers. Cheap to clone: clones share the subscribers.
#[derive(Clone, Default)]
pub struct Exchange {
    inner: Arc<Inner>,
}

impl Exchange {
    /// An exchange without subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `event` (encoded as an `Any` with `type_url`, e.g.
    /// `containerd.events.NamespaceCreate`) on `topic` in `namespace`, stamped now.
    pub fn publish_event<M: Message>(
        &self,
        namespace: &str,
        topic: &str,
        type_url: &str,
        event: &M,
    ) -> Result<(), EventError> {
        let value = event.write_to_bytes().map_err(|e| EventError::Encode {
            type_url: type_url.to_string(),
            message: e.to_string(),
        })?;
        let mut any = Any::new();
        any.type_url = type_url.to_string();
        any.value = value;
        self.publish_any(namespace, topic, any)
    }

    /// [`publish_event`](Self::publish_event) with the message's proto full name as its type
    /// URL, as containerd's `typeurl` names its events.
    pub fn publish<M: TypeUrl>(
        &self,
        namespace: &str,
        topic: &str,
        event: &M,
    ) -> Result<(), EventError> {
        self.publish_event(namespace, topic, M::TYPE_URL, event)
    }

    /// Publishes an already encoded event on `topic` in `namespace`, stamped now.
    pub fn publish_any(&self, namespace: &str, topic: &str, event: Any) -> Result<(), EventError> {
        validate_identifier("namespace", namespace).map_err(EventError::InvalidNamespace)?;
        validate_topic(topic)?;
        let mut env = Envelope::new();
        env.timestamp = MessageField::some(Timestamp::now());
        env.namespace = namespace.to_string();
        env.topic = topic.to_string();
        env.event = MessageField::some(event);
        self.broadcast(env);
        Ok(())
    }

    /// Forwards an envelope built elsewhere (containerd's `Forward`), validated first.
    pub fn publish_envelope(&self, envelope: Envelope) -> Result<(), EventError> {
        validate_envelope(&envelope)?;
        self.broadcast(envelope);
        Ok(())
    }

    fn broadcast(&self, envelope: Envelope) {
        log::debug!(
            "events: {} {} {}",
            envelope.namespace,
            envelope.topic,
            envelope.event.type_url
        );
        let env = Arc::new(envelope);
        let mut subs = self.inner.subscribers();
        subs.retain(|sub| {
            if let Some(f) = &sub.filter {
                if !f.matches(env.as_ref()) {
                    return true;
                }
            }
            sub.offer(&env)
        });
    }

    /// Subscribes to the envelopes that match any of `filters` (all of them when empty).
    pub fn subscribe(&self, filters: &[String]) -> Result<Subscription, EventError> {
        let filter = if filters.is_empty() {
            None
        } else {
            Some(Filter::parse_all(filters).map_err(|e| EventError::Filter(e.to_string()))?)
        };
        let sub = Arc::new(Subscriber {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            filter,
            queue: Mutex::new(QueueInner {
                items: VecDeque::new(),
                state: QueueState::Open,
            }),
            ready: Condvar::new(),
        });
        self.inner.subscribers().push(Arc::clone(&sub));
        Ok(Subscription {
            sub,
            exchange: Arc::clone(&self.inner),
        })
    }

    /// Subscribers now attached.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers().len()
    }
}

/// One subscriber's end: receives the envelopes its filters select, in publishing order.
/// Dropping it unsubscribes.
pub struct Subscription {
    sub: Arc<Subscriber>,
    exchange: Arc<Inner>,
}

impl Subscription {
    /// The next envelope, waiting up to `timeout`; `Ok(None)` when none came in time.
    /// `Err(Lagged)` once the subscriber was dropped for falling behind, `Err(Closed)` after
    /// [`close`](Self::close).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Envelope>, EventError> {
        let deadline = Instant::now() + timeout;
        let mut q = self.sub.lock();
        loop {
            match q.state {
                QueueState::Lagged => return Err(EventError::Lagged(SUBSCRIBER_QUEUE)),
                QueueState::Closed => return Err(EventError::Closed),
                QueueState::Open => {}
            }
            if let Some(env) = q.items.pop_front() {
                return Ok(Some(Arc::unwrap_or_clone(env)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            q = self
                .sub
                .ready
                .wait_timeout(q, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// An envelope already queued, without waiting.
    pub fn try_recv(&self) -> Result<Option<Envelope>, EventError> {
        self.recv_timeout(Duration::ZERO)
    }

    /// Unsubscribes; a waiting [`recv_timeout`](Self::recv_timeout) returns `Err(Closed)`.
    pub fn close(&self) {
        self.sub.close();
        self.exchange.remove(self.sub.id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::well_known_types::empty::Empty;

    #[test]
    fn topics_are_validated_like_containerd() {
        for ok in ["/x", "/tasks/create", "/a.b/c-d/e_f"] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", "x", "/", "//", "/a/", "/a//b", "/a b", "/-a"] {
            let err = validate_topic(bad).unwrap_err();
            assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{bad}");
        }
    }

    #[test]
    fn publish_reaches_subscribers_and_lagging_ones_are_dropped() {
        let ex = Exchange::new();
        let sub = ex.subscribe(&[]).unwrap();
        ex.publish("default", "/x", &Empty::new()).unwrap();
        let env = sub.recv_timeout(Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(env.namespace, "default");
        assert_eq!(env.topic, "/x");
        assert_eq!(env.event.type_url, "google.protobuf.Empty");
        assert!(env.timestamp.is_some());
        assert_eq!(sub.try_recv().unwrap(), None);

        for _ in 0..=SUBSCRIBER_QUEUE {
            ex.publish("default", "/x", &Empty::new()).unwrap();
        }
        assert_eq!(ex.subscribers(), 0);
        assert_eq!(sub.try_recv(), Err(EventError::Lagged(SUBSCRIBER_QUEUE)));
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let ex = Exchange::new();
        let sub = ex.subscribe(&[]).unwrap();
        assert_eq!(ex.subscribers(), 1);
        drop(sub);
        assert_eq!(ex.subscribers(), 0);
    }

    #[test]
    fn forwarded_envelopes_are_validated() {
        let ex = Exchange::new();
        let mut env = Envelope::new();
        env.namespace = "default".into();
        env.topic = "/x".into();
        env.event = MessageField::some(Any::new());
        assert_eq!(
            ex.publish_envelope(env.clone()),
            Err(EventError::MissingTimestamp)
        );
        env.timestamp = MessageField::some(Timestamp::now());
        ex.publish_envelope(env.clone()).unwrap();
        env.namespace = "bad ns".into();
        assert_eq!(
            ex.publish_envelope(env).unwrap_err().code(),
            Code::INVALID_ARGUMENT
        );
    }
}
