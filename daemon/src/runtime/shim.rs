//! One live shim: its bundle, its binary, a ttrpc client for its Task service, and how it
//! ended (so a `Wait` cut short by a dead shim can still answer with the exit status the
//! cleanup found).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use corral_protocols::rpc::{CallContext, Client, Code, OnClose, Status};
use corral_protocols::runtime::v2::task::shim::{
    ConnectRequest, ConnectResponse, DeleteRequest, DeleteResponse, ShutdownRequest, StateRequest,
    StateResponse,
};
use corral_protocols::runtime::v2::task::shim_rpc::TaskClient;
use protobuf::well_known_types::timestamp::Timestamp;

use super::binary::ShimBinary;
use super::bundle::Bundle;
use super::{RuntimeError, RuntimeResult};

/// containerd's `io.containerd.timeout.shim.load`: how long a reloaded shim gets to answer.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// containerd's `io.containerd.timeout.shim.shutdown`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// containerd's `io.containerd.timeout.task.state`.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a process ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub pid: u32,
    pub status: u32,
    pub exited_at: Timestamp,
}

impl Exit {
    /// containerd's exit for a shim whose cleanup said nothing: status 255, now.
    pub fn unknown() -> Exit {
        Exit {
            pid: 0,
            status: 255,
            exited_at: Timestamp::now(),
        }
    }
}

impl From<&DeleteResponse> for Exit {
    fn from(r: &DeleteResponse) -> Exit {
        Exit {
            pid: r.pid,
            status: r.exit_status,
            exited_at: r.exited_at.clone().unwrap_or_default(),
        }
    }
}

/// What the on-close hook and the task's callers share about the shim's end.
#[derive(Debug, Default)]
pub struct Ending {
    /// The task was deleted through the API: a closed connection is expected, and there is
    /// nothing left to clean up.
    retired: AtomicBool,
    /// Set once the connection is gone and its cleanup ran: the exit it found.
    ended: Mutex<Option<Exit>>,
    changed: Condvar,
}

impl Ending {
    /// Marks the task deleted through the API.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Whether the task was deleted through the API.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Records how the shim ended and wakes whoever waits.
    pub fn finish(&self, exit: Exit) {
        if let Ok(mut e) = self.ended.lock() {
            e.get_or_insert(exit);
        }
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for the shim's end.
    pub fn wait(&self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        let mut ended = self.ended.lock().ok()?;
        loop {
            if let Some(e) = ended.as_ref() {
                return Some(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            ended = self.changed.wait_timeout(ended, left).ok()?.0;
        }
    }
}

/// A shim serving one task.
pub struct Shim {
    pub bundle: Bundle,
    pub binary: ShimBinary,
    /// The runtime name the task was created with (for Metrics filters).
    pub runtime: String,
    client: Client,
    task: TaskClient,
    pub ending: std::sync::Arc<Ending>,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("namespace", &self.bundle.namespace)
            .field("id", &self.bundle.id)
            .finish_non_exhaustive()
    }
}

/// Whether `s` says the connection to the shim is gone (Go ttrpc's `ErrClosed`).
pub fn is_closed(s: &Status) -> bool {
    s.code() == Code::UNAVAILABLE && s.message().contains("connection closed")
}

impl Shim {
    /// Connects to the shim at `address`; `on_close` runs when the connection ends.
    pub fn connect(
        bundle: Bundle,
        binary: ShimBinary,
        runtime: String,
        address: &str,
        ending: std::sync::Arc<Ending>,
        on_close: OnClose,
    ) -> RuntimeResult<Shim> {
        let stream = corral_protocols::rpc::Address::parse(address)
            .and_then(|a| a.connect())
            .map_err(RuntimeError::io(format!(
                "connecting to the shim at {address}"
            )))?;
        let client = Client::with_on_close(stream, Some(on_close))
            .map_err(RuntimeError::io("starting the shim client"))?;
        Ok(Shim {
            bundle,
            binary,
            runtime,
            task: TaskClient::new(client.clone()),
            client,
            ending,
        })
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.bundle.id
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.bundle.namespace
    }

    /// The Task service client.
    pub fn task(&self) -> &TaskClient {
        &self.task
    }

    /// A call context in the task's namespace, with `timeout` if any.
    pub fn ctx(&self, timeout: Option<Duration>) -> CallContext {
        let ctx = CallContext::new().with_namespace(self.namespace());
        match timeout {
            Some(t) => ctx.with_timeout(t),
            None => ctx,
        }
    }

    /// `Connect`: the shim's and the task's pids; the liveness probe after a restart.
    pub fn connect_probe(&self, timeout: Duration) -> RuntimeResult<ConnectResponse> {
        let req = ConnectRequest {
            id: self.id().to_string(),
            ..Default::default()
        };
        Ok(self.task.connect(&self.ctx(Some(timeout)), &req)?)
    }

    /// The state of the init process (`exec_id` empty) or of an exec.
    pub fn state(&self, exec_id: &str) -> Result<StateResponse, Status> {
        let req = StateRequest {
            id: self.id().to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.task.state(&self.ctx(Some(STATE_TIMEOUT)), &req)
    }

    /// `Delete` of the init process.
    pub fn delete_task(&self) -> Result<DeleteResponse, Status> {
        let req = DeleteRequest {
            id: self.id().to_string(),
            ..Default::default()
        };
        self.task.delete(&self.ctx(None), &req)
    }

    /// `Shutdown`: the shim exits once it serves no task; a closed connection is fine.
    pub fn shutdown(&self) {
        let req = ShutdownRequest {
            id: self.id().to_string(),
            ..Default::default()
        };
        if let Err(s) = self.task.shutdown(&self.ctx(Some(SHUTDOWN_TIMEOUT)), &req) {
            if !is_closed(&s) {
                log::warn!(
                    "shutting down the shim of {}/{}: {s}",
                    self.namespace(),
                    self.id()
                );
            }
        }
    }

    /// Ends the connection (the on-close hook runs).
    pub fn close(&self) {
        self.client.close();
    }
}
