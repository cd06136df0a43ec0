// The inventory tree (Calipso's): region → availability zone → host →
// instance → vNIC, and project → network → subnet / port. Lazy: a level
// is asked for when it is opened (GET /v2/inventory?parent_id=), a page
// at a time, so a cloud of any size opens with a few small requests.

import {inventory, labelOf} from './api.js';

export const PAGE = 200;

// The roots of each hierarchy: the first type that has objects (an
// inventory built from notifications alone may hold no region objects;
// a tenant sees no infrastructure at all).
const ROOTS = [
  ['region', 'availability_zone', 'host'],
  ['project', 'network'],
];

// Types whose children are in the tree.
const PARENTS = new Set(['region', 'availability_zone', 'host', 'instance',
  'project', 'network']);

function stateClass(state) {
  return String(state || 'unknown').replace(/[^A-Za-z_]/g, '');
}

export class Tree {
  constructor(element, onSelect) {
    this.element = element;
    this.onSelect = onSelect;
    this.selectedId = null;
    element.addEventListener('click', (event) => this.clicked(event));
  }

  async load() {
    this.element.replaceChildren();
    const found = await Promise.all(ROOTS.map((chain) => this.firstRoots(chain)));
    for (const [type, objects] of found) {
      if (objects.length) this.addPage(this.element, objects, {type});
    }
    performance.mark('calipso:tree-ready');
  }

  async firstRoots(chain) {
    for (const type of chain) {
      const objects = await inventory.list({type, limit: PAGE});
      if (objects.length) return [type, objects];
    }
    return [chain[0], []];
  }

  // Rows for a page of objects under list ``ul``; a "more" row when the
  // page is full (the next page starts after its last object).
  addPage(ul, objects, filters) {
    const rows = objects.map((object) => this.row(object));
    ul.append(...rows);
    if (objects.length >= PAGE) {
      const more = document.createElement('li');
      more.className = 'more';
      more.textContent = 'more…';
      more.addEventListener('click', async (event) => {
        event.stopPropagation();
        more.remove();
        const next = await inventory.list({
          ...filters, limit: PAGE, marker: objects[objects.length - 1].id});
        this.addPage(ul, next, filters);
      });
      ul.append(more);
    }
  }

  row(object) {
    const li = document.createElement('li');
    li.setAttribute('role', 'treeitem');
    const row = document.createElement('div');
    row.className = 'node-row';
    row.dataset.id = object.id;
    row.dataset.type = object.type;
    row.title = object.id;
    const twisty = document.createElement('span');
    twisty.className = 'twisty';
    twisty.textContent = PARENTS.has(object.type) ? '▸' : '';
    const dot = document.createElement('span');
    dot.className = `dot ${stateClass(object.state)}`;
    dot.title = object.state || '';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = labelOf(object);
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = object.type;
    row.append(twisty, dot, name, kind);
    if (object.id === this.selectedId) row.classList.add('selected');
    li.append(row);
    return li;
  }

  async clicked(event) {
    const row = event.target.closest('.node-row');
    if (!row) return;
    if (event.target.classList.contains('twisty')) {
      await this.toggle(row);
    } else {
      this.onSelect(row.dataset.id);
    }
  }

  async toggle(row) {
    const li = row.parentElement;
    const open = li.querySelector(':scope > ul');
    const twisty = row.querySelector('.twisty');
    if (!twisty.textContent) return;
    if (open) {
      open.remove();
      twisty.textContent = '▸';
      return;
    }
    twisty.textContent = '▾';
    const ul = document.createElement('ul');
    ul.setAttribute('role', 'group');
    li.append(ul);
    const filters = {parent_id: row.dataset.id};
    this.addPage(ul, await inventory.list({...filters, limit: PAGE}), filters);
    ul.dataset.loaded = 'true';
  }

  // Opens the rows of these ids in order (a path from a root), as far as
  // they are shown.
  async reveal(ids) {
    for (const id of ids) {
      const row = this.rowOf(id);
      if (!row) return;
      if (!row.parentElement.querySelector(':scope > ul')) {
        await this.toggle(row);
      }
    }
  }

  rowOf(id) {
    for (const row of this.element.querySelectorAll('.node-row')) {
      if (row.dataset.id === id) return row;
    }
    return null;
  }

  markSelected(id) {
    this.selectedId = id;
    for (const row of this.element.querySelectorAll('.node-row.selected')) {
      row.classList.remove('selected');
    }
    this.rowOf(id)?.classList.add('selected');
  }
}

// Search by name or id: the objects of that name and the object of that
// id, in one list.
export async function search(text) {
  const query = text.trim();
  if (!query) return [];
  const [byName, byId] = await Promise.all([
    inventory.list({name: query, limit: 50}),
    inventory.object(query).catch(() => null),
  ]);
  const found = byId ? [byId] : [];
  for (const object of byName) {
    if (!found.some((other) => other.id === object.id)) found.push(object);
  }
  return found;
}
