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

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::RegisterTable;

/// One device's register image.
#[derive(Debug, Default)]
pub struct RegisterImage {
    pub words: HashMap<(RegisterTable, u16), u16>,
    pub bits: HashMap<(RegisterTable, u16), bool>,
    /// Disconnected: the device does not answer.
    pub offline: bool,
}

/// Register images by unit id, shared with the signal loop.
pub type Images = Arc<RwLock<HashMap<u8, RegisterImage>>>;

#[derive(Clone)]
struct PlantService {
    images: Images,
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

    /// Write values to a writable table; all-or-nothing.
    fn write<T: Copy>(
        &self,
        unit: u8,
        map: fn(&mut RegisterImage) -> &mut Map<T>,
        table: RegisterTable,
        addr: u16,
        values: &[T],
    ) -> Result<(), ExceptionCode> {
        let mut images = self
            .images
            .write()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let img = images
            .get_mut(&unit)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        let m = map(img);
        let addrs: Vec<u16> = (0..values.len())
            .map(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| addr.checked_add(i))
                    .filter(|a| m.contains_key(&(table, *a)))
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect::<Result<_, _>>()?;
        for (a, v) in addrs.into_iter().zip(values) {
            m.insert((table, a), *v);
        }
        Ok(())
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
        fn bits_mut(i: &mut RegisterImage) -> &mut Map<bool> {
            &mut i.bits
        }
        fn words_mut(i: &mut RegisterImage) -> &mut Map<u16> {
            &mut i.words
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
                self.write(unit, words_mut, Holding, a, &[v])?;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, vs) => {
                self.write(unit, words_mut, Holding, a, &vs)?;
                Response::WriteMultipleRegisters(a, vs.len() as u16)
            }
            Request::WriteSingleCoil(a, v) => {
                self.write(unit, bits_mut, Coil, a, &[v])?;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, vs) => {
                self.write(unit, bits_mut, Coil, a, &vs)?;
                Response::WriteMultipleCoils(a, vs.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
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
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = Server::new(listener);
    let service = PlantService { images };
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
