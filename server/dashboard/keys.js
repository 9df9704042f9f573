// Signing keys: list, rotate.

import { api } from './api.js';
import { $, h, when, badge, showError, clearError, toast, fill, cell, loadingRow, confirmDialog } from './ui.js';

export const title = 'Signing keys';

export function init() {
  $('#rotate-key').addEventListener('click', () =>
    confirmDialog({
      title: 'Rotate signing key',
      text: [
        h('strong', {}, 'A new key starts signing JWT access tokens now.'),
        ' The current key is retired but stays in the JWKS until every token it signed has expired, so those tokens keep verifying. Resource servers that cache the JWKS must refetch it when they see the new key ID.',
      ],
      confirm: 'Rotate key',
      action: async () => {
        const k = await api('POST', 'signing-keys/rotate');
        toast(`New signing key ${k.kid} is active`);
        await load();
      },
    }),
  );
}

export async function load() {
  const body = $('#keys-body');
  const error = $('#keys-error');
  clearError(error);
  if (!body.firstChild) body.replaceChildren(loadingRow(6));
  let keys;
  try {
    keys = (await api('GET', 'signing-keys')).items ?? [];
  } catch (err) {
    body.replaceChildren();
    showError(error, err, () => load());
    return;
  }
  fill(body, keys.map(row), $('#keys-empty'), h('p', { class: 'empty-title' }, 'No signing keys'));
}

function row(k) {
  return h(
    'tr',
    {},
    h('td', { class: 'cell-title' }, h('code', { class: 'mono' }, k.kid)),
    cell('Algorithm', k.algorithm),
    cell('Status', k.status === 'active' ? badge('Active', 'ok') : badge('Retired', 'neutral')),
    cell('Created', when(k.created_at)),
    cell('Retired', when(k.retired_at, '—')),
    cell('Published until', k.status === 'active' ? h('span', { class: 'muted' }, 'while active') : when(k.published_until, 'no longer published')),
  );
}
