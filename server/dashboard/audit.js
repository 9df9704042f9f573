// The audit log, newest first, a page at a time, optionally about one
// integration.

import { api } from './api.js';
import { $, h, show, time, zone, badge, showError, clearError, fill, cell, loadingRow } from './ui.js';

const PAGE = 50;
let next = '';
let events = [];

// filters are those the address names (#audit?actor=…): integration,
// actor, action, and since and until as local dates (yyyy-mm-dd).
const FILTERS = ['integration', 'actor', 'action', 'since', 'until'];
let filters = {};

export const title = 'Audit log';

const field = (k) => $(`#audit-${k}`);

export function init({ go }) {
  $('#audit-filter').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = {};
    for (const k of FILTERS) {
      const v = field(k).value.trim();
      if (v) f[k] = v;
    }
    go('audit', f);
  });
  $('#audit-clear').addEventListener('click', () => {
    go('audit');
    $('#audit-integration').focus();
  });
  $('#audit-more').addEventListener('click', () => load({ more: true }));
  $('#audit-time-zone').textContent = `(${zone})`;
}

export function reset() {
  setFilters({});
}

function setFilters(f) {
  filters = f;
  for (const k of FILTERS) field(k).value = f[k] ?? '';
  show($('#audit-clear'), Object.keys(f).length > 0);
}

// dayStart is the start of local day d (yyyy-mm-dd) in RFC 3339, or of the
// day after it.
function dayStart(d, after = false) {
  const t = new Date(`${d}T00:00:00`);
  if (Number.isNaN(t.getTime())) return null;
  if (after) t.setDate(t.getDate() + 1);
  return t.toISOString();
}

export async function load({ more = false, query } = {}) {
  if (query) {
    const f = {};
    for (const k of FILTERS) if (query.get(k)) f[k] = query.get(k);
    setFilters(f);
  }
  const body = $('#audit-body');
  const error = $('#audit-error');
  const moreBtn = $('#audit-more');
  clearError(error);
  if (!more) {
    events = [];
    next = '';
    body.replaceChildren(loadingRow(6));
  }
  moreBtn.disabled = true;
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const k of ['integration', 'actor', 'action']) if (filters[k]) q.set(k, filters[k]);
  if (filters.since && dayStart(filters.since)) q.set('since', dayStart(filters.since));
  if (filters.until && dayStart(filters.until, true)) q.set('until', dayStart(filters.until, true));
  if (more && next) q.set('page_token', next);
  try {
    const page = await api('GET', `audit?${q}`);
    events = events.concat(page.items ?? []);
    next = page.next_page_token ?? '';
  } catch (err) {
    if (!more) body.replaceChildren();
    showError(error, err, () => load());
    return;
  } finally {
    moreBtn.disabled = false;
  }
  fill(
    body,
    events.map(row),
    $('#audit-empty'),
    h('p', { class: 'empty-title' }, Object.keys(filters).length ? 'No events match these filters' : 'No events yet'),
  );
  show(moreBtn, next !== '');
}

function actionKind(action) {
  if (/delete|revoke|remove/.test(action)) return 'danger';
  if (/regenerate|rotate/.test(action)) return 'warn';
  if (/create|add/.test(action)) return 'ok';
  return 'neutral';
}

function details(d) {
  const entries = Object.entries(d ?? {});
  if (entries.length === 0) return h('span', { class: 'muted' }, '—');
  return h(
    'dl',
    { class: 'kv' },
    entries.map(([k, v]) => [
      h('dt', {}, k.replaceAll('_', ' ')),
      h('dd', {}, Array.isArray(v) ? (v.length ? v.join(' ') : 'none') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)),
    ]),
  );
}

function row(e) {
  return h(
    'tr',
    {},
    // The log is read for what happened when: absolute times, in order.
    h('td', { class: 'cell-title' }, time(e.time, 'never', { stacked: true })),
    cell('Actor', h('span', { class: 'actor' }, badge(e.actor_type, e.actor_type === 'admin' ? 'accent' : 'neutral'), ' ', e.actor)),
    cell('Action', badge(e.action, actionKind(e.action))),
    h(
      'td',
      { class: 'cell-object', 'data-label': 'Object' },
      e.object ? h('span', {}, h('span', { class: 'muted' }, `${e.object_type.replaceAll('_', ' ')} `), h('strong', {}, e.object)) : h('span', { class: 'muted' }, '—'),
    ),
    cell('From', e.remote_addr ? h('code', { class: 'mono' }, e.remote_addr) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'cell-details', 'data-label': 'Details' }, details(e.details)),
  );
}
