// The detail view of one integration, at #integration/NAME so that its
// address can be shared: its key pairs with their last use and grace, its
// settings, who made it, the tokens issued to it recently and its recent
// audit trail; with the actions of the list.

import { api, can, path } from './api.js';
import { $, h, put, show, both, when, badge, duration, copyButton, showError, clearError, iconButton, confirmDialog, toast, cell, describe } from './ui.js';
import { afterChange, openForm, openRegenerate, openDelete, toggleEnabled } from './integrations.js';

export const title = 'Integration';

let current = null; // the integration shown
let name = '';
const TOKENS = 10; // tokens shown at first, and added by "Show older tokens"
let tokensNext = ''; // the page token of the older tokens, if any

export function init({ go }) {
  afterChange((deleted) => {
    if (location.hash.startsWith('#integration/')) {
      if (deleted && deleted === name) go('integrations');
      else load({ name });
    }
  });
  $('#detail-body').addEventListener('click', (e) => {
    if (current && e.target.closest('button[data-action="end-grace"]')) endGrace(current);
    if (current && e.target.closest('button[data-action="more-tokens"]')) moreTokens(current);
  });
  $('#detail-actions').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || !current) return;
    const a = btn.dataset.action;
    if (a === 'edit') openForm(current);
    else if (a === 'regenerate') openRegenerate(current);
    else if (a === 'enabled') toggleEnabled(current);
    else if (a === 'delete') openDelete(current);
    else if (a === 'audit') go('audit', { integration: current.name });
  });
}

// endGrace revokes the previous pair now, after asking.
function endGrace(ig) {
  const prev = ig.previous_key_pair;
  if (!prev) return;
  confirmDialog({
    title: 'End the grace period now',
    text: [
      h('strong', {}, `The old pair ${prev.client_id} stops working now`),
      ', with every access token issued to it, instead of at ', both(prev.expires_at), '. The current pair keeps working.',
    ],
    confirm: 'Revoke the old pair',
    action: async () => {
      await api('DELETE', path`integrations/${ig.name}/previous-key-pair`);
      toast(`Old pair of ${ig.name} revoked`);
      await load({ name: ig.name });
    },
  });
}

// list shows values as chips, or "none".
const list = (xs) => (xs?.length ? h('div', { class: 'chips' }, xs.map((x) => h('span', { class: 'chip' }, x))) : h('span', { class: 'muted' }, 'none'));

// authentication says how ig's pairs authenticate and, for its own keys,
// which: by kid, as the client and the audit log name them.
function authentication(ig) {
  if (ig.token_endpoint_auth_method !== 'private_key_jwt') {
    const keys = ig.jwks?.keys?.length ?? 0;
    return ['client secret', keys ? h('span', { class: 'muted' }, ` and its own keys (${keys} registered; switch to keys to retire the secret)`) : null];
  }
  if (ig.jwks_uri) return ['its own keys, from ', h('code', { class: 'mono' }, ig.jwks_uri)];
  const kids = (ig.jwks?.keys ?? []).map((k) => k.kid || `${k.kty} key without kid`);
  return ['its own keys: ', list(kids)];
}

export function reset() {
  current = null;
  name = '';
}

export async function load(opts) {
  name = opts?.name ?? name;
  const error = $('#detail-error');
  clearError(error);
  $('#detail-title').textContent = name;
  document.title = `${name} · latchkey admin`;
  let ig;
  let events = [];
  let tokens;
  try {
    [ig, events, tokens] = await Promise.all([
      api('GET', path`integrations/${name}`),
      can('audit:read') ? api('GET', `audit?${new URLSearchParams({ integration: name, limit: '10' })}`).then((p) => p.items ?? []) : [],
      // The view is still worth showing without them.
      api('GET', `${path`integrations/${name}/tokens`}?limit=${TOKENS}`).catch((err) => ({ error: err })),
    ]);
  } catch (err) {
    current = null;
    put(
    $('#detail-body'),);
    show($('#detail-actions'), false);
    showError(error, err.status === 404 ? { description: `There is no integration named ${name}.` } : err, err.status === 404 ? undefined : () => load());
    return;
  }
  current = ig;
  render(ig, events, tokens);
}

// moreTokens adds the next page of older tokens to the table.
async function moreTokens(ig) {
  const btn = $('#detail-tokens button[data-action="more-tokens"]');
  btn.disabled = true;
  try {
    const page = await api('GET', `${path`integrations/${ig.name}/tokens`}?${new URLSearchParams({ limit: String(TOKENS), page_token: tokensNext })}`);
    $('#detail-tokens tbody').append(...(page.items ?? []).map((t) => tokenRow(t, ig)));
    tokensNext = page.next_page_token ?? '';
    show(btn, tokensNext !== '');
  } catch (err) {
    toast(describe(err), 'error');
  } finally {
    btn.disabled = false;
  }
}

// tokensCard shows the newest access tokens of ig: to which pair each
// went, what it may do, and whether it still works; never a token.
function tokensCard(ig, page) {
  const items = page?.items ?? [];
  tokensNext = page?.next_page_token ?? '';
  let body;
  if (page?.error) body = h('p', { class: 'alert' }, `The tokens could not be read: ${describe(page.error)}`);
  else if (items.length === 0) body = h('p', { class: 'muted' }, 'None stored: no token was issued, or every one has expired and been deleted.');
  else {
    body = h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table' },
        h('thead', {}, h('tr', {}, ['Issued', 'Key pair', 'Scopes', 'Audience', 'Expires', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, items.map((t) => tokenRow(t, ig))),
      ),
    );
  }
  return h(
    'section',
    { class: 'card', id: 'detail-tokens' },
    h('h3', {}, 'Tokens issued recently'),
    body,
    h('button', { type: 'button', class: 'btn btn-sm more', dataset: { action: 'more-tokens' }, hidden: tokensNext === '' }, 'Show older tokens'),
  );
}

function tokenRow(t, ig) {
  const pair =
    t.client_id === ig.key_pair?.client_id ? badge('current', 'ok')
      : t.client_id === ig.previous_key_pair?.client_id ? badge('in grace', 'warn')
        : badge('revoked', 'neutral');
  return h(
    'tr',
    {},
    cell('Issued', when(t.issued_at)),
    cell('Key pair', h('span', { class: 'pair-id' }, h('code', { class: 'mono' }, t.client_id), ' ', pair)),
    cell('Scopes', list(t.scopes)),
    cell('Audience', list(t.audience)),
    cell('Expires', when(t.expires_at)),
    cell('Status', t.active ? badge('Active', 'ok') : badge('Inactive', 'neutral')),
  );
}

function pairCard(heading, kp, extra) {
  return h(
    'section',
    { class: 'card pair' },
    h('h3', {}, heading),
    h('div', { class: 'id-copy' }, h('code', { class: 'mono' }, kp.client_id), copyButton(() => kp.client_id, `Copy the client ID ${kp.client_id}`, { compact: true, what: 'Client ID copied' })),
    h(
      'dl',
      { class: 'kv' },
      h('dt', {}, 'Created'), h('dd', {}, both(kp.created_at)),
      h('dt', {}, 'Last used'), h('dd', {}, both(kp.last_used_at)),
      extra,
    ),
  );
}

function render(ig, events, tokens) {
  const write = can('integrations:write');
  $('#detail-title').textContent = ig.name;
  $('#detail-status').replaceChildren(ig.disabled ? badge('Suspended', 'danger') : badge('Enabled', 'ok'));
  put(
    $('#detail-actions'),
    write
      ? h('button', { type: 'button', class: 'btn', dataset: { action: 'enabled', key: ig.name } }, ig.disabled ? 'Resume' : 'Suspend')
      : null,
    write ? iconButton('edit', `Edit ${ig.name}`, { short: 'Edit', dataset: { action: 'edit', key: ig.name } }) : null,
    write ? iconButton('rotate', `Regenerate the key pair of ${ig.name}`, { short: 'Regenerate', dataset: { action: 'regenerate', key: ig.name } }) : null,
    can('audit:read') ? iconButton('audit', `Audit log of ${ig.name}`, { short: 'Audit log', dataset: { action: 'audit', key: ig.name } }) : null,
    write ? iconButton('trash', `Delete ${ig.name}`, { short: 'Delete', class: 'danger', dataset: { action: 'delete', key: ig.name } }) : null,
  );
  show($('#detail-actions'));
  const prev = ig.previous_key_pair;
  put(
    $('#detail-body'),
    ig.description ? h('p', { class: 'lede' }, ig.description) : null,
    h(
      'div',
      { class: 'pairs' },
      ig.key_pair ? pairCard('Current key pair', ig.key_pair) : h('section', { class: 'card pair' }, h('h3', {}, 'Current key pair'), h('p', { class: 'muted' }, 'None: its pair was revoked. Regenerate to give it one.')),
      prev
        ? pairCard('Previous key pair, in its grace period', prev, [
          h('dt', {}, 'Works until'), h('dd', {}, both(prev.expires_at)),
          write
            ? [h('dt', {}, h('span', { class: 'visually-hidden' }, 'Action')), h('dd', {}, h('button', { type: 'button', class: 'btn btn-sm btn-danger-ghost', dataset: { action: 'end-grace' } }, 'End the grace now'))]
            : null,
        ])
        : null,
    ),
    h(
      'section',
      { class: 'card' },
      h('h3', {}, 'Settings'),
      h(
        'dl',
        { class: 'kv' },
        h('dt', {}, 'Scopes'), h('dd', {}, list(ig.scopes)),
        h('dt', {}, 'Audience'), h('dd', {}, list(ig.audience)),
        h('dt', {}, 'Token lifetime'), h('dd', {}, duration(ig.token_lifetime_seconds), ig.token_lifetime_default ? h('span', { class: 'muted' }, ' (the server’s default)') : null),
        h('dt', {}, 'Token rate'), h('dd', {}, ig.token_rate_per_minute === null ? h('span', { class: 'muted' }, 'the server’s default') : ig.token_rate_per_minute === 0 ? 'no cap' : `${ig.token_rate_per_minute} a minute`),
        h('dt', {}, 'Introspection'), h('dd', {}, ig.can_introspect ? 'allowed' : 'not allowed'),
        ig.can_introspect && ig.introspection_audience?.length
          ? [h('dt', {}, 'Sees tokens for'), h('dd', {}, list(ig.introspection_audience))]
          : null,
        h('dt', {}, 'Authentication'), h('dd', {}, authentication(ig)),
        h('dt', {}, 'DPoP'), h('dd', {}, ig.require_dpop ? 'required: every token is bound to the client’s key' : h('span', { class: 'muted' }, 'optional')),
        h('dt', {}, 'Created'), h('dd', {}, both(ig.created_at), ' by ', h('strong', {}, ig.created_by || 'unknown')),
        h('dt', {}, 'Updated'), h('dd', {}, both(ig.updated_at)),
      ),
    ),
    tokensCard(ig, tokens),
    can('audit:read')
      ? h(
        'section',
        { class: 'card' },
        h('h3', {}, 'Recent changes'),
        events.length
          ? h('ul', { class: 'trail' }, events.map((e) => h('li', {}, when(e.time), ' ', badge(e.action, 'neutral'), ' by ', h('strong', {}, e.actor))))
          : h('p', { class: 'muted' }, 'No events.'),
      )
      : null,
  );
}
