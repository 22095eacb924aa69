//! The interlock language: parsing (shapes and located errors), printing,
//! type checks, span mapping into TOML strings, and fail-closed evaluation.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn p(src: &str) -> Expr {
    match parse(src) {
        Ok(e) => e,
        Err(e) => panic!("{src:?} should parse: {e:?}"),
    }
}

#[test]
fn precedence_and_spellings_parse_to_the_expected_shape() {
    // (source, the same expression printed with the fewest parentheses)
    let cases = [
        ("a", "a"),
        ("a and b or c", "a and b or c"),
        ("a && b || c", "a and b or c"),
        ("a or b and c", "a or b and c"),
        ("(a or b) and c", "(a or b) and c"),
        ("not a and b", "not a and b"),
        ("!a && !b", "not a and not b"),
        ("not a == 1", "not a == 1"),
        ("!(a or b)", "not (a or b)"),
        ("line.speed >= 0.2", "line.speed >= 0.2"),
        ("x<-5", "x < -5"),
        ("x != .5", "x != 0.5"),
        ("mode == \"run\\\"ning\"", "mode == \"run\\\"ning\""),
        ("a-b.c_d == true", "a-b.c_d == true"),
        ("3d.speed > 1e3", "3d.speed > 1000"),
        ("a or (b or c)", "a or (b or c)"),
        ("((a))", "a"),
        ("(a == b) == c", "(a == b) == c"),
        ("not not a", "not not a"),
    ];
    for (src, printed) in cases {
        assert_eq!(p(src).to_string(), printed, "{src}");
    }
}

#[test]
fn spans_cover_the_text_each_node_was_parsed_from() {
    let src = "line.running and (speed > 0.2)";
    let e = p(src);
    assert_eq!(e.span, 0..src.len());
    let ExprKind::And(l, r) = &e.kind else {
        panic!("not an and: {e:?}");
    };
    assert_eq!(&src[l.span.clone()], "line.running");
    assert_eq!(&src[r.span.clone()], "(speed > 0.2)");
    assert_eq!(
        e.tag_refs(),
        vec![("line.running", 0..12), ("speed", 18..23)]
    );
}

#[test]
fn syntax_errors_point_at_the_offending_text() {
    // (source, the text the error points at, a word of its message)
    let cases: &[(&str, &str, &str)] = &[
        ("", "", "empty"),
        ("   ", "   ", "empty"),
        ("a ==", "", "ends too early"),
        ("a = 1", "=", "not an operator"),
        ("a & b", "&", "single `&`"),
        ("a | b", "|", "single `|`"),
        ("a < b < c", "<", "do not chain"),
        ("(a and b", "", "expected `)`"),
        ("a and b)", ")", "no matching"),
        ("a b", "b", "after a complete condition"),
        ("speed + 1 > 2", "+", "no arithmetic"),
        ("x == 'run'", "'", "double quotes"),
        ("x == \"run", "\"run", "unterminated"),
        ("x == \"a\\qb\"", "\\q", "unknown escape"),
        ("a and and b", "and", "keyword"),
        ("a == not b", "not", "whole comparison"),
        ("x > -", "-", "invalid number"),
        ("x > 1e999", "1e999", "not finite"),
        ("a § b", "§", "unexpected"),
    ];
    for (src, at, says) in cases {
        let err = parse(src).expect_err(src);
        let got = src.get(err.span.clone()).unwrap_or("<bad span>");
        assert_eq!(got, *at, "{src}: {err:?}");
        let text = format!("{} {}", err.message, err.help.clone().unwrap_or_default());
        assert!(text.contains(says), "{src}: {text}");
    }
}

#[test]
fn nesting_is_bounded_instead_of_overflowing_the_stack() {
    let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    let err = parse(&deep).expect_err("too deep");
    assert!(err.message.contains("nested"), "{err:?}");
    let nots = format!("{}a", "not ".repeat(10_000));
    assert!(parse(&nots).is_err());
    let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
}

fn kinds(name: &str) -> Option<Kind> {
    match name {
        "run" | "door" => Some(Kind::Bool),
        "speed" | "count" => Some(Kind::Num),
        "state" => Some(Kind::Text),
        _ => None,
    }
}

#[test]
fn type_errors_are_located_and_say_what_to_write() {
    // (source, the text the first error points at, a word of it or its help)
    let cases: &[(&str, &str, &str)] = &[
        ("speed", "speed", "`speed != 0`"),
        ("run and count", "count", "`count != 0`"),
        ("not state", "state", "== \"running\""),
        ("1", "1", "not a condition"),
        ("speed == \"fast\"", "\"fast\"", "cannot compare"),
        ("\"fast\" == speed", "\"fast\"", "cannot compare"),
        ("state == 3", "3", "with a \"string\""),
        ("run == 1", "1", "true or false"),
        ("run < 1", "run", "compares numbers"),
        ("state >= \"a\"", "state", "text can only"),
        ("speed > true", "true", "compares numbers"),
        ("run == speed", "speed", "cannot compare"),
    ];
    for (src, at, says) in cases {
        let errs = check_types(&p(src), &kinds);
        let first = errs
            .first()
            .unwrap_or_else(|| panic!("{src}: no type error"));
        assert_eq!(&src[first.span.clone()], *at, "{src}: {first:?}");
        let text = format!(
            "{} {}",
            first.message,
            first.help.clone().unwrap_or_default()
        );
        assert!(text.contains(says), "{src}: {text}");
    }
    for ok in [
        "run",
        "run and not door",
        "speed > 0.2 or count == 3",
        "state == \"running\" and state != \"jam\"",
        "(run == door) != false",
        "unknown_tag and speed > 1",
    ] {
        assert_eq!(check_types(&p(ok), &kinds), vec![], "{ok}");
    }
}

#[test]
fn a_span_map_follows_literal_basic_and_escaped_strings() {
    // The file text, the value TOML gives the string, the part to find.
    let cases: &[(&str, &str, &str, &str)] = &[
        (r#"x = "speed > 1""#, "speed > 1", ">", ">"),
        (r#"x = 'a == "b"'"#, r#"a == "b""#, "\"b\"", "\"b\""),
        (r#"x = "a == \"b\"""#, r#"a == "b""#, "\"b\"", "\\\"b\\\""),
        (r#"x = "\u00e9t\u00e9 or q""#, "été or q", "q", "q"),
        ("x = '''\nspeed > 1'''", "speed > 1", "1", "1"),
        (
            "x = \"\"\"\nrun and \\\n   door\"\"\"",
            "run and door",
            "door",
            "door",
        ),
    ];
    for (text, value, part, want) in cases {
        let start = text.find(['"', '\'']).expect("a string");
        let map = SpanMap::new(text, start..text.len(), value);
        let at = value.find(part).expect("part in value");
        let got = map.map(&(at..at + part.len()));
        assert_eq!(&text[got.clone()], *want, "{text}: {got:?}");
    }
    // A value the text does not decode to maps to the whole string.
    let text = r#"x = "abc""#;
    let map = SpanMap::new(text, 4..9, "xyz");
    assert_eq!(map.map(&(1..2)), 4..9);
    // The end of the value maps to the closing quote.
    let map = SpanMap::new(text, 4..9, "abc");
    assert_eq!(&text[map.map(&(3..3))], "\"");
}

fn il(src: &str) -> Interlock {
    Interlock {
        text: src.into(),
        expr: p(src),
        span: 0..0,
    }
}

type Tags<'a> = &'a [(&'static str, Value, Quality)];

fn lookup(tags: Tags<'_>) -> impl Fn(&str) -> Option<(Value, Quality)> + '_ {
    move |name| {
        tags.iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, q)| (v.clone(), *q))
    }
}

#[test]
fn evaluation_is_three_valued_and_fails_closed() {
    use Quality::*;
    use Value::*;
    let good: Tags = &[
        ("run", Bool(true), Good),
        ("door", Bool(false), Good),
        ("speed", Num(0.5), Good),
        ("count", Num(3.0), Good),
    ];
    let stale: Tags = &[
        ("run", Bool(true), Good),
        ("door", Bool(false), Good),
        ("jam", Bool(false), Stale),
        ("speed", Num(f64::NAN), Good),
        ("pressure", Num(2.0), Uncertain),
        ("count", Num(1.0), Bad),
    ];
    enum Want {
        Holds,
        Fails(&'static str),
        Unknown(&'static str, &'static str),
    }
    use Want as W;
    let cases: Vec<(&str, Tags, Want)> = vec![
        ("run", good, W::Holds),
        ("run and speed > 0.2", good, W::Holds),
        ("door", good, W::Fails("`door` is false (door = false)")),
        ("run and not door and speed >= 0.5", good, W::Holds),
        (
            "run and speed > 0.6",
            good,
            W::Fails("`speed > 0.6` is false (speed = 0.5)"),
        ),
        (
            "door or count != 3",
            good,
            W::Fails("`door or count != 3` is false (door = false, count = 3)"),
        ),
        ("not run", good, W::Fails("`not run` is false (run = true)")),
        ("count == 3 and speed < 1", good, W::Holds),
        // Unknown inputs.
        ("jam", stale, W::Unknown("jam", "stale")),
        ("not jam", stale, W::Unknown("jam", "stale")),
        ("speed > 0", stale, W::Unknown("speed", "finite")),
        ("pressure < 3", stale, W::Unknown("pressure", "uncertain")),
        ("count == 1", stale, W::Unknown("count", "bad")),
        ("missing", stale, W::Unknown("missing", "no value")),
        ("run and jam", stale, W::Unknown("jam", "stale")),
        // Kleene: a known side decides when it can, whatever the unknown one.
        ("door and jam", stale, W::Fails("`door` is false")),
        ("jam and door", stale, W::Fails("`door` is false")),
        ("run or jam", stale, W::Holds),
        ("jam or run", stale, W::Holds),
        ("jam or door", stale, W::Unknown("jam", "stale")),
        // A tag whose value is of another kind than checked.
        ("run > 1", good, W::Unknown("run", "compared")),
        ("speed", good, W::Unknown("speed", "not a boolean")),
    ];
    for (src, tags, want) in cases {
        let got = il(src).eval(lookup(tags));
        match (&want, &got) {
            (W::Holds, Verdict::Holds) => {}
            (W::Fails(r), Verdict::Fails { reason }) if reason.contains(r) => {}
            (W::Unknown(t, w), Verdict::Unknown { tag, why }) if tag == t && why.contains(w) => {}
            _ => panic!("{src}: got {got:?}"),
        }
        assert_eq!(got.holds(), matches!(want, W::Holds), "{src}");
    }
}

#[test]
fn text_tags_compare_by_equality() {
    let tags: Tags = &[("state", Value::Text(Arc::from("running")), Quality::Good)];
    let look = lookup(tags);
    assert_eq!(il("state == \"running\"").eval(&look), Verdict::Holds);
    assert!(matches!(
        il("state != \"running\"").eval(&look),
        Verdict::Fails { reason } if reason.contains("state = \"running\"")
    ));
}

/// Tag names that read back as tags: a letter first, then word characters,
/// and no keyword.
fn tag_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,8}".prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        tag_name().prop_map(|t| Expr::new(ExprKind::Tag(t), 0..0)),
        (-1e12f64..1e12).prop_map(|n| Expr::new(ExprKind::Num(n), 0..0)),
        any::<i32>().prop_map(|n| Expr::new(ExprKind::Num(f64::from(n)), 0..0)),
        any::<bool>().prop_map(|b| Expr::new(ExprKind::Bool(b), 0..0)),
        "[ -~é\"\\\\]{0,6}".prop_map(|s| Expr::new(ExprKind::Str(s), 0..0)),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 32, 2, |inner| {
        let b = |e: Expr| Box::new(e);
        let op = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
        ];
        prop_oneof![
            inner
                .clone()
                .prop_map(move |e| Expr::new(ExprKind::Not(b(e)), 0..0)),
            (inner.clone(), inner.clone())
                .prop_map(move |(l, r)| Expr::new(ExprKind::And(b(l), b(r)), 0..0)),
            (inner.clone(), inner.clone())
                .prop_map(move |(l, r)| Expr::new(ExprKind::Or(b(l), b(r)), 0..0)),
            (op, inner.clone(), inner)
                .prop_map(move |(o, l, r)| Expr::new(ExprKind::Cmp(o, b(l), b(r)), 0..0)),
        ]
    })
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_tree(e in expr()) {
        let printed = e.to_string();
        let back = parse(&printed);
        prop_assert!(back.is_ok(), "{printed:?}: {back:?}");
        if let Ok(back) = back {
            prop_assert_eq!(back.without_spans(), e, "{}", printed);
        }
    }

    #[test]
    fn parse_never_panics_and_spans_stay_inside_the_text(s in "\\PC{0,40}") {
        match parse(&s) {
            Ok(e) => prop_assert!(e.span.end <= s.len()),
            Err(err) => {
                prop_assert!(err.span.start <= err.span.end && err.span.end <= s.len());
                prop_assert!(s.get(err.span.clone()).is_some(), "span not on char boundaries");
            }
        }
    }

    #[test]
    fn parse_never_panics_on_interlock_like_text(
        s in "[a-z0-9 .()!=<>&|\"-]{0,40}"
    ) {
        let _ = parse(&s).map(|e| check_types(&e, &kinds));
    }

    #[test]
    fn a_span_map_never_points_outside_the_string(
        value in "[ -~é]{0,12}",
        a in 0usize..14,
        b in 0usize..14,
    ) {
        let quoted = format!("x = {}", toml_basic(&value));
        let start = 4;
        let map = SpanMap::new(&quoted, start..quoted.len(), &value);
        let (a, b) = (a.min(value.len()), b.min(value.len()));
        let r = map.map(&(a.min(b)..a.max(b)));
        prop_assert!(r.start >= start && r.end <= quoted.len() && r.start < r.end, "{r:?}");
    }
}

/// `value` as a TOML basic string, escaping what must be.
fn toml_basic(value: &str) -> String {
    let mut s = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
