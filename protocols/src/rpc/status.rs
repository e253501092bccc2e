//! The status every call ends with: a gRPC code and a message, as containerd sends them.

use protobuf::{Enum, EnumOrUnknown};
pub use ttrpc::proto::Code;

/// Result of a handler or a client call.
pub type RpcResult<T> = Result<T, Status>;

/// A non-OK outcome of a call: the code containerd's `errdefs` maps to an error kind, and a
/// message shaped like containerd's (`container "web": not found`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Status {
    code: Code,
    message: String,
}

macro_rules! constructors {
    ($($name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `", stringify!($code), "` status.")]
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    constructors! {
        cancelled => CANCELLED,
        unknown => UNKNOWN,
        invalid_argument => INVALID_ARGUMENT,
        deadline_exceeded => DEADLINE_EXCEEDED,
        not_found => NOT_FOUND,
        already_exists => ALREADY_EXISTS,
        permission_denied => PERMISSION_DENIED,
        resource_exhausted => RESOURCE_EXHAUSTED,
        failed_precondition => FAILED_PRECONDITION,
        aborted => ABORTED,
        out_of_range => OUT_OF_RANGE,
        unimplemented => UNIMPLEMENTED,
        internal => INTERNAL,
        unavailable => UNAVAILABLE,
        data_loss => DATA_LOSS,
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message, without the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The wire form, for a `Response`.
    pub fn to_proto(&self) -> ttrpc::proto::Status {
        let mut s = ttrpc::proto::Status::new();
        s.code = EnumOrUnknown::new(self.code);
        s.message = self.message.clone();
        s
    }

    /// Reads a wire status; `None` when it says OK. Codes this side does not know become
    /// `Unknown`, keeping the number in the message.
    pub fn from_proto(s: &ttrpc::proto::Status) -> Option<Self> {
        let raw = s.code.value();
        if raw == 0 {
            return None;
        }
        match Code::from_i32(raw) {
            Some(code) => Some(Self::new(code, s.message.clone())),
            None => Some(Self::unknown(format!("code {raw}: {}", s.message))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_wire_form() {
        let s = Status::not_found("container \"web\": not found");
        let back = Status::from_proto(&s.to_proto()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.code() as i32, 5);
        assert_eq!(back.to_string(), "container \"web\": not found");
    }

    #[test]
    fn ok_and_unknown_codes() {
        assert!(Status::from_proto(&ttrpc::proto::Status::new()).is_none());
        let mut raw = ttrpc::proto::Status::new();
        raw.code = EnumOrUnknown::from_i32(99);
        raw.message = "odd".into();
        let s = Status::from_proto(&raw).unwrap();
        assert_eq!(s.code(), Code::UNKNOWN);
        assert!(s.message().contains("99"));
    }
}
