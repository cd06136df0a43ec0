// The impact list (with its CSV for a maintenance report) and the
// root-cause path table, under the graph.

import {labelOf, pathText} from './api.js';

export const CSV_COLUMNS = ['type', 'name', 'id', 'project', 'host', 'state',
  'path'];

export function impactRows(dependents, startId) {
  return dependents.map((object) => ({
    type: object.type || '', name: object.opaque ? '' : object.name || '',
    id: object.id || '',
    project: object.project_id || '', host: object.host || '',
    state: object.state || '', path: pathText(object.path, startId),
  }));
}

// RFC 4180 fields; a cell a spreadsheet would run as a formula is
// quoted with a leading apostrophe.
function csvField(value) {
  let text = String(value ?? '');
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvOf(rows) {
  const lines = [CSV_COLUMNS.join(',')];
  for (const row of rows) {
    lines.push(CSV_COLUMNS.map((column) => csvField(row[column])).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

// The first object of a root-cause chain that is not ACTIVE: the one the
// API marks (first_failure), else the first with a known other state.
export function firstNotActive(chain) {
  return chain.find((object) => object.first_failure) ??
    chain.find((object) => object.state && object.state !== 'ACTIVE' &&
      !object.unknown);
}

export class Report {
  constructor(section) {
    this.section = section;
    this.title = section.querySelector('#report-title');
    this.table = section.querySelector('#report-table');
    this.csvButton = section.querySelector('#csv-button');
    this.rows = [];
    this.fileName = 'impact.csv';
    this.csvButton.addEventListener('click', () => this.download());
    section.querySelector('#report-close').addEventListener(
      'click', () => this.hide());
    this.onHide = () => {};
  }

  hide() {
    this.section.hidden = true;
    this.onHide();
  }

  showImpact(start, dependents) {
    this.rows = impactRows(dependents, start.id);
    this.fileName = `impact-${start.id}.csv`.replace(/[^\w.-]/g, '_');
    this.title.textContent = `Impact of ${start.type} ${labelOf(start)}: ` +
      `${this.rows.length} dependent object(s)`;
    this.fill(CSV_COLUMNS, this.rows.map((row) => CSV_COLUMNS.map(
      (column) => row[column])));
    this.csvButton.hidden = false;
    this.section.hidden = false;
  }

  showPath(start, chain) {
    const bad = firstNotActive(chain);
    this.title.textContent = bad ?
      `Path from ${labelOf(start)}: first not ACTIVE is ${bad.type} ` +
      `${labelOf(bad)} (${bad.state})` :
      `Path from ${labelOf(start)}: every object ACTIVE`;
    const columns = ['#', 'depth', 'type', 'name', 'id', 'state'];
    this.fill(columns, chain.map((object, index) => [index + 1,
      object.depth ?? '', object.type, object.opaque ? '' : object.name || '',
      object.id || '', object.state || '']));
    if (bad) {
      const index = chain.indexOf(bad);
      this.table.tBodies[0].rows[index].classList.add('first-bad');
    }
    this.csvButton.hidden = true;
    this.section.hidden = false;
    return bad;
  }

  fill(columns, rows) {
    const head = this.table.createTHead();
    head.replaceChildren();
    const headRow = head.insertRow();
    for (const column of columns) {
      const th = document.createElement('th');
      th.textContent = column;
      headRow.append(th);
    }
    for (const body of [...this.table.tBodies]) body.remove();
    const body = this.table.createTBody();
    for (const cells of rows) {
      const tr = body.insertRow();
      for (const cell of cells) tr.insertCell().textContent = cell ?? '';
    }
  }

  download() {
    const blob = new Blob([csvOf(this.rows)], {type: 'text/csv'});
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = this.fileName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }
}
