#!/usr/bin/env node
// Expands flow.template.json into a Node-RED flow for scripts/bench-modbus.sh.
//
//   node make-flow.js TEMPLATE ENDPOINTS_JSON REGISTERS RATE_MS > flows.json
//
// ENDPOINTS_JSON is what `twin sim --endpoints-out` wrote ({"modbus": {device:
// "host:port"}}). Every device gets one client node and one read node per
// block of at most 125 registers out of REGISTERS contiguous holding
// registers from address 0: the reads twin's planner makes for the same map.
'use strict';
const fs = require('fs');

const [template, endpoints, registers, rate] = process.argv.slice(2);
if (!template || !endpoints || !registers || !rate) {
  process.stderr.write('usage: make-flow.js TEMPLATE ENDPOINTS_JSON REGISTERS RATE_MS\n');
  process.exit(2);
}
const t = JSON.parse(fs.readFileSync(template, 'utf8'));
const modbus = JSON.parse(fs.readFileSync(endpoints, 'utf8')).modbus;
const total = Number(registers);
const MAX_READ = 125;

function fill(node, vars) {
  if (Array.isArray(node)) return node.map((n) => fill(n, vars));
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) out[k] = fill(v, vars);
    return out;
  }
  if (typeof node !== 'string') return node;
  const whole = /^\{\{(\w+)\}\}$/.exec(node);
  if (whole) {
    if (!(whole[1] in vars)) throw new Error(`template key {{${whole[1]}}} has no value`);
    return vars[whole[1]];
  }
  return node.replace(/\{\{(\w+)\}\}/g, (_, k) => {
    if (!(k in vars)) throw new Error(`template key {{${k}}} has no value`);
    return String(vars[k]);
  });
}

const flow = [t.tab];
Object.keys(modbus).sort().forEach((device, d) => {
  const addr = modbus[device];
  const i = addr.lastIndexOf(':');
  const vars = { device, host: addr.slice(0, i), port: Number(addr.slice(i + 1)), unit: 1 };
  flow.push(fill(t.client, vars));
  for (let start = 0, block = 0; start < total; start += MAX_READ, block++) {
    const count = Math.min(MAX_READ, total - start);
    flow.push(fill(t.read, {
      ...vars, block, start, count, rate_ms: Number(rate), x: 150 + 250 * block, y: 40 + 40 * d,
    }));
  }
});
process.stdout.write(JSON.stringify(flow, null, 1) + '\n');
