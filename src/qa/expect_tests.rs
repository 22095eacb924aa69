use super::*;

fn parse(text: &str) -> Expectations {
    Expectations::parse(Path::new("e.toml"), text).unwrap_or_else(|r| panic!("{r}"))
}

fn errors(text: &str) -> String {
    match Expectations::parse(Path::new("e.toml"), text) {
        Ok(_) => panic!("must be invalid"),
        Err(r) => r.render(),
    }
}

/// Tick `s` seconds after 08:00:00.
fn at(s: f64) -> String {
    format_time(parse_time_base() + (s * 1e9) as i64)
}

fn parse_time_base() -> i64 {
    crate::qa::parse_time("2027-01-15T08:00:00Z").unwrap_or_default()
}

fn tag(s: f64, name: &str, value: &str, quality: &str) -> String {
    format!(
        r#"{{"v":1,"type":"tag","t":"{}","tag":"{name}","machine":null,"value":{value},"quality":"{quality}"}}"#,
        at(s)
    )
}

fn jam(s: f64, after: &str, before: &str, state: &str) -> String {
    format!(
        r#"{{"v":1,"type":"jam","t":"{}","line":"line1","state":"{state}","after_eye":"{after}","before_eye":"{before}"}}"#,
        at(s)
    )
}

fn line(s: f64, wip: u32, tp: f64) -> String {
    format!(
        r#"{{"v":1,"type":"line","t":"{}","line":"line1","wip":{wip},"out":0,"lost":0,"throughput_per_min":{tp:?},"quality":"good","zones":{{}}}}"#,
        at(s)
    )
}

fn check(e: &Expectations, lines: &[String]) -> Report {
    let mut c = e.checker();
    for l in lines {
        c.feed(l.as_bytes()).expect("feeds");
    }
    c.finish()
}

#[test]
fn a_jam_between_two_eyes_in_its_window_passes_and_outside_it_fails() {
    let e = parse(
        r#"
[[event]]
name = "jam at the transfer"
type = "jam"
state = "start"
between = ["eye_transfer", "eye_exit"]
from = "60s"
to = "80s"
"#,
    );
    let stream = |t: f64| {
        vec![
            tag(0.0, "a", "1.0", "good"),
            jam(t, "eye_transfer", "eye_exit", "start"),
            line(100.0, 1, 1.0),
        ]
    };
    assert!(check(&e, &stream(65.0)).passed());
    let late = check(&e, &stream(85.0));
    let f = late.outcomes[0].failure.as_ref().expect("fails");
    assert!(
        f.message
            .contains("expected at least 1 matching jam events from 60s to 80s, found 0"),
        "{f:?}"
    );
    // Another place is another jam.
    let wrong = vec![
        tag(0.0, "a", "1.0", "good"),
        jam(65.0, "eye_a", "eye_exit", "start"),
    ];
    assert!(!check(&e, &wrong).passed());
}

#[test]
fn an_event_that_must_not_happen_names_the_first_offending_line() {
    let e = parse("[[event]]\ntype = \"jam\"\nhappens = false\n");
    let lines = vec![
        tag(0.0, "a", "1.0", "good"),
        jam(5.0, "e1", "e2", "start"),
        jam(6.0, "e1", "e2", "clear"),
    ];
    let r = check(&e, &lines);
    let f = r.outcomes[0].failure.as_ref().expect("fails");
    let ev = f.event.as_ref().expect("names an event");
    assert_eq!(ev.line, 2);
    assert_eq!(ev.text, lines[1]);
    assert!(
        f.message.contains("expected no jam events, found 2"),
        "{f:?}"
    );
}

#[test]
fn counts_bound_the_matches_from_both_sides() {
    let e = parse("[[event]]\ntype = \"jam\"\nat_least = 1\nat_most = 1\n");
    let one = vec![jam(1.0, "a", "b", "start")];
    assert!(check(&e, &one).passed());
    let two = vec![jam(1.0, "a", "b", "start"), jam(2.0, "a", "b", "clear")];
    let r = check(&e, &two);
    assert_eq!(
        r.outcomes[0]
            .failure
            .as_ref()
            .and_then(|f| f.event.as_ref())
            .map(|e| e.line),
        Some(2)
    );
    // `at_most` alone allows none.
    let e = parse("[[event]]\ntype = \"jam\"\nat_most = 3\n");
    assert!(check(&e, &[tag(0.0, "a", "1.0", "good")]).passed());
}

#[test]
fn a_tag_range_judges_the_state_carried_into_the_window() {
    let e = parse("[[tag]]\ntag = \"a\"\nmin = 0.5\nmax = 0.7\nfrom = \"10s\"\n");
    // Out of range before the window and still so when it opens.
    let r = check(
        &e,
        &[tag(0.0, "a", "0.2", "good"), tag(15.0, "a", "0.6", "good")],
    );
    let f = r.outcomes[0].failure.as_ref().expect("fails");
    assert!(f.message.contains("carried into the window"), "{f:?}");
    assert_eq!(f.event.as_ref().map(|e| e.line), Some(1));
    // Replaced exactly when the window opens: never held in it.
    let r = check(
        &e,
        &[tag(0.0, "a", "0.2", "good"), tag(10.0, "a", "0.6", "good")],
    );
    assert!(r.passed(), "{r:?}");
    // No event in the window at all: the carried state holds throughout.
    let r = check(&e, &[tag(0.0, "a", "0.9", "good"), line(20.0, 1, 1.0)]);
    assert!(!r.passed());
    // Above max inside the window.
    let r = check(
        &e,
        &[tag(0.0, "a", "0.6", "good"), tag(12.0, "a", "0.75", "good")],
    );
    let f = r.outcomes[0].failure.as_ref().expect("fails");
    assert!(f.message.contains("above max 0.7"), "{f:?}");
    assert_eq!(f.event.as_ref().map(|e| e.line), Some(2));
}

#[test]
fn bad_and_stale_are_ignored_unless_the_file_says_fail() {
    let lenient = parse("[[tag]]\ntag = \"a\"\nmin = 0\n");
    let strict = parse("[[tag]]\ntag = \"a\"\nmin = 0\nbad = \"fail\"\nstale = \"fail\"\n");
    let bad = vec![tag(0.0, "a", "null", "bad"), tag(1.0, "a", "1.0", "good")];
    assert!(check(&lenient, &bad).passed());
    let r = check(&strict, &bad);
    assert!(
        r.outcomes[0]
            .failure
            .as_ref()
            .is_some_and(|f| f.message.contains("went bad"))
    );
    let stale = vec![tag(0.0, "a", "1.0", "good"), tag(1.0, "a", "1.0", "stale")];
    assert!(check(&lenient, &stale).passed());
    assert!(!check(&strict, &stale).passed());
    // A tag that never appears is a failure, not a silent pass.
    let r = check(&lenient, &[tag(0.0, "b", "1.0", "good")]);
    assert!(
        r.outcomes[0]
            .failure
            .as_ref()
            .is_some_and(|f| f.message.contains("no `tag` event for a"))
    );
    let typo = parse("[[tag]]\ntag = \"infeed.sped\"\nmin = 0\n");
    let r = check(&typo, &[tag(0.0, "infeed.speed", "1.0", "good")]);
    let f = r.outcomes[0].failure.as_ref().expect("fails");
    assert!(f.message.ends_with("did you mean `infeed.speed`?"), "{f:?}");
}

#[test]
fn line_bounds_fail_on_the_first_line_event_outside_them() {
    let e =
        parse("[[line]]\nline = \"line1\"\nwip_max = 20\nthroughput_min = 40\nfrom = \"60s\"\n");
    let ok = vec![
        line(0.0, 30, 10.0),
        line(60.0, 18, 50.0),
        line(61.0, 19, 52.0),
    ];
    assert!(check(&e, &ok).passed());
    let r = check(
        &e,
        &[
            line(0.0, 30, 10.0),
            line(60.0, 18, 50.0),
            line(61.0, 25, 52.0),
            line(62.0, 26, 52.0),
        ],
    );
    let f = r.outcomes[0].failure.as_ref().expect("fails");
    assert!(f.message.contains("wip 25 is above 20"), "{f:?}");
    assert_eq!(f.event.as_ref().map(|e| e.line), Some(3));
    let other = parse("[[line]]\nline = \"line2\"\nwip_max = 20\n");
    assert!(!check(&other, &ok).passed());
}

#[test]
fn a_window_the_stream_never_reached_fails_and_so_does_an_empty_stream() {
    let e = parse("[[event]]\ntype = \"jam\"\nhappens = false\nfrom = \"1h\"\n");
    let r = check(
        &e,
        &[tag(0.0, "a", "1.0", "good"), tag(60.0, "a", "2.0", "good")],
    );
    assert!(
        r.outcomes[0]
            .failure
            .as_ref()
            .is_some_and(|f| f.message.contains("before the window opens"))
    );
    let r = check(&e, &[]);
    assert!(
        r.outcomes[0]
            .failure
            .as_ref()
            .is_some_and(|f| f.message.contains("empty"))
    );
}

#[test]
fn absolute_windows_are_rfc3339_times() {
    let e = parse(
        "[[event]]\ntype = \"jam\"\nfrom = \"2027-01-15T08:01:00Z\"\nto = \"2027-01-15T08:01:20Z\"\n",
    );
    assert!(check(&e, &[jam(65.0, "a", "b", "start")]).passed());
    assert!(!check(&e, &[jam(55.0, "a", "b", "start")]).passed());
}

#[test]
fn the_checker_reports_bad_lines_with_their_number_and_goes_on() {
    let e = parse("[[event]]\ntype = \"jam\"\n");
    let mut c = e.checker();
    assert!(c.feed(tag(1.0, "a", "1.0", "good").as_bytes()).is_ok());
    let err = c.feed(b"garbage\n").expect_err("not json");
    assert_eq!(err.line, 2);
    let err = c
        .feed(tag(0.5, "a", "1.0", "good").as_bytes())
        .expect_err("goes back");
    assert!(err.message.contains("out of time order"), "{err}");
    c.feed(format!("{}\n", jam(3.0, "a", "b", "start")).as_bytes())
        .expect("feeds");
    let r = c.finish();
    assert!(r.passed());
    assert_eq!(r.events, 2);
}

#[test]
fn unknown_keys_and_types_are_located_with_their_key_path_and_a_guess() {
    let out = errors("[[event]]\ntype = \"jamm\"\nfrm = \"10s\"\n");
    assert!(out.contains("e.toml:2:8"), "{out}");
    assert!(out.contains("key: event[0].type"), "{out}");
    assert!(out.contains("did you mean `jam`?"), "{out}");
    assert!(out.contains("e.toml:3:1"), "{out}");
    assert!(out.contains("key: event[0].frm"), "{out}");
    assert!(out.contains("did you mean `from`?"), "{out}");
    let out = errors("[[alarm]]\ntype = \"x\"\n");
    assert!(out.contains("unknown key `alarm`"), "{out}");
}

#[test]
fn contradictions_in_an_assertion_are_errors() {
    let out = errors("[[event]]\ntype = \"jam\"\nhappens = false\nat_least = 2\n");
    assert!(out.contains("contradicts `happens = false`"), "{out}");
    let out = errors("[[event]]\ntype = \"jam\"\nat_least = 3\nat_most = 2\n");
    assert!(out.contains("at_least 3 is more than at_most 2"), "{out}");
    let out = errors("[[event]]\ntype = \"residual\"\nbetween = [\"a\", \"b\"]\n");
    assert!(out.contains("`between` places jams"), "{out}");
    let out = errors("[[event]]\ntype = \"jam\"\nfrom = \"40s\"\nto = \"10s\"\n");
    assert!(out.contains("`to` is not after `from`"), "{out}");
    let out = errors("[[event]]\ntype = \"jam\"\nfrom = \"soon\"\n");
    assert!(
        out.contains("cannot read \"soon\" as a time") && out.contains("e.toml:3:8"),
        "{out}"
    );
    let out = errors("[[tag]]\ntag = \"a\"\n");
    assert!(out.contains("needs `min`, `max` or both"), "{out}");
    let out = errors("[[tag]]\ntag = \"a\"\nmin = 2\nmax = 1\n");
    assert!(out.contains("max 1 is below min 2"), "{out}");
    let out = errors("# nothing\n");
    assert!(out.contains("no assertions"), "{out}");
    let out = errors("[[event]\n");
    assert!(out.contains("TOML syntax error"), "{out}");
}

#[test]
fn assertions_are_named_by_the_file_or_by_what_they_check() {
    let e = parse(
        "[suite]\nname = \"jam suite\"\n[[event]]\ntype = \"jam\"\nbetween = [\"a\", \"b\"]\nfrom = \"60s\"\n[[tag]]\nname = \"speed ok\"\ntag = \"x\"\nmax = 1\n",
    );
    assert_eq!(e.suite, "jam suite");
    let names: Vec<&str> = e.names().collect();
    assert_eq!(
        names,
        [
            "event[0]: jam events between a and b from 60s: at least 1",
            "speed ok"
        ]
    );
}
