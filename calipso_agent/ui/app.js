// The topology page (doc/ui.md): sign-in, then the tree, the graph of
// the focus object's clique, the side panel, impact and path; the graph
// and the panel follow the inventory live (conditional GETs: a poll that
// finds nothing new costs a 304).

import {
  AuthError, chainOf, dependentsOf, graphOf, inventory, token,
} from './api.js';
import {Graph, legend} from './graph.js';
import {Panel} from './panel.js';
import {Report, firstNotActive} from './report.js';
import {Tree, search} from './tree.js';

const POLL_MS = 5000;
const $ = (id) => document.getElementById(id);

const page = {
  focusId: null, // whose clique is drawn
  chosenId: null, // shown in the panel
  chosen: null,
  cliqueEtag: null,
  mode: null, // 'impact' | 'path' | null
  timer: null,
};

let tree;
let graph;
let panel;
let report;
// The search typed last: an older answer arriving late is not shown.
let searchSeq = 0;
let searchTimer;

function status(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function failed(error) {
  if (error instanceof AuthError) {
    signOut(error.message);
    return;
  }
  status(error.message, true);
}

function signOut(message = '') {
  token.clear();
  clearInterval(page.timer);
  page.timer = null;
  $('main').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('token-input').value = '';
  $('token-input').focus();
}

async function signIn(event) {
  event.preventDefault();
  const value = $('token-input').value.trim();
  $('token-input').value = '';
  if (!value) return;
  token.set(value);
  await start();
}

async function start() {
  $('signin').hidden = true;
  $('main').hidden = false;
  status('loading…');
  try {
    await tree.load();
    status('');
  } catch (error) {
    failed(error);
    return;
  }
  clearInterval(page.timer);
  page.timer = setInterval(poll, POLL_MS);
}

// Makes ``id`` the focus: its clique drawn, it chosen.
async function focus(id) {
  performance.clearMarks('calipso:graph-start');
  performance.mark('calipso:graph-start');
  page.focusId = id;
  page.mode = null;
  report.section.hidden = true;
  status('loading…');
  try {
    const [answer] = await Promise.all([inventory.clique(id), choose(id)]);
    page.cliqueEtag = answer.etag;
    await graph.draw(graphOf(answer.body), id);
    graph.choose(id);
    performance.measure('calipso:graph', 'calipso:graph-start',
      'calipso:graph-drawn');
    $('focus-title').textContent =
      `${page.chosen?.type || ''} ${page.chosen?.name || id}`;
    const count = graph.cy.nodes().length;
    status(`${count} object${count === 1 ? '' : 's'}`);
  } catch (error) {
    failed(error);
  }
}

// Shows ``id`` in the panel (and marks it in the tree and the graph).
async function choose(id) {
  page.chosenId = id;
  tree.markSelected(id);
  graph.choose(id);
  const drawn = graph.drawn(id);
  if (drawn?.opaque) {
    page.chosen = null;
    panel.show(drawn, []);
    for (const button of ['impact-button', 'path-button']) {
      $(button).disabled = true;
    }
    return;
  }
  const [object, links] = await Promise.all([
    inventory.object(id), inventory.links(id).catch(() => []),
  ]);
  if (page.chosenId !== id) return;
  page.chosen = object;
  panel.show(object, links);
  for (const button of ['impact-button', 'path-button']) {
    $(button).disabled = false;
  }
}

async function showImpact() {
  const start = page.chosen;
  if (!start) return;
  try {
    const dependents = dependentsOf(await inventory.impact(start.id));
    page.mode = 'impact';
    report.showImpact(start, dependents);
    graph.highlight([start.id, ...dependents.map((d) => d.id)], 'impacted');
    $('clear-button').disabled = false;
    status(`impact: ${dependents.length}`);
  } catch (error) {
    failed(error);
  }
}

async function showPath() {
  const start = page.chosen;
  if (!start) return;
  try {
    const chain = chainOf(await inventory.path(start.id));
    page.mode = 'path';
    const bad = report.showPath(start, chain);
    graph.highlight(chain.map((o) => o.id), 'on-path', bad?.id);
    $('clear-button').disabled = false;
    status(bad ? `first not ACTIVE: ${bad.type}` : 'path ACTIVE');
  } catch (error) {
    failed(error);
  }
}

function clearHighlights() {
  page.mode = null;
  report.section.hidden = true;
  graph.clearHighlights();
  $('clear-button').disabled = true;
}

// One live refresh: the clique again (304 when unchanged) and the chosen
// object; the focus, the chosen object and the highlights stay.
async function poll() {
  if (!$('live-toggle').checked || document.hidden || !page.focusId) return;
  const focusId = page.focusId;
  try {
    const answer = await inventory.clique(focusId, page.cliqueEtag);
    if (focusId !== page.focusId) return;
    if (!answer.notModified) {
      page.cliqueEtag = answer.etag;
      await graph.update(graphOf(answer.body));
      graph.choose(page.chosenId);
      if (page.chosenId) await choose(page.chosenId);
      if (page.mode === 'impact') await showImpact();
      if (page.mode === 'path') await showPath();
    }
    status(`updated ${new Date().toISOString().slice(11, 19)}Z`);
  } catch (error) {
    failed(error);
  }
}

async function runSearch(event) {
  event?.preventDefault();
  clearTimeout(searchTimer);
  const seq = ++searchSeq;
  const results = $('search-results');
  const text = $('search-input').value;
  if (!text.trim()) {
    results.hidden = true;
    return;
  }
  try {
    const found = await search(text);
    if (seq !== searchSeq) return;
    results.replaceChildren(...found.map((object) => tree.row(object)));
    if (!found.length) {
      const none = document.createElement('li');
      none.className = 'hint';
      none.textContent = 'nothing found';
      results.append(none);
    }
    results.hidden = false;
  } catch (error) {
    failed(error);
  }
}

function main() {
  tree = new Tree($('tree'), focus);
  graph = new Graph($('graph'), {
    onSelect: (id) => choose(id).catch(failed),
    onFocus: focus,
  });
  panel = new Panel($('panel'), focus);
  report = new Report($('report'));
  report.onHide = clearHighlights;
  legend($('legend'));

  $('signin').addEventListener('submit', signIn);
  $('signout-button').addEventListener('click', () => signOut());
  $('impact-button').addEventListener('click', showImpact);
  $('path-button').addEventListener('click', showPath);
  $('clear-button').addEventListener('click', clearHighlights);
  $('fit-button').addEventListener('click', () => graph.fit(null, true));
  $('search').addEventListener('submit', runSearch);
  $('search-input').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 300);
  });
  $('search-results').addEventListener('click', (event) => {
    const row = event.target.closest('.node-row');
    if (row) focus(row.dataset.id);
  });

  // For the browser tests and the benchmark (bench/ui.py).
  window.calipso = {
    graphState: () => graph.state(),
    focus, page, firstNotActive,
  };

  if (token.get()) {
    start();
  } else {
    signOut();
  }
}

main();
