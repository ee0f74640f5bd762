//! What an injected [`Fault`] does to a call, written once for both protocols the port speaks
//! (HealthLake's and SQS's): a delay, a hang, a dropped connection or a truncated body behave the
//! same whatever the protocol; an error fault is answered in the protocol's own words
//! ([`Protocol::error`]); the other faults change the normal answer ([`Tweaks`]).

use bytes::Bytes;
use hyper::{Response, StatusCode};

use super::server::{error_response, json_response, DropConnection, FakeBody};
use super::wire::ApiError;
use super::Fault;

/// Every way a call ends other than with its normal answer.
pub(crate) enum Reply {
    /// A ready-made answer: an error, or a fault's (boxed: answers are large, errors common).
    Answer(Box<Response<FakeBody>>),
    /// Close the connection without writing anything.
    Drop,
}

impl Reply {
    pub(crate) fn answer(response: Response<FakeBody>) -> Self {
        Self::Answer(Box::new(response))
    }

    /// What the connection sends: the answer, or nothing at all.
    pub(crate) fn into_response(self) -> Result<Response<FakeBody>, DropConnection> {
        match self {
            Self::Answer(response) => Ok(*response),
            Self::Drop => Err(DropConnection),
        }
    }
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Self::answer(error_response(&error))
    }
}

/// The faults that answer with an error: named once here, worded by each protocol.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ErrorFault<'a> {
    Throttling,
    InternalError,
    AccessDenied,
    /// Access denied, with this message verbatim.
    AccessDeniedWith(&'a str),
    NotFound,
    Validation,
    ExpiredToken,
    /// A code the SDK has no variant for.
    UnknownError,
}

/// How one protocol answers the error faults, and what a truncated answer of it looks like.
pub(crate) trait Protocol {
    fn error(&self, fault: ErrorFault<'_>) -> Response<FakeBody>;
    /// A 200 body cut off mid-string, shaped like the start of the real answer.
    fn malformed_body(&self) -> &'static [u8];
}

/// How a fault that lets the call proceed changes the answer.
#[derive(Debug, Default)]
pub(crate) struct Tweaks {
    /// `NextTokenLoop`: ignore the sent token, always answer page one with the same token.
    pub(crate) loop_token: bool,
    /// `Oversized`: pad the body to this many bytes.
    pub(crate) pad_to: Option<usize>,
    /// `DuplicateJobs`: every page of a job listing repeats its first job at its end.
    pub(crate) duplicate: bool,
}

impl Tweaks {
    /// The normal 200 answer with `body`, padded under `Oversized`.
    pub(crate) fn respond(&self, body: Vec<u8>) -> Response<FakeBody> {
        let body = match self.pad_to {
            Some(size) => FakeBody::padded(body, size),
            None => FakeBody::full(body.into()),
        };
        json_response(StatusCode::OK, body)
    }
}

/// Applies an injected fault: either ends the call (an error, a truncated body, a dropped or hung
/// connection) or says how to alter the normal answer.
pub(crate) async fn apply(fault: Option<Fault>, protocol: &impl Protocol) -> Result<Tweaks, Reply> {
    let error = |fault| Err(Reply::answer(protocol.error(fault)));
    match fault {
        None => Ok(Tweaks::default()),
        Some(Fault::Throttling) => error(ErrorFault::Throttling),
        Some(Fault::InternalError) => error(ErrorFault::InternalError),
        Some(Fault::AccessDenied) => error(ErrorFault::AccessDenied),
        Some(Fault::AccessDeniedWith(message)) => error(ErrorFault::AccessDeniedWith(&message)),
        Some(Fault::NotFound) => error(ErrorFault::NotFound),
        Some(Fault::Validation) => error(ErrorFault::Validation),
        Some(Fault::ExpiredToken) => error(ErrorFault::ExpiredToken),
        Some(Fault::UnknownError) => error(ErrorFault::UnknownError),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(Tweaks::default())
        }
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::ConnectionReset) => Err(Reply::Drop),
        Some(Fault::MalformedJson) => Err(Reply::answer(json_response(
            StatusCode::OK,
            FakeBody::full(Bytes::from_static(protocol.malformed_body())),
        ))),
        Some(Fault::NextTokenLoop) => Ok(Tweaks {
            loop_token: true,
            ..Tweaks::default()
        }),
        Some(Fault::Oversized(size)) => Ok(Tweaks {
            pad_to: Some(size),
            ..Tweaks::default()
        }),
        Some(Fault::DuplicateJobs) => Ok(Tweaks {
            duplicate: true,
            ..Tweaks::default()
        }),
    }
}
