use super::*;
use crate::config::load_str;
use std::path::Path;

/// A plant with one line made of `geometry` (conveyors, product,
/// stations, eyes), belts driven by tags `s0`..`s3` and eyes on `e0`..`e3`.
fn check(geometry: &str) -> Vec<(Severity, String, String)> {
    let text = format!(
        r#"
[plant]
name = "p"
[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
poll_interval = "20ms"
registers = [
  {{ tag = "s0", table = "input", address = 0 }},
  {{ tag = "s1", table = "input", address = 1 }},
  {{ tag = "s2", table = "input", address = 2 }},
  {{ tag = "s3", table = "input", address = 3 }},
  {{ tag = "e0", table = "discrete", address = 0 }},
  {{ tag = "e1", table = "discrete", address = 1 }},
]
[[sources.modbus]]
name = "slow"
address = "127.0.0.1:503"
poll_interval = "1s"
registers = [{{ tag = "e3", table = "discrete", address = 0 }}]
[[machines]]
id = "m"
kind = "generic"
tags = {{ s0 = "s0", s1 = "s1", s2 = "s2", s3 = "s3", e0 = "e0", e1 = "e1", e3 = "e3" }}
[[lines]]
id = "l"
{geometry}
"#
    );
    let diags = match load_str(Path::new("g.toml"), &text) {
        Ok(cfg) => cfg.warnings,
        Err(r) => r.diagnostics,
    };
    diags
        .into_iter()
        .map(|d| (d.severity, d.path, d.message))
        .collect()
}

fn conveyor(id: &str, origin: [f64; 2], segments: &str) -> String {
    format!(
        "[[lines.conveyors]]\nid = \"{id}\"\nspeed_tag = \"s0\"\nwidth = 0.3\norigin = [{}, {}]\nsegments = [{segments}]\n",
        origin[0], origin[1]
    )
}

const BOTTLE: &str = "[lines.product]\nlength = 0.07\nwidth = 0.07\nheight = 0.22\nmass = 0.55\n";

fn paths(d: &[(Severity, String, String)]) -> Vec<(Severity, &str)> {
    d.iter().map(|(s, p, _)| (*s, p.as_str())).collect()
}

#[test]
fn the_demo_layout_is_clean() {
    let g = format!(
        "{}{}{BOTTLE}",
        conveyor("a", [0.0, 0.0], "{ length = 4.0 }"),
        conveyor(
            "b",
            [4.0, 0.0],
            "{ length = 3.0 }, { length = 2.0, heading = 90 }"
        )
    );
    assert_eq!(check(&g), vec![]);
}

#[test]
fn a_right_angle_hand_over_and_a_butted_overlap_are_fine() {
    // b starts where a ends and heads north; c overlaps b's end by 4 cm.
    let g = format!(
        "{}{}{}",
        conveyor("a", [0.0, 0.0], "{ length = 2.0 }"),
        conveyor("b", [2.0, 0.0], "{ length = 2.0, heading = 90 }"),
        conveyor("c", [2.0, 1.96], "{ length = 2.0, heading = 90 }"),
    );
    assert_eq!(check(&g), vec![]);
}

#[test]
fn side_by_side_transfer_is_connected_and_not_an_overlap() {
    // b runs beside a's last metre, edges touching.
    let g = format!(
        "{}{}",
        conveyor("a", [0.0, 0.0], "{ length = 3.0 }"),
        conveyor("b", [2.0, 0.3], "{ length = 3.0 }"),
    );
    assert_eq!(check(&g), vec![]);
}

#[test]
fn crossing_belts_overlap_unless_one_passes_over() {
    let g = format!(
        "{}{}",
        conveyor("a", [0.0, 0.0], "{ length = 4.0 }"),
        conveyor("b", [2.0, -2.0], "{ length = 4.0, heading = 90 }"),
    );
    let d = check(&g);
    assert!(
        d.iter().any(|(s, p, m)| *s == Severity::Error
            && p == "lines[0].conveyors[1].segments[0]"
            && m.contains("overlaps conveyor \"a\"")),
        "{d:?}"
    );
    let high = g.replace(
        "width = 0.3\norigin = [2",
        "width = 0.3\nheight = 2.5\norigin = [2",
    );
    let d = check(&high);
    assert!(!d.iter().any(|(_, _, m)| m.contains("overlaps")), "{d:?}");
}

#[test]
fn a_gap_warns_and_names_the_nearest_end() {
    let g = format!(
        "{}{}",
        conveyor("a", [0.0, 0.0], "{ length = 4.0 }"),
        conveyor("b", [4.2, 0.0], "{ length = 2.0 }"),
    );
    let d = check(&g);
    assert_eq!(
        paths(&d),
        vec![
            (Severity::Warning, "lines[0].conveyors[0].segments[0]"),
            (Severity::Warning, "lines[0].conveyors[1].origin"),
        ],
        "{d:?}"
    );
    assert!(d[1].2.contains("\"a\"'s at (4, 0), 0.2 m away"), "{d:?}");
}

#[test]
fn turns_sharper_than_a_right_angle_and_folding_back_are_errors() {
    let g = conveyor(
        "a",
        [0.0, 0.0],
        "{ length = 2.0 }, { length = 1.0, heading = 90 }, { length = 2.0, heading = 180 }, { length = 1.0, heading = 270 }",
    );
    // Three right angles: fine in themselves, but the last segment runs
    // back over the first.
    let d = check(&g);
    assert_eq!(
        paths(&d),
        vec![(Severity::Error, "lines[0].conveyors[0].segments[3]")],
        "{d:?}"
    );
    let g = conveyor(
        "a",
        [0.0, 0.0],
        "{ length = 2.0 }, { length = 1.0, heading = 135 }",
    );
    let d = check(&g);
    assert_eq!(
        paths(&d),
        vec![(Severity::Error, "lines[0].conveyors[0].segments[1].heading")]
    );
    assert!(d[0].2.contains("turns 135°"), "{d:?}");
}

#[test]
fn units_and_product_sanity() {
    let g = format!(
        "{}[lines.product]\nlength = 70\nwidth = 0.5\nheight = 0.22\nmass = 0.55\n",
        conveyor(
            "a",
            [0.0, 0.0],
            "{ length = 4.0 }, { length = 4.0, heading = 45 }"
        )
        .replace("width = 0.3", "width = 300")
    );
    let d = check(&g);
    let msgs: Vec<&str> = d.iter().map(|(_, _, m)| m.as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("300 m wide")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("kg/m³")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("bridge the corner")),
        "{msgs:?}"
    );
    assert!(d.iter().all(|(s, ..)| *s == Severity::Warning), "{d:?}");

    let g = format!("{}{BOTTLE}", conveyor("a", [0.0, 0.0], "{ length = 4.0 }"))
        .replace("width = 0.3", "width = 0.05");
    let d = check(&g);
    assert_eq!(
        paths(&d),
        vec![(Severity::Error, "lines[0].conveyors[0].width")]
    );

    let d = check(BOTTLE);
    assert_eq!(paths(&d), vec![(Severity::Error, "lines[0].product")]);

    // TOML allows them; no plan can hold them.
    let d = check(&conveyor(
        "a",
        [0.0, 0.0],
        "{ length = inf, heading = nan }",
    ));
    assert_eq!(
        paths(&d),
        vec![
            (Severity::Error, "lines[0].conveyors[0].segments[0].length"),
            (Severity::Error, "lines[0].conveyors[0].segments[0].heading"),
        ],
        "{d:?}"
    );
}

#[test]
fn stations_and_eyes_in_awkward_places() {
    let g = format!(
        "{}{}{BOTTLE}
[[lines.stations]]
id = \"s1\"
conveyor = \"a\"
position = 1.0
cycle_time = \"1s\"
[[lines.stations]]
id = \"s2\"
conveyor = \"a\"
position = 1.05
cycle_time = \"1s\"
[[lines.stations]]
id = \"s3\"
conveyor = \"b\"
position = 0.02
cycle_time = \"1s\"
[[lines.photo_eyes]]
id = \"e0\"
conveyor = \"a\"
position = 1.0
tag = \"e0\"
[[lines.photo_eyes]]
id = \"e1\"
conveyor = \"a\"
position = 3.99
tag = \"e1\"
",
        conveyor("a", [0.0, 0.0], "{ length = 4.0 }"),
        conveyor("b", [4.0, 0.0], "{ length = 4.0 }"),
    );
    let d = check(&g);
    assert_eq!(
        paths(&d),
        vec![
            (Severity::Error, "lines[0].stations[1].position"),
            (Severity::Warning, "lines[0].stations[2].position"),
            (Severity::Warning, "lines[0].photo_eyes[0].position"),
            (Severity::Warning, "lines[0].photo_eyes[1].position"),
        ],
        "{d:?}"
    );
}

#[test]
fn a_slowly_polled_eye_warns_with_the_speed_it_is_good_for() {
    let g = format!(
        "{}{BOTTLE}
[[lines.photo_eyes]]
id = \"fast\"
conveyor = \"a\"
position = 1.0
tag = \"e0\"
[[lines.photo_eyes]]
id = \"slow\"
conveyor = \"a\"
position = 2.0
tag = \"e3\"
",
        conveyor("a", [0.0, 0.0], "{ length = 4.0 }"),
    );
    let d = check(&g);
    assert_eq!(
        paths(&d),
        vec![(Severity::Warning, "lines[0].photo_eyes[1].tag")],
        "{d:?}"
    );
    assert!(d[0].2.contains("only up to 0.035 m/s"), "{d:?}");
}

#[test]
fn geometry_helpers() {
    assert_eq!(turn(350.0, 10.0), 20.0);
    assert_eq!(turn(0.0, 270.0), -90.0);
    assert_eq!(num(4.0), "4");
    assert_eq!(num(0.0700001), "0.07");
    assert_eq!(num(-0.0001), "0");
    let a = rect([0.0, 0.0], [2.0, 0.0], [1.0, 0.0], 0.5);
    let b = rect([1.0, 0.0], [3.0, 0.0], [1.0, 0.0], 0.5);
    let poly = clip(&a, &b);
    assert!((area(&poly) - 1.0).abs() < 1e-9);
    assert!((min_width(&poly) - 1.0).abs() < 1e-9);
    assert_eq!(seg_poly_dist([3.0, -1.0], [3.0, 1.0], &a), 1.0);
    // Collinear with an edge but apart from it: not touching.
    let up = rect([3.0, -1.5], [3.0, 1.5], [0.0, 1.0], 0.2);
    let d = seg_poly_dist([1.8, -1.5], [2.2, -1.5], &up);
    assert!((d - 0.6).abs() < 1e-9, "{d}");
}
