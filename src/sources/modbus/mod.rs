//! Modbus TCP source: polls each device's register map over a shared
//! [`link::Link`] per endpoint.
//!
//! A device's refusal (an exception response) and a transport failure are
//! kept apart all the way to the tag's quality, as tokio-modbus does with its
//! nested `Result`: a refusal marks only the tags of that read bad, with the
//! exception's name as the reason, and keeps the connection; a transport
//! failure marks them bad with the transport reason, and the link reconnects.

pub mod codec;
pub mod frame;
pub mod link;
pub mod plan;
pub mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Source, SourceContext, SourceTask};
use crate::config::{LoadedConfig, ModbusDevice, ModbusFraming, Register, RegisterTable, TagId};
use crate::twin::{Reason, Sample, Value};
use crate::wallclock;
use codec::Raw;
use frame::{ReadData, ReadFn, ReadRequest};
use link::{Framing, Link, LinkConfig, LinkError};
use plan::{PollGroup, ReadBlock};

/// Start one link per distinct (address, framing); devices behind the same
/// gateway share it. Returns the link for each device, by device index.
pub fn links(cfg: &LoadedConfig, addresses: &[String], shutdown: &CancellationToken) -> Vec<Link> {
    let devices = &cfg.config.modbus;
    let mut by_endpoint: Vec<((String, ModbusFraming), Vec<usize>)> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let key = (addresses[i].clone(), d.framing);
        match by_endpoint.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => by_endpoint.push((key, vec![i])),
        }
    }
    let mut out: Vec<Option<Link>> = vec![None; devices.len()];
    for ((address, framing), members) in by_endpoint {
        let name = members
            .iter()
            .map(|&i| devices[i].name.value.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let link = Link::spawn(
            LinkConfig {
                name,
                address,
                framing: match framing {
                    ModbusFraming::Tcp => Framing::Tcp,
                    ModbusFraming::RtuOverTcp => Framing::RtuOverTcp,
                },
                timeout: members
                    .iter()
                    .map(|&i| devices[i].timeout)
                    .max()
                    .unwrap_or_default(),
                max_in_flight: members
                    .iter()
                    .map(|&i| usize::from(devices[i].max_in_flight))
                    .max()
                    .unwrap_or(1),
            },
            shutdown.clone(),
        );
        for i in members {
            out[i] = Some(link.clone());
        }
    }
    out.into_iter().flatten().collect()
}

/// Samples for one block's reply: each register of the block decoded,
/// checked against its sentinels, scaled, and stamped with `t`.
/// `registers` and `tags` are a device's register map and the tag of each.
pub fn decode_block<'a>(
    registers: &'a [Register],
    tags: &'a [TagId],
    b: &'a ReadBlock,
    data: &'a ReadData,
    t: i64,
) -> impl Iterator<Item = Sample> + 'a {
    b.items.iter().map(move |&(ri, off)| {
        let reg = &registers[ri];
        let tag = tags[ri];
        let off = usize::from(off);
        let raw = match data {
            ReadData::Bits(bits) => bits.get(off).map(|b| Raw::Bool(*b)),
            ReadData::Words(words) => words
                .get(off..off + usize::from(reg.width()))
                .and_then(|w| codec::decode_register(reg, w)),
        };
        match raw {
            Some(Raw::Bool(b)) => Sample::good(tag, Value::Bool(b), t, t),
            Some(Raw::Text(s)) => Sample::good(tag, Value::Text(Arc::from(s)), t, t),
            Some(Raw::Num(n)) if reg.invalid.contains(&n) => {
                Sample::bad(tag, Reason::InvalidValue, t)
            }
            Some(Raw::Num(n)) => Sample::good(
                tag,
                Value::Num(crate::sources::apply_scale(n, reg.scale, reg.offset)),
                t,
                t,
            ),
            None => Sample::bad(tag, Reason::ShortResponse, t),
        }
    })
}

pub struct ModbusPoller {
    device: ModbusDevice,
    address: String,
    /// Tag of each register, by register index.
    tags: Vec<TagId>,
    groups: Vec<PollGroup>,
    link: Link,
}

impl ModbusPoller {
    pub fn new(cfg: &LoadedConfig, device: usize, address: String, link: Link) -> Self {
        let dev = cfg.config.modbus[device].clone();
        let tags = dev
            .registers
            .iter()
            .map(|r| cfg.tags.id(&r.tag.value).unwrap_or(TagId(u32::MAX)))
            .collect();
        let groups = plan::plan(&dev);
        ModbusPoller {
            device: dev,
            address,
            tags,
            groups,
            link,
        }
    }
}

fn read_fn(table: RegisterTable) -> ReadFn {
    match table {
        RegisterTable::Coil => ReadFn::Coils,
        RegisterTable::Discrete => ReadFn::DiscreteInputs,
        RegisterTable::Input => ReadFn::InputRegisters,
        RegisterTable::Holding => ReadFn::HoldingRegisters,
    }
}

/// What the last read of a block said, to log changes once, not every poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockState {
    Ok,
    Refused(Reason),
    Failed,
}

impl ModbusPoller {
    fn decode<'a>(
        &'a self,
        b: &'a ReadBlock,
        data: &'a ReadData,
        t: i64,
    ) -> impl Iterator<Item = Sample> + 'a {
        decode_block(&self.device.registers, &self.tags, b, data, t)
    }

    async fn poll_group(
        &self,
        group: &PollGroup,
        cx: &SourceContext,
        states: &Mutex<HashMap<(RegisterTable, u16), BlockState>>,
    ) {
        let (tx, shutdown, health) = (&cx.tx, &cx.shutdown, &cx.health);
        let name = &self.device.name.value;
        let unit = self.device.unit_id;
        let mut interval = tokio::time::interval(group.interval);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            // All of a group's reads go out together; the link caps how many
            // are in flight and matches the replies. Each read is stamped
            // when it ended and handed on at once, not at the end of the
            // poll: with a device that answers nothing and one read in
            // flight, a poll of three reads takes three timeouts, and its
            // first tags would otherwise turn bad two timeouts late.
            let sent = wallclock::now_ns();
            let mut replies: FuturesUnordered<_> = group
                .blocks
                .iter()
                .map(|b| {
                    let read = self.link.read(ReadRequest {
                        unit,
                        function: read_fn(b.table),
                        start: b.start,
                        count: b.count,
                    });
                    async move {
                        let reply = read.await;
                        (b, reply, wallclock::now_ns())
                    }
                })
                .collect();
            let (mut ok, mut refused, mut failed) = (0u64, 0u64, None);
            let mut t = wallclock::now_ns();
            while let Some((b, reply, done)) = replies.next().await {
                // The link has shut down under us (the process is stopping):
                // that says nothing about the device, so it must not
                // overwrite the device's last failure reason in the health
                // summary, nor turn its tags bad with a reason of its own.
                if matches!(reply, Err(LinkError::Closed)) {
                    return;
                }
                t = done;
                let mut batch = Vec::with_capacity(b.items.len());
                match &reply {
                    Ok(Ok(_)) => {
                        ok += 1;
                        health.latency(done.saturating_sub(sent));
                    }
                    Ok(Err(exc)) => {
                        refused += 1;
                        health.rejected(1, exc.reason());
                        health.latency(done.saturating_sub(sent));
                    }
                    Err(e) => failed = Some(e.reason()),
                }
                // Decode straight into the poll's batch.
                let state = match reply {
                    Ok(Ok(data)) => {
                        batch.extend(self.decode(b, &data, t));
                        BlockState::Ok
                    }
                    Ok(Err(exc)) => {
                        let r = exc.reason();
                        batch.extend(
                            b.items
                                .iter()
                                .map(|&(ri, _)| Sample::bad(self.tags[ri], r, t)),
                        );
                        BlockState::Refused(r)
                    }
                    Err(e) => {
                        let r = e.reason();
                        batch.extend(
                            b.items
                                .iter()
                                .map(|&(ri, _)| Sample::bad(self.tags[ri], r, t)),
                        );
                        BlockState::Failed
                    }
                };
                let previous = states
                    .lock()
                    .map(|mut s| s.insert((b.table, b.start), state.clone()))
                    .unwrap_or(None);
                if previous.as_ref() != Some(&state) {
                    match (&previous, &state) {
                        (_, BlockState::Refused(reason)) => warn!(
                            device = %name, address = %self.address, unit, table = b.table.name(),
                            start = b.start, count = b.count, exception = %reason,
                            "Modbus device refused a read; those tags are bad. Check the register map against the device's documentation."
                        ),
                        (Some(BlockState::Refused(_) | BlockState::Failed), BlockState::Ok) => {
                            info!(
                                device = %name, address = %self.address, unit, table = b.table.name(),
                                start = b.start, "Modbus read answered again."
                            )
                        }
                        // Transport failures are logged once per outage by the link.
                        _ => {}
                    }
                }
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
            // A device that answers, even with refusals, is up.
            match failed {
                Some(reason) if ok + refused == 0 => health.failure(reason, t),
                Some(reason) => {
                    health.success(ok, t);
                    health.rejected(0, reason);
                }
                None => health.success(ok, t),
            }
        }
    }

    async fn run(self, cx: SourceContext) {
        let states = Mutex::new(HashMap::new());
        join_all(self.groups.iter().map(|g| self.poll_group(g, &cx, &states))).await;
    }
}

impl Source for ModbusPoller {
    fn name(&self) -> &str {
        &self.device.name.value
    }

    fn kind(&self) -> &'static str {
        "modbus"
    }

    fn start(self: Box<Self>, cx: SourceContext) -> SourceTask {
        Box::pin(self.run(cx))
    }
}

#[cfg(test)]
mod poller_tests;
