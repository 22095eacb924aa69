//! The virtual plant's Modbus TCP server (tokio-modbus).
//!
//! Devices that share a configured `host:port` share one listener and are told
//! apart by unit id, as behind a real gateway. Addresses outside the register
//! map answer IllegalDataAddress, as a PLC would.

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
}

/// Register images by unit id, shared with the signal loop.
pub type Images = Arc<RwLock<HashMap<u8, RegisterImage>>>;

#[derive(Clone)]
struct PlantService {
    images: Images,
}

impl PlantService {
    fn words(
        &self,
        unit: u8,
        table: RegisterTable,
        addr: u16,
        cnt: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
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
                    .and_then(|a| img.words.get(&(table, a)).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    fn bits(
        &self,
        unit: u8,
        table: RegisterTable,
        addr: u16,
        cnt: u16,
    ) -> Result<Vec<bool>, ExceptionCode> {
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
                    .and_then(|a| img.bits.get(&(table, a)).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    fn write_words(&self, unit: u8, addr: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        let mut images = self
            .images
            .write()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let img = images
            .get_mut(&unit)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        for (i, _) in values.iter().enumerate() {
            let a = addr
                .checked_add(i as u16)
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            if !img.words.contains_key(&(RegisterTable::Holding, a)) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
        }
        for (i, v) in values.iter().enumerate() {
            img.words
                .insert((RegisterTable::Holding, addr + i as u16), *v);
        }
        Ok(())
    }

    fn write_bits(&self, unit: u8, addr: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let mut images = self
            .images
            .write()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let img = images
            .get_mut(&unit)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        for (i, _) in values.iter().enumerate() {
            let a = addr
                .checked_add(i as u16)
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            if !img.bits.contains_key(&(RegisterTable::Coil, a)) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
        }
        for (i, v) in values.iter().enumerate() {
            img.bits.insert((RegisterTable::Coil, addr + i as u16), *v);
        }
        Ok(())
    }

    fn handle(&self, unit: u8, req: Request<'_>) -> Result<Response, ExceptionCode> {
        use RegisterTable::*;
        Ok(match req {
            Request::ReadCoils(a, n) => Response::ReadCoils(self.bits(unit, Coil, a, n)?),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(self.bits(unit, Discrete, a, n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(self.words(unit, Input, a, n)?)
            }
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(self.words(unit, Holding, a, n)?)
            }
            Request::WriteSingleRegister(a, v) => {
                self.write_words(unit, a, &[v])?;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, vs) => {
                self.write_words(unit, a, &vs)?;
                Response::WriteMultipleRegisters(a, vs.len() as u16)
            }
            Request::WriteSingleCoil(a, v) => {
                self.write_bits(unit, a, &[v])?;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, vs) => {
                self.write_bits(unit, a, &vs)?;
                Response::WriteMultipleCoils(a, vs.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

impl Service for PlantService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.handle(req.slave, req.request))
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
