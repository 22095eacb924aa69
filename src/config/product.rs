//! `[lines.product]` and `[[lines.products]]`: the boxes a line carries,
//! their types (SKUs) and how they arrive.

use std::ops::Range;
use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table, positive};
use super::diagnostics::Diagnostic;
use super::limits;
use super::line::Line;

/// A line's product: a box with its mass and friction, spawned at the start
/// of the line's first conveyor, and how products arrive. A line with
/// several types (`[[lines.products]]`) has its first type here, the
/// line-level arrival keys copied in (see [`Line::product`]).
#[derive(Debug, Clone)]
pub struct Product {
    /// Along the direction of travel.
    pub length: f64,
    pub width: f64,
    pub height: f64,
    pub mass: f64,
    pub friction: f64,
    /// The nominal interval between arrivals at the infeed. The twin
    /// spawns at it when there is no `infeed_counter_tag`; the what-if
    /// lookahead and the virtual plant use it as the arrival rate. `None`:
    /// products are only placed explicitly or by the counter.
    pub spawn_interval: Option<Duration>,
    /// A counter tag (products that entered the line): each increment puts
    /// a product at the start of the first conveyor. This is how the twin
    /// follows the real arrivals, so that its expected photo-eye states line
    /// up with the measured ones.
    pub infeed_counter_tag: Option<Loc<String>>,
}

/// One product type (SKU) of a line, `[[lines.products]]`: a line runs one
/// at a time and changes over between them, as the PLC's `product_tag`
/// says.
#[derive(Debug, Clone)]
pub struct ProductType {
    pub id: Loc<String>,
    /// The recipe number a numeric `product_tag` value names; its 1-based
    /// position when not given (then located at the `id`).
    pub code: Loc<i64>,
    /// Along the direction of travel.
    pub length: f64,
    pub width: f64,
    pub height: f64,
    pub mass: f64,
    pub friction: f64,
}

impl ProductType {
    /// The single `[lines.product]` as a type: id `"product"`, code 1.
    pub fn from_product(p: &Product, span: Range<usize>) -> Self {
        ProductType {
            id: Loc::new("product".to_string(), span.clone()),
            code: Loc::new(1, span),
            length: p.length,
            width: p.width,
            height: p.height,
            mass: p.mass,
            friction: p.friction,
        }
    }

    /// `arrivals`' arrival keys with this type's body.
    pub fn to_product(&self, arrivals: &Product) -> Product {
        Product {
            length: self.length,
            width: self.width,
            height: self.height,
            mass: self.mass,
            friction: self.friction,
            ..arrivals.clone()
        }
    }
}

impl Line {
    /// Every product type of the line, in config order: `products`, or the
    /// lone `product` of a line built without them; empty without a
    /// product.
    pub fn product_types(&self) -> Vec<ProductType> {
        if self.products.is_empty() {
            self.product
                .iter()
                .map(|p| ProductType::from_product(p, self.id.span.clone()))
                .collect()
        } else {
            self.products.clone()
        }
    }

    /// The largest length, width and height over the types (each its own
    /// maximum), for what must fit every product.
    pub fn product_envelope(&self) -> Option<(f64, f64, f64)> {
        self.product_types().iter().fold(None, |acc, t| {
            let (l, w, h) = acc.unwrap_or((0.0, 0.0, 0.0));
            Some((l.max(t.length), w.max(t.width), h.max(t.height)))
        })
    }
}

/// The line-level keys of a line's products: `spawn_interval`,
/// `infeed_counter_tag` and `product_tag` belong to the line with
/// `[[lines.products]]`, and are refused on it otherwise. Returns the
/// normalised `(product, products, product_tag, products_listed)` (see
/// [`Line::product`]).
pub(super) fn decode_arrivals(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    single: Option<Product>,
    single_span: Option<Range<usize>>,
    listed: Vec<ProductType>,
    has_list: bool,
) -> (Option<Product>, Vec<ProductType>, Option<Loc<String>>, bool) {
    let spawn_interval = t.opt_duration(sink, "spawn_interval", MS, HOUR);
    let infeed_counter_tag = t.opt_str(sink, "infeed_counter_tag");
    let product_tag = t.opt_str(sink, "product_tag");
    if !has_list {
        // A single `[lines.product]` (or none): the arrival keys are its own.
        let on_line = [
            (
                "spawn_interval",
                spawn_interval.as_ref().map(|d| d.span.clone()),
            ),
            (
                "infeed_counter_tag",
                infeed_counter_tag.as_ref().map(|d| d.span.clone()),
            ),
        ];
        for (key, span) in on_line {
            let Some(span) = span else { continue };
            sink.push(
                Diagnostic::error(
                    span,
                    t.key_path(key),
                    format!("`{key}` on the line is for a line with `[[lines.products]]`"),
                )
                .expected(format!("`{key}` in `[lines.product]`"))
                .help(format!(
                    "move `{key}` into `[lines.product]`, or list the types as `[[lines.products]]`"
                )),
            );
        }
        if let Some(tag) = &product_tag {
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("product_tag"),
                    "`product_tag` chooses between product types, and this line has one product"
                        .to_string(),
                )
                .expected("`product_tag` only with `[[lines.products]]`")
                .help("list the line's types as `[[lines.products]]`, or remove `product_tag`"),
            );
        }
        let products = single
            .iter()
            .map(|p| ProductType::from_product(p, single_span.clone().unwrap_or_default()))
            .collect();
        return (single, products, None, false);
    }
    if let Some(span) = single_span {
        sink.push(
            Diagnostic::error(
                span,
                t.key_path("product"),
                "a line has either `[lines.product]` or `[[lines.products]]`, not both"
                    .to_string(),
            )
            .expected("one product table: `[lines.product]` for one type, `[[lines.products]]` for several")
            .help("make this product a `[[lines.products]]` entry with an `id`, or remove the list"),
        );
    }
    let arrivals = Product {
        length: 0.0,
        width: 0.0,
        height: 0.0,
        mass: 0.0,
        friction: 0.0,
        spawn_interval: spawn_interval.map(|d| d.value),
        infeed_counter_tag,
    };
    let first = listed.first().map(|p| p.to_product(&arrivals));
    (first, listed, product_tag, true)
}

/// One `[[lines.products]]` entry, the `k`-th (0-based).
pub(super) fn decode_product_type(
    sink: &mut Sink,
    mut t: Table<'_, '_>,
    k: usize,
) -> Option<ProductType> {
    let id = t.req_str(sink, "id");
    let code = t.opt_int(sink, "code", 0, i64::from(u32::MAX));
    let body = decode_body(sink, &mut t);
    t.finish(sink);
    let id = id?;
    let code = code.unwrap_or_else(|| Loc::new(k as i64 + 1, id.span.clone()));
    let (length, width, height, mass, friction) = body?;
    Some(ProductType {
        id,
        code,
        length,
        width,
        height,
        mass,
        friction,
    })
}

/// A product's box, mass and friction: `(length, width, height, mass,
/// friction)`.
fn decode_body(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<(f64, f64, f64, f64, f64)> {
    let dim = |sink: &mut Sink, t: &mut Table<'_, '_>, key: &'static str, unit: &str| {
        let v = t.req_f64(sink, key);
        positive(sink, t, key, v, unit)
    };
    // A box the physics can hold (`limits`): smaller ones sink into the belt.
    let size = |sink: &mut Sink, t: &mut Table<'_, '_>, key: &'static str| {
        let v = dim(sink, t, key, "metres")?;
        if v.value < limits::MIN_SIZE {
            let what = format!("a product's {key}");
            sink.push(limits::too_small(v.span, t.key_path(key), &what, v.value));
            return None;
        }
        Some(v.value)
    };
    let length = size(sink, t, "length");
    let width = size(sink, t, "width");
    let height = size(sink, t, "height");
    let mass = dim(sink, t, "mass", "kilograms").map(|v| v.value);
    let friction = match t.opt_f64(sink, "friction") {
        None => Some(0.6),
        Some(f) if f.value >= 0.0 => Some(f.value),
        Some(f) => {
            sink.push(
                Diagnostic::error(
                    f.span.clone(),
                    t.key_path("friction"),
                    format!("friction must not be negative, found {}", f.value),
                )
                .expected("a friction coefficient >= 0, typically 0.2 to 1.0"),
            );
            None
        }
    };
    Some((length?, width?, height?, mass?, friction?))
}

pub(super) fn decode_product(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Product> {
    let body = decode_body(sink, &mut t);
    let spawn_interval = t
        .opt_duration(sink, "spawn_interval", MS, HOUR)
        .map(|d| d.value);
    let infeed_counter_tag = t.opt_str(sink, "infeed_counter_tag");
    t.finish(sink);
    let (length, width, height, mass, friction) = body?;
    Some(Product {
        length,
        width,
        height,
        mass,
        friction,
        spawn_interval,
        infeed_counter_tag,
    })
}
