// The latchkey dashboard: sign-in, navigation between the views, and the
// glue that signs out when the token stops working.

import { api, can, loadMe, me, session, setForbiddenHandler, setUnauthorizedHandler } from './api.js';
import { $, $$, show, describe, setupDialogs, setupConfirm, setupSecrets } from './ui.js';
import * as integrations from './integrations.js';
import * as tokens from './tokens.js';
import * as admins from './admins.js';
import * as audit from './audit.js';
import * as keys from './keys.js';
import * as detail from './detail.js';

// integration is the detail view of one integration, #integration/NAME.
const views = { integrations, tokens, admins, audit, keys, integration: detail };
const DEFAULT_VIEW = 'integrations';

let current = null;
let countdown = null;

// go shows a view; opts become the address's query (the audit filters),
// so that the address says what is shown and can be shared.
function go(name, opts) {
  const q = opts ? new URLSearchParams(opts).toString() : '';
  const hash = q ? `${name}?${q}` : name;
  if (location.hash !== `#${hash}`) {
    location.hash = hash; // hashchange shows it
    return;
  }
  showView(name, undefined, true);
}

// route is the view the address names, and the integration it names for
// the detail view.
function route() {
  const [where, query = ''] = location.hash.slice(1).split('?');
  const [name, ...rest] = where.split('/');
  return { name, arg: rest.length ? decodeURIComponent(rest.join('/')) : undefined, query: new URLSearchParams(query) };
}

// navFor is the nav entry of a view: the detail view is one of the
// integrations.
const navFor = (n) => $(`.nav a[data-view="${n === 'integration' ? 'integrations' : n}"]`);

// viewFromHash is the view the address names, unless the token may not
// read it: then the first one it may.
function viewFromHash() {
  const { name, arg } = route();
  const allowed = (n) => !navFor(n).hidden;
  if (Object.hasOwn(views, name) && allowed(name) && (name !== 'integration' || arg)) return name;
  return allowed(DEFAULT_VIEW) ? DEFAULT_VIEW : (Object.keys(views).find(allowed) ?? DEFAULT_VIEW);
}

function showView(name, opts, focus) {
  current = name;
  if (name === 'integration') opts = { ...opts, name: route().arg };
  if (name === 'audit') opts = { ...opts, query: route().query };
  for (const [n] of Object.entries(views)) show($(`#view-${n}`), n === name);
  for (const a of $$('.nav a')) {
    if (a === navFor(name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${views[name].title} · latchkey admin`;
  // On a phone the tabs scroll sideways: bring the active one into sight.
  const nav = $('.nav');
  const tab = navFor(name);
  if (tab && nav.scrollWidth > nav.clientWidth) {
    const r = tab.getBoundingClientRect();
    const n = nav.getBoundingClientRect();
    nav.scrollLeft += r.left + r.width / 2 - (n.left + n.width / 2);
  }
  if (focus) $(`#view-${name} h1`).focus();
  views[name].load(opts);
}

// Signing in and out

// showSignIn shows the sign-in form with an optional message: kind is
// 'error' (the token stopped working) or 'info' (signed out on purpose).
function showSignIn(message, kind = 'error') {
  if (countdown) clearInterval(countdown);
  for (const dlg of $$('dialog[open]')) dlg.close();
  show($('#shell'), false);
  show($('#signin'));
  const msg = $('#signin-message');
  msg.textContent = message ?? '';
  msg.classList.toggle('alert-info', kind === 'info');
  show(msg, Boolean(message));
  document.title = 'Sign in · latchkey admin';
  $('#signin-token').focus();
}

// showApp shows the signed-in app for the caller in me, loading it first
// after a reload: who is signed in, and only the actions its token may
// take (each element with data-needs names the permission it needs).
async function showApp(known = false) {
  if (!known) {
    try {
      await loadMe();
    } catch (err) {
      if (err.status !== 401) showSignIn(`Could not load who you are: ${describe(err)}`);
      return; // a 401 has signed out already
    }
  }
  show($('#signin'), false);
  show($('#shell'));
  applyMe();
  showView(viewFromHash(), undefined, false);
}

// applyMe shows who is signed in and offers only what its token may do.
function applyMe() {
  const who = $('#session-who');
  who.textContent = me.bootstrap ? `Bootstrap token · ${me.role}` : `${me.name} · ${me.role}`;
  who.title = me.permissions.length ? `May: ${me.permissions.join(', ')}` : 'This token may only say whose it is';
  // Which token, too: an admin may hold several, narrowed differently.
  const tok = me.token;
  $('#session-token').textContent = tok ? `· token “${tok.description || tok.id}”` : '';
  $('#session-token').title = tok
    ? `Token ${tok.id}${tok.expires_at ? `, expires ${tok.expires_at.replace('T', ' ').replace(/\.\d+Z$|Z$/, '')} UTC` : ', never expires'}`
    : '';
  for (const el of $$('[data-needs]')) show(el, can(el.dataset.needs));
}

// refreshMe reads what the token may do again after the API refused a
// call the page offered, and redraws the view to offer only that: once
// the dialog the refusal is shown in is closed, so that it can be read.
async function refreshMe() {
  try {
    await loadMe();
  } catch {
    return; // a 401 signed out already; anything else changes nothing
  }
  if ($('#shell').hidden) return;
  applyMe();
  const redraw = () => showView(viewFromHash(), undefined, false);
  const open = $('dialog[open]');
  if (open) open.addEventListener('close', redraw, { once: true });
  else redraw();
}

function signOut(message, kind) {
  session.clear();
  // Nothing of this session stays for the next: a search, a page.
  for (const v of Object.values(views)) v.reset?.();
  showSignIn(message, kind);
}

async function signIn(e) {
  e.preventDefault();
  const input = $('#signin-token');
  const button = $('#signin-submit');
  const msg = $('#signin-message');
  const token = input.value.trim();
  if (!token) return;
  button.disabled = true;
  show(msg, false);
  msg.classList.remove('alert-info');
  try {
    // Proves the token and says what it may do.
    Object.assign(me, await api('GET', 'me', undefined, token));
  } catch (err) {
    button.disabled = false;
    if (err.status === 401) msg.textContent = 'That token was not accepted: it is invalid, expired or revoked.';
    else if (err.status === 429 && err.retryAfter) return rateLimited(err.retryAfter);
    else msg.textContent = describe(err);
    show(msg);
    input.select();
    return;
  }
  button.disabled = false;
  input.value = '';
  session.set(token);
  await showApp(true);
  $(`#view-${current} h1`).focus();
}

// rateLimited keeps the sign-in button off while Retry-After runs.
function rateLimited(seconds) {
  const msg = $('#signin-message');
  const button = $('#signin-submit');
  let left = seconds;
  const tick = () => {
    if (left <= 0) {
      clearInterval(countdown);
      countdown = null;
      msg.textContent = 'You can try again now.';
      button.disabled = false;
      return;
    }
    msg.textContent = `Too many failed attempts from this address. Rate limited: try again in ${left} second${left === 1 ? '' : 's'}.`;
    left -= 1;
  };
  button.disabled = true;
  show(msg);
  tick();
  countdown = setInterval(tick, 1000);
}

function start() {
  setupDialogs();
  setupConfirm();
  setupSecrets();
  for (const v of Object.values(views)) v.init({ go });
  setUnauthorizedHandler((err) => signOut(`You were signed out: ${err.description}.`.replace('..', '.')));
  setForbiddenHandler(() => refreshMe());
  $('#signin-form').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', () => signOut('You signed out. The token was removed from this tab.', 'info'));
  $('.skip-link').addEventListener('click', (e) => {
    e.preventDefault(); // the hash names views; this is not one
    $(session.token ? '#main' : '#signin-token').focus();
  });
  window.addEventListener('hashchange', () => {
    if (!session.token || !Object.hasOwn(views, route().name)) return;
    showView(viewFromHash(), undefined, true);
  });
  // Back on the tab, the view shown is read again, so that last uses and
  // other changes made meanwhile show (not while a dialog is open, and at
  // most every few seconds).
  let lastRefresh = 0;
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible' || !session.token || !current || $('dialog[open]')) return;
    if ($('#shell').hidden || Date.now() - lastRefresh < 5000) return;
    lastRefresh = Date.now();
    views[current].load();
  });
  if (session.token) showApp();
  else showSignIn();
}

start();
