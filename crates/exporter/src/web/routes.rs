//! The routes: `/metrics` (from the cache, gzip when accepted), `/healthz`, `/readyz`, the landing
//! page and `/-/reload`, behind TLS client certificates and basic auth where configured.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CACHE_CONTROL,
    CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::landing::landing_page;
use super::tls::Tls;
use super::{HttpContext, ReloadOutcome};
use crate::metrics::{self, Format};
use crate::model::unix_now;

/// `WWW-Authenticate` for a 401.
const BASIC_CHALLENGE: &str = "Basic realm=\"healthlake-exporter\"";

pub(super) type Body = Full<Bytes>;

/// The routes that stay open without credentials: kubelet probes cannot send any.
pub(super) fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Where Prometheus' own lifecycle API reloads: tools that know one know the other.
pub(super) const RELOAD_PATH: &str = "/-/reload";

/// `POST` (or `PUT`) `/-/reload`: re-read the configuration file; 200 when applied, 500 with the
/// reason when rejected (the previous configuration keeps running).
pub(super) async fn reload(request: &Request<Incoming>, context: &HttpContext) -> Response<Body> {
    if request.method() != Method::POST && request.method() != Method::PUT {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST to reload the configuration\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST, PUT"));
        return response;
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
    let mut response = Response::new(Body::new(Bytes::from(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(super) async fn route(
    request: &Request<Incoming>,
    context: &HttpContext,
    client_certificate: bool,
) -> Response<Body> {
    let path = request.uri().path();
    if !is_probe(path) {
        if context.tls.as_ref().is_some_and(Tls::client_auth) && !client_certificate {
            return text(
                StatusCode::FORBIDDEN,
                "forbidden: present a TLS client certificate signed by the CA in server.tls.client_ca_file\n",
            );
        }
        if let Some(auth) = &context.auth {
            if !auth.check(request.headers().get(AUTHORIZATION)).await {
                let mut response = text(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: send a user name and password configured in server.basic_auth (HTTP basic auth)\n",
                );
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
                return response;
            }
        }
    }
    let state = &context.state;
    if path == RELOAD_PATH {
        return reload(request, context).await;
    }
    let known = matches!(path, "/" | "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or HEAD\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            metrics_response(context, format, accepts_gzip(request.headers()))
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.first_cycle_attempted() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the first poll of every datastore has not been attempted yet\n",
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
    let (body, gzip) = match context.metrics.render(&context.state, now, format, gzip) {
        Ok(body) => (body, gzip),
        Err(error) => {
            tracing::warn!(%error, "cached metrics encoding failed; encoding without the cache");
            let body = metrics::render_uncached(&context.state, now, format);
            (body.into_bytes(), false)
        }
    };
    let mut response = Response::new(Body::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // Caches must not hand a gzip body to a client that did not ask for one, or the reverse.
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
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

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
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
