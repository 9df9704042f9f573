// Integrations: list and search, create, edit, regenerate the key pair,
// delete.

import { api, can, path } from './api.js';
import {
  $, h, put, show, time, ago, both, when, badge, icon, iconButton, copyButton, duration, showError, clearError, toast, fill, cell,
  loadingRow, openDialog, handleSubmit, showSecrets, confirmDialog, describe, FieldError,
} from './ui.js';

let items = []; // the page shown
let editing = null; // the integration being edited; null when creating
let target = null; // the integration being regenerated or deleted

// The list is paged, searched and sorted by the server: an admin of
// hundreds of integrations sees one page at a time. tokens holds the page
// token of each page up to the one shown ('' is the first), so Previous
// goes back without the server keeping state.
const PAGE_SIZE = 50;
const list = { q: '', sort: 'name', tokens: [''], next: '', total: 0, seq: 0 };

export const title = 'Integrations';

// afterChange is told after every change made here, so that the detail
// view can show it too.
let changed = () => {};
export function afterChange(fn) {
  changed = fn;
}

// reset forgets the search and the page, at sign-out.
export function reset() {
  Object.assign(list, { q: '', sort: 'name', tokens: [''], next: '', total: 0 });
  items = [];
  $('#integration-search').value = '';
  $('#integration-sort').value = 'name';
  $('#integrations-body').replaceChildren();
}

export function init({ go }) {
  $('#new-integration').addEventListener('click', () => openForm(null));
  let debounce = null;
  $('#integration-search').addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const q = $('#integration-search').value.trim();
      if (q === list.q) return;
      list.q = q;
      list.tokens = [''];
      load();
    }, 250);
  });
  $('#integration-sort').addEventListener('change', () => {
    list.sort = $('#integration-sort').value;
    list.tokens = [''];
    load();
  });
  $('#integrations-next').addEventListener('click', () => {
    if (!list.next) return;
    list.tokens.push(list.next);
    load({ top: true });
  });
  $('#integrations-prev').addEventListener('click', () => {
    if (list.tokens.length < 2) return;
    list.tokens.pop();
    load({ top: true });
  });
  $('#integrations-body').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn) return;
    const ig = items.find((i) => i.name === btn.dataset.key);
    if (!ig) return;
    if (btn.dataset.action === 'edit') openForm(ig);
    else if (btn.dataset.action === 'regenerate') openRegenerate(ig);
    else if (btn.dataset.action === 'delete') openDelete(ig);
    else if (btn.dataset.action === 'audit') go('audit', { integration: ig.name });
    else if (btn.dataset.action === 'enabled') toggleEnabled(ig);
  });
  $('#integrations-empty').addEventListener('click', (e) => {
    if (e.target.closest('[data-action=create]')) openForm(null);
  });
  handleSubmit($('#integration-form'), submitForm);
  handleSubmit($('#regenerate-form'), submitRegenerate);
  handleSubmit($('#delete-form'), submitDelete);
  $('#regenerate-grace').addEventListener('change', describeRegenerate);
  $('#ig-auth').addEventListener('change', describeAuth);
  $('#delete-confirm-name').addEventListener('input', () => {
    $('#delete-confirm').disabled = $('#delete-confirm-name').value !== target?.name;
  });
}

// load fetches the page shown (again); an answer that a newer request
// overtook is dropped. A page emptied by a deletion goes back one page.
export async function load({ top = false } = {}) {
  const body = $('#integrations-body');
  const error = $('#integrations-error');
  const seq = ++list.seq;
  clearError(error);
  if (items.length === 0) body.replaceChildren(loadingRow(8));
  $('#integrations-table').setAttribute('aria-busy', 'true');
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), sort: list.sort });
  if (list.q) params.set('q', list.q);
  const token = list.tokens.at(-1);
  if (token) params.set('page_token', token);
  let page;
  try {
    page = await api('GET', `integrations?${params}`);
  } catch (err) {
    if (seq !== list.seq) return;
    $('#integrations-table').removeAttribute('aria-busy');
    items = [];
    body.replaceChildren();
    $('#integration-count').textContent = '';
    show($('#integrations-pager'), false);
    show($('#integrations-empty'), false);
    showError(error, err, () => load());
    return;
  }
  if (seq !== list.seq) return;
  $('#integrations-table').removeAttribute('aria-busy');
  if ((page.items ?? []).length === 0 && list.tokens.length > 1) {
    list.tokens.pop();
    load({ top });
    return;
  }
  items = page.items ?? [];
  list.next = page.next_page_token ?? '';
  list.total = page.total ?? items.length;
  $('#integration-names').replaceChildren(...items.map((i) => h('option', { value: i.name })));
  render();
  if (top) $('#integrations-title').scrollIntoView({ block: 'nearest' });
}

const plural = (n) => `${n} integration${n === 1 ? '' : 's'}`;

function render() {
  const q = list.q;
  const first = (list.tokens.length - 1) * PAGE_SIZE + 1;
  const count = $('#integration-count');
  if (list.total === 0) count.textContent = q ? 'No match' : '';
  else {
    const range = list.total > items.length ? ` · ${first}–${first + items.length - 1} shown` : '';
    count.textContent = `${plural(list.total)}${q ? ` match “${q}”` : ''}${range}`;
  }
  $('#integrations-prev').disabled = list.tokens.length < 2;
  $('#integrations-next').disabled = !list.next;
  show($('#integrations-pager'), list.tokens.length > 1 || Boolean(list.next));
  let empty = null;
  if (items.length === 0 && !q) {
    empty = [
      h('p', { class: 'empty-title' }, 'No integrations yet'),
      h('p', {}, 'Create one for each service that calls your APIs; it gets its own client ID and secret.'),
      can('integrations:write') ? h('button', { type: 'button', class: 'btn btn-primary', dataset: { action: 'create' } }, 'New integration') : null,
    ];
  } else if (items.length === 0) {
    empty = [h('p', { class: 'empty-title' }, 'No match'), h('p', {}, `No integration has “${q}” in its name, description or scopes, or as a client ID.`)];
  }
  fill($('#integrations-body'), items.map(row), $('#integrations-empty'), empty);
}

// scopes shows a few scopes as they are and folds the rest.
function scopes(list) {
  if (!list?.length) return h('span', { class: 'muted' }, 'none');
  const chip = (s) => h('span', { class: 'chip' }, s);
  const FEW = 4;
  if (list.length <= FEW) return h('div', { class: 'chips' }, list.map(chip));
  return h(
    'div',
    { class: 'chips' },
    list.slice(0, FEW - 1).map(chip),
    h('details', { class: 'more-scopes' }, h('summary', {}, `+${list.length - FEW + 1} more`), h('div', { class: 'chips' }, list.slice(FEW - 1).map(chip))),
  );
}

function row(ig) {
  const write = can('integrations:write');
  const kp = ig.key_pair;
  const prev = ig.previous_key_pair;
  return h(
    'tr',
    { dataset: { name: ig.name } },
    h(
      'td',
      { class: 'cell-title' },
      h('div', { class: 'name' }, h('a', { href: `#integration/${encodeURIComponent(ig.name)}`, class: 'name-link' }, ig.name)),
      ig.description ? h('div', { class: 'desc' }, ig.description) : null,
      prev
        ? h(
          'div',
          { class: 'grace' },
          icon('alert'),
          h(
            'span',
            {},
            'Old pair ', h('code', { class: 'mono' }, prev.client_id), ' works until ', both(prev.expires_at),
            '; last used ', ago(prev.last_used_at),
          ),
        )
        : null,
    ),
    h(
      'td',
      { class: 'cell-id', 'data-label': 'Client ID' },
      kp ? h('div', { class: 'id-copy' }, h('code', { class: 'mono' }, kp.client_id), copyButton(() => kp.client_id, `Copy the client ID of ${ig.name}`, { compact: true, what: 'Client ID copied' })) : h('span', { class: 'muted' }, 'none'),
    ),
    cell(
      'Status',
      write
        ? h(
          'button',
          {
            type: 'button', class: 'switch', role: 'switch', 'aria-checked': String(!ig.disabled),
            'aria-label': `${ig.name} enabled`, title: ig.disabled ? `Suspended: resume ${ig.name}` : `Enabled: suspend ${ig.name}`,
            dataset: { action: 'enabled', key: ig.name },
          },
          h('span', { class: 'switch-track', 'aria-hidden': 'true' }, h('span', { class: 'switch-thumb' })),
          h('span', { class: 'switch-label' }, ig.disabled ? 'Suspended' : 'Enabled'),
        )
        : ig.disabled ? badge('Suspended', 'danger') : badge('Enabled', 'ok'),
    ),
    cell('Scopes', scopes(ig.scopes)),
    cell('Introspect', ig.can_introspect ? badge('Allowed', 'accent') : h('span', { class: 'muted' }, 'No')),
    cell('Created', when(ig.created_at)),
    cell('Last used', when(kp?.last_used_at)),
    h(
      'td',
      { class: 'cell-actions' },
      h(
        'div',
        { class: 'actions' },
        write ? iconButton('edit', `Edit ${ig.name}`, { short: 'Edit', dataset: { action: 'edit', key: ig.name } }) : null,
        can('audit:read') ? iconButton('audit', `Audit log of ${ig.name}`, { short: 'Audit log', dataset: { action: 'audit', key: ig.name } }) : null,
        write ? iconButton('rotate', `Regenerate the key pair of ${ig.name}`, { short: 'Regenerate', dataset: { action: 'regenerate', key: ig.name } }) : null,
        write ? iconButton('trash', `Delete ${ig.name}`, { short: 'Delete', class: 'danger', dataset: { action: 'delete', key: ig.name } }) : null,
      ),
    ),
  );
}

// The create and edit form

const words = (s) => s.split(/\s+/).filter(Boolean);

export function openForm(ig) {
  editing = ig;
  const form = $('#integration-form');
  form.reset();
  $('#ig-lifetime').placeholder = 'Server default';
  $('#integration-dialog-title').textContent = ig ? `Edit ${ig.name}` : 'New integration';
  $('#integration-submit').textContent = ig ? 'Save changes' : 'Create integration';
  const name = $('#ig-name');
  name.value = ig?.name ?? '';
  name.readOnly = Boolean(ig);
  show($('#ig-name-field'), !ig);
  if (ig) {
    $('#ig-description').value = ig.description ?? '';
    $('#ig-scopes').value = (ig.scopes ?? []).join(' ');
    $('#ig-audience').value = (ig.audience ?? []).join(' ');
    $('#ig-introspect').checked = ig.can_introspect;
    $('#ig-intro-aud').value = (ig.introspection_audience ?? []).join(' ');
    $('#ig-auth').value = ig.token_endpoint_auth_method === 'private_key_jwt' ? 'private_key_jwt' : 'client_secret_basic';
    $('#ig-jwks').value = ig.jwks ? JSON.stringify(ig.jwks, null, 1) : '';
    $('#ig-jwks-uri').value = ig.jwks_uri ?? '';
    $('#ig-dpop').checked = ig.require_dpop;
    // An integration that follows the server's default shows an empty
    // field, which keeps it following; emptying the field goes back to it.
    const secs = ig.token_lifetime_seconds;
    const unit = [86400, 3600, 60].find((u) => secs % u === 0) ?? 60;
    $('#ig-lifetime').placeholder = `${duration(secs)}, the server’s default`;
    if (!ig.token_lifetime_default) {
      $('#ig-lifetime-unit').value = String(unit);
      $('#ig-lifetime').value = String(Math.max(1, Math.round(secs / unit)));
    }
  }
  describeAuth();
  openDialog($('#integration-dialog'), ig ? $('#ig-description') : name);
}

// describeAuth shows the key fields for private_key_jwt, or when keys are
// registered already, and warns before a switch deletes secrets.
export function describeAuth() {
  const keys = $('#ig-auth').value === 'private_key_jwt';
  show($('#ig-keys'), keys || $('#ig-jwks').value.trim() !== '' || $('#ig-jwks-uri').value.trim() !== '');
  show($('#ig-auth-warning'), keys && Boolean(editing) && editing.token_endpoint_auth_method !== 'private_key_jwt');
}

// keyFields reads the key set and its URL: the set parsed, so that a typo
// is named at its field before anything is sent.
function keyFields() {
  const raw = $('#ig-jwks').value.trim();
  let jwks = null;
  if (raw !== '') {
    try {
      jwks = JSON.parse(raw);
    } catch {
      throw new FieldError($('#ig-jwks'), 'The public keys must be a JSON Web Key Set: {"keys": [ … ]}.');
    }
    if (typeof jwks !== 'object' || !Array.isArray(jwks?.keys)) {
      throw new FieldError($('#ig-jwks'), 'The public keys must be a JSON Web Key Set: {"keys": [ … ]}.');
    }
  }
  const uri = $('#ig-jwks-uri').value.trim() || null;
  const method = $('#ig-auth').value;
  if (method === 'private_key_jwt' && !jwks && !uri) {
    throw new FieldError($('#ig-jwks'), 'Give its public keys, or the URL of its key set.');
  }
  if (jwks && uri) throw new FieldError($('#ig-jwks-uri'), 'Give the keys or their URL, not both.');
  return { method, jwks, uri };
}

function lifetimeSeconds() {
  const v = $('#ig-lifetime').value.trim();
  if (v === '') return undefined;
  return Number(v) * Number($('#ig-lifetime-unit').value);
}

async function submitForm() {
  const fields = {
    description: $('#ig-description').value.trim(),
    scopes: words($('#ig-scopes').value),
    audience: words($('#ig-audience').value),
    can_introspect: $('#ig-introspect').checked,
    introspection_audience: words($('#ig-intro-aud').value),
    require_dpop: $('#ig-dpop').checked,
  };
  const keys = keyFields();
  const lifetime = lifetimeSeconds();
  if (lifetime !== undefined && !(Number.isInteger(lifetime) && lifetime >= 60 && lifetime <= 30 * 86400)) {
    throw new FieldError($('#ig-lifetime'), 'The token lifetime must be between 1 minute and 30 days.');
  }
  if (!editing) {
    const name = $('#ig-name').value.trim();
    const body = { name, ...fields, token_endpoint_auth_method: keys.method };
    if (keys.jwks) body.jwks = keys.jwks;
    if (keys.uri) body.jwks_uri = keys.uri;
    if (lifetime !== undefined) body.token_lifetime_seconds = lifetime;
    const created = await api('POST', 'integrations', body);
    changed();
    showSecretsLater({
      title: 'Integration created',
      lede: ['Give these credentials to ', h('strong', {}, created.name), '. It exchanges them for access tokens at ', h('code', {}, '/oauth2/token'), '.'],
      pair: created.key_pair,
    });
    load();
    return true;
  }
  // Send only what changed.
  const patch = {};
  if (fields.description !== editing.description) patch.description = fields.description;
  if (fields.scopes.join(' ') !== (editing.scopes ?? []).join(' ')) patch.scopes = fields.scopes;
  if (fields.audience.join(' ') !== (editing.audience ?? []).join(' ')) patch.audience = fields.audience;
  if (fields.can_introspect !== editing.can_introspect) patch.can_introspect = fields.can_introspect;
  if (fields.introspection_audience.join(' ') !== (editing.introspection_audience ?? []).join(' ')) patch.introspection_audience = fields.introspection_audience;
  if (fields.require_dpop !== editing.require_dpop) patch.require_dpop = fields.require_dpop;
  if (keys.method !== (editing.token_endpoint_auth_method === 'private_key_jwt' ? 'private_key_jwt' : 'client_secret_basic')) patch.token_endpoint_auth_method = keys.method;
  if (JSON.stringify(keys.jwks) !== JSON.stringify(editing.jwks ?? null)) patch.jwks = keys.jwks;
  if (keys.uri !== (editing.jwks_uri ?? null)) patch.jwks_uri = keys.uri;
  if (lifetime === undefined && !editing.token_lifetime_default) patch.token_lifetime_seconds = null;
  if (lifetime !== undefined && (editing.token_lifetime_default || lifetime !== editing.token_lifetime_seconds)) patch.token_lifetime_seconds = lifetime;
  if (Object.keys(patch).length > 0) {
    await api('PATCH', path`integrations/${editing.name}`, patch);
    toast(`${editing.name} saved`);
    load();
    changed();
  }
  return true;
}

// tokenEndpoint is where integrations trade their pair for tokens: the
// server's metadata says so (RFC 8414); this origin's /oauth2/token when
// the metadata cannot be read (the admin API on a listener of its own).
let endpoint = null;

async function tokenEndpoint() {
  if (endpoint) return endpoint;
  try {
    const res = await fetch('/.well-known/oauth-authorization-server', { cache: 'no-store', credentials: 'omit', redirect: 'error' });
    if (res.ok) endpoint = (await res.json()).token_endpoint ?? null;
  } catch {
    // Not served here; fall back below.
  }
  endpoint ??= `${location.origin}/oauth2/token`;
  return endpoint;
}

// shellQuote quotes s for a POSIX shell.
const shellQuote = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;

// showSecretsLater opens the secret dialog once the form dialog has
// closed, so that focus returns from it to the page. Beside the pair: the
// token endpoint and a curl line that fetches a token with it.
async function showSecretsLater({ title, lede, pair }) {
  const url = await tokenEndpoint();
  if (pair.client_secret == null) {
    // A private_key_jwt pair: nothing secret to show once, only where and how.
    setTimeout(
      () =>
        showSecrets({
          title,
          lede: [...lede, ' It has no secret: it signs a client assertion with one of its registered keys.'],
          secret: false,
          fields: [
            { id: 'secret-client-id', label: 'Client ID', value: pair.client_id },
            { id: 'secret-token-endpoint', label: 'Token endpoint', value: url },
            {
              id: 'secret-assertion', label: 'Send with each token request', rows: 2,
              value: `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=<a JWT with iss and sub ${pair.client_id}, aud ${url}, a fresh jti and exp within 5 minutes>`,
            },
          ],
        }),
      0,
    );
    return;
  }
  const curl = `curl -s -u ${shellQuote(`${pair.client_id}:${pair.client_secret}`)} -d grant_type=client_credentials ${shellQuote(url)}`;
  setTimeout(
    () =>
      showSecrets({
        title,
        lede,
        fields: [
          { id: 'secret-client-id', label: 'Client ID', value: pair.client_id },
          { id: 'secret-client-secret', label: 'Client secret', value: pair.client_secret },
          { id: 'secret-token-endpoint', label: 'Token endpoint', value: url },
          { id: 'secret-curl', label: 'Fetch a token with curl', value: curl, rows: 3, hint: 'It holds the secret: run it, do not store it.' },
        ],
      }),
    0,
  );
}

// Regenerate

export function openRegenerate(ig) {
  target = ig;
  $('#regenerate-form').reset();
  $('#regenerate-name').textContent = ig.name;
  describeRegenerate();
  openDialog($('#regenerate-dialog'), $('#regenerate-grace'));
}

// describeRegenerate says what stops working. During a grace period the
// pair still in grace is revoked at once whatever grace is chosen: at most
// two pairs ever work.
function describeRegenerate() {
  const grace = Number($('#regenerate-grace').value);
  const prev = target?.previous_key_pair;
  put(
    $('#regenerate-warning'),
    h('strong', {}, grace === 0 ? 'Everything using the current pair stops working now.' : `The current pair stops working in ${duration(grace)}.`),
    target?.token_endpoint_auth_method === 'private_key_jwt'
      ? ' Every deployment that uses it must be given the new client ID (its keys stay the same)'
      : ' Every integration that uses it must be given the new client ID and secret',
    grace === 0 ? ', and the access tokens already issued to it stop working too.' : ' before then; its access tokens stop working at the same time.',
    prev
      ? h(
        'span',
        { class: 'grace-warning' },
        h('strong', {}, ' The older pair still in its grace period, '),
        h('code', { class: 'mono' }, prev.client_id),
        h('strong', {}, ', is revoked at once'),
        ' (it would have worked until ',
        time(prev.expires_at),
        '), with its access tokens: at most two pairs ever work.',
      )
      : null,
  );
}

async function submitRegenerate() {
  const grace = Number($('#regenerate-grace').value);
  const body = grace > 0 ? { grace_seconds: grace } : {};
  const oldID = target.key_pair?.client_id;
  const pair = await api('POST', path`integrations/${target.name}/key-pair`, body);
  const oldPair = oldID ? ['The old pair ', h('code', { class: 'mono' }, oldID)] : ['The old pair'];
  const lede =
    pair.previous_expires_at && new Date(pair.previous_expires_at) > new Date()
      ? ['The new pair for ', h('strong', {}, target.name), ' works now. ', ...oldPair, ' keeps working until ', both(pair.previous_expires_at), '.']
      : ['The new pair for ', h('strong', {}, target.name), ' works now. ', ...oldPair, ' was revoked now, with its access tokens.'];
  showSecretsLater({ title: 'New key pair', lede, pair });
  load();
  changed();
  return true;
}

// Suspend and resume

// toggleEnabled suspends ig (after asking: everything using it stops) or
// resumes it.
export function toggleEnabled(ig) {
  const set = async (disabled) => {
    await api('PATCH', path`integrations/${ig.name}`, { disabled });
    toast(`${ig.name} ${disabled ? 'suspended' : 'resumed'}`);
    changed();
    await load();
  };
  if (ig.disabled) {
    set(false).catch((err) => toast(describe(err), 'error'));
    return;
  }
  confirmDialog({
    title: 'Suspend integration',
    text: [
      h('strong', {}, `${ig.name} stops working now.`),
      ' Its key pairs are refused and its access tokens introspect as inactive until you resume it; then its unexpired tokens work again. Nothing is deleted.',
    ],
    confirm: `Suspend ${ig.name}`,
    action: () => set(true),
  });
}

// Delete

export function openDelete(ig) {
  target = ig;
  $('#delete-form').reset();
  $('#delete-name').textContent = ig.name;
  $('#delete-name-again').textContent = ig.name;
  $('#delete-confirm').disabled = true;
  openDialog($('#delete-dialog'), $('#delete-confirm-name'));
}

async function submitDelete() {
  if ($('#delete-confirm-name').value !== target.name) return false;
  await api('DELETE', path`integrations/${target.name}`);
  toast(`Integration ${target.name} deleted`);
  load();
  changed(target.name);
  return true;
}
