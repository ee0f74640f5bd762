//! The landing page at `/`: what this exporter is, its endpoints, and how each datastore's polls
//! are doing, for a person with a browser.

use std::fmt::Write as _;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

use super::routes::Body;
use crate::model::JobKind;
use crate::state::{Feed, State};

pub(super) fn landing_page(state: &State) -> Response<Body> {
    let mut html = String::from(concat!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>healthlake-exporter</title></head>\n",
        "<body><h1>healthlake-exporter ",
        env!("CARGO_PKG_VERSION"),
        "</h1>\n<p>Amazon HealthLake FHIR export and import jobs and datastores, as Prometheus metrics.</p>\n",
        "<p><a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a> &middot; <a href=\"/readyz\">/readyz</a></p>\n",
        "<table border=\"1\" cellpadding=\"4\"><tr><th>datastore_id</th><th>datastore_name</th>",
        "<th>export jobs</th><th>import jobs</th><th>datastore</th></tr>\n"
    ));
    for ds in state.datastores().iter() {
        let record = ds.record();
        let cell = |feed: Feed| match record.health(feed) {
            None => "not polled".to_owned(),
            Some(health) if health.attempts == 0 => "not polled yet".to_owned(),
            Some(health) if health.up => "up".to_owned(),
            Some(health) => format!(
                "down: {}",
                health.last_error.as_ref().map_or("", |e| e.reason.as_str())
            ),
        };
        let mut datastore = cell(Feed::Datastore);
        if let Some(info) = record.datastore.as_ref().and_then(|d| d.info.as_ref()) {
            datastore = format!("{datastore} ({})", escape(&info.status));
        }
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{datastore}</td></tr>",
            escape(&ds.id),
            escape(&ds.name),
            cell(Feed::Jobs(JobKind::Export)),
            cell(Feed::Jobs(JobKind::Import)),
        );
    }
    html.push_str("</table></body></html>\n");
    let mut response = Response::new(Body::new(Bytes::from(html)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
