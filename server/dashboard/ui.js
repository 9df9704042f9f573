// DOM helpers shared by the views. Everything is built with createElement
// and textContent: no HTML strings, so no value from the API can become
// markup (the CSP enforces it with Trusted Types).

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

// h creates an element. props: class, dataset, on<event> handlers, value,
// and attributes (true for a boolean attribute; null or false to omit).
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// put replaces el's children with children, leaving out null, undefined
// and false as h does (replaceChildren would show them as text).
export function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

// show and hide toggle the hidden attribute.
export function show(el, visible = true) {
  el.hidden = !visible;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const zoneName = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' });

// Every time the page shows is a focusable <time> whose exact UTC value
// appears beside it on hover and on keyboard focus (a title shows to
// mouse users only) and is read out with it. Absolute times are in the
// browser's time zone and say which, so a local 9:00 is never taken for
// UTC or the other way round.

// time shows an RFC 3339 time in local time with its zone ("Dec 6, 2026,
// 5:42 PM CET"); a null time is "never" (or the given word). stacked puts
// the time of day under the date, for narrow table columns.
export function time(iso, never = 'never', { stacked = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, never);
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, iso);
  const tz = h('span', { class: 'tz' }, zoneAt(d));
  if (!stacked) return h('time', { datetime: iso, tabindex: '0' }, dateTime.format(d), ' ', tz, exact(d));
  return h('time', { datetime: iso, tabindex: '0', class: 'stacked' }, h('span', {}, dateOnly.format(d)), ' ', h('span', { class: 'tod' }, timeOnly.format(d), ' ', tz), exact(d));
}

// exact is the UTC time shown on hover and focus.
function exact(d) {
  return h('span', { class: 'utc' }, h('span', { class: 'visually-hidden' }, ', '), utcText(d));
}

// zoneAt names the page's time zone as it was at d ("CET", "CEST",
// "GMT+5:30"), daylight saving time included.
function zoneAt(d) {
  return zoneName.formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? zone;
}

// zone is the time zone the page shows times in.
export const zone = Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'local time';

// utcText is d as "2026-12-06 16:25:48 UTC".
export function utcText(d) {
  return `${d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

// ago shows an RFC 3339 time relative to now ("3 minutes ago", "in 1
// hour"), with the exact UTC time on hover and focus; null is never.
export function ago(iso, never = 'never') {
  if (!iso) return h('span', { class: 'muted' }, never);
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, iso);
  const secs = (d.getTime() - Date.now()) / 1000;
  const steps = [
    [60, 'second'],
    [3600, 'minute', 60],
    [86400, 'hour', 3600],
    [86400 * 30, 'day', 86400],
    [86400 * 365, 'month', 86400 * 30],
    [Infinity, 'year', 86400 * 365],
  ];
  let text = relative.format(Math.round(secs), 'second');
  for (const [limit, unit, div = 1] of steps) {
    if (Math.abs(secs) < limit) {
      text = unit === 'second' ? (secs < 0 ? 'just now' : 'in a moment') : relative.format(Math.round(secs / div), unit);
      break;
    }
  }
  return h('time', { datetime: iso, tabindex: '0', class: 'rel' }, text, exact(d));
}

// when is the time for a table cell or a list: relative, the exact time
// on hover and focus.
export const when = (iso, never) => ago(iso, never);

// both is a time that matters to the minute (a grace deadline, an
// expiry): the local time with its zone, then how far off it is.
export const both = (iso, never) => (iso ? [time(iso), ' (', ago(iso), ')'] : ago(iso, never));

// duration formats seconds as the largest whole unit.
export function duration(seconds) {
  const units = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [n, name] of units) {
    if (seconds >= n && seconds % n === 0) {
      const v = seconds / n;
      return `${v} ${name}${v === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} seconds`;
}

export function badge(text, kind = 'neutral') {
  return h('span', { class: `badge badge-${kind}` }, text);
}

export function icon(name) {
  return h('span', { class: `i i-${name}`, 'aria-hidden': 'true' });
}

// A button that only shows an icon; label is its accessible name and
// tooltip. short, a word of label, is shown as text where there is room
// (cards on phones).
export function iconButton(name, label, { class: extra = '', short = label, ...props } = {}) {
  return h(
    'button',
    { type: 'button', class: `icon-btn ${extra}`.trim(), title: label, 'aria-label': label, ...props },
    icon(name),
    h('span', { class: 'btn-label', 'aria-hidden': 'true' }, short),
  );
}

// Messages

// permissionWords says what each permission lets an admin do, for the
// message of a refused call.
const permissionWords = {
  'integrations:read': 'see integrations',
  'integrations:write': 'change integrations (create, edit, suspend, delete, regenerate key pairs)',
  'admins:read': 'see the admins',
  'admins:write': 'manage admins',
  'audit:read': 'read the audit log',
  'signing-keys:read': 'see the signing keys',
  'signing-keys:write': 'rotate the signing key',
  'admin-tokens:read': 'see your admin tokens',
  'admin-tokens:write': 'generate or revoke admin tokens',
};

// describe turns an error into the sentence to show.
export function describe(err) {
  if (err?.code === 'insufficient_permissions') {
    // The API's description says why, after "this call needs P: ".
    const why = err.description?.match(/^this call needs \S+: (.+)$/s)?.[1];
    const words = permissionWords[err.permission];
    if (words) {
      return capitalize(`not allowed: you may not ${words}. That needs the ${err.permission} permission${why ? `, and ${why}` : ''}. Ask an owner if you need it`);
    }
  }
  if (err?.status === 429) {
    const s = err.retryAfter;
    const wait = s ? `try again in ${s} second${s === 1 ? '' : 's'}` : 'try again later';
    return `Rate limited: ${wait}. ${capitalize(err.description)}`;
  }
  return capitalize(err?.description ?? err?.message ?? String(err));
}

function capitalize(s) {
  if (!s) return '';
  const t = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

// showError puts err in the alert element el; a 401 is left to the
// sign-out that the API client already started.
// With retry, a view that could not load offers to try again.
export function showError(el, err, retry) {
  if (err?.status === 401) return;
  el.replaceChildren(describe(err));
  if (retry) {
    el.append(' ', h('button', { type: 'button', class: 'btn btn-sm', dataset: { action: 'retry' }, onclick: () => retry() }, 'Try again'));
  }
  show(el);
}

export function clearError(el) {
  el.textContent = '';
  show(el, false);
}

// FieldError is a mistake in one field, found by the page before the
// server sees it; the form shows it under that field.
export class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

// markField shows message under field, tied to it by aria-describedby,
// and marks it invalid.
function markField(field, message) {
  const id = `${field.id}-error`;
  let p = document.getElementById(id);
  if (!p) {
    p = h('p', { id, class: 'field-error' });
    (field.closest('.field') ?? field.parentElement).append(p);
  }
  p.textContent = message;
  show(p);
  field.setAttribute('aria-invalid', 'true');
  const ids = (field.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean);
  if (!ids.includes(id)) field.setAttribute('aria-describedby', [id, ...ids].join(' '));
}

// clearFormErrors takes away every error shown in form: once a value
// changes, they may no longer be true.
function clearFormErrors(form) {
  for (const f of $$('[aria-invalid="true"]', form)) f.removeAttribute('aria-invalid');
  for (const p of $$('.field-error', form)) {
    p.textContent = '';
    show(p, false);
  }
  const err = $('[data-form-error]', form);
  if (err) clearError(err);
}

// toast shows a short message in the one status region of the page
// (#toasts), which every action uses. A message from an action that runs
// inside a dialog (the dialog is busy) waits until that dialog has closed,
// so that it is seen on the page and not lost with the dialog. Any other
// message while a modal dialog is open is announced from inside it, since
// the rest of the page is inert.
export function toast(message, kind = 'ok') {
  const modal = $('dialog[open]');
  if (modal?.dataset.busy) {
    modal.addEventListener('close', () => setTimeout(() => toast(message, kind), 0), { once: true });
    return;
  }
  if (modal) {
    const live = $('.dialog-live', modal) ?? modal.appendChild(h('p', { class: 'dialog-live visually-hidden', 'aria-live': 'polite' }));
    live.textContent = message;
    return;
  }
  const region = $('#toasts');
  const t = h('div', { class: `toast toast-${kind}` }, icon(kind === 'ok' ? 'check' : 'alert'), h('span', {}, message));
  region.append(t);
  setTimeout(() => {
    t.classList.add('toast-out');
    setTimeout(() => t.remove(), 300);
  }, kind === 'ok' ? 5000 : 8000);
}

// Copying

export async function copyText(text, near) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (an old browser, plain HTTP on another
    // host): select a hidden copy inside the open dialog and copy that.
    const ta = h('textarea', { class: 'visually-hidden', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
    ta.value = text;
    (near?.closest('dialog') ?? document.body).append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

// copyButton copies getText() and says so on the button for a moment.
export function copyButton(getText, label, { compact = false, what = 'Copied' } = {}) {
  const text = h('span', {}, 'Copy');
  const btn = compact
    ? iconButton('copy', label, { class: 'icon-btn-sm' })
    : h('button', { type: 'button', class: 'btn btn-sm btn-copy', 'aria-label': label }, icon('copy'), text);
  btn.addEventListener('click', async () => {
    const ok = await copyText(getText(), btn);
    if (ok) {
      btn.classList.add('copied');
      text.textContent = 'Copied';
      toast(what);
      setTimeout(() => {
        btn.classList.remove('copied');
        text.textContent = 'Copy';
      }, 1800);
    } else {
      toast('Could not copy: select the text and copy it by hand.', 'error');
    }
  });
  return btn;
}

// Dialogs

// openDialog shows a modal dialog, clears its error, and focuses its first
// field (or the element given). When it closes, focus goes back to what
// opened it, or to its replacement if the list was redrawn meanwhile.
export function openDialog(dlg, focus) {
  const opener = document.activeElement;
  dlg.returnFocus = opener;
  dlg.returnSelector = opener?.dataset?.action
    ? `[data-action="${opener.dataset.action}"][data-key="${CSS.escape(opener.dataset.key ?? '')}"]`
    : null;
  const form = $('form', dlg);
  if (form) clearFormErrors(form);
  delete dlg.dataset.busy;
  dlg.showModal();
  const target =
    focus ?? $('[autofocus], input:not([type=hidden]):not([disabled]):not([readonly]), select, textarea', dlg) ?? $('[type=submit]', dlg);
  target?.focus();
}

export function closeDialog(dlg) {
  if (dlg.open) dlg.close();
}

// setupDialogs wires what every dialog shares: [data-close] buttons,
// no closing by Escape while a request runs, and focus return.
export function setupDialogs() {
  for (const dlg of $$('dialog')) {
    dlg.addEventListener('cancel', (e) => {
      if (dlg.dataset.busy) e.preventDefault();
    });
    dlg.addEventListener('close', () => {
      let back = dlg.returnFocus;
      if (!back?.isConnected && dlg.returnSelector) back = $(dlg.returnSelector);
      if (!back?.isConnected) back = $('.view:not([hidden]) h1');
      back?.focus();
    });
    for (const btn of $$('[data-close]', dlg)) {
      btn.addEventListener('click', () => {
        if (!dlg.dataset.busy) dlg.close();
      });
      if (btn.classList.contains('icon-btn') && !btn.firstChild) btn.append(icon('close'));
    }
  }
}

// handleSubmit runs action when form is submitted: the submit button is
// disabled and the dialog cannot be dismissed meanwhile, and an error is
// shown in the form. action returns true to close the dialog.
export function handleSubmit(form, action) {
  const dlg = form.closest('dialog');
  const stale = () => {
    if (!dlg.dataset.busy) clearFormErrors(form);
  };
  form.addEventListener('input', stale);
  form.addEventListener('change', stale);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (dlg.dataset.busy) return;
    const submit = $('[type=submit]', form);
    const err = $('[data-form-error]', form);
    clearFormErrors(form);
    dlg.dataset.busy = '1';
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    let close = false;
    let caught = null;
    try {
      close = (await action()) !== false;
    } catch (error) {
      caught = error;
      if (error instanceof FieldError) markField(error.field, error.message);
      else if (err) showError(err, error);
      else toast(describe(error), 'error');
      if (error?.status === 401) close = true;
    } finally {
      delete dlg.dataset.busy;
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
    // Keep focus in the dialog: on the field at fault, else on the error
    // (the submit button was disabled meanwhile, which dropped focus).
    if (caught && !close) {
      if (caught instanceof FieldError) caught.field.focus();
      else if (err && !err.hidden) {
        err.tabIndex = -1;
        err.focus();
      } else submit.focus();
    }
    if (close) closeDialog(dlg);
  });
}

// confirm asks before a destructive action and runs it from the dialog, so
// an error is shown there.
let confirmAction = null;

export function confirmDialog({ title, text, confirm, action }) {
  const dlg = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  put($('#confirm-text'), text);
  $('#confirm-ok').textContent = confirm;
  confirmAction = action;
  // Focus the safe choice: one Enter must not destroy anything.
  openDialog(dlg, $('#confirm-cancel'));
}

export function setupConfirm() {
  handleSubmit($('#confirm-form'), () => confirmAction());
}

// showSecrets opens the one-time dialog with the given fields, each with a
// copy button (a field with rows is a text area). The dialog cannot be
// dismissed (Escape, its close button, Done) until the admin ticks "I have
// stored it": the secret is shown this once. The values are removed from
// the page when it closes. Without a secret among the fields (a
// private_key_jwt pair), nothing is lost by closing it, so neither the
// warning nor the confirmation is asked for.
export function showSecrets({ title, lede, fields, secret = true }) {
  const dlg = $('#secret-dialog');
  dlg.dataset.secret = String(secret);
  $('#secret-title').textContent = title;
  put($('#secret-lede'), lede);
  show($('#secret-notice'), secret);
  show($('#secret-stored').closest('.check'), secret);
  $('#secret-stored').checked = false;
  show($('#secret-guard'), false);
  $('#secret-fields').replaceChildren(
    ...fields.map(({ id, label, value, rows, hint }) => {
      // A text area that wraps, so that a phone shows the whole value.
      const input = h('textarea', { id, class: 'mono secret-value', readonly: true, rows: String(rows ?? 1), spellcheck: 'false', autocomplete: 'off' });
      input.value = value;
      input.addEventListener('focus', () => input.select());
      return h(
        'div',
        { class: 'field' },
        h('label', { for: id }, label),
        h('div', { class: 'copy-row' }, input, copyButton(() => value, `Copy ${label}`, { what: `${label} copied` })),
        hint ? h('p', { class: 'hint' }, hint) : null,
      );
    }),
  );
  openDialog(dlg, $('#secret-fields button'));
}

export function setupSecrets() {
  const dlg = $('#secret-dialog');
  const forget = () => $('#secret-fields').replaceChildren();
  // tryClose closes the dialog once the admin has said the secret is
  // stored; until then it says why it stays open.
  const tryClose = () => {
    if ($('#secret-stored').checked || dlg.dataset.secret === 'false') {
      dlg.close();
      return;
    }
    show($('#secret-guard'));
    $('#secret-stored').focus();
  };
  $('#secret-form').addEventListener('submit', (e) => {
    e.preventDefault();
    tryClose();
  });
  dlg.addEventListener('cancel', (e) => {
    e.preventDefault();
    tryClose();
  });
  $('#secret-close').addEventListener('click', tryClose);
  $('#secret-stored').addEventListener('change', () => {
    if ($('#secret-stored').checked) show($('#secret-guard'), false);
  });
  dlg.addEventListener('close', forget);
}

// Tables

// fill replaces a table body's rows and shows the empty state when there
// are none.
export function fill(tbody, rows, empty, emptyContent) {
  tbody.replaceChildren(...rows);
  if (rows.length === 0 && emptyContent) {
    put(empty, emptyContent);
    show(empty);
  } else {
    show(empty, false);
  }
}

export function cell(label, ...children) {
  return h('td', { 'data-label': label }, ...children);
}

export function loadingRow(cols) {
  return h('tr', { class: 'loading-row' }, h('td', { colspan: String(cols) }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading…'));
}
