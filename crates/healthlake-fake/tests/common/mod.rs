//! Shared setup of the fake's wire tests: the fake on loopback, the SDK clients pointed at it
//! (static keys; each test picks its retry policy), and a raw HTTP/1.1 exchange for what an SDK
//! cannot send.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use healthlake_fake::{FakeHealthLake, FakeServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A datastore id of the real shape (32 characters).
pub const DS: &str = "0123456789abcdef0123456789abcdef";

/// Serves `fake` on an ephemeral loopback port.
pub async fn serve(fake: FakeHealthLake) -> (FakeHealthLake, FakeServer) {
    let server = fake
        .serve("127.0.0.1:0".parse().expect("valid addr"))
        .await
        .expect("bind loopback");
    (fake, server)
}

/// A fake with the datastore [`DS`], served.
pub async fn start_with_datastore() -> (FakeHealthLake, FakeServer) {
    let fake = FakeHealthLake::new();
    fake.add_datastore(DS);
    serve(fake).await
}

/// The static keys every test signs with (the SDKs share this credentials type).
pub fn keys() -> aws_sdk_sqs::config::Credentials {
    aws_sdk_sqs::config::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
}

/// `aws-sdk-sts` settings for the fake's STS (on its HealthLake port), signed for `region`.
pub fn sts_config(server: &FakeServer, region: &str) -> aws_sdk_sts::config::Builder {
    use aws_sdk_sts::config::{BehaviorVersion, Builder, Region};
    Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(keys())
}

/// `aws-sdk-healthlake` settings for the fake, signed for `region`.
pub fn healthlake_config(server: &FakeServer, region: &str) -> aws_sdk_healthlake::config::Builder {
    use aws_sdk_healthlake::config::{BehaviorVersion, Builder, Region};
    Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(keys())
}

/// `aws-sdk-sqs` settings for the fake's SQS, signed for us-east-1.
pub fn sqs_config(server: &FakeServer) -> aws_sdk_sqs::config::Builder {
    use aws_sdk_sqs::config::{BehaviorVersion, Builder, Region};
    Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(keys())
}

/// An answer read off the wire.
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The `__type` of a JSON error body.
    pub fn error_type(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).expect("JSON error body");
        v["__type"].as_str().expect("__type").to_owned()
    }
}

/// One request on a new connection (`Connection: close`, `Content-Length` of `body`), and the
/// whole answer.
pub async fn raw(
    server: &FakeServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.local_addr(),
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream.write_all(&bytes).await.expect("write");
    read_response(&mut stream).await
}

/// Reads an answer until the server closes the connection (at most 10 s: generous, for a loaded
/// CI machine).
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}
