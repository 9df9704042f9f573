// Admin tokens: the signed-in admin's own tokens. Generate (shown once)
// and revoke.

import { api, can, listAll, me, path } from './api.js';
import {
  $, h, both, when, badge, showError, clearError, toast, fill, cell, loadingRow, openDialog, handleSubmit, showSecrets,
  confirmDialog,
} from './ui.js';

let items = [];

export const title = 'Admin tokens';

export function init() {
  $('#new-token').addEventListener('click', () => {
    $('#token-form').reset();
    syncNever();
    openDialog($('#token-dialog'), $('#token-description'));
  });
  $('#token-never').addEventListener('change', syncNever);
  handleSubmit($('#token-form'), submitToken);
  $('#tokens-body').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action=revoke]');
    const t = btn && items.find((i) => i.id === btn.dataset.key);
    if (t) revoke(t);
  });
}

function syncNever() {
  const never = $('#token-never').checked;
  $('#token-days').disabled = never;
}

export async function load() {
  const body = $('#tokens-body');
  const error = $('#tokens-error');
  clearError(error);
  if (items.length === 0) body.replaceChildren(loadingRow(7));
  try {
    items = await listAll('tokens');
  } catch (err) {
    body.replaceChildren();
    showError(error, err, () => load());
    return;
  }
  const now = Date.now();
  fill(
    body,
    items.map((t) => row(t, now)),
    $('#tokens-empty'),
    [
      h('p', { class: 'empty-title' }, 'No admin tokens'),
      me.bootstrap
        ? h('p', {}, 'The bootstrap token holds no admin tokens and cannot mint any: it stops working when it is removed from the configuration, and so must everything it made. Add an admin and sign in with their token.')
        : h('p', {}, 'Generate a personal token for scripts and the CLI.'),
    ],
  );
}

function row(t, now) {
  // The server says whether a token has expired; the page's own clock
  // may be off.
  const expired = t.expired ?? (t.expires_at && Date.parse(t.expires_at) <= now);
  return h(
    'tr',
    { dataset: { id: t.id } },
    h('td', { class: 'cell-title' }, h('div', { class: 'name' }, t.description || h('span', { class: 'muted' }, 'No description'))),
    cell('ID', h('code', { class: 'mono' }, t.id)),
    cell('Permissions', permissions(t.permissions ?? [])),
    cell('Created', when(t.created_at)),
    cell('Expires', expired ? h('span', {}, badge('Expired', 'danger'), ' ', when(t.expires_at)) : t.expires_at ? when(t.expires_at) : badge('Never', 'warn')),
    cell('Last used', when(t.last_used_at)),
    h(
      'td',
      { class: 'cell-actions' },
      h(
        'div',
        { class: 'actions' },
        can('admin-tokens:write')
          ? h('button', { type: 'button', class: 'btn btn-sm btn-danger-ghost', dataset: { action: 'revoke', key: t.id }, 'aria-label': `Revoke ${t.description || t.id}` }, 'Revoke')
          : null,
      ),
    ),
  );
}

// permissions shows a short list as it is and a long one folded, so a row
// stays a row.
function permissions(ps) {
  if (ps.length === 0) return h('span', { class: 'muted' }, 'none: it only says whose it is');
  const chips = h('div', { class: 'chips' }, ps.map((p) => h('span', { class: 'chip' }, p)));
  return ps.length <= 3 ? chips : h('details', { class: 'perms' }, h('summary', {}, `${ps.length} permissions`), chips);
}

async function submitToken() {
  const never = $('#token-never').checked;
  const days = never ? -1 : Number($('#token-days').value);
  const created = await api('POST', 'tokens', { description: $('#token-description').value.trim(), expires_in_days: days });
  setTimeout(() =>
    showSecrets({
      title: 'Admin token generated',
      lede: created.expires_at
        ? ['Use it as ', h('code', {}, 'Authorization: Bearer …'), ' or ', h('code', {}, 'LATCHKEY_ADMIN_TOKEN'), '. It expires ', both(created.expires_at), '.']
        : ['Use it as ', h('code', {}, 'Authorization: Bearer …'), ' or ', h('code', {}, 'LATCHKEY_ADMIN_TOKEN'), '. It never expires.'],
      fields: [{ id: 'secret-admin-token', label: 'Admin token', value: created.token }],
    }),
  );
  load();
  return true;
}

function revoke(t) {
  const name = t.description ? `“${t.description}”` : t.id;
  confirmDialog({
    title: 'Revoke admin token',
    text: [
      h('strong', {}, `Anything using ${name} gets 401 from now on.`),
      ' If it is the token you signed in with, you will be signed out.',
    ],
    confirm: 'Revoke token',
    action: async () => {
      await api('DELETE', path`tokens/${t.id}`);
      toast('Token revoked');
      await load();
    },
  });
}
