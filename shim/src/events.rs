//! Task events to the daemon, through `containerd.services.events.ttrpc.v1.Events/Forward` on
//! `TTRPC_ADDRESS`, in the order they were published.
//!
//! Publishing never blocks a task call: events queue up and a sender thread, started when
//! there is something to send and gone after a few idle seconds (with its connection), forwards
//! them one by one, reconnecting and retrying like containerd's own shim does.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::ttrpc::events::v1::events::{Envelope, ForwardRequest};
use corral_protocols::services::ttrpc::events::v1::events_rpc::EventsClient;
use corral_protocols::TypeUrl;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::MessageField;

/// Events kept while the daemon does not take them; beyond it the oldest go (logged).
const QUEUE_LIMIT: usize = 2048;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 5;
const IDLE: Duration = Duration::from_secs(5);

struct State {
    queue: VecDeque<Envelope>,
    sender_running: bool,
    in_flight: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    address: String,
    namespace: String,
}

/// Queues events for the daemon.
#[derive(Clone)]
pub struct Publisher(Arc<Shared>);

/// Turns a time into a protobuf timestamp.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

/// Packs a message the way containerd's typeurl does (its full proto name as the type URL).
pub fn pack<M: TypeUrl>(msg: &M) -> Any {
    corral_protocols::pack(msg).unwrap_or_default()
}

impl Publisher {
    /// A publisher to the daemon's ttrpc socket `address` (empty: events are only logged).
    pub fn new(address: &str, namespace: &str) -> Self {
        Publisher(Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sender_running: false,
                in_flight: false,
            }),
            changed: Condvar::new(),
            address: address.to_string(),
            namespace: namespace.to_string(),
        }))
    }

    /// Queues `event` under `topic`, stamped now.
    pub fn publish<M: TypeUrl>(&self, topic: &str, event: &M) {
        let mut env = Envelope::new();
        env.timestamp = MessageField::some(timestamp(SystemTime::now()));
        env.namespace = self.0.namespace.clone();
        env.topic = topic.to_string();
        env.event = MessageField::some(pack(event));
        log::debug!("event {topic} queued");
        if self.0.address.is_empty() {
            log::warn!("event {topic} dropped: no TTRPC_ADDRESS to forward it to");
            return;
        }
        let Ok(mut st) = self.0.state.lock() else {
            return;
        };
        if st.queue.len() >= QUEUE_LIMIT {
            if let Some(old) = st.queue.pop_front() {
                log::error!("event queue full: dropped {}", old.topic);
            }
        }
        st.queue.push_back(env);
        self.0.changed.notify_all();
        if !st.sender_running {
            st.sender_running = true;
            let shared = Arc::clone(&self.0);
            let spawned = thread::Builder::new()
                .name("events".into())
                .stack_size(128 * 1024)
                .spawn(move || sender(shared));
            if let Err(e) = spawned {
                st.sender_running = false;
                log::error!("cannot start the event sender: {e}");
            }
        }
    }

    /// Waits up to `timeout` for every queued event to be sent (at shutdown).
    pub fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let Ok(mut st) = self.0.state.lock() else {
            return;
        };
        while !st.queue.is_empty() || st.in_flight {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("{} events not forwarded before shutdown", st.queue.len());
                return;
            }
            st = match self.0.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
    }
}

fn sender(shared: Arc<Shared>) {
    let mut client: Option<EventsClient> = None;
    loop {
        let env = {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            loop {
                if let Some(env) = st.queue.pop_front() {
                    st.in_flight = true;
                    break env;
                }
                let (g, timeout) = match shared.changed.wait_timeout(st, IDLE) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                st = g;
                if timeout.timed_out() && st.queue.is_empty() {
                    st.sender_running = false;
                    return;
                }
            }
        };
        forward(&shared, &mut client, env);
        if let Ok(mut st) = shared.state.lock() {
            st.in_flight = false;
        }
        shared.changed.notify_all();
    }
}

fn forward(shared: &Shared, client: &mut Option<EventsClient>, env: Envelope) {
    let topic = env.topic.clone();
    let mut req = ForwardRequest::new();
    req.envelope = MessageField::some(env);
    let ctx = CallContext::new()
        .with_namespace(&shared.namespace)
        .with_timeout(CALL_TIMEOUT);
    for attempt in 1..=ATTEMPTS {
        if client.as_ref().is_none() {
            match Client::connect(&shared.address) {
                Ok(c) => *client = Some(EventsClient::new(c)),
                Err(e) => log::warn!("event {topic}: connecting to {}: {e}", shared.address),
            }
        }
        if let Some(c) = client.as_ref() {
            match c.forward(&ctx, &req) {
                Ok(_) => return,
                Err(e) => {
                    log::warn!("event {topic}: forward attempt {attempt}: {e}");
                    *client = None;
                }
            }
        }
        thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
    }
    log::error!("event {topic} lost after {ATTEMPTS} attempts");
}
