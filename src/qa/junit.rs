//! An expectations [`Report`] as JUnit XML, the format Jenkins and GitLab
//! read: one `<testsuite>` (inside `<testsuites>`), one `<testcase>` per
//! assertion, a `<failure>` with the message and the offending event.
//!
//! Checked against the Jenkins xUnit plugin's `junit-10.xsd` in
//! tests/it/qa.rs. No timestamps or host names: the same stream gives the
//! same file, so a CI can diff reports as well as read them.

use std::fmt::Write as _;

use super::expect::Report;

/// The XML document for a report.
pub fn to_xml(report: &Report) -> String {
    let tests = report.outcomes.len();
    let failures = report.failures();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let suite = attr(&report.suite);
    let _ = writeln!(
        s,
        "<testsuites name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"0\">"
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"0\">"
    );
    let _ = writeln!(s, "    <properties>");
    let _ = writeln!(
        s,
        "      <property name=\"events\" value=\"{}\"/>",
        report.events
    );
    let _ = writeln!(s, "    </properties>");
    for o in &report.outcomes {
        let open = format!(
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
            attr(&o.name),
            attr(&format!("twin.expect.{}", o.kind))
        );
        match &o.failure {
            None => {
                let _ = writeln!(s, "{open}/>");
            }
            Some(f) => {
                let _ = writeln!(s, "{open}>");
                let mut body = f.message.clone();
                if let Some(e) = &f.event {
                    let _ = write!(
                        body,
                        "\nfirst offending event, line {}:\n{}",
                        e.line, e.text
                    );
                }
                let _ = writeln!(
                    s,
                    "      <failure type=\"assertion\" message=\"{}\">{}</failure>",
                    attr(&f.message),
                    text(&body)
                );
                let _ = writeln!(s, "    </testcase>");
            }
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

/// Characters XML 1.0 cannot carry at all, even escaped (most C0 controls,
/// lone surrogates cannot occur in a `str`, U+FFFE/U+FFFF).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Element text: markup escaped, forbidden characters replaced.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// Attribute value (double-quoted): as [`text`], plus quotes, and
/// whitespace kept as character references, which attribute-value
/// normalisation would otherwise turn into spaces.
pub fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qa::expect::{Failure, Offending, Outcome};

    #[test]
    fn markup_quotes_and_forbidden_characters_are_escaped() {
        assert_eq!(text("a<b>&c\u{1}\t"), "a&lt;b&gt;&amp;c\u{FFFD}\t");
        assert_eq!(attr("\"x'\n\u{0}"), "&quot;x&apos;&#10;\u{FFFD}");
    }

    #[test]
    fn each_assertion_is_a_testcase_and_a_failure_carries_its_event() {
        let report = Report {
            suite: "s".into(),
            events: 3,
            outcomes: vec![
                Outcome {
                    name: "ok".into(),
                    kind: "event",
                    failure: None,
                },
                Outcome {
                    name: "jam <&>".into(),
                    kind: "event",
                    failure: Some(Failure {
                        message: "expected no jam".into(),
                        event: Some(Offending {
                            line: 7,
                            text: r#"{"type":"jam","x":"<"}"#.into(),
                        }),
                    }),
                },
            ],
        };
        let xml = to_xml(&report);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("<testcase name=\"ok\" classname=\"twin.expect.event\" time=\"0\"/>"));
        assert!(xml.contains("name=\"jam &lt;&amp;&gt;\""));
        assert!(
            xml.contains("line 7:\n{\"type\":\"jam\",\"x\":\"&lt;\"}</failure>"),
            "{xml}"
        );
    }
}
