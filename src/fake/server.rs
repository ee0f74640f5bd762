//! HTTP plumbing of the fake: accept loop, per-connection hyper tasks, routing, request
//! checks in the order the real endpoint applies them, fault injection, and a streaming body
//! type so oversized responses cost no memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::store::encode_token;
use super::wire::{
    check_authorization, is_json_content_type, list_response_body, parse_body, record_of, ApiError,
    ErrorCode, ListRequest, CONTENT_TYPE as AMZ_JSON, MAX_REQUEST_BODY_BYTES,
};
use super::{FakeHealthLake, FakeServer, Fault, LIST_FHIR_EXPORT_JOBS_TARGET};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Returned by the service to make hyper close the connection without writing a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose")]
pub(crate) struct DropConnection;

pub(crate) async fn bind(fake: FakeHealthLake, addr: SocketAddr) -> std::io::Result<FakeServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, fake));
    Ok(FakeServer { addr, task })
}

/// Owns the connection tasks: when this future is dropped (server aborted), the `JoinSet` aborts
/// every connection, hung ones included.
async fn accept_loop(listener: TcpListener, fake: FakeHealthLake) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, fake.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "fake HealthLake: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, fake: FakeHealthLake) {
    // Best effort: latency matters more than throughput for small JSON answers.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(fake.clone(), request));
    let mut builder = http1::Builder::new();
    // Half-close support lets raw clients (`printf ... | nc`) shut down their write side and
    // still get the answer; hyper's default would drop the request instead.
    builder.timer(TokioTimer::new()).half_close(true);
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, "fake HealthLake: connection ended with error");
    }
}

async fn handle(
    fake: FakeHealthLake,
    request: Request<Incoming>,
) -> Result<Response<FakeBody>, DropConnection> {
    if request.uri().path() != "/" {
        let message = format!("no route for {}", request.uri().path());
        return Ok(error_response(&ApiError::new(ErrorCode::NotFound, message)));
    }
    if request.method() != Method::POST {
        let mut response = error_response(&ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("method {} not allowed, use POST", request.method()),
        ));
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(response);
    }
    let (parts, body) = request.into_parts();
    let too_large = || {
        error_response(&ApiError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("request body exceeds {MAX_REQUEST_BODY_BYTES} bytes"),
        ))
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY_BYTES as u64) {
        return Ok(too_large());
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
        // The client went away mid-body: nobody to answer.
        Err(_) => return Err(DropConnection),
    };

    let header = |name| parts.headers.get(name).map(HeaderValue::as_bytes);
    let target = header("x-amz-target")
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    let auth = check_authorization(header(AUTHORIZATION.as_str()));
    let parsed = parse_body(&body);
    fake.lock()
        .record(record_of(&target, parsed.as_ref().ok(), auth.as_ref().ok()));

    let scope = match auth {
        Ok(scope) => scope,
        Err(error) => return Ok(error_response(&error)),
    };
    if !is_json_content_type(header(CONTENT_TYPE.as_str())) {
        return Ok(error_response(&ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {AMZ_JSON}"),
        )));
    }
    if target != LIST_FHIR_EXPORT_JOBS_TARGET {
        return Ok(error_response(&ApiError::new(
            ErrorCode::UnknownOperation,
            format!("unknown or unsupported operation {target:?}"),
        )));
    }
    let request = match parsed.and_then(ListRequest::from_value) {
        Ok(request) => request,
        Err(error) => return Ok(error_response(&error)),
    };
    list_fhir_export_jobs(&fake, &request, &scope.region).await
}

async fn list_fhir_export_jobs(
    fake: &FakeHealthLake,
    request: &ListRequest,
    region: &str,
) -> Result<Response<FakeBody>, DropConnection> {
    let datastore_id = match request.datastore_id() {
        Ok(id) => id,
        Err(error) => return Ok(error_response(&error)),
    };
    let fault = fake.lock().fault(datastore_id);
    let fault_error = |code, message: &str| Ok(error_response(&ApiError::new(code, message)));
    let mut loop_token = false;
    let mut pad_to = None;
    match fault {
        None => {}
        Some(Fault::Throttling) => return fault_error(ErrorCode::Throttling, "Rate exceeded"),
        Some(Fault::InternalError) => {
            return fault_error(ErrorCode::InternalServer, "An internal error occurred")
        }
        Some(Fault::AccessDenied) => {
            return fault_error(
                ErrorCode::AccessDenied,
                "User is not authorized to perform: healthlake:ListFHIRExportJobs",
            )
        }
        Some(Fault::NotFound) => {
            return fault_error(ErrorCode::ResourceNotFound, "Datastore does not exist")
        }
        Some(Fault::Validation) => {
            return fault_error(ErrorCode::Validation, "Injected validation error")
        }
        Some(Fault::ExpiredToken) => {
            return fault_error(
                ErrorCode::ExpiredToken,
                "The security token included in the request is expired",
            )
        }
        Some(Fault::UnknownError) => {
            return fault_error(ErrorCode::SomethingNew, "An error the SDK does not know")
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::ConnectionReset) => return Err(DropConnection),
        Some(Fault::MalformedJson) => {
            let body = Bytes::from_static(b"{\"ExportJobPropertiesList\":[{\"JobId\":\"tru");
            return Ok(json_response(StatusCode::OK, FakeBody::full(body)));
        }
        Some(Fault::NextTokenLoop) => loop_token = true,
        Some(Fault::Oversized(size)) => pad_to = Some(size),
    }

    let query = match request.query(loop_token) {
        Ok(query) => query,
        Err(error) => return Ok(error_response(&error)),
    };
    let Some(page) = fake.lock().list(datastore_id, &query) else {
        return Ok(error_response(&ApiError::new(
            ErrorCode::ResourceNotFound,
            format!("Datastore {datastore_id} does not exist"),
        )));
    };
    let next_token = if loop_token {
        Some(encode_token(0))
    } else {
        page.next_offset.map(encode_token)
    };
    let body = match list_response_body(datastore_id, region, &page.jobs, next_token) {
        Ok(body) => body,
        Err(error) => return Ok(error_response(&error)),
    };
    let body = match pad_to {
        Some(size) => FakeBody::padded(body, size),
        None => FakeBody::full(body.into()),
    };
    Ok(json_response(StatusCode::OK, body))
}

fn error_response(error: &ApiError) -> Response<FakeBody> {
    let status =
        StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, FakeBody::full(error.body().into()))
}

fn json_response(status: StatusCode, body: FakeBody) -> Response<FakeBody> {
    let length = body.len();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(id) = HeaderValue::from_str(&request_id()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// A random request id in UUID layout, as the real service sends in `x-amzn-RequestId`.
fn request_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Padding source: chunks are slices of this static buffer, so padding allocates nothing.
static PADDING: [u8; 16 * 1024] = [b'x'; 16 * 1024];

/// Response body: a head, optionally followed by streamed padding and a tail.
#[derive(Debug)]
pub(crate) struct FakeBody {
    head: Option<Bytes>,
    padding: usize,
    tail: Option<Bytes>,
    remaining: u64,
}

impl FakeBody {
    fn full(bytes: Bytes) -> Self {
        let remaining = bytes.len() as u64;
        Self {
            head: Some(bytes),
            padding: 0,
            tail: None,
            remaining,
        }
    }

    /// `json` (an object) grown to exactly `size` bytes with an extra `"Padding":"xxx…"` member;
    /// unchanged if it is already at least that large.
    fn padded(mut json: Vec<u8>, size: usize) -> Self {
        const OPEN: &[u8] = b",\"Padding\":\"";
        const CLOSE: &[u8] = b"\"}";
        let overhead = OPEN.len() + CLOSE.len() - 1; // the object's `}` is replaced
        if json.last() != Some(&b'}') || size < json.len() + overhead {
            return Self::full(json.into());
        }
        let padding = size - json.len() - overhead;
        json.pop();
        json.extend_from_slice(OPEN);
        Self {
            head: Some(json.into()),
            padding,
            tail: Some(Bytes::from_static(CLOSE)),
            remaining: size as u64,
        }
    }

    fn len(&self) -> u64 {
        self.remaining
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let chunk = if let Some(head) = this.head.take() {
            head
        } else if this.padding > 0 {
            let n = this.padding.min(PADDING.len());
            this.padding -= n;
            Bytes::from_static(&PADDING[..n])
        } else if let Some(tail) = this.tail.take() {
            tail
        } else {
            return Poll::Ready(None);
        };
        this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut body: FakeBody) -> Vec<u8> {
        let mut out = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        out
    }

    #[test]
    fn padded_body_is_exact_size_and_valid_json() {
        let json = br#"{"ExportJobPropertiesList":[]}"#.to_vec();
        for size in [json.len() + 13, 100, 16 * 1024 + 7, 100_000] {
            let body = FakeBody::padded(json.clone(), size);
            assert_eq!(body.len(), size as u64);
            let bytes = drain(body);
            assert_eq!(bytes.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(v["ExportJobPropertiesList"].is_array());
        }
    }

    #[test]
    fn padded_body_too_small_is_sent_unpadded() {
        let json = br#"{"ExportJobPropertiesList":[]}"#.to_vec();
        for size in [0, 10, json.len(), json.len() + 12] {
            assert_eq!(drain(FakeBody::padded(json.clone(), size)), json);
        }
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
