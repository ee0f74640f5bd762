//! The one-screen summary `--check-config` prints: what the exporter would do with this file.

use std::fmt::Write as _;

use super::shard;
use super::Config;
use crate::model::JobKinds;

impl Config {
    /// A one-screen summary for `--check-config`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let p = &self.polling;
        let _ = writeln!(out, "listen_address   {}", self.server.listen_address);
        let server = &self.server;
        let _ = writeln!(
            out,
            "server           max_connections {}, tls {}, basic_auth {}",
            server.max_connections,
            match &server.tls {
                None => "off".to_owned(),
                Some(t) if t.client_ca_file.is_some() => {
                    format!(
                        "on ({}, client certificates required)",
                        t.cert_file.display()
                    )
                }
                Some(t) => format!("on ({})", t.cert_file.display()),
            },
            match &server.basic_auth {
                None => "off".to_owned(),
                Some(a) => format!("{} user(s)", a.users.len()),
            }
        );
        let _ = writeln!(
            out,
            "polling          every {}, timeout {}, concurrency {}, job_series_limit {}",
            humantime::format_duration(p.interval),
            humantime::format_duration(p.timeout),
            p.concurrency,
            p.job_series_limit
        );
        let _ = writeln!(
            out,
            "aws requests     max_attempts {}, max_requests_per_second {} per account and region, max_pages {}",
            p.max_attempts, p.max_requests_per_second, p.max_pages
        );
        let kinds = |k: JobKinds| match (k.export, k.import) {
            (true, true) => "export, import",
            (false, true) => "import",
            _ => "export",
        };
        let _ = writeln!(
            out,
            "polls            jobs [{}], datastore_health {}{}",
            kinds(p.jobs),
            p.datastore_health,
            if p.datastore_health {
                format!(
                    " every {}",
                    humantime::format_duration(p.datastore_interval)
                )
            } else {
                String::new()
            }
        );
        for (i, d) in self.discovery.iter().enumerate() {
            let _ = writeln!(
                out,
                "discovery[{i}]     region={} status={} name_prefix={} every {}",
                d.target.region.as_deref().unwrap_or("(SDK default chain)"),
                d.status,
                d.name_prefix.as_deref().unwrap_or("(any)"),
                humantime::format_duration(d.interval)
            );
        }
        let _ = writeln!(out, "datastores       {}", self.datastores.len());
        let shard = p.shard;
        if !shard.is_all() {
            let owned = self.datastores.iter().filter(|d| shard.owns(&d.id)).count();
            let _ = writeln!(
                out,
                "shard            {shard}: {owned} of {} datastores{}",
                self.datastores.len(),
                if owned == 0 {
                    " (this replica would serve only its own health metrics)"
                } else {
                    ""
                }
            );
        }
        for ds in &self.datastores {
            let t = &ds.target;
            let _ = write!(out, "  {}  name={}", ds.id, ds.name);
            let _ = write!(
                out,
                "  region={}",
                t.region.as_deref().unwrap_or("(SDK default chain)")
            );
            if let Some(url) = &t.endpoint_url {
                let _ = write!(out, "  endpoint_url={url}");
            }
            if let Some(role) = &t.role_arn {
                let _ = write!(out, "  role_arn={role}");
            }
            if !shard.is_all() {
                let _ = write!(
                    out,
                    "  shard={}/{}",
                    shard::owner(&ds.id, shard.count()),
                    shard.count()
                );
            }
            out.push('\n');
        }
        out
    }
}
