//! Building a [`LineModel`] from a checked line: the product types, the
//! belts laid into the world, then the things standing on them (stations,
//! photo-eyes, pushers, diverters) and where products leave.
//!
//! Colliders are inserted in one fixed order (belts, then each station's
//! sensor and gate, eyes, pushers), because their handles order the narrow
//! phase's pairs: the same line must give the same handles for a replay to
//! be bit-identical.

use std::time::Duration;

use rapier3d::prelude::PhysicsWorld;

use super::LineModel;
use super::belts::{self, LaidBelts};
use super::convert::Frame;
use super::diverter::DiverterModel;
use super::drive::{self, BeltDrive};
use super::eye::PhotoEyeModel;
use super::place::BeltPlace;
use super::pusher::PusherModel;
use super::station::StationModel;
use crate::config::layout::{self, Layout};
use crate::config::{Line, Product};

impl LineModel {
    /// Builds the model of `line`, to be stepped by `dt` at a time.
    pub fn new(line: &Line, dt: Duration) -> Self {
        let types = product_types(line);
        let envelope = envelope(&types);
        // Curves are laid out as straight chords (`Layout`): from here on
        // every belt is a chain of straight pieces.
        let belts: Vec<Layout> = line.conveyors.iter().map(Layout::of).collect();
        let frame = Frame::new(layout::frame_origin(line));
        let mut world = PhysicsWorld::new();
        world.integration_parameters.dt = dt.as_secs_f32();
        let LaidBelts {
            mut hooks,
            conveyors,
            colliders: belt_colliders,
            segment_places,
        } = belts::lay(&mut world, &frame, &line.conveyors, &belts);
        let place = |conveyor: &str, position: f64| {
            let k = line.conveyors.iter().position(|c| c.id.value == conveyor)?;
            Some(BeltPlace::new(&frame, &belts[k], position))
        };
        // Validation refuses stations and eyes on unknown conveyors; a
        // model built from an unchecked line skips them.
        let stations = line
            .stations
            .iter()
            .filter_map(|s| {
                let at = place(&s.conveyor.value, s.position.value)?;
                Some(StationModel::build(&mut world, s, at, envelope.as_ref()))
            })
            .collect();
        let photo_eyes = line
            .photo_eyes
            .iter()
            .filter_map(|e| {
                let at = place(&e.conveyor.value, e.position.value)?;
                Some(PhotoEyeModel::build(&mut world, e, at))
            })
            .collect();
        let pushers = line
            .pushers
            .iter()
            .filter_map(|p| {
                let at = place(&p.conveyor.value, p.position.value)?;
                Some(PusherModel::build(&mut world, p, at, envelope.as_ref()))
            })
            .collect();
        let diverters =
            DiverterModel::build_all(&mut hooks, line, &frame, &belts, envelope.as_ref());
        let (main_out, branch_outs) = outfeeds(line, &diverters);
        let outfeed_segments = drive::outfeed_segments(main_out, &branch_outs, &segment_places);
        LineModel {
            world,
            hooks,
            conveyors,
            types,
            active: 0,
            envelope,
            products: Vec::new(),
            belt_colliders,
            dt,
            steps: 0,
            time_ns: 0,
            spawn_every: spawn_every(line, dt),
            stations,
            photo_eyes,
            pushers,
            pushed_off: Vec::new(),
            diverters,
            diverted_by: Vec::new(),
            main_out,
            branch_outs,
            drive: vec![(0.0, 0.0); belts.len()],
            geometry: belts,
            frame,
            segment_places,
            belt_drive: BeltDrive::Contacts,
            outfeed_segments,
        }
    }

    /// [`LineModel::new`] on the belt drive `drive`.
    pub fn with_drive(line: &Line, dt: Duration, drive: BeltDrive) -> Self {
        let mut m = Self::new(line, dt);
        m.set_belt_drive(drive);
        m
    }
}

/// Every product type, in config order, each with the line's arrival keys
/// (see [`Line::product`]); empty without a product.
fn product_types(line: &Line) -> Vec<Product> {
    match &line.product {
        Some(arrivals) => line
            .product_types()
            .iter()
            .map(|t| t.to_product(arrivals))
            .collect(),
        None => Vec::new(),
    }
}

/// The largest length, width and height over the types (see
/// `LineModel::envelope`).
fn envelope(types: &[Product]) -> Option<Product> {
    types.first().map(|first| {
        let mut e = first.clone();
        for t in types {
            e.length = e.length.max(t.length);
            e.width = e.width.max(t.width);
            e.height = e.height.max(t.height);
        }
        e
    })
}

/// The line's main outfeed (the last conveyor that is no diverter's branch)
/// and the branches' ends, sorted, without repeats.
fn outfeeds(line: &Line, diverters: &[DiverterModel]) -> (usize, Vec<usize>) {
    let mut branch_outs: Vec<usize> = diverters.iter().map(|d| d.branch).collect();
    branch_outs.sort_unstable();
    branch_outs.dedup();
    let main_out = (0..line.conveyors.len())
        .rev()
        .find(|c| !branch_outs.contains(c))
        .unwrap_or(line.conveyors.len().saturating_sub(1));
    (main_out, branch_outs)
}

/// Steps between the model's own spawns, from the product's
/// `spawn_interval` (at least one step).
fn spawn_every(line: &Line, dt: Duration) -> Option<u64> {
    let dt_nanos = dt.as_nanos().max(1);
    line.product
        .as_ref()
        .and_then(|p| p.spawn_interval)
        .map(|i| u64::try_from((i.as_nanos() / dt_nanos).max(1)).unwrap_or(u64::MAX))
}
