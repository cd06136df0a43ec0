// The graph of the focus object's clique: cytoscape.js with the dagre
// hierarchical layout (left to right along the clique's link chain), the
// labels counted in the node sizes so that none overlaps, nodes coloured
// by state, DOWN and ERROR marked. A tap selects a node; a double tap
// makes it the focus.

import {edgeEnds, labelOf} from './api.js';

export const STATE_COLOURS = {
  ACTIVE: '#2e8b57', DOWN: '#d62828', ERROR: '#7b1fa2', BUILD: '#e0a800',
  SHUTOFF: '#7d8597', PAUSED: '#7d8597', SUSPENDED: '#7d8597',
  deleted: '#c9c9c9', other: '#3a6ea5',
};
const ALARM_STATES = new Set(['DOWN', 'ERROR']);

const SHAPES = {
  region: 'round-hexagon', availability_zone: 'rhomboid', host: 'rectangle',
  instance: 'round-rectangle', vnic: 'ellipse', port: 'diamond',
  network: 'hexagon', subnet: 'round-tag', router: 'octagon',
  floating_ip: 'star', vservice: 'barrel', vedge: 'vee', volume:
  'cut-rectangle', project: 'round-pentagon',
};

function stateKey(state) {
  return STATE_COLOURS[state] ? state : 'other';
}

function nodeData(object) {
  const state = object.state || '';
  const mark = ALARM_STATES.has(state) ? '✖ ' : '';
  return {
    id: object.id,
    type: object.type,
    state,
    opaque: Boolean(object.opaque),
    label: `${mark}${labelOf(object)}\n${object.type}` +
      (state && state !== 'ACTIVE' ? ` · ${state}` : ''),
  };
}

function edgeData(edge) {
  const [source, target] = edgeEnds(edge);
  return {
    id: `${edge.link_type || 'link'}:${source}:${target}`,
    source, target,
    linkType: edge.link_type || '',
    state: edge.state || '',
  };
}

const STYLE = [
  {selector: 'node', style: {
    'shape': (node) => SHAPES[node.data('type')] || 'ellipse',
    'width': 26, 'height': 26,
    'background-color': STATE_COLOURS.other,
    'border-width': 1, 'border-color': '#ffffff',
    'label': 'data(label)', 'text-wrap': 'wrap', 'text-max-width': 220,
    'text-overflow-wrap': 'anywhere',
    'font-size': 12, 'color': '#1d232b',
    'text-valign': 'bottom', 'text-halign': 'center', 'text-margin-y': 3,
    'text-background-color': '#ffffff', 'text-background-opacity': 0.85,
    'text-background-padding': 1, 'min-zoomed-font-size': 5,
  }},
  ...Object.entries(STATE_COLOURS).map(([state, colour]) => ({
    selector: `node[state = "${state}"]`,
    style: {'background-color': colour},
  })),
  {selector: 'node.alarm', style: {
    'border-width': 4, 'border-color': '#1d232b', 'border-style': 'double',
    'font-weight': 'bold', 'color': STATE_COLOURS.DOWN,
  }},
  {selector: 'node[state = "deleted"]', style: {'border-style': 'dashed',
    'opacity': 0.6}},
  {selector: 'node.focus', style: {'width': 34, 'height': 34}},
  {selector: 'node.chosen', style: {
    'underlay-color': '#1e88e5', 'underlay-opacity': 0.35,
    'underlay-padding': 7}},
  {selector: 'node.impacted', style: {
    'underlay-color': '#ff8c00', 'underlay-opacity': 0.55,
    'underlay-padding': 6}},
  {selector: 'node.on-path', style: {
    'underlay-color': '#1e88e5', 'underlay-opacity': 0.3,
    'underlay-padding': 6}},
  {selector: 'node.root-cause', style: {
    'underlay-color': STATE_COLOURS.DOWN, 'underlay-opacity': 0.6,
    'underlay-padding': 10}},
  {selector: '.faded', style: {'opacity': 0.25}},
  {selector: 'edge', style: {
    'width': 1.5, 'line-color': '#9aa3ad', 'curve-style': 'bezier',
    'target-arrow-shape': 'triangle', 'target-arrow-color': '#9aa3ad',
    'arrow-scale': 0.8,
  }},
  {selector: 'edge[state = "DOWN"], edge[state = "ERROR"]', style: {
    'line-color': STATE_COLOURS.DOWN, 'target-arrow-color':
    STATE_COLOURS.DOWN}},
  {selector: 'edge[state = "deleted"]', style: {'line-style': 'dashed'}},
  {selector: 'edge.impacted, edge.on-path', style: {
    'width': 3, 'line-color': '#ff8c00', 'target-arrow-color': '#ff8c00'}},
];

const LAYOUT = {
  name: 'dagre', rankDir: 'LR', nodeSep: 14, rankSep: 70, edgeSep: 8,
  nodeDimensionsIncludeLabels: true, fit: false, animate: false,
};
// A fit never zooms in beyond this (a small clique stays its size), nor
// out below the zoom where labels are still readable: a big clique opens
// around its focus, the "Fit" button (or the wheel) shows all of it.
const MAX_FIT_ZOOM = 1.3;
const READABLE_ZOOM = 0.85;
const PADDING = 40;

export class Graph {
  constructor(container, {onSelect, onFocus}) {
    this.cy = cytoscape({
      container, style: STYLE, elements: [], minZoom: 0.02, maxZoom: 3,
      boxSelectionEnabled: false, autoungrabify: false,
      selectionType: 'single', wheelSensitivity: 0.3,
    });
    this.focusId = null;
    this.cy.on('tap', 'node', (event) => onSelect(event.target.id()));
    this.cy.on('dbltap', 'node', (event) => onFocus(event.target.id()));
  }

  // Draws ``graph`` ({nodes, edges}) around ``focusId``; resolves once
  // the layout is done and painted.
  draw(graph, focusId) {
    this.focusId = focusId;
    this.cy.elements().remove();
    this.cy.add(this.elementsOf(graph));
    return this.layout();
  }

  // The same focus with a new answer: states and labels change in place;
  // the layout is redone only when the set of nodes or edges changed.
  // The chosen node and the highlights stay.
  update(graph) {
    const elements = this.elementsOf(graph);
    const wanted = new Set(elements.map((e) => e.data.id));
    const current = new Set(this.cy.elements().map((e) => e.id()));
    const same = wanted.size === current.size &&
      [...wanted].every((id) => current.has(id));
    if (!same) {
      const kept = this.cy.elements().filter((e) => wanted.has(e.id()));
      const classes = new Map(kept.map((e) => [e.id(), e.classes()]));
      this.cy.elements().filter((e) => !wanted.has(e.id())).remove();
      for (const element of elements) {
        if (!current.has(element.data.id)) this.cy.add(element);
      }
      for (const [id, cls] of classes) this.cy.getElementById(id).classes(cls);
    }
    for (const element of elements) {
      const existing = this.cy.getElementById(element.data.id);
      existing.data(element.data);
      if (element.group === 'nodes') {
        existing.toggleClass('alarm', ALARM_STATES.has(element.data.state));
      }
    }
    return same ? Promise.resolve() : this.layout();
  }

  elementsOf(graph) {
    const ids = new Set(graph.nodes.map((n) => n.id));
    const nodes = graph.nodes.map((object) => ({
      group: 'nodes', data: nodeData(object),
      classes: [ALARM_STATES.has(object.state) ? 'alarm' : '',
        object.id === this.focusId ? 'focus' : ''].join(' ').trim(),
    }));
    const seen = new Set();
    const edges = [];
    for (const edge of graph.edges) {
      const data = edgeData(edge);
      if (!ids.has(data.source) || !ids.has(data.target) ||
          seen.has(data.id)) continue;
      seen.add(data.id);
      edges.push({group: 'edges', data});
    }
    return [...nodes, ...edges];
  }

  layout() {
    return new Promise((resolve) => {
      const layout = this.cy.layout(LAYOUT);
      layout.one('layoutstop', () => {
        this.fit();
        requestAnimationFrame(() => {
          performance.mark('calipso:graph-drawn');
          resolve();
        });
      });
      layout.run();
    });
  }

  // Fits ``elements`` (default: all) in the pane as it is now sized,
  // at a readable zoom unless ``whole``: then centred on the focus.
  fit(elements, whole = false) {
    this.cy.resize();
    const shown = elements && elements.nonempty() ? elements :
      this.cy.elements();
    this.cy.fit(shown, PADDING);
    if (this.cy.zoom() > MAX_FIT_ZOOM) {
      this.cy.zoom(MAX_FIT_ZOOM);
      this.cy.center(shown);
    } else if (!whole && this.cy.zoom() < READABLE_ZOOM) {
      this.cy.zoom(READABLE_ZOOM);
      const focus = this.cy.getElementById(this.focusId);
      this.cy.center(focus.nonempty() && shown.contains(focus) ? focus :
        shown);
    }
  }

  choose(id) {
    this.cy.nodes('.chosen').removeClass('chosen');
    this.cy.getElementById(id).addClass('chosen');
  }

  // ``ids`` highlighted with ``cls`` (and the edges between them), the
  // rest faded; ``rootId`` (the first non-ACTIVE of a path) marked.
  highlight(ids, cls, rootId) {
    this.clearHighlights();
    const wanted = new Set(ids);
    const nodes = this.cy.nodes().filter((n) => wanted.has(n.id()));
    nodes.addClass(cls);
    nodes.edgesWith(nodes).addClass(cls);
    this.cy.elements().not(nodes).not(nodes.edgesWith(nodes))
      .addClass('faded');
    if (rootId) this.cy.getElementById(rootId).addClass('root-cause');
    this.fit(nodes);
  }

  clearHighlights() {
    this.cy.elements().removeClass('impacted on-path root-cause faded');
    this.fit();
  }

  // The drawn node's object fields (type, state, opaque), or null.
  drawn(id) {
    const node = this.cy.getElementById(id);
    return node.nonempty() ? {id, type: node.data('type'),
      state: node.data('state'), opaque: node.data('opaque')} : null;
  }

  // What is drawn, for the browser tests and the benchmark.
  state() {
    return {
      focus: this.focusId,
      nodes: this.cy.nodes().map((n) => ({
        id: n.id(), type: n.data('type'), state: n.data('state'),
        label: n.data('label'), classes: n.classes(),
        colour: n.style('background-color'),
        box: n.renderedBoundingBox({includeLabels: true}),
      })),
      edges: this.cy.edges().map((e) => ({
        source: e.data('source'), target: e.data('target'),
        linkType: e.data('linkType'), classes: e.classes(),
      })),
    };
  }
}

export function legend(element) {
  for (const state of ['ACTIVE', 'DOWN', 'ERROR', 'BUILD', 'SHUTOFF',
    'deleted']) {
    const item = document.createElement('span');
    const dot = document.createElement('span');
    dot.className = `dot ${state}`;
    item.append(dot, state);
    element.append(item);
  }
}
