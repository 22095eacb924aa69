//! Request planning: merge a device's registers into as few reads as possible.
//!
//! Registers of the same table whose ranges touch or overlap are read in one
//! request, up to the protocol limits (125 registers, 2000 bits per read).
//! Gaps are not bridged yet: reading unmapped addresses can raise exceptions
//! on real PLCs, so bridging needs a per-device opt-in (ingestion issue).

use crate::config::{ModbusDevice, RegisterTable};

pub const MAX_REGISTERS: u16 = 125;
pub const MAX_BITS: u16 = 2000;

/// One read request and the registers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub table: RegisterTable,
    pub start: u16,
    pub count: u16,
    /// (index into the device's `registers`, offset of its first word/bit in the block).
    pub items: Vec<(usize, u16)>,
}

pub fn plan(dev: &ModbusDevice) -> Vec<ReadBlock> {
    let mut regs: Vec<(RegisterTable, u32, u32, usize)> = dev
        .registers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let start = u32::from(r.address.value);
            (r.table, start, start + u32::from(r.data_type.width()), i)
        })
        .collect();
    regs.sort();
    let mut blocks: Vec<ReadBlock> = Vec::new();
    let mut end_of_last = 0u32;
    for (table, start, end, i) in regs {
        let limit = u32::from(if table.is_bits() {
            MAX_BITS
        } else {
            MAX_REGISTERS
        });
        if let Some(b) = blocks.last_mut()
            && b.table == table
            && start <= end_of_last
            && end.max(end_of_last) - u32::from(b.start) <= limit
        {
            end_of_last = end_of_last.max(end);
            b.count = (end_of_last - u32::from(b.start)) as u16;
            b.items.push((i, (start - u32::from(b.start)) as u16));
            continue;
        }
        blocks.push(ReadBlock {
            table,
            start: start as u16,
            count: (end - start) as u16,
            items: vec![(i, 0)],
        });
        end_of_last = end;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    #[test]
    fn merges_contiguous_registers_and_splits_tables_and_gaps() {
        let cfg = load_str(
            Path::new("p.toml"),
            r#"
[plant]
name = "p"
[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
registers = [
  { tag = "a", table = "holding", address = 0, type = "f32" },
  { tag = "b", table = "holding", address = 2 },
  { tag = "c", table = "holding", address = 10 },
  { tag = "d", table = "input", address = 3 },
  { tag = "e", table = "coil", address = 0 },
  { tag = "f", table = "coil", address = 1 },
]
"#,
        )
        .expect("valid");
        let blocks = plan(&cfg.config.modbus[0]);
        let summary: Vec<_> = blocks
            .iter()
            .map(|b| (b.table, b.start, b.count, b.items.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (RegisterTable::Coil, 0, 2, 2),
                (RegisterTable::Input, 3, 1, 1),
                (RegisterTable::Holding, 0, 3, 2),
                (RegisterTable::Holding, 10, 1, 1),
            ]
        );
    }
}
