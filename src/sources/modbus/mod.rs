//! Modbus TCP source: polls a device's register map on its interval.
//!
//! Transport failures (refused, reset, timeout) and device refusals
//! (exception responses) are kept apart, as tokio-modbus does: a refusal marks
//! only the affected tags bad, with the exception's name as the reason, and
//! keeps the connection; a transport failure marks every tag of the device bad,
//! drops the connection and reconnects with exponential backoff. Dropping the
//! connection after a timeout also guarantees that a late reply can never be
//! taken for the answer to a later request.

pub mod codec;
pub mod plan;

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{MissedTickBehavior, timeout};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{SampleTx, Source, SourceTask};
use crate::config::{DataType, LoadedConfig, ModbusDevice, RegisterTable, TagId};
use crate::twin::{Sample, Value};
use crate::wallclock;
use plan::ReadBlock;

pub struct ModbusPoller {
    device: ModbusDevice,
    address: String,
    /// Tag of each register, by register index.
    tags: Vec<TagId>,
    plan: Vec<ReadBlock>,
}

impl ModbusPoller {
    pub fn new(cfg: &LoadedConfig, device: usize, address: String) -> Self {
        let dev = cfg.config.modbus[device].clone();
        let tags = dev
            .registers
            .iter()
            .map(|r| cfg.tags.id(&r.tag.value).unwrap_or(TagId(u32::MAX)))
            .collect();
        let plan = plan::plan(&dev);
        ModbusPoller {
            device: dev,
            address,
            tags,
            plan,
        }
    }
}

/// Exponential backoff with jitter: 1 s doubling to 60 s, reset on success.
/// Jitter keeps a plant's worth of pollers from reconnecting in lock-step
/// after a switch reboots.
struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    fn new(seed: u64) -> Self {
        Backoff {
            next: Self::MIN,
            seed: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.next = Self::MIN;
    }

    fn step(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // ±20 % jitter.
        let jitter = (self.seed % 401) as f64 / 1000.0 - 0.2;
        base.mul_f64(1.0 + jitter)
    }
}

fn exception_reason(e: ExceptionCode) -> &'static str {
    match e {
        ExceptionCode::IllegalFunction => "illegal_function",
        ExceptionCode::IllegalDataAddress => "illegal_data_address",
        ExceptionCode::IllegalDataValue => "illegal_data_value",
        ExceptionCode::ServerDeviceFailure => "server_device_failure",
        ExceptionCode::Acknowledge => "acknowledge",
        ExceptionCode::ServerDeviceBusy => "server_device_busy",
        ExceptionCode::MemoryParityError => "memory_parity_error",
        ExceptionCode::GatewayPathUnavailable => "gateway_path_unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway_target_device_failed_to_respond",
        _ => "exception",
    }
}

fn io_reason(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection_refused",
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => "connection_lost",
        TimedOut => "timeout",
        InvalidData => "invalid_response",
        _ => "comm_error",
    }
}

enum BlockData {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

async fn read_block(ctx: &mut Context, b: &ReadBlock) -> tokio_modbus::Result<BlockData> {
    Ok(match b.table {
        RegisterTable::Coil => ctx.read_coils(b.start, b.count).await?.map(BlockData::Bits),
        RegisterTable::Discrete => ctx
            .read_discrete_inputs(b.start, b.count)
            .await?
            .map(BlockData::Bits),
        RegisterTable::Input => ctx
            .read_input_registers(b.start, b.count)
            .await?
            .map(BlockData::Words),
        RegisterTable::Holding => ctx
            .read_holding_registers(b.start, b.count)
            .await?
            .map(BlockData::Words),
    })
}

impl ModbusPoller {
    fn all_bad(&self, reason: &'static str) -> Vec<Sample> {
        let t = wallclock::now_ns();
        self.tags
            .iter()
            .map(|&tag| Sample::bad(tag, reason, t))
            .collect()
    }

    /// Samples for one block's reply.
    fn decode(&self, b: &ReadBlock, data: &BlockData, t: i64) -> Vec<Sample> {
        b.items
            .iter()
            .map(|&(ri, off)| {
                let reg = &self.device.registers[ri];
                let tag = self.tags[ri];
                let off = usize::from(off);
                let raw = match data {
                    BlockData::Bits(bits) => bits.get(off).map(|b| f64::from(u8::from(*b))),
                    BlockData::Words(words) => words
                        .get(off..)
                        .and_then(|w| codec::decode_words(reg.data_type, w)),
                };
                match raw {
                    Some(raw) if reg.data_type == DataType::Bool => {
                        Sample::good(tag, Value::Bool(raw != 0.0), t, t)
                    }
                    Some(raw) => Sample::good(
                        tag,
                        Value::Num(codec::apply_scale(raw, reg.scale, reg.offset)),
                        t,
                        t,
                    ),
                    // The device answered with fewer registers than asked.
                    None => Sample::bad(tag, "short_response", t),
                }
            })
            .collect()
    }

    async fn connect(&self) -> std::io::Result<Context> {
        let stream = timeout(self.device.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        // Polls are small request/response pairs: Nagle only adds latency.
        stream.set_nodelay(true)?;
        Ok(tokio_modbus::client::tcp::attach_slave(
            stream,
            Slave(self.device.unit_id),
        ))
    }

    async fn run(self, tx: SampleTx, shutdown: CancellationToken) {
        let name = self.device.name.value.clone();
        let unit = self.device.unit_id;
        let mut backoff = Backoff::new(name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }));
        let mut ctx: Option<Context> = None;
        let mut healthy: Option<bool> = None;
        let mut retry_at = wallclock::monotonic();
        let mut interval = tokio::time::interval(self.device.poll_interval);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);

        'poll: loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            if ctx.is_none() {
                if wallclock::monotonic() < retry_at {
                    continue;
                }
                match self.connect().await {
                    Ok(c) => {
                        info!(device = %name, address = %self.address, unit, "Connected to Modbus device.");
                        ctx = Some(c);
                    }
                    Err(e) => {
                        let wait = backoff.step();
                        if healthy != Some(false) {
                            warn!(device = %name, address = %self.address, unit, error = %e,
                                "Modbus device unreachable; its tags are bad until it answers. Check the address and that the device is on.");
                            if send_all(&tx, self.all_bad(io_reason(&e))).await.is_err() {
                                break;
                            }
                        } else {
                            debug!(device = %name, address = %self.address, error = %e, retry_in = ?wait, "Reconnect failed.");
                        }
                        healthy = Some(false);
                        retry_at = wallclock::monotonic() + wait;
                        continue;
                    }
                }
            }
            let Some(c) = ctx.as_mut() else { continue };
            let mut batch = Vec::with_capacity(self.tags.len());
            for block in &self.plan {
                match timeout(self.device.timeout, read_block(c, block)).await {
                    Ok(Ok(Ok(data))) => {
                        batch.extend(self.decode(block, &data, wallclock::now_ns()));
                    }
                    Ok(Ok(Err(exc))) => {
                        let t = wallclock::now_ns();
                        debug!(device = %name, table = block.table.name(), start = block.start, count = block.count, exception = %exc, "Modbus device refused a read.");
                        batch.extend(
                            block.items.iter().map(|&(ri, _)| {
                                Sample::bad(self.tags[ri], exception_reason(exc), t)
                            }),
                        );
                    }
                    Ok(Err(e)) => {
                        // Mid-request, tokio-modbus reports a closed connection
                        // with whatever errno was left over, so any transport
                        // error here that is not a clear timeout or bad frame
                        // means the connection was lost.
                        let reason = match &e {
                            tokio_modbus::Error::Transport(io) => match io_reason(io) {
                                r @ ("timeout" | "invalid_response") => r,
                                _ => "connection_lost",
                            },
                            _ => "invalid_response",
                        };
                        warn!(device = %name, address = %self.address, unit, error = %e, "Modbus connection failed; reconnecting.");
                        ctx = None;
                        healthy = Some(false);
                        retry_at = wallclock::monotonic() + backoff.step();
                        if send_all(&tx, self.all_bad(reason)).await.is_err() {
                            break 'poll;
                        }
                        continue 'poll;
                    }
                    Err(_) => {
                        warn!(device = %name, address = %self.address, unit, timeout = ?self.device.timeout,
                            "Modbus read timed out; reconnecting so a late reply cannot be mistaken for a later one.");
                        ctx = None;
                        healthy = Some(false);
                        retry_at = wallclock::monotonic() + backoff.step();
                        if send_all(&tx, self.all_bad("timeout")).await.is_err() {
                            break 'poll;
                        }
                        continue 'poll;
                    }
                }
            }
            if healthy != Some(true) {
                if healthy == Some(false) {
                    info!(device = %name, address = %self.address, unit, "Modbus device answering again.");
                }
                healthy = Some(true);
                backoff.reset();
            }
            if send_all(&tx, batch).await.is_err() {
                break;
            }
        }
        if let Some(mut c) = ctx {
            use tokio_modbus::client::Client as _;
            let _ = c.disconnect().await;
        }
    }
}

async fn send_all(tx: &SampleTx, batch: Vec<Sample>) -> Result<(), ()> {
    for s in batch {
        tx.send(s).await.map_err(|_| ())?;
    }
    Ok(())
}

impl Source for ModbusPoller {
    fn name(&self) -> &str {
        &self.device.name.value
    }

    fn start(self: Box<Self>, tx: SampleTx, shutdown: CancellationToken) -> SourceTask {
        Box::pin(self.run(tx, shutdown))
    }
}
