//! What the preflight prints: one line per check (`ok`, `warn`, `FAIL` or `skip`, what was
//! checked, the call, what happened and how to fix it), and the summary line that ends the run.
//! Text from AWS (error messages) and from the configuration (datastore names) is escaped and
//! bounded here, so that no answer can forge a line or flood the terminal.

use std::fmt;

/// Bytes of an AWS error message kept in a line: an AccessDenied message naming a role and a
/// resource fits several times over.
const MAX_MESSAGE_BYTES: usize = 400;

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Proven: the call was answered as the daemon needs.
    Ok,
    /// Not proven, but the daemon may work regardless (e.g. STS unreachable while no
    /// `role_arn` needs it): does not fail the run.
    Warn,
    /// The daemon will fail here: fails the run (exit 3).
    Fail,
    /// Not tried because a check it depends on failed (its credentials): fails the run.
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// What was checked: `identity`, `role ARN`, `datastore ID in REGION`, `discovery[N] in
    /// REGION`, `events queue URL`.
    pub subject: String,
    /// The IAM action the call needs (`healthlake:ListFHIRExportJobs`).
    pub action: String,
    /// What happened.
    pub outcome: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Check {
    pub fn new(status: Status, subject: &str, action: &str, outcome: impl Into<String>) -> Check {
        Check {
            status,
            subject: subject.to_owned(),
            action: action.to_owned(),
            outcome: outcome.into(),
            fix: None,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {}: {}",
            self.status.word(),
            escaped(&self.subject),
            self.action,
            escaped(&self.outcome)
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {}", escaped(fix))?;
        }
        Ok(())
    }
}

/// The counts of a finished run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub warnings: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn add(&mut self, check: &Check) {
        match check.status {
            Status::Ok => self.ok += 1,
            Status::Warn => self.warnings += 1,
            Status::Fail => self.failed += 1,
            Status::Skip => self.skipped += 1,
        }
    }

    /// Whether the daemon has everything it needs: nothing failed or went untried.
    pub fn passed(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.ok + self.warnings + self.failed + self.skipped;
        write!(f, "preflight: {total} checks: {} ok", self.ok)?;
        let warnings = if self.warnings == 1 {
            "warning"
        } else {
            "warnings"
        };
        for (count, word) in [
            (self.warnings, warnings),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
        ] {
            if count > 0 {
                write!(f, ", {count} {word}")?;
            }
        }
        if self.passed() {
            f.write_str(": the daemon can reach everything it needs")
        } else {
            f.write_str(": fix the FAIL lines above, then run the preflight again")
        }
    }
}

/// An AWS error message as a line shows it: escaped and cut at [`MAX_MESSAGE_BYTES`].
pub fn aws_message(message: &str) -> String {
    let mut end = message.len().min(MAX_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    if end < message.len() {
        format!("{}…", &message[..end])
    } else {
        message.to_owned()
    }
}

/// `text` with every control character, line separator and bidi override written as `\u{…}`.
fn escaped(text: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_status_subject_action_outcome_and_fix() {
        let check = Check::new(
            Status::Fail,
            "datastore d in us-east-1",
            "healthlake:ListFHIRExportJobs",
            "access denied",
        )
        .with_fix("allow it");
        assert_eq!(
            check.to_string(),
            "FAIL datastore d in us-east-1: healthlake:ListFHIRExportJobs: access denied; fix: allow it"
        );
        let ok = Check::new(Status::Ok, "identity", "sts:GetCallerIdentity", "me");
        assert_eq!(ok.to_string(), "ok   identity: sts:GetCallerIdentity: me");
    }

    #[test]
    fn text_from_outside_cannot_forge_a_line_or_flood_it() {
        let check = Check::new(
            Status::Fail,
            "datastore d",
            "x:Y",
            format!("denied ({})", aws_message("evil\nok   forged\u{202e}")),
        );
        let line = check.to_string();
        assert_eq!(line.lines().count(), 1);
        assert!(line.contains("evil\\u{a}ok   forged\\u{202e}"), "{line}");
        let long = aws_message(&"é".repeat(1000));
        assert!(long.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }

    #[test]
    fn the_summary_counts_and_says_what_next() {
        let mut summary = Summary::default();
        for status in [Status::Ok, Status::Ok, Status::Warn] {
            summary.add(&Check::new(status, "s", "a", "o"));
        }
        assert!(summary.passed());
        assert_eq!(
            summary.to_string(),
            "preflight: 3 checks: 2 ok, 1 warning: the daemon can reach everything it needs"
        );
        summary.add(&Check::new(Status::Fail, "s", "a", "o"));
        summary.add(&Check::new(Status::Skip, "s", "a", "o"));
        assert!(!summary.passed());
        assert_eq!(
            summary.to_string(),
            "preflight: 5 checks: 2 ok, 1 warning, 1 failed, 1 skipped: fix the FAIL lines above, then run the preflight again"
        );
    }
}
