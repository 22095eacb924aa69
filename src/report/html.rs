//! The page around the plots: one HTML file with its CSS and SVG inline,
//! nothing fetched, written as well-formed XML (every element closed) so a
//! plain XML parser can check it and any browser shows it.

use std::fmt::Write;
use std::time::Duration;

use super::collect::{Collector, LineTrack, MAX_ROWS, TagTrack};
use super::series::Level;
use crate::twin::events::rfc3339;

/// Rows of the per-tag table.
const MAX_TAG_ROWS: usize = 300;

const STYLE: &str = "
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta, .note, figcaption { color: #555; font-size: 0.9em; }
figure { margin: 0.8em 0; }
figcaption { margin-bottom: 0.2em; }
figcaption b { color: #222; font-size: 1.1em; }
svg { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.key span { display: inline-block; padding: 0 0.5em; margin-right: 0.4em; }
.q-uncertain { background: rgba(240, 170, 0, 0.3); }
.q-stale { background: rgba(140, 140, 140, 0.35); }
.q-bad { background: rgba(215, 48, 39, 0.25); }
.k-jam { background: rgba(215, 48, 39, 0.25); }
.k-stuck { background: rgba(240, 120, 20, 0.25); }
.k-gap { background: rgba(120, 90, 170, 0.3); }
.k-res { color: rgb(215, 48, 39); }
.k-eye { color: rgb(240, 120, 20); }
";

/// Escape text for element content and attribute values: the one XML
/// escaping the JUnit writer uses too (the page is also well-formed XML).
pub fn esc(s: &str) -> String {
    crate::qa::junit::attr(s)
}

fn time(t: Option<i64>) -> String {
    t.map_or_else(|| "–".to_string(), rfc3339)
}

/// What the page shows, prepared by the caller.
pub struct Page<'a> {
    pub title: &'a str,
    pub source: &'a str,
    pub c: &'a Collector,
    pub lines: Vec<(&'a LineTrack, String)>,
    pub tags: Vec<(&'a TagTrack, String)>,
    /// How the tags were chosen.
    pub tags_note: String,
}

pub fn page(p: &Page<'_>) -> String {
    let c = p.c;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"generator\" content=\"twin report {}\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        esc(p.title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(p.title));
    let span = match (c.first, c.last) {
        (Some(a), Some(b)) => {
            let d =
                Duration::from_millis(u64::try_from(b.saturating_sub(a) / 1_000_000).unwrap_or(0));
            format!(
                "from {} to {} ({})",
                rfc3339(a),
                rfc3339(b),
                humantime::format_duration(d)
            )
        }
        _ => "no times".to_string(),
    };
    let _ = writeln!(
        h,
        "<p class=\"meta\" id=\"summary\">{} · {} · {} events{}</p>",
        esc(p.source),
        esc(&span),
        c.events,
        if c.samples > 0 {
            format!(" · {} samples", c.samples)
        } else {
            String::new()
        }
    );

    h.push_str("<section id=\"lines\">\n<h2>Lines</h2>\n");
    if p.lines.is_empty() {
        h.push_str("<p class=\"note\">No <code>line</code> events: no line with conveyor geometry was modelled.</p>\n");
    }
    if !p.lines.is_empty() {
        h.push_str(
            "<p class=\"note key\">Throughput over the last minute (blue) above WIP (green). \
             Shading: <span class=\"k-jam\">jam</span><span class=\"k-stuck\">eye stuck</span>\
             <span class=\"q-stale\">line uncertain</span><span class=\"k-gap\">gap in the stream</span>; \
             <span class=\"k-res\">\u{25cf}</span> residuals (larger: more), \
             <span class=\"k-eye\">\u{2715}</span> eye verdicts.</p>\n",
        );
    }
    for (l, svg) in &p.lines {
        let jams = l.jams.len();
        let _ = writeln!(
            h,
            "<figure class=\"line\">\n<figcaption><b>Line {}</b> · {} residuals, {} jams, {} stuck-eye verdicts{}</figcaption>\n{}</figure>",
            esc(&l.id),
            l.residual_total,
            jams,
            l.stuck.len(),
            if l.spans_dropped > 0 {
                format!(" ({} more jams or verdicts not shaded)", l.spans_dropped)
            } else {
                String::new()
            },
            svg
        );
    }
    h.push_str("</section>\n");

    h.push_str("<section id=\"tags\">\n<h2>Key tags</h2>\n");
    let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(&p.tags_note));
    h.push_str(
        "<p class=\"note key\">Shading: <span class=\"q-uncertain\">uncertain</span><span class=\"q-stale\">stale</span><span class=\"q-bad\">bad</span>; a tick at the top marks a change of quality.</p>\n",
    );
    if p.tags.is_empty() {
        h.push_str("<p class=\"note\">No tag with numbers or booleans to plot.</p>\n");
    }
    for (t, svg) in &p.tags {
        let unit = t
            .unit
            .as_deref()
            .map(|u| format!(" ({})", esc(u)))
            .unwrap_or_default();
        let machine = t
            .machine
            .as_deref()
            .map(|m| format!(" · machine {}", esc(m)))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<figure class=\"tag\">\n<figcaption><b>{}</b>{unit}{machine} · {} events, {} below good · last {}</figcaption>\n{}</figure>",
            esc(&t.name),
            t.events,
            t.not_good,
            quality(t.last, t.last_reason.as_deref()),
            svg
        );
    }
    h.push_str("</section>\n");

    events_section(&mut h, c);
    h.push_str("</body>\n</html>\n");
    h
}

fn quality(l: Level, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{} ({})", l.name(), esc(r)),
        None => l.name().to_string(),
    }
}

fn events_section(h: &mut String, c: &Collector) {
    h.push_str("<section id=\"events\">\n<h2>Events</h2>\n");
    h.push_str("<table id=\"event-counts\">\n<tr><th>type</th><th>events</th></tr>\n");
    for (k, n) in &c.counts {
        let _ = writeln!(h, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(k));
    }
    let _ = writeln!(
        h,
        "<tr><th>all</th><th class=\"n\">{}</th></tr>\n</table>",
        c.events
    );

    h.push_str("<h3>Residuals, jams, eye verdicts and gaps</h3>\n");
    if c.rows.is_empty() {
        h.push_str("<p class=\"note\" id=\"event-list-empty\">None: the physics and the plant agreed throughout.</p>\n");
    } else {
        h.push_str("<table id=\"event-list\">\n<tr><th>t</th><th>type</th><th>line</th><th>what</th></tr>\n");
        for r in &c.rows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(r.t),
                r.kind,
                esc(&r.line),
                esc(&r.what)
            );
        }
        h.push_str("</table>\n");
        if c.rows_more > 0 {
            let _ = writeln!(
                h,
                "<p class=\"note more\">{} more not listed (the table shows the first {MAX_ROWS}).</p>",
                c.rows_more
            );
        }
    }

    h.push_str("<h3>Tags</h3>\n<table id=\"tag-table\">\n<tr><th>tag</th><th>machine</th><th>events</th><th>below good</th><th>last quality</th></tr>\n");
    for t in c.tags.iter().take(MAX_TAG_ROWS) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&t.name),
            esc(t.machine.as_deref().unwrap_or("")),
            t.events,
            t.not_good,
            quality(t.last, t.last_reason.as_deref())
        );
    }
    h.push_str("</table>\n");
    let more = c.tags.len().saturating_sub(MAX_TAG_ROWS) as u64 + c.untracked_tags;
    if more > 0 {
        let _ = writeln!(h, "<p class=\"note more\">{more} more tags not listed.</p>");
    }
    h.push_str("</section>\n");
}
