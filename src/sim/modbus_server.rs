//! The virtual plant's Modbus TCP server (tokio-modbus).
//!
//! Devices that share a configured `host:port` share one listener and are told
//! apart by unit id, as behind a real gateway. Addresses outside the register
//! map answer IllegalDataAddress, as a PLC would.
//!
//! A device the truth model has disconnected (a `plc_disconnect` fault) is
//! marked `offline` in its image: requests to it get no reply at all (the
//! client times out and drops the connection, as with a PLC gone from the
//! network) and new connections to its listener are closed at once, unless
//! other units behind the same gateway are still online; those keep
//! answering, and the gateway answers for the missing one with exception
//! 0x0B, "gateway target device failed to respond", as real gateways do.
//!
//! Writes (FC5/FC15 coils, FC6/FC16 holding registers) are taken only at
//! the device's writable setpoints ([`super::writable`]): any other
//! address, read-only or unknown, answers 02 (illegal data address), a
//! value outside the range the device accepts 03 (illegal data value).
//! An accepted write updates the register at once and is queued for the
//! truth model, which the signal loop hands it to before it serves the
//! next values; an `ignore_writes` fault acknowledges without either, a
//! `reject_writes` fault answers its exception. Every request that reaches
//! an online device is logged (`tracing`, and the [`WriteLog`]).

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::writable::WriteFault;
use super::write_log::{WriteLog, WriteRecord};
use crate::config::{DataType, Register, RegisterTable};
use crate::sources::modbus::codec;

/// One device's register image.
#[derive(Debug, Default)]
pub struct RegisterImage {
    pub words: HashMap<(RegisterTable, u16), u16>,
    pub bits: HashMap<(RegisterTable, u16), bool>,
    /// Disconnected: the device does not answer.
    pub offline: bool,
    /// The device's name in the plant config, for the write log.
    pub device: String,
    /// The registers and coils a client may write.
    pub writable: Vec<WritableReg>,
    /// A scenario fault on writes, mirrored from the truth model.
    pub write_fault: Option<WriteFault>,
    /// Accepted writes the signal loop has not handed to the truth model
    /// yet: (tag index, engineering value).
    pub pending: Vec<(usize, f64)>,
}

/// A register (or coil) clients may write, and what it accepts.
#[derive(Debug, Clone)]
pub struct WritableReg {
    /// Index in the tag table.
    pub tag: usize,
    pub name: String,
    pub reg: Register,
    /// Engineering values accepted (inclusive).
    pub accept: (f64, f64),
}

impl WritableReg {
    fn covers(&self, table: RegisterTable, a: u16) -> bool {
        self.reg.table == table
            && a >= self.reg.address.value
            && u32::from(a) < u32::from(self.reg.address.value) + u32::from(self.reg.width())
    }
}

/// Register images by unit id, shared with the signal loop.
pub type Images = Arc<RwLock<HashMap<u8, RegisterImage>>>;

#[derive(Clone)]
struct PlantService {
    images: Images,
    log: Arc<WriteLog>,
}

type Map<T> = HashMap<(RegisterTable, u16), T>;

impl PlantService {
    /// Read `cnt` values from one table of one unit's image. Any address
    /// outside the map fails the whole request, as on a PLC.
    fn read<T: Copy>(
        &self,
        unit: u8,
        map: fn(&RegisterImage) -> &Map<T>,
        table: RegisterTable,
        addr: u16,
        cnt: u16,
    ) -> Result<Vec<T>, ExceptionCode> {
        let images = self
            .images
            .read()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let img = images
            .get(&unit)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        (0..cnt)
            .map(|i| {
                addr.checked_add(i)
                    .and_then(|a| map(img).get(&(table, a)).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    /// A write request: to writable setpoints only, whole values only,
    /// in range; all-or-nothing. `values` are register words, or coils as
    /// 0/1. Logged whatever the answer (but a request to an unknown unit,
    /// which no device received).
    fn write(
        &self,
        unit: u8,
        function: u8,
        table: RegisterTable,
        addr: u16,
        values: &[u16],
    ) -> Result<(), ExceptionCode> {
        let mut images = self
            .images
            .write()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let img = images
            .get_mut(&unit)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        let mut record = WriteRecord {
            t_ns: crate::wallclock::now_ns(),
            sim_t: 0.0,
            device: img.device.clone(),
            unit,
            function,
            address: addr,
            values: values.to_vec(),
            tags: Vec::new(),
            accepted: false,
            applied: false,
            exception: None,
        };
        let outcome = check_write(img, table, addr, values);
        let result = match outcome {
            Err(code) => Err(code),
            Ok(decoded) => {
                record.tags = decoded
                    .iter()
                    .map(|(k, v)| (img.writable[*k].name.clone(), *v))
                    .collect();
                match img.write_fault {
                    Some(WriteFault::Reject(code)) => Err(ExceptionCode::new(code)),
                    Some(WriteFault::Ignore) => {
                        record.accepted = true;
                        Ok(())
                    }
                    None => {
                        for (i, v) in values.iter().enumerate() {
                            let a = addr.wrapping_add(i as u16);
                            if table.is_bits() {
                                img.bits.insert((table, a), *v != 0);
                            } else {
                                img.words.insert((table, a), *v);
                            }
                        }
                        for (k, v) in &decoded {
                            let tag = img.writable[*k].tag;
                            img.pending.push((tag, *v));
                        }
                        record.accepted = true;
                        record.applied = true;
                        Ok(())
                    }
                }
            }
        };
        record.exception = result.as_ref().err().map(|c| u8::from(*c));
        info!(
            device = %record.device,
            unit,
            function,
            register = addr,
            values = ?record.values,
            tags = ?record.tags,
            accepted = record.accepted,
            applied = record.applied,
            exception = ?record.exception,
            "Virtual plant device received a write."
        );
        self.log.push(record);
        result
    }

    /// Whether every unit on this listener is disconnected: then nothing
    /// answers and connections are refused.
    fn all_offline(&self) -> bool {
        self.images
            .read()
            .map(|i| !i.is_empty() && i.values().all(|img| img.offline))
            .unwrap_or(false)
    }

    /// `Ok(None)`: no reply at all (the device is disconnected).
    fn answer(&self, unit: u8, req: Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        let offline = self
            .images
            .read()
            .map(|i| i.get(&unit).is_some_and(|img| img.offline))
            .unwrap_or(false);
        if offline {
            return if self.all_offline() {
                Ok(None)
            } else {
                Err(ExceptionCode::GatewayTargetDevice)
            };
        }
        self.handle(unit, req).map(Some)
    }

    fn handle(&self, unit: u8, req: Request<'_>) -> Result<Response, ExceptionCode> {
        use RegisterTable::*;
        fn bits(i: &RegisterImage) -> &Map<bool> {
            &i.bits
        }
        fn words(i: &RegisterImage) -> &Map<u16> {
            &i.words
        }
        Ok(match req {
            Request::ReadCoils(a, n) => Response::ReadCoils(self.read(unit, bits, Coil, a, n)?),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(self.read(unit, bits, Discrete, a, n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(self.read(unit, words, Input, a, n)?)
            }
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(self.read(unit, words, Holding, a, n)?)
            }
            Request::WriteSingleRegister(a, v) => {
                self.write(unit, 6, Holding, a, &[v])?;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, vs) => {
                self.write(unit, 16, Holding, a, &vs)?;
                Response::WriteMultipleRegisters(a, vs.len() as u16)
            }
            Request::WriteSingleCoil(a, v) => {
                self.write(unit, 5, Coil, a, &[u16::from(v)])?;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, vs) => {
                let words: Vec<u16> = vs.iter().map(|b| u16::from(*b)).collect();
                self.write(unit, 15, Coil, a, &words)?;
                Response::WriteMultipleCoils(a, vs.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Checks a write against the device's writable setpoints: every address
/// written must belong to one, each one written whole (02 otherwise), and
/// each value must be in its accepted range (03 otherwise). Returns the
/// setpoints written (index in `img.writable`) with their engineering
/// values.
fn check_write(
    img: &RegisterImage,
    table: RegisterTable,
    addr: u16,
    values: &[u16],
) -> Result<Vec<(usize, f64)>, ExceptionCode> {
    let end = u32::from(addr) + values.len() as u32;
    if values.is_empty() || end > 0x1_0000 {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    let mut touched: Vec<usize> = Vec::new();
    for i in 0..values.len() {
        let a = addr.wrapping_add(i as u16);
        let k = img
            .writable
            .iter()
            .position(|w| w.covers(table, a))
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        if !touched.contains(&k) {
            touched.push(k);
        }
    }
    let mut out = Vec::new();
    for k in touched {
        let w = &img.writable[k];
        let start = w.reg.address.value;
        let width = w.reg.width();
        // Half of a 32-bit value is no value: refuse it as a PLC does.
        if start < addr || u32::from(start) + u32::from(width) > end {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let from = usize::from(start - addr);
        let words = &values[from..from + usize::from(width)];
        let eng = if table.is_bits() {
            f64::from(words[0] != 0)
        } else {
            match (w.reg.data_type, w.reg.bit) {
                (DataType::Bool, Some(bit)) => f64::from(words[0] >> bit & 1),
                (DataType::Bool, None) => f64::from(words[0] != 0),
                (DataType::String, _) => return Err(ExceptionCode::IllegalDataValue),
                (ty, _) => {
                    let raw = codec::decode_words(ty, w.reg.order, words)
                        .ok_or(ExceptionCode::IllegalDataValue)?;
                    crate::sources::apply_scale(raw, w.reg.scale, w.reg.offset)
                }
            }
        };
        if !eng.is_finite() || eng < w.accept.0 || eng > w.accept.1 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        out.push((k, eng));
    }
    Ok(out)
}

impl Service for PlantService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.answer(req.slave, req.request))
    }
}

/// Bind `addr` (port 0 picks a free port) and serve until `shutdown`.
/// Returns the bound address once listening.
pub async fn serve(
    addr: SocketAddr,
    images: Images,
    log: Arc<WriteLog>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = Server::new(listener);
    let service = PlantService { images, log };
    tokio::spawn(async move {
        let on_connected = |stream, socket_addr| {
            let service = service.clone();
            async move {
                // A disconnected device refuses: the stream is dropped.
                if service.all_offline() {
                    debug!(peer = %socket_addr, "Virtual Modbus device is disconnected; closing the connection.");
                    return Ok(None);
                }
                // Match the poller: no Nagle delay on replies.
                let _ = tokio::net::TcpStream::set_nodelay(&stream, true);
                accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(service.clone())))
            }
        };
        let on_error = |e| debug!(error = %e, "Modbus client connection ended with an error.");
        let _ = server
            .serve_until(&on_connected, on_error, async move {
                shutdown.cancelled().await
            })
            .await;
    });
    Ok(local)
}
