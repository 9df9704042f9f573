// The audit log, newest first, a page at a time, optionally about one
// integration.

import { api } from './api.js';
import { $, h, show, when, badge, showError, clearError, fill, cell, loadingRow } from './ui.js';

const PAGE = 50;
let filter = '';
let next = '';
let events = [];

export const title = 'Audit log';

export function init() {
  $('#audit-filter').addEventListener('submit', (e) => {
    e.preventDefault();
    setFilter($('#audit-integration').value.trim());
    load();
  });
  $('#audit-clear').addEventListener('click', () => {
    setFilter('');
    load();
    $('#audit-integration').focus();
  });
  $('#audit-more').addEventListener('click', () => load({ more: true }));
}

// setFilter narrows the log to one integration ('' for everything).
export function setFilter(name) {
  filter = name;
  $('#audit-integration').value = name;
  show($('#audit-clear'), name !== '');
}

export async function load({ more = false, integration } = {}) {
  if (integration !== undefined) setFilter(integration);
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
  if (filter) q.set('integration', filter);
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
    h('p', { class: 'empty-title' }, filter ? `No events about ${filter}` : 'No events yet'),
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
    h('td', { class: 'cell-title' }, when(e.time)),
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
