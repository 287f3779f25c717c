// The sandbox page: renders the emulator's state (GET api/state) close to
// how Slack shows it, and acts through the emulator's own routes
// (POST api/_act/click, submit_view, close_view), which sign and send to
// ackbar exactly what Slack would. Live updates: GET api/_events (Server-Sent
// Events) says when the state changed; the page then reads it again.
//
// Everything in the state is untrusted (alert labels, summaries, anything a
// webhook carried): the DOM is built with createElement and textContent
// only, and links keep http(s)/mailto URLs only.
'use strict';

(function () {
  const USER_KEY = 'ackbar-sandbox-user';
  const CHANNEL_KEY = 'ackbar-sandbox-channel';
  const USER_RE = /^[UW][A-Z0-9]{1,31}$/;
  const EMOJI = {
    rotating_light: '\u{1F6A8}', white_check_mark: '\u2705', warning: '\u26A0\uFE0F',
    fire: '\u{1F525}', red_circle: '\u{1F534}', eyes: '\u{1F440}', mute: '\u{1F507}',
    repeat: '\u{1F501}', information_source: '\u2139\uFE0F', grey_question: '\u2754',
    leftwards_arrow_with_hook: '\u21A9\uFE0F', memory: '\u{1F4DD}', x: '\u274C',
    bell: '\u{1F514}', no_bell: '\u{1F515}', large_green_circle: '\u{1F7E2}',
    large_yellow_circle: '\u{1F7E1}', large_orange_circle: '\u{1F7E0}',
    heavy_check_mark: '\u2714\uFE0F', hourglass: '\u231B', zzz: '\u{1F4A4}',
  };

  const view = {
    state: null,
    channel: localStorage.getItem(CHANNEL_KEY),
    openThreads: new Set(),
    fetching: false,
    again: false,
    // Modal inputs the user typed into, kept across re-renders.
    drafts: new Map(),
    shownModal: null,
    // What the last render showed (see refresh).
    shown: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers (textContent only) ---------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function str(v) {
    return typeof v === 'string' ? v : '';
  }

  function currentUser() {
    const u = $('user').value.trim();
    return USER_RE.test(u) ? u : null;
  }

  // The names of the users offered under "Acting as" (index.html).
  function knownUserName(id) {
    for (const option of $('users').options) {
      if (option.value === id) return option.textContent;
    }
    return null;
  }

  function status(text, isError) {
    const s = $('status');
    s.textContent = text || '';
    s.className = isError ? 'status error' : 'status';
  }

  // ---- mrkdwn ---------------------------------------------------------

  function decodeEntities(s) {
    return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  }

  function emojify(s) {
    return s.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
  }

  function safeUrl(url) {
    return /^(https?:|mailto:)/i.test(url) ? url : null;
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  // <!date^1700000000^{date_short_pretty} at {time}|fallback>
  function formatDate(seconds, format, fallback) {
    const d = new Date(seconds * 1000);
    if (!Number.isFinite(seconds) || isNaN(d.getTime())) return fallback;
    const day = d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
    const long = d.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
    const parts = {
      date_num: `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
      date: day, date_short: day, date_pretty: day, date_short_pretty: day,
      date_long: long, date_long_pretty: long,
      time: `${pad(d.getHours())}:${pad(d.getMinutes())}`,
      time_secs: `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`,
    };
    return format.replace(/\{([a-z_]+)\}/g, (m, k) => (k in parts ? parts[k] : m));
  }

  // One `<...>` token: a link, a mention, a broadcast or a date.
  function angleToken(inner) {
    const bar = inner.indexOf('|');
    const target = bar < 0 ? inner : inner.slice(0, bar);
    const label = bar < 0 ? null : decodeEntities(inner.slice(bar + 1));
    if (target.startsWith('@')) {
      const id = target.slice(1);
      return el('span', 'mention', '@' + (label || knownUserName(id) || id));
    }
    if (target.startsWith('#')) {
      return el('span', 'mention', '#' + (label || target.slice(1)));
    }
    if (target.startsWith('!subteam^')) {
      const name = label || '@' + target.slice('!subteam^'.length);
      return el('span', 'mention', name.startsWith('@') ? name : '@' + name);
    }
    if (target.startsWith('!date^')) {
      const [, secs, format] = target.split('^');
      return document.createTextNode(formatDate(Number(secs), decodeEntities(format || ''), label || ''));
    }
    if (target.startsWith('!')) {
      return el('span', 'mention broadcast', '@' + (label || target.slice(1)));
    }
    const url = safeUrl(decodeEntities(target));
    if (!url) return document.createTextNode(label || decodeEntities(target));
    const a = el('a', null, label || url);
    a.href = url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    return a;
  }

  // *bold*, _italic_, ~strike~ (nested, and around links or code): `code`
  // spans and <tokens> are parsed first and stand in the text as one
  // private-use character each, so styles see them as single letters.
  const STYLE_RE = /(^|[^\w*_~])([*_~])(?=\S)([^\n]*?\S)\2(?=$|[^\w*_~])/;
  const STYLE_TAG = { '*': 'b', '_': 'i', '~': 's' };
  const SLOT_BASE = 0xe000;
  const SLOT_RE = /[\ue000-\uf8ff]/g;

  function plain(text, slots, parent) {
    let last = 0;
    let m;
    SLOT_RE.lastIndex = 0;
    while ((m = SLOT_RE.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(emojify(decodeEntities(text.slice(last, m.index)))));
      const node = slots[m[0].charCodeAt(0) - SLOT_BASE];
      if (node) parent.appendChild(node);
      last = SLOT_RE.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(emojify(decodeEntities(text.slice(last)))));
  }

  function styled(text, slots, parent) {
    let rest = text;
    for (;;) {
      const m = STYLE_RE.exec(rest);
      if (!m) break;
      const start = m.index + m[1].length;
      if (start > 0) plain(rest.slice(0, start), slots, parent);
      const node = el(STYLE_TAG[m[2]]);
      styled(m[3], slots, node);
      parent.appendChild(node);
      rest = rest.slice(m.index + m[0].length);
    }
    if (rest) plain(rest, slots, parent);
  }

  function inline(text, parent) {
    const slots = [];
    const slotted = text
      .replace(SLOT_RE, '\ufffd')
      .replace(/`([^`\n]+)`|<([^<>\n]+)>/g, (m, code, token) => {
        if (slots.length >= 0x1800) return m;
        slots.push(code !== undefined ? el('code', null, decodeEntities(code)) : angleToken(token));
        return String.fromCharCode(SLOT_BASE + slots.length - 1);
      });
    styled(slotted, slots, parent);
  }

  function mrkdwn(text, parent) {
    const parts = str(text).split('```');
    parts.forEach((part, i) => {
      if (i % 2 === 1 && i < parts.length - 1) {
        parent.appendChild(el('pre', null, decodeEntities(part.replace(/^\n/, ''))));
      } else {
        // A block ends its line: the newline after it is not a blank line.
        const text = i > 0 && i % 2 === 0 ? part.replace(/^\n/, '') : part;
        inline(i % 2 === 1 ? '```' + text : text, parent);
      }
    });
    return parent;
  }

  // A Block Kit text object: plain_text as is (emoji codes rendered),
  // mrkdwn formatted.
  function textObject(t, className) {
    const node = el('div', className);
    if (!t || typeof t !== 'object') return node;
    if (t.type === 'mrkdwn') {
      node.classList.add('mrkdwn');
      mrkdwn(t.text, node);
    } else {
      node.textContent = emojify(str(t.text));
    }
    return node;
  }

  // ---- Blocks ---------------------------------------------------------

  // An interactive element of a message (buttons; selects are shown).
  function element(e, ctx) {
    if (!e || typeof e !== 'object') return el('span');
    if (e.type === 'button') {
      const b = el('button', 'button', emojify(str(e.text && e.text.text)));
      if (e.style === 'primary' || e.style === 'danger') b.classList.add(e.style);
      b.type = 'button';
      b.dataset.actionId = str(e.action_id);
      const url = safeUrl(str(e.url));
      b.addEventListener('click', () => {
        if (url) window.open(url, '_blank', 'noopener,noreferrer');
        if (ctx.clickable) click(ctx.channel, ctx.ts, str(e.action_id), b);
      });
      if (!ctx.clickable && !url) b.disabled = true;
      return b;
    }
    if (e.type === 'static_select' || e.type === 'overflow') {
      const s = el('select', 'select');
      const placeholder = e.placeholder ? str(e.placeholder.text) : e.type === 'overflow' ? '…' : 'Select';
      s.appendChild(el('option', null, placeholder));
      for (const o of Array.isArray(e.options) ? e.options : []) {
        s.appendChild(el('option', null, str(o.text && o.text.text)));
      }
      s.disabled = true;
      s.title = 'the sandbox sends button clicks only';
      return s;
    }
    if (e.type === 'image') {
      return el('span', 'context-image', str(e.alt_text));
    }
    return el('span', 'unknown-block', `[${str(e.type)}]`);
  }

  function block(b, ctx) {
    const type = b && typeof b === 'object' ? str(b.type) : '';
    switch (type) {
      case 'header':
        return textObject(b.text, 'block header');
      case 'section': {
        const node = el('div', 'block section');
        const main = el('div', 'section-main');
        if (b.text) main.appendChild(textObject(b.text));
        if (Array.isArray(b.fields)) {
          const fields = el('div', 'fields');
          for (const f of b.fields) fields.appendChild(textObject(f));
          main.appendChild(fields);
        }
        node.appendChild(main);
        if (b.accessory) node.appendChild(element(b.accessory, ctx));
        return node;
      }
      case 'context': {
        const node = el('div', 'block context');
        for (const e of Array.isArray(b.elements) ? b.elements : []) {
          node.appendChild(e && e.type === 'image' ? element(e, ctx) : textObject(e));
        }
        return node;
      }
      case 'divider':
        return el('hr', 'divider');
      case 'actions': {
        const node = el('div', 'block actions');
        for (const e of Array.isArray(b.elements) ? b.elements : []) node.appendChild(element(e, ctx));
        return node;
      }
      case 'image':
        return el('div', 'block unknown-block', `[image: ${str(b.alt_text)}]`);
      default:
        return el('div', 'block unknown-block', `[${type || 'unknown'} block]`);
    }
  }

  function blocks(list, text, ctx) {
    const node = el('div', 'blocks');
    if (Array.isArray(list) && list.length > 0) {
      for (const b of list) node.appendChild(block(b, ctx));
    } else {
      node.appendChild(mrkdwn(text, el('div', 'mrkdwn')));
    }
    return node;
  }

  // ---- Messages -------------------------------------------------------

  function tsTime(ts) {
    const d = new Date(Number(str(ts).split('.')[0]) * 1000);
    return isNaN(d.getTime()) ? '' : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function messageRow(m, channel, extraClass) {
    const row = el('div', 'message' + (extraClass ? ' ' + extraClass : ''));
    row.dataset.ts = str(m.ts);
    row.appendChild(el('div', 'avatar', 'A'));
    const body = el('div', 'body');
    const meta = el('div', 'meta');
    meta.appendChild(el('span', 'author', 'ackbar'));
    meta.appendChild(el('span', 'badge', 'APP'));
    meta.appendChild(el('span', 'time', tsTime(m.ts)));
    if (m.edited) meta.appendChild(el('span', 'edited', '(edited)'));
    body.appendChild(meta);
    body.appendChild(blocks(m.blocks, m.text, { channel, ts: str(m.ts), clickable: true }));
    row.appendChild(body);
    return row;
  }

  function ephemeralRow(e, user) {
    const mine = e.user === user;
    const row = el('div', 'message ephemeral' + (mine ? '' : ' other'));
    row.appendChild(el('div', 'avatar', 'A'));
    const body = el('div', 'body');
    body.appendChild(el('div', 'visibility', mine ? 'Only visible to you' : `Only visible to ${knownUserName(e.user) || str(e.user)}`));
    const meta = el('div', 'meta');
    meta.appendChild(el('span', 'author', 'ackbar'));
    meta.appendChild(el('span', 'badge', 'APP'));
    body.appendChild(meta);
    body.appendChild(blocks(e.blocks, e.text, { channel: str(e.channel), ts: '', clickable: false }));
    row.appendChild(body);
    return row;
  }

  function threadBlock(m, channel, ephemerals, user) {
    const wrap = el('div', 'message-wrap');
    wrap.appendChild(messageRow(m, channel));
    const inThread = ephemerals.filter((e) => e.thread_ts === m.ts);
    const replies = Array.isArray(m.replies) ? m.replies : [];
    if (m.reply_count > 0 || inThread.length > 0) {
      const key = `${channel}/${m.ts}`;
      const open = view.openThreads.has(key);
      const count = m.reply_count || 0;
      const label = open ? 'Hide thread' : `${count} ${count === 1 ? 'reply' : 'replies'}`;
      const link = el('button', 'thread-link', label);
      link.type = 'button';
      link.addEventListener('click', () => {
        if (view.openThreads.has(key)) view.openThreads.delete(key);
        else view.openThreads.add(key);
        render();
      });
      const body = wrap.firstChild.lastChild;
      body.appendChild(link);
      if (open) {
        const thread = el('div', 'thread');
        for (const r of replies) thread.appendChild(messageRow(r, channel));
        for (const e of inThread) thread.appendChild(ephemeralRow(e, user));
        body.appendChild(thread);
      }
    }
    return wrap;
  }

  // ---- Sidebar --------------------------------------------------------

  function channelItem(id, count, list) {
    const li = el('li', id === view.channel ? 'selected' : '');
    li.dataset.channel = id;
    li.appendChild(document.createTextNode((id.startsWith('C') ? '# ' : '@ ') + id));
    if (count > 0) li.appendChild(el('span', 'count', count));
    li.addEventListener('click', () => {
      view.channel = id;
      localStorage.setItem(CHANNEL_KEY, id);
      render();
    });
    list.appendChild(li);
  }

  function renderSidebar(channels) {
    const chans = $('channels');
    const dms = $('dms');
    clear(chans);
    clear(dms);
    for (const id of Object.keys(channels).sort()) {
      const count = (channels[id].messages || []).length;
      channelItem(id, count, id.startsWith('D') || id.startsWith('G') ? dms : chans);
    }
  }

  // ---- Modals ---------------------------------------------------------

  function draftKey(viewId, blockId, actionId) {
    return `${viewId}/${blockId}/${actionId}`;
  }

  function inputBlock(b, v, errors) {
    const wrap = el('div', 'input-block');
    const blockId = str(b.block_id);
    const e = b.element || {};
    const actionId = str(e.action_id);
    const id = `in-${blockId}-${actionId}`.replace(/[^A-Za-z0-9_-]/g, '_');
    const label = el('label', 'input-label', emojify(str(b.label && b.label.text)));
    label.htmlFor = id;
    if (b.optional) label.appendChild(el('span', 'optional', ' (optional)'));
    wrap.appendChild(label);
    const key = draftKey(v.id, blockId, actionId);
    let input;
    if (e.type === 'static_select') {
      input = el('select', 'input');
      input.appendChild(el('option', null, str(e.placeholder && e.placeholder.text) || 'Select an option'));
      input.firstChild.value = '';
      for (const o of Array.isArray(e.options) ? e.options : []) {
        const opt = el('option', null, str(o.text && o.text.text));
        opt.value = str(o.value);
        input.appendChild(opt);
      }
      const initial = e.initial_option ? str(e.initial_option.value) : '';
      input.value = view.drafts.has(key) ? view.drafts.get(key) : initial;
    } else {
      input = el(e.multiline ? 'textarea' : 'input', 'input');
      if (!e.multiline) input.type = 'text';
      if (e.placeholder) input.placeholder = str(e.placeholder.text);
      if (Number.isInteger(e.max_length)) input.maxLength = e.max_length;
      input.value = view.drafts.has(key) ? view.drafts.get(key) : str(e.initial_value);
    }
    input.id = id;
    input.name = key;
    input.dataset.blockId = blockId;
    input.dataset.actionId = actionId;
    input.dataset.type = str(e.type) || 'plain_text_input';
    input.addEventListener('input', () => view.drafts.set(key, input.value));
    wrap.appendChild(input);
    if (b.hint) wrap.appendChild(el('div', 'hint', str(b.hint.text)));
    const error = errors && typeof errors[blockId] === 'string' ? errors[blockId] : null;
    if (error) {
      wrap.classList.add('invalid');
      wrap.appendChild(el('div', 'field-error', error));
    }
    return wrap;
  }

  function modalValues(form) {
    const values = {};
    for (const input of form.querySelectorAll('[data-block-id]')) {
      const blockId = input.dataset.blockId;
      const actionId = input.dataset.actionId;
      const type = input.dataset.type;
      let value;
      if (type === 'static_select') {
        const opt = input.selectedOptions[0];
        value = input.value
          ? { type, selected_option: { value: input.value, text: { type: 'plain_text', text: opt ? opt.textContent : '' } } }
          : { type, selected_option: null };
      } else {
        value = { type, value: input.value === '' ? null : input.value };
      }
      values[blockId] = values[blockId] || {};
      values[blockId][actionId] = value;
    }
    return values;
  }

  // The top view of the acting user's open modal stack, if any.
  function openModal(views, user) {
    let top = null;
    for (const v of views) {
      if (!v.closed && v.user === user && (!top || v.stack >= top.stack)) top = v;
    }
    return top;
  }

  function renderModal(views, user) {
    const root = $('modal-root');
    const v = openModal(views, user);
    const signature = v ? `${v.id}/${v.hash}/${JSON.stringify(v.errors)}` : null;
    if (signature === view.shownModal) return;
    view.shownModal = signature;
    clear(root);
    if (!v) return;
    const spec = v.view || {};
    const overlay = el('div', 'overlay');
    const form = el('form', 'modal');
    form.id = 'modal';
    form.dataset.viewId = v.id;
    const head = el('div', 'modal-head');
    head.appendChild(el('div', 'modal-title', emojify(str(spec.title && spec.title.text))));
    const x = el('button', 'modal-x', '\u00D7');
    x.type = 'button';
    x.title = 'Close';
    x.addEventListener('click', () => closeView(v.id));
    head.appendChild(x);
    form.appendChild(head);
    const body = el('div', 'modal-body');
    if (v.stack > 1) body.appendChild(el('div', 'stack-note', `View ${v.stack} of its stack`));
    const errors = v.errors && typeof v.errors === 'object' ? v.errors : null;
    for (const b of Array.isArray(spec.blocks) ? spec.blocks : []) {
      body.appendChild(b && b.type === 'input' ? inputBlock(b, v, errors) : block(b, { clickable: false }));
    }
    if (errors && typeof errors.response_action === 'string') {
      body.appendChild(el('div', 'field-error', `Slack refused the app's answer: ${errors.response_action}`));
    }
    form.appendChild(body);
    const foot = el('div', 'modal-foot');
    const cancel = el('button', 'button', str(spec.close && spec.close.text) || 'Cancel');
    cancel.type = 'button';
    cancel.id = 'modal-close';
    cancel.addEventListener('click', () => closeView(v.id));
    foot.appendChild(cancel);
    if (spec.submit) {
      const submit = el('button', 'button primary', str(spec.submit.text));
      submit.type = 'submit';
      submit.id = 'modal-submit';
      foot.appendChild(submit);
    }
    form.appendChild(foot);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitView(v.id, modalValues(form));
    });
    overlay.appendChild(form);
    root.appendChild(overlay);
  }

  // ---- Rendering ------------------------------------------------------

  function render() {
    const s = view.state;
    if (!s) return;
    const channels = s.channels || {};
    const ids = Object.keys(channels).sort();
    if (!view.channel || !(view.channel in channels)) {
      view.channel = ids.find((id) => id.startsWith('C')) || ids[0] || null;
    }
    renderSidebar(channels);
    const user = currentUser();
    const list = $('messages');
    // Keep the reader's place unless they were at the bottom.
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
    const scroll = list.scrollTop;
    clear(list);
    $('channel-name').textContent = view.channel ? (view.channel.startsWith('C') ? '# ' : '@ ') + view.channel : 'No channel yet';
    const messages = view.channel ? channels[view.channel].messages || [] : [];
    const ephemerals = (s.ephemerals || []).filter((e) => e.channel === view.channel);
    $('channel-info').textContent = view.channel ? `${messages.length} messages` : '';
    if (messages.length === 0 && ephemerals.length === 0) {
      list.appendChild(el('p', 'empty', 'No messages yet. Send ackbar an alert (see the README) and its card shows up here.'));
    }
    for (const m of messages) list.appendChild(threadBlock(m, view.channel, ephemerals, user));
    for (const e of ephemerals.filter((e) => !e.thread_ts)) list.appendChild(ephemeralRow(e, user));
    list.scrollTop = atBottom ? list.scrollHeight : scroll;
    renderModal(s.views || [], user);
  }

  async function refresh() {
    if (view.fetching) {
      view.again = true;
      return;
    }
    view.fetching = true;
    try {
      const r = await fetch('api/state', { cache: 'no-store' });
      if (!r.ok) throw new Error(`GET api/state answered ${r.status}`);
      const state = await r.json();
      // Most changes are to the call log only: re-render (and lose the
      // reader's hover or selection) only when what the page shows moved.
      const shown = JSON.stringify([state.channels, state.ephemerals, state.views]);
      view.state = state;
      if (shown !== view.shown) {
        view.shown = shown;
        render();
      }
    } catch (e) {
      status(`Cannot read the sandbox state: ${e.message}`, true);
    } finally {
      view.fetching = false;
      if (view.again) {
        view.again = false;
        refresh();
      }
    }
  }

  // ---- Acting as Slack ------------------------------------------------

  async function act(kind, body) {
    const r = await fetch(`api/_act/${kind}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    let answer = null;
    try {
      answer = await r.json();
    } catch (_) {
      answer = null;
    }
    if (!r.ok) {
      const detail = answer && (answer.detail || answer.error);
      throw new Error(detail || `answered ${r.status}`);
    }
    return answer;
  }

  function needUser() {
    const user = currentUser();
    if (!user) status('Enter a Slack user id to act as (U followed by capitals and digits, e.g. U0ALICE01).', true);
    return user;
  }

  async function click(channel, ts, actionId, button) {
    const user = needUser();
    if (!user) return;
    button.disabled = true;
    status(`${user} clicked ${actionId}…`);
    try {
      const answer = await act('click', { channel, message_ts: ts, action_id: actionId, user });
      status(answer.status === 200 ? `ackbar answered the click (${answer.elapsed_ms} ms)` : `ackbar answered HTTP ${answer.status}: ${answer.body}`, answer.status !== 200);
    } catch (e) {
      status(`The click did not reach ackbar: ${e.message}`, true);
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  async function submitView(viewId, values) {
    const user = needUser();
    if (!user) return;
    status('Submitting…');
    try {
      const answer = await act('submit_view', { view_id: viewId, user, values });
      if (answer.status !== 200) status(`ackbar answered HTTP ${answer.status}: ${answer.body}`, true);
      else status(answer.json && answer.json.response_action === 'errors' ? 'ackbar kept the modal open: see the errors' : 'Submitted');
    } catch (e) {
      status(`The submission did not reach ackbar: ${e.message}`, true);
    } finally {
      refresh();
    }
  }

  async function closeView(viewId) {
    const user = needUser();
    if (!user) return;
    try {
      await act('close_view', { view_id: viewId, user });
      status('');
    } catch (e) {
      status(`Cannot close the modal: ${e.message}`, true);
    } finally {
      refresh();
    }
  }

  // ---- Live updates ---------------------------------------------------

  function live() {
    const badge = $('live');
    const source = new EventSource('api/_events');
    source.addEventListener('state', () => {
      badge.textContent = 'live';
      badge.className = 'live on';
      refresh();
    });
    source.onerror = () => {
      badge.textContent = 'reconnecting…';
      badge.className = 'live off';
      // EventSource retries by itself; a refused stream (503) closes it.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(live, 3000);
      }
    };
  }

  function start() {
    const input = $('user');
    const saved = localStorage.getItem(USER_KEY);
    if (saved && USER_RE.test(saved)) input.value = saved;
    input.addEventListener('change', () => {
      const user = currentUser();
      if (user) {
        localStorage.setItem(USER_KEY, user);
        status(`Acting as ${user}`);
      } else {
        status('Not a Slack user id (U followed by capitals and digits).', true);
      }
      view.shownModal = null;
      render();
    });
    refresh();
    live();
  }

  start();
})();
