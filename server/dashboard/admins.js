// Admins: list, add (their first token is shown once), change a role,
// remove.

import { api, can, listAll, me, path } from './api.js';
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
  $('#admins-body').addEventListener('change', (e) => {
    const sel = e.target.closest('select[data-action=role]');
    const a = sel && items.find((i) => i.name === sel.dataset.key);
    if (a) setRole(a, sel.value);
  });
}

const roles = ['owner', 'operator', 'auditor'];

export async function load() {
  const body = $('#admins-body');
  const error = $('#admins-error');
  clearError(error);
  if (items.length === 0) body.replaceChildren(loadingRow(4));
  try {
    items = await listAll('admins');
  } catch (err) {
    body.replaceChildren();
    showError(error, err, () => load());
    return;
  }
  fill(body, items.map(row), $('#admins-empty'), h('p', { class: 'empty-title' }, 'No admins'));
}

function row(a) {
  const write = can('admins:write');
  const builtIn = a.name === 'bootstrap';
  const role =
    write && !builtIn
      ? h('select', { class: 'select-sm', dataset: { action: 'role', key: a.name }, 'aria-label': `Role of ${a.name}` },
        roles.map((r) => h('option', { value: r, selected: r === a.role }, r)))
      : badge(a.role, a.role === 'owner' ? 'accent' : 'neutral');
  return h(
    'tr',
    { dataset: { name: a.name } },
    h('td', { class: 'cell-title' }, h('div', { class: 'name' }, a.name, builtIn ? [' ', badge('built-in', 'neutral')] : null)),
    cell('Role', role),
    cell('Added', when(a.created_at)),
    h(
      'td',
      { class: 'cell-actions' },
      h(
        'div',
        { class: 'actions' },
        write && !builtIn
          ? h('button', { type: 'button', class: 'btn btn-sm btn-danger-ghost', dataset: { action: 'remove', key: a.name }, 'aria-label': `Remove ${a.name}` }, 'Remove')
          : null,
      ),
    ),
  );
}

async function submitAdmin() {
  const created = await api('POST', 'admins', { name: $('#admin-name').value.trim(), role: $('#admin-role').value });
  setTimeout(() =>
    showSecrets({
      title: `Admin ${created.name} added as ${created.role}`,
      lede: ['Give this first admin token to ', h('strong', {}, created.name), ' over a channel you trust. They can generate more tokens themselves.'],
      fields: [{ id: 'secret-admin-token', label: 'Admin token', value: created.token }],
    }),
  );
  load();
  return true;
}

// setRole changes a's role; a refusal (the last owner) is shown and the
// list put back as it is.
async function setRole(a, role) {
  clearError($('#admins-error'));
  try {
    await api('PATCH', path`admins/${a.name}`, { role });
    toast(`${a.name} is now an ${role}`);
  } catch (err) {
    showError($('#admins-error'), err);
  }
  await load();
}

function remove(a) {
  const self = a.name === me.name && !me.bootstrap;
  confirmDialog({
    title: self ? 'Remove yourself' : 'Remove admin',
    text: self
      ? [h('strong', {}, 'You are removing yourself: you lose access now'), ' and this dashboard signs out. Every admin token of yours is revoked. Integrations you created keep working.']
      : [h('strong', {}, `${a.name} loses access now.`), ' Every admin token of theirs is revoked. Integrations they created keep working.'],
    confirm: self ? 'Remove myself' : `Remove ${a.name}`,
    action: async () => {
      await api('DELETE', path`admins/${a.name}`);
      toast(`Admin ${a.name} removed`);
      await load();
    },
  });
}
