// The side panel of the chosen object: its attributes, its links (the
// other end of each one selects it), the meters recorded for it and a
// chart of the last hour of one of them.

import {edgeEnds, labelOf, meterStatistics} from './api.js';

const FIELDS = ['id', 'type', 'state', 'project_id', 'host', 'parent_id',
  'name_path', 'environment', 'created_at', 'updated_at', 'last_event_at',
  'deleted_at'];
const LINKED_FIELDS = new Set(['parent_id']);
// An id a tenant gets for an infrastructure object it may not open.
const isOpaqueId = (id) => String(id).startsWith('opaque-');

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function valueText(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

export function meterNames(object) {
  const meters = object.meters || [];
  return [...new Set(meters.map((m) => (typeof m === 'string' ? m :
    m.name || m.meter || m.counter_name)).filter(Boolean))].sort();
}

export class Panel {
  constructor(element, onSelect) {
    this.element = element;
    this.onSelect = onSelect;
    this.chosenMeter = null;
  }

  clear(message) {
    this.element.replaceChildren(element('p', message, 'hint'));
  }

  show(object, links) {
    const parts = [];
    parts.push(element('h2', labelOf(object)));
    const badge = element('span', object.state || 'unknown',
      `badge ${String(object.state || '').replace(/[^A-Za-z_]/g, '')}`);
    const line = element('div');
    line.append(badge, ` ${object.type}`);
    parts.push(line);
    if (object.opaque) {
      parts.push(element('p', 'Infrastructure object: its name and '
        + 'attributes are for administrators only.', 'hint'));
      this.element.replaceChildren(...parts);
      return;
    }

    parts.push(element('h3', 'Attributes'));
    const table = element('table');
    table.className = 'attributes';
    for (const field of FIELDS) {
      if (object[field] === undefined || object[field] === null) continue;
      table.append(this.row(field, object[field],
        LINKED_FIELDS.has(field) && !isOpaqueId(object[field])));
    }
    for (const [key, value] of Object.entries(object.attributes || {})) {
      table.append(this.row(key, value, false));
    }
    parts.push(table);

    parts.push(element('h3', `Links (${links.length})`));
    const linkTable = element('table');
    linkTable.className = 'links';
    for (const link of links) {
      const [source, target] = edgeEnds(link);
      const other = source === object.id ? target : source;
      const tr = element('tr');
      tr.append(element('td', link.link_type || ''));
      const cell = element('td', other, isOpaqueId(other) ? '' : 'linkto');
      cell.dataset.id = other;
      tr.append(cell, element('td', link.state || ''));
      linkTable.append(tr);
    }
    parts.push(linkTable);

    const meters = meterNames(object);
    parts.push(element('h3', `Meters (${meters.length})`));
    if (meters.length) {
      const select = element('select', undefined, 'meter-select');
      select.id = 'meter-select';
      for (const name of meters) select.append(new Option(name, name));
      if (!meters.includes(this.chosenMeter)) this.chosenMeter = meters[0];
      select.value = this.chosenMeter;
      const chart = element('div');
      select.addEventListener('change', () => {
        this.chosenMeter = select.value;
        this.chart(chart, object.id, select.value);
      });
      parts.push(select, chart);
      this.chart(chart, object.id, this.chosenMeter);
    }
    this.element.replaceChildren(...parts);
    for (const cell of this.element.querySelectorAll('.linkto')) {
      cell.addEventListener('click', () => this.onSelect(cell.dataset.id));
    }
  }

  row(key, value, linked) {
    const tr = element('tr');
    const cell = element('td', valueText(value), linked ? 'linkto' : '');
    if (linked) cell.dataset.id = value;
    tr.append(element('td', key), cell);
    return tr;
  }

  async chart(container, resourceId, meter) {
    container.replaceChildren(element('p', 'loading…', 'hint'));
    try {
      const statistics = await meterStatistics(meter, resourceId);
      container.replaceChildren(lineChart(statistics, meter));
    } catch (error) {
      container.replaceChildren(element('p', error.message, 'error'));
    }
  }
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

// A small line chart of the periods' averages, min and max written on
// the axis.
export function lineChart(statistics, meter) {
  const width = 300;
  const height = 110;
  const chart = svg('svg', {class: 'chart', viewBox: `0 0 ${width} ${height}`,
    role: 'img', 'aria-label': `${meter}, last hour`});
  const points = statistics
    .map((s) => ({t: Date.parse(`${s.period_start || s.duration_start}Z`),
      v: s.avg}))
    .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v))
    .sort((a, b) => a.t - b.t);
  const unit = statistics[0]?.unit || '';
  if (!points.length) {
    chart.append(svg('text', {x: 8, y: height / 2},
      `${meter}: no samples in the last hour`));
    return chart;
  }
  const left = 40;
  const bottom = height - 16;
  const top = 10;
  const right = width - 6;
  const vMin = Math.min(...points.map((p) => p.v));
  const vMax = Math.max(...points.map((p) => p.v));
  const tMin = points[0].t;
  const tMax = points[points.length - 1].t;
  const x = (t) => left + (tMax === tMin ? (right - left) / 2 :
    (t - tMin) / (tMax - tMin) * (right - left));
  const y = (v) => bottom - (vMax === vMin ? (bottom - top) / 2 :
    (v - vMin) / (vMax - vMin) * (bottom - top));
  chart.append(
    svg('line', {x1: left, y1: top, x2: left, y2: bottom, stroke: '#ccc'}),
    svg('line', {x1: left, y1: bottom, x2: right, y2: bottom,
      stroke: '#ccc'}),
    svg('text', {x: 2, y: top + 8}, short(vMax)),
    svg('text', {x: 2, y: bottom}, short(vMin)),
    svg('text', {x: left, y: height - 3}, clock(tMin)),
    svg('text', {x: right - 30, y: height - 3}, clock(tMax)),
    svg('text', {x: left + 60, y: height - 3}, `${meter} avg ${unit}`),
    svg('polyline', {points: points.map((p) => `${x(p.t)},${y(p.v)}`)
      .join(' ')}),
  );
  return chart;
}

function short(value) {
  return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-2 && value !== 0) ?
    value.toExponential(1) : String(Math.round(value * 100) / 100);
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 16);
}
