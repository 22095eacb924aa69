//! Request planning: turn a device's register map into as few reads as
//! possible.
//!
//! Registers are grouped by poll interval; within a group, entries of the
//! same table are merged into one read when they touch, overlap, or are at
//! most `max_gap` addresses apart, up to the device's read limits (protocol
//! maxima: 125 registers, 2000 bits). Bridging gaps is opt-in because reading
//! an address the map does not name makes some PLCs answer
//! IllegalDataAddress for the whole request.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{ModbusDevice, RegisterTable};

/// One read request and the registers it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub table: RegisterTable,
    pub start: u16,
    pub count: u16,
    /// (index into the device's `registers`, offset of its first word/bit in the block).
    pub items: Vec<(usize, u16)>,
}

/// Registers polled on the same interval, and the reads that cover them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollGroup {
    pub interval: Duration,
    pub blocks: Vec<ReadBlock>,
}

/// Plan every poll group of a device, shortest interval first.
pub fn plan(dev: &ModbusDevice) -> Vec<PollGroup> {
    let mut by_interval: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
    for (i, r) in dev.registers.iter().enumerate() {
        by_interval
            .entry(r.poll_interval.unwrap_or(dev.poll_interval))
            .or_default()
            .push(i);
    }
    by_interval
        .into_iter()
        .map(|(interval, regs)| PollGroup {
            interval,
            blocks: plan_reads(dev, &regs),
        })
        .collect()
}

fn plan_reads(dev: &ModbusDevice, regs: &[usize]) -> Vec<ReadBlock> {
    let mut spans: Vec<(RegisterTable, u32, u32, usize)> = regs
        .iter()
        .map(|&i| {
            let r = &dev.registers[i];
            let start = u32::from(r.address.value);
            (r.table, start, start + u32::from(r.width()), i)
        })
        .collect();
    spans.sort();
    let gap = u32::from(dev.max_gap);
    let mut blocks: Vec<ReadBlock> = Vec::new();
    let mut block_end = 0u32;
    for (table, start, end, i) in spans {
        let limit = u32::from(if table.is_bits() {
            dev.max_read_bits
        } else {
            dev.max_read_registers
        });
        if let Some(b) = blocks.last_mut()
            && b.table == table
            && start <= block_end + gap
            && end.max(block_end) - u32::from(b.start) <= limit
        {
            block_end = block_end.max(end);
            b.count = (block_end - u32::from(b.start)) as u16;
            b.items.push((i, (start - u32::from(b.start)) as u16));
            continue;
        }
        blocks.push(ReadBlock {
            table,
            start: start as u16,
            count: (end - start) as u16,
            items: vec![(i, 0)],
        });
        block_end = end;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    fn device(extra: &str, regs: &str) -> ModbusDevice {
        let text = format!(
            "[plant]\nname = \"p\"\n[[sources.modbus]]\nname = \"d\"\naddress = \"127.0.0.1:502\"\n{extra}\nregisters = [\n{regs}\n]\n"
        );
        let cfg = load_str(Path::new("p.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        cfg.config.modbus[0].clone()
    }

    fn summary(g: &PollGroup) -> Vec<(RegisterTable, u16, u16, usize)> {
        g.blocks
            .iter()
            .map(|b| (b.table, b.start, b.count, b.items.len()))
            .collect()
    }

    const REGS: &str = r#"
  { tag = "a", table = "holding", address = 0, type = "f32" },
  { tag = "b", table = "holding", address = 2 },
  { tag = "c", table = "holding", address = 10 },
  { tag = "d", table = "input", address = 3 },
  { tag = "e", table = "coil", address = 0 },
  { tag = "f", table = "coil", address = 1 },
  { tag = "g", table = "holding", address = 2, bit = 3 },
"#;

    #[test]
    fn merges_contiguous_registers_and_splits_tables_and_gaps() {
        let groups = plan(&device("", REGS));
        assert_eq!(groups.len(), 1);
        assert_eq!(
            summary(&groups[0]),
            vec![
                (RegisterTable::Coil, 0, 2, 2),
                (RegisterTable::Input, 3, 1, 1),
                (RegisterTable::Holding, 0, 3, 3),
                (RegisterTable::Holding, 10, 1, 1),
            ]
        );
    }

    #[test]
    fn max_gap_bridges_and_limits_split() {
        let groups = plan(&device("max_gap = 8", REGS));
        assert_eq!(summary(&groups[0])[2], (RegisterTable::Holding, 0, 11, 4));
        let groups = plan(&device("max_gap = 8\nmax_read_registers = 4", REGS));
        assert_eq!(
            summary(&groups[0])[2..],
            [
                (RegisterTable::Holding, 0, 3, 3),
                (RegisterTable::Holding, 10, 1, 1)
            ]
        );
    }

    #[test]
    fn groups_by_poll_interval() {
        let groups = plan(&device(
            "poll_interval = \"1s\"",
            r#"
  { tag = "fast", table = "holding", address = 0, poll_interval = "100ms" },
  { tag = "slow", table = "holding", address = 1 },
"#,
        ));
        let intervals: Vec<_> = groups.iter().map(|g| g.interval).collect();
        assert_eq!(
            intervals,
            [Duration::from_millis(100), Duration::from_secs(1)]
        );
        assert_eq!(groups[0].blocks[0].count, 1);
    }

    #[test]
    fn never_exceeds_protocol_limits() {
        let regs: Vec<String> = (0..300)
            .map(|i| format!("{{ tag = \"t{i}\", table = \"holding\", address = {i} }},"))
            .collect();
        let groups = plan(&device("", &regs.join("\n")));
        let counts: Vec<u16> = groups[0].blocks.iter().map(|b| b.count).collect();
        assert_eq!(counts, [125, 125, 50]);
    }
}
