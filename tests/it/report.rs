//! `twin report`: the page of a real demo run, looked at in headless
//! Chromium (Debian's `chromium`, installed by scripts/setup.sh); marks of
//! residuals, jams and quality; a day streamed in bounded output; bad input
//! named by file and line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use twin::report::{ReportError, ReportOptions, render};

use crate::util::*;

/// A Debian binary on PATH (or in /usr/bin).
fn chromium() -> PathBuf {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/bin".into()])
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium not found: install Debian's `chromium` (scripts/setup.sh)")
        })
}

/// Run `cmd` to completion within `limit`; its exit code, stdout and stderr.
fn run_bounded(cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    run_bounded_with(cmd, Stdio::null(), limit)
}

/// [`run_bounded`] with this stdin.
fn run_bounded_with(
    mut cmd: Command,
    stdin: Stdio,
    limit: Duration,
) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(stdin)
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let end = twin::wallclock::monotonic() + limit;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if twin::wallclock::monotonic() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out), read(&err))
}

/// The page must be one well-formed XML document (so every SVG in it is),
/// reach for nothing outside itself, and have the report's sections.
fn check_page(html: &str) {
    // `<!DOCTYPE html>` is a DTD to an XML parser; it declares nothing.
    let xml = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(html, xml)
        .unwrap_or_else(|e| panic!("not well-formed: {e}"));
    let svgs: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name(("http://www.w3.org/2000/svg", "svg")))
        .collect();
    assert!(!svgs.is_empty(), "no inline SVG");
    for id in [
        "summary",
        "lines",
        "tags",
        "events",
        "event-counts",
        "tag-table",
    ] {
        assert!(
            doc.descendants().any(|n| n.attribute("id") == Some(id)),
            "no element with id {id}"
        );
    }
    for n in doc.descendants().filter(|n| n.is_element()) {
        assert!(
            !n.has_tag_name("script") && !n.has_tag_name("link") && !n.has_tag_name("img"),
            "{:?} element",
            n.tag_name()
        );
        for a in n.attributes() {
            assert!(
                !matches!(a.name(), "src" | "href"),
                "{} attribute on {:?}",
                a.name(),
                n.tag_name()
            );
        }
    }
    let outside = html.replace("http://www.w3.org/2000/svg", "");
    for needle in ["http://", "https://", "url(", "@import", "//cdn"] {
        assert!(
            !outside.contains(needle),
            "the page reaches outside: {needle}"
        );
    }
}

/// Pixels of a PNG as RGB rows.
fn decode(png_path: &Path) -> (usize, usize, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("open screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "screenshot is {:?}", info.color_type);
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width as usize, info.height as usize, px)
}

#[test]
fn report_of_a_demo_run_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("demo.jsonl");
    let html = dir.path().join("report.html");
    let mut demo = twin();
    demo.args(["demo", "--for", "6s", "--no-table", "--events"])
        .arg(&events);
    let (code, _, err) = run_bounded(demo, Duration::from_secs(120));
    assert_eq!(code, Some(0), "twin demo failed: {err}");

    let mut report = twin();
    report
        .arg("report")
        .arg(&events)
        .arg("-o")
        .arg(&html)
        .args(["--title", "Demo & <QA>"]);
    let (code, _, err) = run_bounded(report, Duration::from_secs(60));
    assert_eq!(code, Some(0), "twin report failed: {err}");
    let page = std::fs::read_to_string(&html).expect("report written");
    check_page(&page);
    assert!(
        page.contains("<h1>Demo &amp; &lt;QA&gt;</h1>"),
        "title not escaped"
    );
    assert!(
        page.contains("<b>Line line1</b>"),
        "no plot of the demo line"
    );
    // The demo's belts come first among the key tags.
    let first_tag = page
        .split("<figure class=\"tag\">")
        .nth(1)
        .expect("a tag plot");
    assert!(
        first_tag.contains("<b>infeed.speed</b>"),
        "{}",
        &first_tag[..200.min(first_tag.len())]
    );
    let tag_plots = page.matches("<figure class=\"tag\">").count();
    assert!((4..=12).contains(&tag_plots), "{tag_plots} tag plots");

    let shot = dir.path().join("shot.png");
    let profile = dir.path().join("chromium-profile");
    let mut chrome = Command::new(chromium());
    chrome
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1100,1400")
        .arg(format!("file://{}", html.display()));
    let (_, _, err) = run_bounded(chrome, Duration::from_secs(120));
    assert!(shot.is_file(), "no screenshot: {err}");
    let (w, h, px) = decode(&shot);
    assert_eq!((w, h), (1100, 1400));
    // Below the title: the line's panels and the first tag plots.
    let area = &px[200 * w..];
    let inked = area.iter().filter(|p| p.iter().any(|&c| c < 235)).count();
    let blue = area
        .iter()
        .filter(|p| p[2] > 140 && p[0] < 100 && p[1] < 150)
        .count();
    let green = area
        .iter()
        .filter(|p| p[1] > 100 && p[0] < 80 && p[2] < 110)
        .count();
    assert!(
        inked * 100 > area.len() * 3,
        "the page looks blank: {inked} of {} pixels inked",
        area.len()
    );
    assert!(
        blue > 300,
        "no tag or throughput lines drawn: {blue} blue pixels"
    );
    assert!(green > 150, "no WIP line drawn: {green} green pixels");
}

/// A few minutes of a line with everything the plots mark.
fn marked_stream() -> Vec<String> {
    let t = |s: f64| {
        let ms = (s * 1000.0).round() as i64;
        format!(
            "2027-01-15T08:{:02}:{:02}.{:03}Z",
            ms / 60_000,
            (ms / 1000) % 60,
            ms % 1000
        )
    };
    let mut out = Vec::new();
    for s in 0..300 {
        let s = f64::from(s);
        let (value, quality) = if (100.0..130.0).contains(&s) {
            ("null".to_string(), r#""bad","reason":"connection_lost""#)
        } else {
            (format!("{:.3}", 0.5 + (s / 40.0).sin() * 0.1), r#""good""#)
        };
        out.push(format!(
            r#"{{"v":1,"type":"tag","t":"{}","tag":"a.speed","machine":"a","value":{value},"quality":{quality},"unit":"m/s"}}"#,
            t(s)
        ));
        out.push(format!(
            r#"{{"v":1,"type":"line","t":"{}","line":"l1","wip":{},"out":0,"lost":0,"throughput_per_min":{},"quality":"{}","zones":{{"a":3}}}}"#,
            t(s),
            10 + (s as i64 % 7),
            40.0 + s / 10.0,
            if (150.0..160.0).contains(&s) { "uncertain" } else { "good" }
        ));
        if s as i64 % 50 == 7 {
            out.push(format!(
                r#"{{"v":1,"type":"residual","t":"{}","line":"l1","eye":"e1","tag":"eye.1","residual":"late","expected_t":"{}","measured_t":"{}","lag_ms":700}}"#,
                t(s),
                t(s - 1.0),
                t(s - 0.3)
            ));
        }
    }
    out.push(format!(r#"{{"v":1,"type":"jam","t":"{}","line":"l1","state":"start","after_eye":"e1","before_eye":"e2","since":"{}"}}"#, t(200.0), t(195.0)));
    out.push(format!(r#"{{"v":1,"type":"jam","t":"{}","line":"l1","state":"clear","after_eye":"e1","before_eye":"e2","since":"{}"}}"#, t(240.0), t(195.0)));
    out.push(format!(r#"{{"v":1,"type":"eye","t":"{}","line":"l1","eye":"e3","tag":"eye.3","state":"stuck_on","since":"{}"}}"#, t(250.0), t(245.0)));
    out.push(format!(
        r#"{{"v":1,"type":"gap","t":"{}","until":"{}","ticks":3,"events":9}}"#,
        t(260.0),
        t(261.0)
    ));
    out.push(format!(
        r#"{{"v":1,"type":"alarm","t":"{}","severity":"later version"}}"#,
        t(270.0)
    ));
    out
}

/// The largest number among an SVG's text labels (its top y tick).
fn max_label(svg: &str) -> f64 {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>')?
                .1
                .split("</text>")
                .next()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

fn opts(source: &str) -> ReportOptions {
    ReportOptions {
        source: source.to_string(),
        ..ReportOptions::default()
    }
}

#[test]
fn report_marks_residuals_jams_eyes_gaps_and_bad_quality() {
    let lines = marked_stream();
    let page = render(
        opts("marked.jsonl"),
        lines.iter().map(|l| Ok::<_, std::io::Error>(l.as_bytes())),
        std::iter::empty(),
    )
    .expect("a report");
    check_page(&page);
    assert!(
        page.contains("<b>Line l1</b> · 6 residuals, 1 jams, 1 stuck-eye verdicts"),
        "line caption"
    );
    let line_svg = page
        .split("<figure class=\"line\">")
        .nth(1)
        .expect("line plot");
    let line_svg = line_svg.split("</figure>").next().unwrap_or_default();
    // Residual dots, the jam (red) and the stuck eye (orange), the gap (violet).
    assert_eq!(
        line_svg.matches("<circle").count(),
        6,
        "one dot per residual bucket"
    );
    assert!(
        line_svg.contains(r##"opacity="0.25" fill="#D73027""##),
        "jam not shaded"
    );
    assert!(
        line_svg.contains(r##"fill="#F07814""##),
        "stuck eye not shaded"
    );
    assert!(line_svg.contains(r##"fill="#785AAA""##), "gap not shaded");
    assert!(
        line_svg.contains(r##"opacity="0.25" fill="#8C8C8C""##),
        "uncertain stretch not shaded"
    );
    // The speed tag's bad stretch is shaded, and its two quality changes ticked.
    let tag_svg = page
        .split("<figure class=\"tag\">")
        .nth(1)
        .expect("tag plot");
    assert!(
        tag_svg.contains("<b>a.speed</b> (m/s) · machine a · 300 events, 30 below good"),
        "tag caption"
    );
    assert!(
        tag_svg.contains(r##"opacity="0.22" fill="#D73027""##),
        "bad quality not shaded"
    );
    // Counts per type, the unknown later type included; the event list.
    for (kind, n) in [
        ("tag", 300),
        ("line", 300),
        ("residual", 6),
        ("jam", 2),
        ("eye", 1),
        ("gap", 1),
        ("alarm", 1),
    ] {
        assert!(
            page.contains(&format!("<tr><td>{kind}</td><td class=\"n\">{n}</td></tr>")),
            "count of {kind}"
        );
    }
    assert!(page.contains("late at e1 (700 ms late)"));
    assert!(page.contains("start: between e1 and e2"));
    assert!(page.contains("3 ticks (9 events) left out"));
}

#[test]
fn report_tags_option_picks_the_plots_and_names_unknown_tags() {
    let lines = marked_stream();
    let feed = || lines.iter().map(|l| Ok::<_, std::io::Error>(l.as_bytes()));
    let mut o = opts("marked.jsonl");
    o.tags = Some(vec!["a.speed".into()]);
    let page = render(o, feed(), std::iter::empty()).expect("a report");
    assert_eq!(page.matches("<figure class=\"tag\">").count(), 1);
    let mut o = opts("marked.jsonl");
    o.tags = Some(vec!["a.sped".into(), "nothing.like.it".into()]);
    let e = render(o, feed(), std::iter::empty()).expect_err("unknown tags");
    let msg = e.to_string();
    assert!(
        matches!(e, ReportError::UnknownTags(ref v) if v.len() == 2),
        "{msg}"
    );
    assert!(
        msg.contains(r#"no tag "a.sped" in the input (did you mean "a.speed"?)"#),
        "{msg}"
    );
    assert!(
        msg.contains(r#"no tag "nothing.like.it" in the input"#),
        "{msg}"
    );
}

#[test]
fn report_of_a_day_streams_into_bounded_plots() {
    // 24 h of one-second `line` and `tag` events, generated as they are
    // read: nothing holds the whole input.
    const DAY: i64 = 86_400;
    let t = |s: i64| {
        format!(
            "2027-01-15T{:02}:{:02}:{:02}.000Z",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60
        )
    };
    let lines = (0..DAY).flat_map(move |s| {
        let v = if s == 43_210 { 100.0 } else { (s % 60) as f64 / 10.0 };
        [
            format!(r#"{{"v":1,"type":"tag","t":"{}","tag":"m.temp","machine":"m","value":{v:.1},"quality":"good"}}"#, t(s)),
            format!(
                r#"{{"v":1,"type":"line","t":"{}","line":"l1","wip":{},"out":{s},"lost":0,"throughput_per_min":60.0,"quality":"good","zones":{{}}}}"#,
                t(s),
                s % 20
            ),
        ]
    });
    let page = render(
        opts("day.jsonl"),
        lines.map(|l| Ok::<_, std::io::Error>(l.into_bytes())),
        std::iter::empty(),
    )
    .expect("a report");
    check_page(&page);
    assert!(
        page.len() < 1_500_000,
        "the page grew with the input: {} bytes",
        page.len()
    );
    // Every drawn series is downsampled: at most four points per bucket,
    // each a step of two vertices.
    let max_vertices = page
        .split("points=\"")
        .skip(1)
        .map(|p| {
            p.split('"')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        max_vertices <= 2 * 4 * 400,
        "{max_vertices} vertices in one polyline"
    );
    assert!(
        max_vertices > 400,
        "the day was not drawn: {max_vertices} vertices"
    );
    // The one-second spike to 100 set the y axis.
    let tag_svg = page
        .split("<figure class=\"tag\">")
        .nth(1)
        .expect("tag plot");
    let top = max_label(tag_svg.split("</figure>").next().unwrap_or_default());
    assert!(
        top >= 80.0,
        "the spike was lost from the axis: top label {top}"
    );
    assert!(page.contains("(23h 59m 59s)"), "span");
}

#[test]
fn report_names_the_file_and_line_of_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = marked_stream();
    let cases: [(&str, &str); 4] = [
        ("{\"v\":1,\"type\":\"tag\",", "not a JSON event object"),
        (
            r#"{"type":"tag","t":"2027-01-15T08:00:00.000Z"}"#,
            "no `v` field",
        ),
        (
            r#"{"v":1,"type":"line","t":"2027-01-15T08:00:00.000Z","line":"l1","throughput_per_min":1}"#,
            "a `line` event without `wip`",
        ),
        (
            r#"{"v":1,"type":"tag","t":"soon","tag":"a","quality":"good"}"#,
            "`t` is \"soon\", not an RFC 3339 time",
        ),
    ];
    for (bad, why) in cases {
        let path = dir.path().join("bad.jsonl");
        let mut f = std::fs::File::create(&path).expect("create");
        for l in &good[..3] {
            writeln!(f, "{l}").expect("write");
        }
        writeln!(f, "{bad}").expect("write");
        drop(f);
        let out = dir.path().join("r.html");
        let mut cmd = twin();
        cmd.arg("report").arg(&path).arg("-o").arg(&out);
        let (code, _, err) = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(code, Some(1), "{bad}: {err}");
        assert!(
            err.contains(&format!("{}:4: {why}", path.display())),
            "{bad}: {err}"
        );
        assert!(!out.exists(), "a report was written from bad input");
    }
    // An endless line is refused at the bound, not read whole.
    let long = vec![b'x'; twin::report::MAX_LINE_BYTES + 10];
    let e = render(
        opts("long.jsonl"),
        twin::report::jsonl_lines(&long[..]),
        std::iter::empty(),
    )
    .expect_err("too long");
    assert!(
        e.to_string()
            .starts_with("long.jsonl:1: cannot read: the line is longer than"),
        "{e}"
    );
    // Nothing at all is no report either.
    let e = render(
        opts("empty.jsonl"),
        twin::report::jsonl_lines(&b"\n\n"[..]),
        std::iter::empty(),
    )
    .expect_err("empty");
    assert_eq!(e.to_string(), "empty.jsonl: no events in the input");
}

#[test]
fn report_reads_stdin_and_fails_cleanly_on_an_unwritable_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("marked.jsonl");
    std::fs::write(&events, marked_stream().join("\n")).expect("write events");
    let html = dir.path().join("r.html");
    let mut cmd = twin();
    cmd.args(["report", "-", "-o"]).arg(&html);
    let stdin = std::fs::File::open(&events).expect("open events");
    let (code, _, err) = run_bounded_with(cmd, stdin.into(), Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    let page = std::fs::read_to_string(&html).expect("report written");
    assert!(
        page.contains("<title>twin report: -</title>"),
        "stdin is named `-`"
    );
    let mut cmd = twin();
    cmd.arg("report").arg(&events).args(["-o", "/dev/full"]);
    let (code, _, err) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: cannot write the report to /dev/full"),
        "{err}"
    );
}

#[test]
fn report_takes_samples_beside_the_events() {
    // What an MCAP reader will feed: the events plus every sample. A
    // sample's spike between two ticks (no event shows it) reaches the plot.
    use twin::twin::record::{RecordValue, SampleRecord};
    use twin::twin::sample::Quality;
    let lines = marked_stream();
    let base = 1_800_000_000_000_000_000i64 + 10 * 1_000_000_000;
    let spike = SampleRecord {
        tag: "a.speed".into(),
        value: Some(RecordValue::Num(9.5)),
        quality: Quality::Good,
        reason: None,
        source_time_ns: base + 50_000_000,
        recv_time_ns: base + 60_000_000,
    };
    let page = render(
        opts("rec.mcap"),
        lines.iter().map(|l| Ok::<_, std::io::Error>(l.as_bytes())),
        [spike],
    )
    .expect("a report");
    assert!(page.contains(" · 1 samples</p>"), "samples not counted");
    let tag_svg = page
        .split("<figure class=\"tag\">")
        .nth(1)
        .expect("tag plot");
    let top = max_label(tag_svg.split("</figure>").next().unwrap_or_default());
    assert!(
        top >= 8.0,
        "the sample's spike is not on the y axis: top label {top}"
    );
}
