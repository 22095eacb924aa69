// The operator page of `twin` (docs/api.md, "The page"): plain JavaScript,
// no build step, no framework. It polls the JSON API (the lines at 4 Hz, the
// rest at 1 Hz or slower, and not while the tab is hidden) and follows the
// live events with fetch() rather than EventSource, which cannot send the
// Authorization header. The token, when the server wants one, lives in
// sessionStorage only: never a cookie, so no other site can act with it.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const TOKEN_KEY = 'twin.token';
const LINE_POLL_MS = 250;
const POLL_MS = 1000;
const SLOW_POLL_MS = 2000;
// Points of history kept per tag for its trend (10 min at 1 Hz).
const HISTORY = 600;
const EVENTS_SHOWN = 60;

const state = {
  me: null,
  snapT: null,       // the last snapshot's tick time, ms
  lines: new Map(),  // id -> drawing
  tags: new Map(),   // tag -> {row, cells, history: [[t, v]]}
  trend: null,       // {tag, plot}
  started: false,
};

// ---------------------------------------------------------------- helpers

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function sv(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
}

function fmt(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function pct(v) { return (100 * v).toFixed(0) + ' %'; }

function ms(t) { return t ? Date.parse(t) : null; }

function clockText(t) { return t ? t.slice(11, 19) : ''; }

// Write only what changed: the tables are rewritten every second on a
// plant-floor PC, and an unchanged text costs no layout.
function setText(e, text) {
  const t = String(text);
  if (e.textContent !== t) e.textContent = t;
}

// Whether `value` differs from what `key` last rendered: panels are rebuilt
// only then (which also keeps a button from being replaced under a click).
const rendered = new Map();
function changed(key, value) {
  const j = JSON.stringify(value);
  if (rendered.get(key) === j) return false;
  rendered.set(key, j);
  return true;
}

function conn(text, cls) {
  const c = $('conn');
  c.textContent = text;
  c.className = 'badge ' + (cls || '');
}

// ---------------------------------------------------------------- the API

class Unauthorized extends Error {}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: 'Bearer ' + t } : {};
}

async function api(path, opts) {
  const o = Object.assign({ cache: 'no-store', credentials: 'omit' }, opts || {});
  o.headers = Object.assign({}, authHeaders(), o.headers || {});
  const res = await fetch(path, o);
  if (res.status === 401) throw new Unauthorized();
  const body = await res.json().catch(() => ({}));
  if (!res.ok && !(opts && opts.method === 'POST')) {
    throw new Error(path + ': ' + res.status + ' ' + (body.error || ''));
  }
  return { status: res.status, body };
}

function askToken(message) {
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token').focus();
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  $('token').value = '';
  $('login').hidden = true;
  start();
});

$('token-button').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askToken('');
});

// Runs `fn` every `period` ms (after the previous run ended, so a slow
// server never piles requests up), not while the tab is hidden.
function every(period, fn) {
  const tick = async () => {
    if (!document.hidden) {
      try {
        await fn();
        conn('live', 'ok');
      } catch (e) {
        // Keep going: a new token from the form is used on the next run.
        if (e instanceof Unauthorized) askToken('The server did not take the token.');
        else conn('no answer', 'bad');
      }
    }
    setTimeout(tick, period);
  };
  tick();
}

// ---------------------------------------------------------------- start

async function start() {
  let me;
  try {
    me = (await api('/api/v1/whoami')).body;
  } catch (e) {
    if (e instanceof Unauthorized) {
      askToken(sessionStorage.getItem(TOKEN_KEY) ? 'The server did not take the token.' : '');
      return;
    }
    conn('no answer', 'bad');
    setTimeout(start, 2000);
    return;
  }
  state.me = me;
  $('who').textContent = me.read_only ? me.role + ' · read-only' : me.name + ' · ' + me.role;
  $('token-button').hidden = !sessionStorage.getItem(TOKEN_KEY);
  if (state.started) return;
  state.started = true;
  const plant = (await api('/api/v1/plant')).body.plant;
  $('plant').textContent = plant.name;
  document.title = plant.name + ' · twin';
  let all = [];
  // Before the run's first tick the lines are not built yet.
  for (let i = 0; i < 30 && plant.lines.length; i++) {
    all = (await api('/api/v1/lines')).body.lines;
    if (all.length) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const box = $('lines');
  if (all.length) box.textContent = '';
  for (const l of all) {
    const d = drawLine(l.geometry);
    box.append(d.figure);
    state.lines.set(l.id, d);
    updateLine(d, l.state);
  }
  for (const id of state.lines.keys()) {
    every(LINE_POLL_MS, async () => {
      const r = (await api('/api/v1/lines/' + encodeURIComponent(id) + '?only=state')).body;
      $('clock').textContent = clockText(r.t);
      updateLine(state.lines.get(id), r.line.state);
    });
  }
  every(POLL_MS, pollTags);
  every(POLL_MS, pollAlarms);
  every(POLL_MS, pollProposals);
  every(SLOW_POLL_MS, pollMetering);
  every(SLOW_POLL_MS, pollSources);
  followEvents();
}

// ---------------------------------------------------------------- lines

// Plan metres (x east, y north) to SVG user units (y down): y flips.
function P(x, y) { return [x, -y]; }

function rectAt(cls, x, y, heading, length, width) {
  const [cx, cy] = P(x, y);
  return sv('rect', {
    class: cls, x: cx - length / 2, y: cy - width / 2, width: length, height: width,
    transform: `rotate(${-heading} ${cx} ${cy})`,
  });
}

// The text anchor of a label placed `dx` east of what it names: labels to
// the side read away from it.
function anchor(dx) { return dx > 0.05 ? 'start' : dx < -0.05 ? 'end' : 'middle'; }

function dir(heading) {
  const r = heading * Math.PI / 180;
  return [Math.cos(r), Math.sin(r)];
}

function drawLine(g) {
  const pad = 0.7;
  const [x0, y0, x1, y1] = g.bounds;
  const vb = [x0 - pad, -(y1 + pad), (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad];
  const svg = sv('svg', { viewBox: vb.join(' '), 'font-size': '0.13', class: 'line-drawing', 'data-line': g.id });
  const defs = sv('defs');
  const marker = sv('marker', { id: 'arrow-' + g.id, viewBox: '0 0 10 10', refX: '5', refY: '5', markerWidth: '4', markerHeight: '4', orient: 'auto' });
  marker.append(sv('path', { d: 'M0,0 L10,5 L0,10 Z', fill: '#777' }));
  defs.append(marker);
  svg.append(defs);
  const layer = (cls) => { const l = sv('g', { class: cls }); svg.append(l); return l; };
  const belts = layer('belts');
  const jams = layer('jams');
  const stations = layer('stations');
  const products = layer('products');
  const eyes = layer('eyes');
  const actuators = layer('actuators');
  const marks = layer('residuals');
  const labels = layer('labels');

  for (const s of g.segments) {
    const [c, sn] = dir(s.heading);
    const cx = s.x + c * s.length / 2, cy = s.y + sn * s.length / 2;
    belts.append(rectAt('belt', cx, cy, s.heading, s.length, s.width));
    if (s.length > 0.4) {
      const h = Math.min(0.15 * s.length, 0.25);
      const [ax, ay] = P(cx - c * h, cy - sn * h), [bx, by] = P(cx + c * h, cy + sn * h);
      belts.append(sv('line', { class: 'belt-arrow', x1: ax, y1: ay, x2: bx, y2: by, 'marker-end': `url(#arrow-${g.id})` }));
    }
  }
  const slipText = new Map();
  for (const cv of g.conveyors) {
    const [c, sn] = dir(cv.heading);
    // Beside its first piece, left of travel, above the eyes' labels.
    const first = g.segments.find((s) => s.conveyor === cv.id);
    const at = first ? Math.min(first.length / 2, 0.6) : 0.15;
    const off = cv.width / 2 + 0.4;
    const lx = cv.x + c * at - sn * off, ly = cv.y + sn * at + c * off;
    const [X, Y] = P(lx, ly);
    const t = sv('text', { class: 'conveyor-id', x: X, y: Y, 'text-anchor': sn > 0.5 ? 'end' : 'start' }, cv.id);
    const slip = sv('tspan', { class: 'slip', dx: '0.08' }, '');
    t.append(slip);
    labels.append(t);
    slipText.set(cv.id, slip);
  }
  const along = g.product ? Math.max(2 * g.product[0], 0.2) : 0.2;
  const stationEls = new Map();
  for (const s of g.stations) {
    const r = rectAt('station', s.x, s.y, s.heading, along, s.width + 0.1);
    r.setAttribute('data-id', s.id);
    stations.append(r);
    stationEls.set(s.id, r);
    const [c, sn] = dir(s.heading);
    const off = s.width / 2 + 0.2;
    const [X, Y] = P(s.x + sn * off, s.y - c * off);
    labels.append(sv('text', { class: 'station-id', x: X, y: Y, 'text-anchor': anchor(sn * off), 'dominant-baseline': 'middle' }, s.id));
  }
  const eyeEls = new Map();
  for (const e of g.eyes) {
    const [c, sn] = dir(e.heading);
    const r = e.width / 2 + 0.06;
    const [ax, ay] = P(e.x + sn * r, e.y - c * r), [bx, by] = P(e.x - sn * r, e.y + c * r);
    const beam = sv('line', { class: 'eye', x1: ax, y1: ay, x2: bx, y2: by, 'data-id': e.id });
    eyes.append(beam);
    const off = r + 0.1;
    const [X, Y] = P(e.x - sn * off, e.y + c * off);
    const label = sv('text', { class: 'eye-id', x: X, y: Y, 'text-anchor': anchor(-sn * off), 'dominant-baseline': 'middle' }, e.id);
    labels.append(label);
    // Where residuals show: on the beam's right-hand end.
    const [rx, ry] = P(e.x + sn * (r + 0.09), e.y - c * (r + 0.09));
    const mark = sv('g', { class: 'residual-mark', 'data-eye': e.id, visibility: 'hidden' });
    mark.append(sv('circle', { class: 'residual', cx: rx, cy: ry, r: 0.08 }));
    mark.append(sv('text', { class: 'residual-count', x: rx, y: ry + 0.045, 'text-anchor': 'middle', 'font-size': '0.11' }, ''));
    marks.append(mark);
    eyeEls.set(e.id, { beam, label, mark, id: e.id });
  }
  const pusherEls = new Map();
  for (const p of g.pushers) {
    const [c, sn] = dir(p.heading);
    // Beside the belt's right-hand side (looking downstream).
    const off = p.width / 2 + 0.07;
    const r = rectAt('pusher', p.x + sn * off, p.y - c * off, p.heading, 0.2, 0.1);
    r.setAttribute('data-id', p.id);
    actuators.append(r);
    pusherEls.set(p.id, r);
    const [X, Y] = P(p.x + sn * (off + 0.17), p.y - c * (off + 0.17));
    labels.append(sv('text', { class: 'station-id', x: X, y: Y, 'text-anchor': anchor(sn), 'dominant-baseline': 'middle' }, p.id));
  }
  const diverterEls = new Map();
  for (const d of g.diverters) {
    const [c, sn] = dir(d.to_heading === undefined ? d.heading + 90 : d.to_heading);
    const [ax, ay] = P(d.x, d.y), [bx, by] = P(d.x + c * 0.35, d.y + sn * 0.35);
    const a = sv('line', { class: 'diverter', x1: ax, y1: ay, x2: bx, y2: by, 'marker-end': `url(#arrow-${g.id})`, 'data-id': d.id });
    actuators.append(a);
    diverterEls.set(d.id, a);
    labels.append(sv('text', { class: 'station-id', x: bx + 0.05, y: by }, d.id));
  }
  const status = el('span', { class: 'status' });
  const figure = el('figure', { class: 'line', id: 'line-' + g.id },
    el('figcaption', {}, g.name ? `${g.name} (${g.id})` : g.id, status), svg);
  return { g, figure, svg, products, jams, status, stationEls, eyeEls, pusherEls, diverterEls, slipText };
}

function updateLine(d, s) {
  if (!d || !s) return;
  const st = s.status;
  let text = `WIP ${st.wip} · out ${st.out} · ${st.throughput_per_min.toFixed(1)}/min`;
  if (st.lost) text += ` · lost ${st.lost}`;
  if (d.g.pushers.length) text += ` · pushed ${st.pushed}`;
  if (d.g.diverters.length) text += ` · diverted ${st.diverted}`;
  if (st.uncertain) text += ' · uncertain';
  if (s.jams.length) text += ` · JAM ×${s.jams.length}`;
  setText(d.status, text);

  // Products: one rect each, reused from poll to poll.
  const kids = d.products.children;
  while (kids.length > s.products.length) kids[kids.length - 1].remove();
  while (kids.length < s.products.length) d.products.append(sv('rect', { class: 'product' }));
  s.products.forEach((p, i) => {
    const [cx, cy] = P(p.x, p.y);
    setAttrs(kids[i], {
      x: cx - p.length / 2, y: cy - p.width / 2, width: p.length, height: p.width,
      transform: `rotate(${-p.heading} ${cx} ${cy})`,
      'data-x': p.x, 'data-y': p.y,
    });
  });
  d.products.setAttribute('data-count', s.products.length);

  for (const e of s.eyes) {
    const x = d.eyeEls.get(e.id);
    if (!x) continue;
    const stuck = e.condition !== 'ok';
    const cls = stuck ? 'stuck ' + e.condition : (e.expected_blocked ? 'blocked' : 'clear');
    x.beam.setAttribute('class', 'eye ' + cls);
    x.label.setAttribute('class', 'eye-id ' + cls);
    x.label.textContent = stuck ? `${x.id} ${e.condition.replace('_', ' ').toUpperCase()}` : x.id;
    x.mark.setAttribute('visibility', e.residuals > 0 ? 'visible' : 'hidden');
    x.mark.lastChild.textContent = e.residuals > 9 ? '9+' : String(e.residuals);
  }
  for (const a of s.stations) {
    const r = d.stationEls.get(a.id);
    if (r) r.setAttribute('class', a.active ? 'station busy' : 'station');
  }
  for (const a of s.pushers) {
    const r = d.pusherEls.get(a.id);
    if (r) r.setAttribute('class', a.active || a.extended ? 'pusher fired' : 'pusher');
  }
  for (const a of s.diverters) {
    const r = d.diverterEls.get(a.id);
    if (r) r.setAttribute('class', a.active ? 'diverter fired' : 'diverter');
  }
  for (const [id, span] of d.slipText) {
    const b = s.belts.find((x) => x.conveyor === id);
    span.textContent = b && Math.abs(b.slip) >= 0.05 ? `slip ${pct(b.slip)}` : '';
  }
  // Jams: redrawn when they change (rarely).
  const key = JSON.stringify(s.jams.map((j) => [j.after_eye, j.since]));
  if (key !== d.jamKey) {
    d.jamKey = key;
    d.jams.textContent = '';
    for (const j of s.jams) {
      const pts = j.path.map(([x, y]) => P(x, y).join(',')).join(' ');
      d.jams.append(sv('polyline', { class: 'jam', points: pts, 'data-after-eye': j.after_eye }));
      // Under the belt where the jam starts, below the stations' labels.
      const [X, Y] = P(j.from.x, j.from.y);
      d.jams.append(sv('text', { class: 'jam-label', x: X, y: Y + 0.55, 'text-anchor': 'start' }, `JAM after ${j.after_eye}`));
    }
  }
}

// ---------------------------------------------------------------- tags

async function pollTags() {
  const r = (await api('/api/v1/tags')).body;
  const now = ms(r.t);
  state.snapT = now;
  const tbody = $('tags').tBodies[0];
  for (const t of r.tags) {
    let row = state.tags.get(t.tag);
    if (!row) {
      const cells = [el('td'), el('td'), el('td', { class: 'num' }), el('td'), el('td'), el('td', { class: 'num' })];
      const tr = el('tr', { 'data-tag': t.tag }, ...cells);
      tr.addEventListener('click', () => openTrend(t.tag));
      tbody.append(tr);
      row = { tr, cells, history: [] };
      state.tags.set(t.tag, row);
      cells[0].textContent = t.machine || '—';
      cells[1].textContent = t.tag;
      cells[3].textContent = t.unit || '';
    }
    setText(row.cells[2], fmt(t.value));
    setText(row.cells[4], t.quality + (t.reason ? ` (${t.reason})` : ''));
    if (row.cells[4].className !== 'q-' + t.quality) row.cells[4].className = 'q-' + t.quality;
    const upd = ms(t.updated);
    setText(row.cells[5], upd && now ? ((now - upd) / 1000).toFixed(1) + ' s' : '—');
    const v = typeof t.value === 'boolean' ? (t.value ? 1 : 0) : t.value;
    if (typeof v === 'number' && now) {
      const h = row.history;
      if (!h.length || h[h.length - 1][0] !== now / 1000) h.push([now / 1000, v]);
      if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
    }
  }
  // A link to the page with `#trend=TAG` opens that tag's trend.
  const want = decodeURIComponent((location.hash.match(/^#trend=(.+)$/) || [])[1] || '');
  if (want && state.tags.has(want) && !(state.trend && state.trend.tag === want)) openTrend(want);
  if (state.trend) drawTrend();
}

function openTrend(tag) {
  if (state.trend && state.trend.plot) state.trend.plot.destroy();
  for (const r of state.tags.values()) r.tr.classList.remove('selected');
  const row = state.tags.get(tag);
  if (row) row.tr.classList.add('selected');
  state.trend = { tag, plot: null };
  history.replaceState(null, '', '#trend=' + encodeURIComponent(tag));
  $('trend').hidden = false;
  $('trend-title').textContent = tag + (row && row.cells[3].textContent ? ` (${row.cells[3].textContent})` : '');
  drawTrend();
}

function drawTrend() {
  const t = state.trend;
  const row = state.tags.get(t.tag);
  if (!row || typeof uPlot === 'undefined') return;
  const data = [row.history.map((p) => p[0]), row.history.map((p) => p[1])];
  if (!t.plot) {
    const box = $('trend-chart');
    box.textContent = '';
    t.plot = new uPlot({
      width: Math.max(300, box.clientWidth || 600), height: 160,
      legend: { show: false },
      scales: { x: { time: true } },
      series: [{}, { label: t.tag, stroke: '#4472c4', width: 1.5 }],
    }, data, box);
  } else {
    t.plot.setData(data);
  }
}

$('trend-close').addEventListener('click', () => {
  if (state.trend && state.trend.plot) state.trend.plot.destroy();
  state.trend = null;
  history.replaceState(null, '', location.pathname);
  $('trend').hidden = true;
  for (const r of state.tags.values()) r.tr.classList.remove('selected');
});

// ---------------------------------------------------------------- panels

function riskBar(v) {
  const cls = v >= 0.5 ? 'risk high' : v >= 0.2 ? 'risk mid' : 'risk';
  const bar = el('span', { class: cls }, el('span', {}));
  bar.firstChild.style.width = Math.round(100 * Math.min(1, Math.max(0, v))) + '%';
  return bar;
}

async function pollAlarms() {
  const r = (await api('/api/v1/alarms')).body;
  if (!changed('alarms', [r.alarms, r.predictions.map((p) => [p.model, p.machine, p.class, p.score, p.uncertain])])) return;
  const box = $('alarms');
  box.textContent = '';
  if (!r.alarms.length) box.append(el('p', { class: 'muted' }, 'No alarm raised.'));
  for (const a of r.alarms) {
    box.append(el('div', { class: 'alarm p-' + a.priority },
      el('strong', {}, `${a.machine || 'plant'} · ${a.class || a.model}`), ` ${a.priority} · `,
      `${fmt(a.value)} ≥ ${fmt(a.threshold)} · ${a.reason} · since ${clockText(a.since)}`));
  }
  const tb = $('predictions').tBodies[0];
  tb.textContent = '';
  for (const p of r.predictions) {
    let risk;
    if (p.task === 'fault') risk = el('span', {}, riskBar(p.score), pct(p.score));
    else if (p.task === 'anomaly') risk = el('span', {}, riskBar(p.threshold ? p.score / p.threshold / 2 : 0), `${fmt(p.score)} / ${fmt(p.threshold)}`);
    else risk = `${fmt(p.score)} ${p.unit || ''}`;
    tb.append(el('tr', {}, el('td', {}, p.machine || 'plant'), el('td', {}, p.model),
      el('td', {}, p.class || p.task), el('td', {}, risk, p.uncertain ? ' (uncertain)' : '')));
  }
}

function forecastText(f) {
  if (!f || typeof f !== 'object') return null;
  const b = f.baseline, c = f.candidate;
  if (!b || !c) {
    // The guard's own forecast: one run at the proposed value.
    const parts = [];
    if ('throughput_per_min' in f) parts.push(`throughput ${fmt(f.throughput_per_min)}/min`);
    if ('jam_risk' in f) parts.push(`jam risk ${fmt(f.jam_risk)}` + ('max_jam_risk' in f ? ` (max ${fmt(f.max_jam_risk)})` : ''));
    if ('lost' in f) parts.push(`lost ${f.lost}`);
    if ('horizon_s' in f) parts.push(`over ${fmt(f.horizon_s)} s`);
    return parts.length ? parts.join(' · ') : JSON.stringify(f);
  }
  const part = (k, unit) => (k in b && k in c) ? `${k.replace(/_/g, ' ')} ${fmt(b[k])} → ${fmt(c[k])}${unit || ''}` : null;
  return ['throughput_per_min', 'jam_risk', 'lost', 'wip_end'].map((k) => part(k)).filter(Boolean).join(' · ');
}

// An operator's action: a POST with the bearer header (never a cookie, so
// another site cannot make the browser act), and the twin's answer shown.
async function control(what, path, body) {
  const out = $('control-result');
  out.textContent = what + '…';
  try {
    const r = await api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: body ? JSON.stringify(body) : '' });
    out.textContent = r.body.ok ? `${what}: done` : `${what}: refused: ${r.body.error || r.body.reason || JSON.stringify(r.body)}`;
  } catch (e) {
    out.textContent = `${what}: ${e instanceof Unauthorized ? 'the token was not taken' : 'no answer'}`;
  }
  pollProposals().catch(() => {});
}

async function pollProposals() {
  const r = (await api('/api/v1/proposals')).body;
  const can = state.me && state.me.control;
  if (!changed('proposals', [r.guard, r.kill, r.locked, r.pending, can])) return;
  const gs = $('guard-state');
  gs.textContent = '';
  if (!r.guard) { gs.append(el('p', { class: 'muted' }, 'No setpoint is guarded in this config.')); }
  if (r.kill) gs.append(el('p', { class: 'bad' }, 'Kill switch ON: no setpoint is written.'));
  if (can && r.guard) {
    const b = el('button', { type: 'button' }, r.kill ? 'Kill switch off' : 'Kill switch on');
    b.addEventListener('click', () => control(r.kill ? 'kill switch off' : 'kill switch on', '/api/v1/kill', { on: !r.kill }));
    gs.append(b);
  }
  for (const l of r.locked) {
    const p = el('p', { class: 'bad' }, `${l.tag} locked: ${l.why} `);
    if (can) {
      const b = el('button', { type: 'button' }, 'reset');
      b.addEventListener('click', () => control('reset ' + l.tag, '/api/v1/setpoints/' + encodeURIComponent(l.tag) + '/reset'));
      p.append(b);
    }
    gs.append(p);
  }
  const box = $('proposals');
  box.textContent = '';
  if (!r.pending.length && r.guard) box.append(el('p', { class: 'muted' }, 'None pending.'));
  for (const p of r.pending) {
    const div = el('div', { class: 'proposal', 'data-id': p.id },
      el('div', {}, el('strong', {}, `#${p.id} ${p.tag} → ${fmt(p.value)}`),
        p.requested !== p.value ? ` (asked ${fmt(p.requested)})` : '', ` by ${p.actor}, expires ${clockText(p.expires)}`),
      el('div', { class: 'muted' }, 'guard: ' + (p.rule ? p.rule + ': ' : '') + (p.reason || '—')));
    const f = forecastText(p.forecast);
    if (f) div.append(el('div', { class: 'forecast' }, 'forecast: ' + f));
    if (can) {
      const a = el('button', { type: 'button', class: 'approve' }, 'Approve');
      const j = el('button', { type: 'button', class: 'reject' }, 'Reject');
      a.addEventListener('click', () => control(`approve #${p.id}`, `/api/v1/proposals/${p.id}/approve`));
      j.addEventListener('click', () => control(`reject #${p.id}`, `/api/v1/proposals/${p.id}/reject`));
      div.append(el('div', {}, a, j));
    }
    box.append(div);
  }
}

async function pollMetering() {
  const r = (await api('/api/v1/metering')).body;
  if (!changed('metering', r.models)) return;
  const tb = $('metering').tBodies[0];
  tb.textContent = '';
  if (!r.models.length) tb.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No model ran yet.')));
  for (const m of r.models) {
    tb.append(el('tr', {}, el('td', {}, m.model), el('td', { class: 'num' }, m.total.runs),
      el('td', { class: 'num' }, m.total.rows), el('td', { class: 'num' }, m.total.skipped_rows),
      el('td', { class: 'num' }, m.compute_seconds.toFixed(3)), el('td', { class: 'num' }, m.overruns)));
  }
}

async function pollSources() {
  const r = (await api('/api/v1/sources')).body;
  if (!changed('sources', r.sources.map((x) => [x.name, x.up, x.reason, x.ok, x.failures, x.recoveries]))) return;
  const tb = $('sources').tBodies[0];
  tb.textContent = '';
  for (const s of r.sources) {
    tb.append(el('tr', {}, el('td', {}, `${s.kind}:${s.name}`),
      el('td', { class: s.up ? 'up' : 'down' }, s.up ? 'up' : 'down' + (s.reason ? ` (${s.reason})` : '')),
      el('td', { class: 'num' }, s.ok), el('td', { class: 'num' }, s.failures), el('td', { class: 'num' }, s.recoveries)));
  }
}

// ---------------------------------------------------------------- live events

function eventText(e) {
  switch (e.type) {
    case 'jam': return `${e.line}: jam ${e.state} after ${e.after_eye}` + (e.before_eye ? ` (before ${e.before_eye})` : '');
    case 'eye': return `${e.line}: eye ${e.eye} ${e.state}`;
    case 'residual': return `${e.line}: ${e.eye} ${e.residual}` + (e.lag_ms !== undefined ? ` by ${e.lag_ms} ms` : '');
    case 'alarm': return `${e.machine || 'plant'}: ${e.model} ${e.class || ''} ${e.state}`;
    case 'proposal': return `${e.line}: ${e.model} proposes ` + Object.entries(e.setpoints || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
    case 'setpoint': return `${e.tag}: ${e.decision}` + (e.reason ? ` (${e.reason})` : '');
    default: return e.type;
  }
}

function showEvent(e) {
  const list = $('events');
  const empty = $('events-empty');
  if (empty) empty.remove();
  list.prepend(el('li', {}, el('span', { class: 'ty ty-' + e.type }, e.type), ` ${clockText(e.t)} ${eventText(e)}`));
  while (list.children.length > EVENTS_SHOWN) list.lastChild.remove();
}

// Server-sent events read with fetch(): EventSource cannot send the bearer
// header. Reconnects after a pause when the stream ends or is dropped.
async function followEvents() {
  const path = '/api/v1/events?type=jam,eye,residual,alarm,proposal,setpoint';
  for (;;) {
    let ended = false;
    try {
      const res = await fetch(path, { headers: authHeaders(), cache: 'no-store', credentials: 'omit' });
      if (res.status === 401) askToken('The server did not take the token.');
      if (!res.ok || !res.body) throw new Error(String(res.status));
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (name === 'end') ended = true;
          if (name !== 'message' || !data.length) continue;
          try { showEvent(JSON.parse(data.join('\n'))); } catch (_) { /* not JSON: skip */ }
        }
      }
    } catch (_) { /* the server went away: retry below */ }
    if (ended) return;
    await new Promise((r) => setTimeout(r, 3000));
  }
}

start();
