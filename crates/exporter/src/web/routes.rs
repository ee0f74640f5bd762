//! The routes: `/metrics` (from the cache, gzip when accepted), `/healthz`, `/readyz`, the landing
//! page and `/-/reload`, behind TLS client certificates and basic auth where configured.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION,
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::Verdict;
use super::landing::landing_page;
use super::{HttpContext, ReloadOutcome, Web};
use crate::metrics::{self, Format};
use crate::model::unix_now;

/// `WWW-Authenticate` for a 401.
const BASIC_CHALLENGE: &str = "Basic realm=\"healthlake-exporter\"";

/// A response body: one buffer, or `/metrics` streamed from the cache.
pub(super) enum Body {
    Full(Full<Bytes>),
    Metrics(metrics::MetricsBody),
}

impl Body {
    pub(super) fn new(bytes: Bytes) -> Body {
        Body::Full(Full::new(bytes))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx),
            // A chunk is made from memory in well under a millisecond: no need to yield.
            Body::Metrics(body) => Poll::Ready(match body.next() {
                Some(Ok(chunk)) => Some(Ok(Frame::data(chunk))),
                Some(Err(error)) => {
                    // Too late for an error status: end the body short, so the client sees a
                    // truncated response (its length was announced) rather than wrong data.
                    tracing::error!(%error, "streaming /metrics failed; closing the response");
                    None
                }
                None => None,
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Metrics(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Metrics(body) => SizeHint::with_exact(body.len()),
        }
    }
}

/// The routes that stay open without credentials: kubelet probes cannot send any.
pub(super) fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Where Prometheus' own lifecycle API reloads: tools that know one know the other.
pub(super) const RELOAD_PATH: &str = "/-/reload";

/// `POST /-/reload`: re-read the configuration file; 200 when applied, 500 with the reason when
/// rejected (the previous configuration keeps running). Off unless `server.enable_reload`
/// (403 with a hint; SIGHUP always works), and refused when the request comes from another site
/// (a browser tricked into posting here): credentials, when configured, were checked before.
pub(super) async fn reload(
    request: &Request<Incoming>,
    context: &HttpContext,
    web: &Web,
) -> Response<Body> {
    if !web.server.enable_reload {
        return text(
            StatusCode::FORBIDDEN,
            "forbidden: reloading over HTTP is off; set server.enable_reload = true, or send SIGHUP to the exporter\n",
        );
    }
    if request.method() != Method::POST {
        return text_with(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST to reload the configuration\n",
            (ALLOW, "POST"),
        );
    }
    if is_cross_site(request.headers()) {
        return text(
            StatusCode::FORBIDDEN,
            "forbidden: a reload request from another site (Origin / Sec-Fetch-Site) is refused; send it without a browser, e.g. curl -X POST\n",
        );
    }
    if !host_allowed(
        request.uri(),
        request.headers(),
        &web.server.reload_allowed_hosts,
    ) {
        return text(
            StatusCode::FORBIDDEN,
            "forbidden: a reload must be addressed to an IP address, localhost, or a name listed in server.reload_allowed_hosts (the Host header is checked against DNS rebinding)\n",
        );
    }
    let Some(handle) = &context.reload else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available\n",
        );
    };
    let (status, message) = match handle.reload().await {
        ReloadOutcome::Applied => (StatusCode::OK, "configuration reloaded\n".to_owned()),
        ReloadOutcome::Unavailable(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"))
        }
        ReloadOutcome::Rejected(reason) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("configuration not reloaded, the previous one keeps running: {reason}\n"),
        ),
    };
    text(status, message)
}

/// Whether the request is addressed (absolute URI, else `Host`) to an IP address, `localhost`
/// or one of `allowed` (lowercase names), whatever the port. A browser page whose DNS name was
/// rebound to this endpoint's address passes the same-origin checks but still sends its own name.
fn host_allowed(uri: &hyper::Uri, headers: &HeaderMap, allowed: &[String]) -> bool {
    let authority = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => match headers.get(hyper::header::HOST) {
            Some(host) => host.to_str().unwrap_or(""),
            None => return false,
        },
    };
    let Ok(authority) = authority.trim().parse::<hyper::http::uri::Authority>() else {
        return false;
    };
    if authority.as_str().contains('@') {
        return false;
    }
    let host = authority.host();
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(v6) = bracketed {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || allowed.contains(&name)
}

/// Whether a browser says the request comes from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none` (typed by the user), or an `Origin` whose host and port are not the
/// `Host` the request was sent to (an opaque `null` origin counts as another site). Tools like
/// curl send neither header.
fn is_cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim();
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return true;
        }
    }
    let Some(origin) = headers.get(hyper::header::ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("").trim();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim);
    match (authority, host) {
        (Some(authority), Some(host)) => !authority.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// Answers one request, with the configured response headers (`http_server_config.headers` of
/// the web config file) on every answer, errors and probes included, as exporter-toolkit adds them.
pub(super) async fn route(
    request: &Request<Incoming>,
    context: &HttpContext,
    client_certificate: bool,
    peer: IpAddr,
) -> Response<Body> {
    let web = context.web();
    let mut response = answer(request, context, &web, client_certificate, peer).await;
    let headers = response.headers_mut();
    for (name, value) in &web.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

async fn answer(
    request: &Request<Incoming>,
    context: &HttpContext,
    web: &Web,
    client_certificate: bool,
    peer: IpAddr,
) -> Response<Body> {
    let path = request.uri().path();
    if !is_probe(path) {
        if web.tls.as_ref().is_some_and(|t| t.client_auth()) && !client_certificate {
            return text(
                StatusCode::FORBIDDEN,
                "forbidden: present a TLS client certificate signed by the configured client CA (client_ca_file)\n",
            );
        }
        if let Some(auth) = &web.auth {
            match auth.check(request.headers().get(AUTHORIZATION), peer).await {
                Verdict::Allowed => {}
                Verdict::Denied => {
                    return text_with(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized: send a configured user name and password (HTTP basic auth)\n",
                        (WWW_AUTHENTICATE, BASIC_CHALLENGE),
                    );
                }
                Verdict::Busy => {
                    return text_with(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many requests: too many password checks from this address are waiting; retry shortly\n",
                        (RETRY_AFTER, "1"),
                    );
                }
            }
        }
    }
    let state = &context.state;
    if path == RELOAD_PATH {
        return reload(request, context, web).await;
    }
    let known = matches!(path, "/" | "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text_with(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or HEAD\n",
            (ALLOW, "GET, HEAD"),
        );
    }
    match path {
        "/metrics" => {
            let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            metrics_response(context, format, accepts_gzip(request.headers()))
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            // A latch: once 200, always 200 (see `state::Readiness`).
            if state.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: first polls are still pending (healthlake_exporter_first_polls_pending); ready at the latest polling.timeout + the start spread + 2s after start\n",
                )
            }
        }
        _ => landing_page(state),
    }
}

/// `/metrics` from the cache, gzip-compressed when the client accepts it. Should the cache fail
/// (a bug), the uncached encoder answers, uncompressed, so scrapes keep working.
pub(super) fn metrics_response(
    context: &HttpContext,
    format: Format,
    gzip: bool,
) -> Response<Body> {
    let now = unix_now();
    let (body, gzip) = match context.metrics.body(&context.state, now, format, gzip) {
        Ok(body) => (Body::Metrics(body), gzip),
        Err(error) => {
            tracing::warn!(%error, "cached metrics encoding failed; encoding without the cache");
            let body = metrics::render_uncached(&context.state, now, format);
            (Body::new(Bytes::from(body)), false)
        }
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // The body depends on both: the format on Accept, the compression on Accept-Encoding. Caches
    // must not hand one client's variant to another.
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) listed with a
/// non-zero weight, or `*` with a non-zero weight when gzip is not listed. A weight that does not
/// parse counts as a refusal.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let mut weight = 1.0_f32;
            for parameter in parts {
                if let Some((name, q)) = parameter.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        weight = q.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            let accepted = weight > 0.0;
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || accepted);
            } else if coding == "*" {
                any = Some(any.unwrap_or(false) || accepted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// [`text`], with one more header (`Allow`, `WWW-Authenticate`, `Retry-After`).
fn text_with(
    status: StatusCode,
    body: &'static str,
    (name, value): (HeaderName, &'static str),
) -> Response<Body> {
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
    response
}

/// A plain-text answer that no cache keeps.
pub(super) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(
            !is_cross_site(&headers(&[("host", "10.0.0.5:9469")])),
            "curl"
        );
        assert!(!is_cross_site(&headers(&[
            ("host", "10.0.0.5:9469"),
            ("origin", "http://10.0.0.5:9469"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!is_cross_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(is_cross_site(&headers(&[
            ("host", "10.0.0.5:9469"),
            ("origin", "https://evil.example"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "10.0.0.5:9469"),
            ("origin", "null")
        ])));
        assert!(
            is_cross_site(&headers(&[("origin", "http://10.0.0.5:9469")])),
            "no Host"
        );
    }

    #[test]
    fn reload_hosts_are_ip_addresses_localhost_or_listed_names() {
        let allowed = vec!["exporter.monitoring.svc".to_owned()];
        let check = |uri: &str, host: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(host) = host {
                headers.insert(hyper::header::HOST, HeaderValue::from_static(host));
            }
            host_allowed(&uri.parse().unwrap(), &headers, &allowed)
        };
        for host in [
            "10.0.0.5:9469",
            "10.0.0.5",
            "[::1]:9469",
            "[fd00::5]",
            "localhost:9469",
            "LOCALHOST",
            "localhost.",
            "exporter.monitoring.svc:9469",
            "Exporter.Monitoring.Svc.",
        ] {
            assert!(check("/-/reload", Some(host)), "{host}");
        }
        for host in [
            "evil.example:9469",
            "evil.example",
            "10.0.0.5.evil.example",
            "localhost.evil.example",
            "monitoring.svc",
            "[not-an-ip]:9469",
            "user@10.0.0.5",
            "user@[::1]",
            "",
        ] {
            assert!(!check("/-/reload", Some(host)), "{host}");
        }
        assert!(!check("/-/reload", None), "no Host");
        // An absolute URI names the host, whatever the Host header says.
        assert!(!check(
            "http://evil.example/-/reload",
            Some("10.0.0.5:9469")
        ));
        assert!(check(
            "http://127.0.0.1:9469/-/reload",
            Some("evil.example")
        ));
    }

    #[test]
    fn gzip_only_when_the_client_accepts_it() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["deflate, GZIP;q=0.5"]));
        assert!(accepts(&["identity", "x-gzip"]));
        assert!(accepts(&["br;q=1.0, *;q=0.1"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.000, *"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["gzip;q=nonsense"]));
        assert!(!accepts(&["gzipx, br"]));
    }
}
