//! Plane geometry for the layout checks (`geometry`): points as `[x, y]`
//! metres, belt outlines as convex counter-clockwise polygons, and the
//! clipping and distances the overlap and hand-over checks are made of.

pub(super) type P = [f64; 2];

pub(super) fn sub(a: P, b: P) -> P {
    [a[0] - b[0], a[1] - b[1]]
}
pub(super) fn add(a: P, b: P) -> P {
    [a[0] + b[0], a[1] + b[1]]
}
pub(super) fn scale(a: P, k: f64) -> P {
    [a[0] * k, a[1] * k]
}
pub(super) fn dot(a: P, b: P) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}
pub(super) fn cross(a: P, b: P) -> f64 {
    a[0] * b[1] - a[1] * b[0]
}
pub(super) fn dist(a: P, b: P) -> f64 {
    let d = sub(a, b);
    dot(d, d).sqrt()
}

/// A belt segment's outline from `a` to `b`, counter-clockwise.
pub(super) fn rect(a: P, b: P, dir: P, hw: f64) -> [P; 4] {
    let n = scale([-dir[1], dir[0]], hw);
    [sub(a, n), sub(b, n), add(b, n), add(a, n)]
}

/// `subject` clipped by the convex, counter-clockwise `clip`
/// (Sutherland–Hodgman).
pub(super) fn clip(subject: &[P], clip: &[P]) -> Vec<P> {
    let mut out: Vec<P> = subject.to_vec();
    for k in 0..clip.len() {
        if out.is_empty() {
            break;
        }
        let (a, b) = (clip[k], clip[(k + 1) % clip.len()]);
        let e = sub(b, a);
        let inside = |p: P| cross(e, sub(p, a)) >= -1e-12;
        let input = std::mem::take(&mut out);
        for m in 0..input.len() {
            let (p, q) = (input[m], input[(m + 1) % input.len()]);
            let (pi, qi) = (inside(p), inside(q));
            if pi {
                out.push(p);
            }
            if pi != qi {
                let (dp, dq) = (cross(e, sub(p, a)), cross(e, sub(q, a)));
                let t = dp / (dp - dq);
                out.push(add(p, scale(sub(q, p), t)));
            }
        }
    }
    out
}

pub(super) fn area(poly: &[P]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|k| cross(poly[k], poly[(k + 1) % n]))
        .sum::<f64>()
        .abs()
        / 2.0
}

/// The smallest width of a convex polygon (its thinnest direction).
pub(super) fn min_width(poly: &[P]) -> f64 {
    let n = poly.len();
    let mut best = f64::INFINITY;
    for k in 0..n {
        let (a, b) = (poly[k], poly[(k + 1) % n]);
        let len = dist(a, b);
        if len < 1e-9 {
            continue;
        }
        let e = sub(b, a);
        let w = poly
            .iter()
            .map(|v| cross(e, sub(*v, a)).abs() / len)
            .fold(0.0, f64::max);
        best = best.min(w);
    }
    if best.is_finite() { best } else { 0.0 }
}

pub(super) fn point_seg_dist(p: P, a: P, b: P) -> f64 {
    let e = sub(b, a);
    let len2 = dot(e, e);
    let t = if len2 > 0.0 {
        (dot(sub(p, a), e) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    dist(p, add(a, scale(e, t)))
}

pub(super) fn segs_cross(a: P, b: P, c: P, d: P) -> bool {
    let d1 = cross(sub(b, a), sub(c, a));
    let d2 = cross(sub(b, a), sub(d, a));
    let d3 = cross(sub(d, c), sub(a, c));
    let d4 = cross(sub(d, c), sub(b, c));
    if d1 * d2 < 0.0 && d3 * d4 < 0.0 {
        return true;
    }
    // Touching or collinear: an end of one lies on the other.
    let on = |p: P, q: P, r: P| point_seg_dist(r, p, q) < 1e-12;
    on(a, b, c) || on(a, b, d) || on(c, d, a) || on(c, d, b)
}

pub(super) fn inside_convex(p: P, poly: &[P]) -> bool {
    let n = poly.len();
    (0..n).all(|k| cross(sub(poly[(k + 1) % n], poly[k]), sub(p, poly[k])) >= 0.0)
}

/// Distance from the segment `p`–`q` to a convex polygon (0 if they touch).
pub(super) fn seg_poly_dist(p: P, q: P, poly: &[P]) -> f64 {
    if inside_convex(p, poly) || inside_convex(q, poly) {
        return 0.0;
    }
    let n = poly.len();
    let mut best = f64::INFINITY;
    for k in 0..n {
        let (a, b) = (poly[k], poly[(k + 1) % n]);
        if segs_cross(p, q, a, b) {
            return 0.0;
        }
        best = best
            .min(point_seg_dist(p, a, b))
            .min(point_seg_dist(q, a, b))
            .min(point_seg_dist(a, p, q));
    }
    best
}
