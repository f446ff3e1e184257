//! The results of a run: one line per case, the count last, and JUnit XML for CI systems.

use std::io::Write;
use std::time::Duration;

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// Stable id, e.g. `notify.paid_once`.
    pub id: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl CaseResult {
    /// `ok   <id> (12 ms)`, `FAIL <id>: <why>` or `skip <id>: <why>` (one line: line breaks in
    /// a reason become spaces).
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Passed => format!("ok   {} ({} ms)", self.id, self.elapsed.as_millis()),
            Outcome::Failed(why) => format!("FAIL {}: {}", self.id, one_line(why)),
            Outcome::Skipped(why) => format!("skip {}: {}", self.id, one_line(why)),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every case of a run, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    /// What became of the merchants the flow suite made in the host it tested (None when the
    /// flow suite did not run).
    pub cleanup: Option<Cleanup>,
    /// Why the run could not start, when it could not (e.g. the host's `public_url` cannot be
    /// reached from where the kit runs): no case after that point ran, what the kit made was
    /// cleaned up as at the end of a run, and the caller exits as for bad arguments (2).
    pub not_started: Option<String>,
    /// Why the run ended before every case ran, when it did (a signal): the JUnit report says
    /// so as an errored case, so a partial run never reads green.
    pub stopped: Option<String>,
}

/// The merchants the flow suite configured in the host it tested (its own: it never touches
/// another's), at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// The host, e.g. `http://127.0.0.1:8080`.
    pub host: String,
    /// Removed, with their test payments.
    pub removed: Vec<String>,
    /// Left on purpose (`Options::keep`).
    pub kept: Vec<String>,
    /// Could not be removed: the merchant and why.
    pub left: Vec<(String, String)>,
}

impl Report {
    /// The report of a run that could not start, saying why (for `--junit` when the run stops
    /// before any case: bad arguments, an unreachable host).
    pub fn not_started(why: impl Into<String>) -> Report {
        Report {
            not_started: Some(why.into()),
            ..Report::default()
        }
    }

    /// Whether no case failed and none that was asked for passed (every case by default; with
    /// a selection, not the ones run only because they are needed): the run proved nothing, so
    /// it is not green.
    pub fn nothing_tested(&self, selection: &crate::Selection) -> bool {
        self.failed() == 0
            && !self
                .cases
                .iter()
                .any(|c| c.outcome == Outcome::Passed && selection.asked_for(&c.id))
    }

    /// The cases asked for that were skipped, by reason (most first): what a green run did not
    /// test.
    pub fn not_covered(&self, selection: &crate::Selection) -> Vec<(String, usize)> {
        let mut by: Vec<(String, usize)> = Vec::new();
        for c in &self.cases {
            if let Outcome::Skipped(why) = &c.outcome {
                if !selection.asked_for(&c.id) {
                    continue;
                }
                let why = one_line(why);
                match by.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, n)) => *n += 1,
                    None => by.push((why, 1)),
                }
            }
        }
        by.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        by
    }

    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// The number of failed cases: the exit code is non-zero when it is.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// The cases a stop left out (the one under way included): a report with any is partial.
    pub fn abandoned(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(why) if why == crate::runner::STOPPED))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    /// The case with this id, if it ran.
    pub fn case(&self, id: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// `N passed, N failed` (and `, N skipped` when any was).
    pub fn summary(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed(), self.failed());
        if self.skipped() > 0 {
            s.push_str(&format!(", {} skipped", self.skipped()));
        }
        s
    }

    /// One line per case, then the summary line.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for c in &self.cases {
            writeln!(out, "{}", c.line())?;
        }
        writeln!(out, "{}", self.summary())
    }

    /// The report as JUnit XML: one `<testsuite>`, one `<testcase>` per case (classname = the
    /// id's first part), `<failure>` and `<skipped>` with the reason. A run that could not start
    /// ([`Report::not_started`]) adds one errored case, `kit.start`, with the reason: a CI
    /// system shows it red, never as an empty or an older report.
    pub fn junit(&self) -> String {
        let total: Duration = self.cases.iter().map(|c| c.elapsed).sum();
        let errors = usize::from(self.not_started.is_some()) + usize::from(self.stopped.is_some());
        let tests = self.cases.len() + errors;
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str(&format!(
            "<testsuites name=\"payhost conformance\" tests=\"{tests}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{}\" time=\"{:.3}\">\n",
            self.failed(),
            self.skipped(),
            total.as_secs_f64()
        ));
        x.push_str(&format!(
            "  <testsuite name=\"payhost conformance\" tests=\"{tests}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{}\" time=\"{:.3}\">\n",
            self.failed(),
            self.skipped(),
            total.as_secs_f64()
        ));
        for c in &self.cases {
            let class = c.id.split('.').next().unwrap_or(&c.id);
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(class),
                xml_escape(&c.id),
                c.elapsed.as_secs_f64()
            );
            match &c.outcome {
                Outcome::Passed => x.push_str(&format!("{open}/>\n")),
                Outcome::Failed(why) => x.push_str(&format!(
                    "{open}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_escape(&one_line(why)),
                    xml_escape(why)
                )),
                Outcome::Skipped(why) => x.push_str(&format!(
                    "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml_escape(&one_line(why))
                )),
            }
        }
        if let Some(why) = &self.not_started {
            x.push_str(&format!(
                "    <testcase classname=\"kit\" name=\"kit.start\" time=\"0.000\">\n      <error message=\"{}\" type=\"not_started\">{}</error>\n    </testcase>\n",
                xml_escape(&one_line(why)),
                xml_escape(why)
            ));
        }
        if let Some(why) = &self.stopped {
            x.push_str(&format!(
                "    <testcase classname=\"kit\" name=\"kit.stopped\" time=\"0.000\">\n      <error message=\"{}\" type=\"stopped\">{}</error>\n    </testcase>\n",
                xml_escape(&one_line(why)),
                xml_escape(why)
            ));
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// Escapes text for XML content and double-quoted attributes; drops the characters XML 1.0
/// cannot carry at all (most control characters).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            cases: vec![
                CaseResult {
                    id: "describe.identity".into(),
                    outcome: Outcome::Passed,
                    elapsed: Duration::from_millis(12),
                },
                CaseResult {
                    id: "notify.forged_refused".into(),
                    outcome: Outcome::Failed("paid <after> a \"forged\" & bad\nnotify\u{1}".into()),
                    elapsed: Duration::from_millis(1500),
                },
                CaseResult {
                    id: "flow.paid_once".into(),
                    outcome: Outcome::Skipped("no sandbox for provider testpay".into()),
                    elapsed: Duration::ZERO,
                },
            ],
            ..Report::default()
        }
    }

    #[test]
    fn a_run_where_nothing_passed_tested_nothing() {
        let all = crate::Selection::default();
        let mut r = sample();
        assert!(!r.nothing_tested(&all));
        r.cases.retain(|c| !matches!(c.outcome, Outcome::Failed(_)));
        assert!(!r.nothing_tested(&all), "describe.identity passed");
        let only = crate::Selection::new(&["notify.paid_once".into()], &[]).unwrap();
        assert!(
            r.nothing_tested(&only),
            "describe.identity was not asked for"
        );
        r.cases.retain(|c| matches!(c.outcome, Outcome::Skipped(_)));
        assert!(r.nothing_tested(&all), "only skipped cases");
        assert!(Report::default().nothing_tested(&all), "no case at all");
    }

    #[test]
    fn lines_and_summary() {
        let mut out = Vec::new();
        sample().print(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ok   describe.identity (12 ms)\n\
             FAIL notify.forged_refused: paid <after> a \"forged\" & bad notify\u{1}\n\
             skip flow.paid_once: no sandbox for provider testpay\n\
             1 passed, 1 failed, 1 skipped\n"
        );
        assert_eq!(sample().failed(), 1);
        let mut all_ok = sample();
        all_ok.cases.retain(|c| c.outcome == Outcome::Passed);
        assert_eq!(all_ok.summary(), "1 passed, 0 failed");
        assert_eq!(all_ok.failed(), 0);
    }

    #[test]
    fn junit_is_escaped_and_counts() {
        let x = sample().junit();
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
        assert!(x.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""));
        assert!(x.contains(
            "<testcase classname=\"describe\" name=\"describe.identity\" time=\"0.012\"/>"
        ));
        assert!(x.contains(
            "<failure message=\"paid &lt;after&gt; a &quot;forged&quot; &amp; bad notify\u{fffd}\">"
        ));
        assert!(x.contains("&amp; bad\nnotify\u{fffd}</failure>"));
        assert!(x.contains("<skipped message=\"no sandbox for provider testpay\"/>"));
        // Nothing unescaped from the reasons leaks into the markup.
        assert!(!x.contains("<after>"));
        assert!(!x.contains('\u{1}'));
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(x.matches("</testcase>").count(), 2);
        assert!(x.trim_end().ends_with("</testsuites>"));
    }

    #[test]
    fn a_run_that_could_not_start_is_one_errored_case_in_junit() {
        let x = Report::not_started("cannot reach http://h:1/ (connection <refused>)").junit();
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
        assert!(
            x.contains("<testsuite name=\"payhost conformance\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\""),
            "{x}"
        );
        assert!(
            x.contains("<testcase classname=\"kit\" name=\"kit.start\" time=\"0.000\">\n      <error message=\"cannot reach http://h:1/ (connection &lt;refused&gt;)\" type=\"not_started\">"),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 1, "{x}");
        assert!(x.trim_end().ends_with("</testsuites>"), "{x}");
        // With the cases that ran before the run stopped, the error comes last.
        let mut r = sample();
        r.not_started = Some("stopped".into());
        let x = r.junit();
        assert!(
            x.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""),
            "{x}"
        );
        // A run that started has no error.
        assert!(sample().junit().contains("errors=\"0\""));
        assert!(!sample().junit().contains("<error"));
    }

    #[test]
    fn a_run_stopped_by_a_signal_is_never_green_in_junit() {
        let mut r = sample();
        r.stopped = Some("SIGINT: the run was stopped before every case ran".into());
        let x = r.junit();
        assert!(
            x.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("<testcase classname=\"kit\" name=\"kit.stopped\" time=\"0.000\">\n      <error message=\"SIGINT: the run was stopped before every case ran\" type=\"stopped\">"),
            "{x}"
        );
    }
}
