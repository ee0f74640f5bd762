//! The one-screen summary `--check-config` prints: what the exporter would do with this file.

use std::fmt::Write as _;

use super::shard;
use super::Config;
use crate::model::JobKinds;

impl Config {
    /// A one-screen summary for `--check-config`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.summarise_server(&mut out);
        self.summarise_polling(&mut out);
        self.summarise_discovery_and_events(&mut out);
        self.summarise_datastores(&mut out);
        out
    }

    /// `[server]` (and the web config file).
    fn summarise_server(&self, out: &mut String) {
        let _ = writeln!(out, "listen_address   {}", self.server.listen_address);
        let server = &self.server;
        let _ = writeln!(
            out,
            "server           max_connections {} ({} per address), enable_reload {}, tls {}, basic_auth {}",
            server.max_connections,
            match server.max_connections_per_ip {
                0 => "no limit".to_owned(),
                n => n.to_string(),
            },
            server.enable_reload,
            match &server.tls {
                None => "off".to_owned(),
                Some(t) if t.requires_client_certificate() => {
                    format!(
                        "on ({}, client certificates required)",
                        t.cert_file.display()
                    )
                }
                Some(t) if t.client_ca_file.is_some() => {
                    format!(
                        "on ({}, client certificates verified when given)",
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
        if let Some(path) = &server.web_config_file {
            let _ = writeln!(
                out,
                "web config       {}: tls, basic_auth and {} response header(s) from it",
                path.display(),
                server.headers.0.len()
            );
        }
    }

    /// `[polling]` and what each datastore polls.
    fn summarise_polling(&self, out: &mut String) {
        let p = &self.polling;
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
            "polls            jobs [{}], job_name_label {}, datastore_health {}{}",
            kinds(p.jobs),
            p.job_name_label.as_str(),
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
    }

    /// `[[discovery]]` and `[events]`.
    fn summarise_discovery_and_events(&self, out: &mut String) {
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
        match &self.events {
            None => {
                let _ = writeln!(out, "events           off (polling only)");
            }
            Some(e) => {
                let _ = writeln!(
                    out,
                    "events           queue {} (this replica: {}), wait_time {}, region={}{}; polling.interval is the reconciliation interval",
                    e.queue_url,
                    e.queue_url_for(self.polling.shard),
                    humantime::format_duration(e.wait_time),
                    e.target.region.as_deref().unwrap_or("(SDK default chain)"),
                    e.target
                        .endpoint_url
                        .as_deref()
                        .map(|u| format!(" endpoint_url={u}"))
                        .unwrap_or_default()
                );
            }
        }
    }

    /// The datastores (this replica's share of them, when sharded) and where each is reached.
    fn summarise_datastores(&self, out: &mut String) {
        let p = &self.polling;
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
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// The summary of a valid file says where the exporter will look (ids, regions, roles, the
    /// queue), which is what `--check-config` is for, but never a secret: a password hash is
    /// counted, not shown, and a URL cannot carry a `user:password@` (validation refuses one).
    #[test]
    fn the_summary_shows_what_will_run_but_no_secret() {
        let hash = "$2y$10$lZ2ddCEx2sOd4Q8D7mp5bOD5vhH8GflQIAusPdE7hRVCGZPL8uLkO";
        let text = format!(
            "[server.basic_auth]\nusers = {{ prometheus = \"{hash}\" }}\n\
             [aws]\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::123456789012:role/reader\"\n\
             [[datastores]]\nid = \"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4\"\nname = \"prod\"\n\
             [events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/events\"\n"
        );
        let summary = Config::parse(&text, Path::new("test.toml"))
            .unwrap()
            .summary();
        for shown in [
            "basic_auth 1 user(s)",
            "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4  name=prod  region=eu-west-1",
            "role_arn=arn:aws:iam::123456789012:role/reader",
            "queue https://sqs.eu-west-1.amazonaws.com/123456789012/events",
        ] {
            assert!(summary.contains(shown), "{shown:?} missing from\n{summary}");
        }
        assert!(!summary.contains("$2y$"), "{summary}");
        assert!(!summary.contains("prometheus"), "{summary}");
    }
}
