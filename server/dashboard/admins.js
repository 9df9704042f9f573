// Admins: list, add (their first token is shown once), remove.

import { api, listAll, path } from './api.js';
import {
  $, h, when, badge, showError, clearError, toast, fill, cell, loadingRow, openDialog, handleSubmit, showSecrets,
  confirmDialog,
} from './ui.js';

let items = [];

export const title = 'Admins';

export function init() {
  $('#new-admin').addEventListener('click', () => {
    $('#admin-form').reset();
    openDialog($('#admin-dialog'), $('#admin-name'));
  });
  handleSubmit($('#admin-form'), submitAdmin);
  $('#admins-body').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action=remove]');
    const a = btn && items.find((i) => i.name === btn.dataset.key);
    if (a) remove(a);
  });
}

export async function load() {
  const body = $('#admins-body');
  const error = $('#admins-error');
  clearError(error);
  if (items.length === 0) body.replaceChildren(loadingRow(3));
  try {
    items = await listAll('admins');
  } catch (err) {
    body.replaceChildren();
    showError(error, err);
    return;
  }
  fill(body, items.map(row), $('#admins-empty'), h('p', { class: 'empty-title' }, 'No admins'));
}

function row(a) {
  return h(
    'tr',
    { dataset: { name: a.name } },
    h('td', { class: 'cell-title' }, h('div', { class: 'name' }, a.name, a.name === 'bootstrap' ? [' ', badge('built-in', 'neutral')] : null)),
    cell('Added', when(a.created_at)),
    h(
      'td',
      { class: 'cell-actions' },
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'btn btn-sm btn-danger-ghost', dataset: { action: 'remove', key: a.name }, 'aria-label': `Remove ${a.name}` }, 'Remove'),
      ),
    ),
  );
}

async function submitAdmin() {
  const created = await api('POST', 'admins', { name: $('#admin-name').value.trim() });
  setTimeout(() =>
    showSecrets({
      title: `Admin ${created.name} added`,
      lede: ['Give this first admin token to ', h('strong', {}, created.name), ' over a channel you trust. They can generate more tokens themselves.'],
      fields: [{ id: 'secret-admin-token', label: 'Admin token', value: created.token }],
    }),
  );
  load();
  return true;
}

function remove(a) {
  confirmDialog({
    title: 'Remove admin',
    text: [h('strong', {}, `${a.name} loses access now.`), ' Every admin token of theirs is revoked. Integrations they created keep working.'],
    confirm: `Remove ${a.name}`,
    action: async () => {
      await api('DELETE', path`admins/${a.name}`);
      toast(`Admin ${a.name} removed`);
      await load();
    },
  });
}
