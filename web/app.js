// imrelay demo chat page: plain JavaScript, no build step, nothing from the network but
// this origin. Chat actions go through the demo's Rocket.Chat proxy (/demo/rc/...), live
// events come over imrelay's SignalR hub (/signalr) with the official browser bundle
// (/static/signalr.min.js, global `signalR`).
//
// Test hooks: #status[data-state], li[data-testid=room][data-room-id][data-unread][data-alert],
// [data-testid=room-badge][data-room-id], #messages[data-room-id][data-state] with
// [data-testid=message][data-message-id], #composer, [data-testid=dm-<username>],
// #simulate, #session-ended.
'use strict';

(() => {
  const USERS = [
    { username: 'alice', name: 'Alice' },
    { username: 'bob', name: 'Bob' },
    { username: 'carol', name: 'Carol' },
  ];
  const DISPLAY = { alice: 'Alice', bob: 'Bob', carol: 'Carol', 'demo.bot': 'Demo Bot' };
  const STATUS_TEXT = {
    offline: 'Offline',
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    ended: 'Session ended',
  };
  const END_REASONS = {
    logged_out: 'You were logged out.',
    expired: 'Your session expired.',
    revoked: 'Rocket.Chat revoked your login.',
    deleted: 'Your user was removed.',
    shutdown: 'imrelay is shutting down.',
  };
  const LOCK_SVG =
    '<svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true"><path fill="currentColor" d="M7 10V8a5 5 0 0 1 10 0v2h1a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1H6a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1zm2 0h6V8a3 3 0 0 0-6 0z"/></svg>';
  const STORAGE_KEY = 'imrelay-demo-user';
  const GROUP_GAP_MS = 5 * 60 * 1000;
  const READ_DELAY_MS = 250;

  const $ = (id) => document.getElementById(id);
  const el = {
    login: $('login'),
    loginError: $('login-error'),
    loginButtons: Array.from(document.querySelectorAll('.login-user')),
    app: $('app'),
    status: $('status'),
    statusText: $('status-text'),
    meAvatar: $('me-avatar'),
    meName: $('me-name'),
    meUsername: $('me-username'),
    signout: $('signout'),
    channelList: $('channel-list'),
    dmList: $('dm-list'),
    dmEmpty: $('dm-empty'),
    dmButtons: $('dm-buttons'),
    simulate: $('simulate'),
    ended: $('session-ended'),
    endedTitle: $('session-ended-title'),
    endedText: $('session-ended-text'),
    endedAction: $('session-ended-action'),
    roomIcon: $('room-icon'),
    roomTitle: $('room-title'),
    roomSubtitle: $('room-subtitle'),
    messages: $('messages'),
    composer: $('composer'),
    input: $('composer-input'),
    send: $('composer-send'),
    composerError: $('composer-error'),
  };

  const state = {
    me: null, // { username, name, rc_user_id, client_token }
    subs: new Map(), // rid -> subscription
    rooms: new Map(), // rid -> room
    current: null, // open room id
    messages: new Map(), // _id -> message, of the open room
    openSeq: 0,
    connection: null,
    ended: false,
    reads: new Map(), // rid -> { running, again }
    resyncing: null,
    roomItems: new Map(), // rid -> <li>
    subWaiters: new Map(), // rid -> [resolve], for a DM just created
  };

  // ------------------------------------------------------------------ helpers

  // REST dates are ISO strings, DDP (SignalR) ones EJSON {"$date": ms}.
  function toDate(v) {
    if (v == null) return null;
    if (typeof v === 'object' && v.$date !== undefined) return new Date(v.$date);
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function normMessage(m) {
    return { ...m, ts: toDate(m.ts) || new Date(), editedAt: toDate(m.editedAt), u: m.u || {} };
  }

  function normRoom(r) {
    const room = { ...r, lm: toDate(r.lm), _updatedAt: toDate(r._updatedAt) };
    if (r.lastMessage) room.lastMessage = normMessage(r.lastMessage);
    return room;
  }

  function normSub(s) {
    return { ...s, ts: toDate(s.ts), ls: toDate(s.ls), _updatedAt: toDate(s._updatedAt), unread: Number(s.unread) || 0 };
  }

  function displayName(username, fallback) {
    return DISPLAY[username] || fallback || username || 'unknown';
  }

  function initials(name) {
    const parts = String(name || '?').split(/[\s.]+/).filter(Boolean);
    const s = parts.length > 1 ? parts[0][0] + parts[1][0] : (parts[0] || '?')[0];
    return s.toUpperCase();
  }

  function avatar(username, name, extraClass) {
    const span = document.createElement('span');
    span.className = 'avatar' + (extraClass ? ' ' + extraClass : '');
    span.dataset.username = username || '';
    span.textContent = initials(name || displayName(username));
    span.setAttribute('aria-hidden', 'true');
    return span;
  }

  function h(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  function dayLabel(d) {
    const now = new Date();
    if (sameDay(d, now)) return 'Today';
    const y = new Date(now);
    y.setDate(now.getDate() - 1);
    if (sameDay(d, y)) return 'Yesterday';
    return d.toLocaleDateString(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
  }

  function timeLabel(d) {
    return d.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
  }

  function errorText(data, status) {
    if (data && typeof data.error === 'object' && data.error) return data.error.message || data.error.code;
    if (data && typeof data.error === 'string') return data.error;
    if (data && data.message) return data.message;
    return `HTTP ${status}`;
  }

  // A Rocket.Chat REST call as the signed-in user, through the demo proxy.
  async function rc(method, path, body) {
    const me = state.me;
    const headers = { Authorization: `Bearer ${me.client_token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`/demo/rc/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok || (data && data.success === false)) {
      const err = new Error(errorText(data, res.status));
      err.status = res.status;
      if (res.status === 429) {
        err.retryAfter = Math.max(1, Number(res.headers.get('Retry-After')) || 5);
        err.message = `Rocket.Chat is rate-limiting ${path.split('?')[0]}; try again in ${err.retryAfter} s.`;
      }
      if (res.status === 401 && state.me === me && data && data.error && data.error.code === 'bad_client_token') {
        endSession({ title: 'Session ended', text: 'Your sign-in is no longer valid.' });
      }
      throw err;
    }
    return data;
  }

  // ------------------------------------------------------------------ status

  function setStatus(s) {
    el.status.dataset.state = s;
    el.statusText.textContent = STATUS_TEXT[s] || s;
    el.status.title = s === 'live' ? 'Connected to imrelay over SignalR (WebSockets)' : STATUS_TEXT[s] || s;
  }

  function showEnded(title, text, action) {
    el.endedTitle.textContent = title;
    el.endedText.textContent = text;
    el.endedAction.textContent = action;
    el.ended.hidden = false;
  }

  function endSession({ title, text, status = 'ended' }) {
    if (state.ended) return;
    state.ended = true;
    const conn = state.connection;
    state.connection = null;
    if (conn) conn.stop().catch(() => {});
    setStatus(status);
    showEnded(title, text, 'Sign in again');
    updateComposer();
  }

  // ------------------------------------------------------------------ SignalR

  async function connect() {
    const conn = new signalR.HubConnectionBuilder()
      .withUrl('/signalr', {
        accessTokenFactory: () => (state.me ? state.me.client_token : ''),
        transport: signalR.HttpTransportType.WebSockets,
      })
      .withAutomaticReconnect()
      .withHubProtocol(new signalR.JsonHubProtocol())
      .configureLogging(signalR.LogLevel.Warning)
      .build();
    conn.on('getRoomMessageNotification', (m) => onMessage(m));
    conn.on('getRoomSubscriptionChangedNotification', (e) => onSubscription(e));
    conn.on('getRoomChangedNotification', (e) => onRoomChanged(e));
    // Also relayed; this page has nothing to do with them (the sidebar shows the same).
    conn.on('getDesktopNotification', () => {});
    conn.on('getEphemeralMessage', () => {});
    conn.onreconnecting(() => {
      if (state.connection === conn) setStatus('reconnecting');
    });
    conn.onreconnected(() => {
      if (state.connection !== conn) return;
      setStatus('live');
      resync(true);
    });
    conn.onclose((error) => {
      if (state.connection !== conn) return; // signed out, or replaced
      const message = (error && error.message) || '';
      const m = /Session ended: ([A-Za-z_]+)/.exec(message);
      if (m) {
        endSession({ title: 'Session ended', text: `${END_REASONS[m[1]] || 'The server ended it.'} (${m[1]})` });
      } else {
        endSession({
          title: 'Disconnected',
          text: message ? `The connection to imrelay was lost: ${message}` : 'The connection to imrelay was closed.',
          status: 'offline',
        });
      }
    });
    state.connection = conn;
    setStatus('connecting');
    try {
      await conn.start();
    } catch (err) {
      if (state.connection !== conn) return;
      state.connection = null;
      setStatus('offline');
      showEnded('Could not connect', `to imrelay's SignalR hub: ${err.message || err}`, 'Try again');
      state.ended = true;
      updateComposer();
      return;
    }
    if (state.connection === conn) setStatus('live');
  }

  function onMessage(raw) {
    if (!raw || !raw.rid) return;
    const m = normMessage(raw);
    const room = state.rooms.get(m.rid);
    if (room && !m.t && (!room.lm || m.ts >= room.lm)) {
      room.lm = m.ts;
      room.lastMessage = m;
    }
    if (!state.subs.has(m.rid)) resync(false);
    if (m.rid === state.current) {
      const had = state.messages.has(m._id);
      state.messages.set(m._id, m);
      renderMessages(had ? 'keep' : 'follow');
      if (m.u.username !== state.me.username) markRead(m.rid);
    }
    renderRooms();
  }

  function onSubscription(event) {
    if (!event || !event.msg) return;
    const sub = normSub(event.msg);
    if (event.method === 'remove') {
      state.subs.delete(sub.rid);
      if (sub.rid === state.current) openRoom(defaultRoom());
    } else {
      const old = state.subs.get(sub.rid);
      if (!old || !old._updatedAt || !sub._updatedAt || sub._updatedAt >= old._updatedAt) state.subs.set(sub.rid, sub);
      // (A new room's details follow in getRoomChangedNotification; the subscription has
      // all the sidebar needs until then.)
      const waiters = state.subWaiters.get(sub.rid);
      if (waiters) {
        state.subWaiters.delete(sub.rid);
        waiters.forEach((resolve) => resolve(true));
      }
      if (sub.rid === state.current) markRead(sub.rid);
    }
    renderRooms();
  }

  function onRoomChanged(event) {
    if (!event || !event.room) return;
    const room = normRoom(event.room);
    if (event.method === 'remove') {
      state.rooms.delete(room._id);
    } else {
      const old = state.rooms.get(room._id);
      if (old && old.lastMessage && !room.lastMessage) room.lastMessage = old.lastMessage;
      if (!old || !old._updatedAt || !room._updatedAt || room._updatedAt >= old._updatedAt) state.rooms.set(room._id, room);
    }
    renderRooms();
    if (room._id === state.current) renderHeader();
  }

  // ------------------------------------------------------------------ rooms

  async function loadRooms() {
    const [rooms, subs] = await Promise.all([rc('GET', 'rooms.get'), rc('GET', 'subscriptions.get')]);
    const roomMap = new Map();
    for (const r of rooms.update || []) roomMap.set(r._id, normRoom(r));
    const subMap = new Map();
    for (const s of subs.update || []) subMap.set(s.rid, normSub(s));
    // Keep anything newer that arrived live while the snapshot was on its way.
    for (const [rid, s] of state.subs) {
      const snap = subMap.get(rid);
      if (snap && s._updatedAt && snap._updatedAt && s._updatedAt > snap._updatedAt) subMap.set(rid, s);
    }
    for (const [rid, r] of state.rooms) {
      const snap = roomMap.get(rid);
      if (snap && r._updatedAt && snap._updatedAt && r._updatedAt > snap._updatedAt) roomMap.set(rid, r);
    }
    state.rooms = roomMap;
    state.subs = subMap;
    renderRooms();
  }

  // Re-reads rooms and subscriptions (a new room showed up, or after a reconnect, when
  // events may have been missed); coalesces calls.
  function resync(withHistory) {
    if (state.resyncing) {
      state.resyncing.again = state.resyncing.again || withHistory || 'rooms';
      return;
    }
    const job = { again: false };
    state.resyncing = job;
    const me = state.me;
    (async () => {
      try {
        await loadRooms();
        if (withHistory && state.current) {
          await loadHistory(state.current, state.openSeq);
          markRead(state.current);
        }
      } catch (err) {
        console.warn('imrelay demo: resync failed', err);
      } finally {
        if (state.resyncing === job) state.resyncing = null;
        if (job.again && state.me === me && !state.ended) resync(job.again === true);
      }
    })();
  }

  function roomLabel(rid) {
    const sub = state.subs.get(rid);
    const room = state.rooms.get(rid);
    const t = (sub && sub.t) || (room && room.t) || 'c';
    if (t === 'd') {
      const other = (sub && sub.name) || (room && (room.usernames || []).find((u) => u !== state.me.username)) || '';
      return { t, name: (sub && sub.fname) || displayName(other), username: other };
    }
    return { t, name: (sub && (sub.fname || sub.name)) || (room && (room.fname || room.name)) || rid };
  }

  function defaultRoom() {
    if (state.subs.has('GENERAL')) return 'GENERAL';
    for (const [rid, sub] of state.subs) if (sub.t !== 'd') return rid;
    const first = state.subs.keys().next();
    return first.done ? null : first.value;
  }

  function previewText(room, t) {
    const m = room && room.lastMessage;
    if (!m || m.t) return '';
    const who = m.u.username === state.me.username ? 'You' : displayName(m.u.username, m.u.name);
    const text = (m.msg || '').replace(/\s+/g, ' ');
    return t === 'd' && who !== 'You' ? text : `${who}: ${text}`;
  }

  function roomItem(rid) {
    let li = state.roomItems.get(rid);
    if (li) return li;
    li = h('li', 'room');
    li.dataset.testid = 'room';
    li.dataset.roomId = rid;
    const button = h('button', 'room-button');
    button.type = 'button';
    button.addEventListener('click', () => openRoom(rid));
    li.appendChild(button);
    state.roomItems.set(rid, li);
    return li;
  }

  function fillRoomItem(li, rid) {
    const sub = state.subs.get(rid);
    const room = state.rooms.get(rid);
    const { t, name, username } = roomLabel(rid);
    const active = rid === state.current;
    const unread = active ? 0 : (sub && sub.unread) || 0;
    const alert = !active && !!(sub && (sub.alert || unread > 0));
    li.dataset.roomType = t;
    li.dataset.unread = String(unread); // as shown
    li.dataset.alert = String(alert);
    // As Rocket.Chat last reported it (for the open room too), and when it last saw it read.
    li.dataset.serverUnread = String((sub && sub.unread) || 0);
    li.dataset.serverAlert = String(!!(sub && sub.alert));
    li.dataset.lastSeen = String(sub && sub.ls ? sub.ls.getTime() : 0);
    li.classList.toggle('active', active);
    li.classList.toggle('has-alert', alert);
    const button = li.firstChild;
    button.setAttribute('aria-current', active ? 'true' : 'false');
    button.title = t === 'd' ? `${name} (@${username})` : `#${name}`;
    button.replaceChildren();
    if (t === 'd') {
      button.appendChild(avatar(username, name, 'avatar-small'));
    } else {
      const icon = h('span', 'room-hash');
      if (t === 'p') icon.innerHTML = LOCK_SVG;
      else icon.textContent = '#';
      button.appendChild(icon);
    }
    const text = h('span', 'room-text');
    text.appendChild(h('span', 'room-name', name));
    const preview = previewText(room, t);
    if (preview) text.appendChild(h('span', 'room-preview', preview));
    button.appendChild(text);
    if (unread > 0 || alert) {
      const badge = h('span', unread > 0 ? 'badge' : 'badge badge-dot', unread > 0 ? String(unread > 99 ? '99+' : unread) : '');
      badge.dataset.testid = 'room-badge';
      badge.dataset.roomId = rid;
      badge.dataset.count = String(unread);
      badge.setAttribute('aria-label', unread > 0 ? `${unread} unread` : 'new activity');
      button.appendChild(badge);
    }
  }

  function renderRooms() {
    if (!state.me) return;
    const rids = new Set([...state.subs.keys()]);
    const channels = [];
    const dms = [];
    for (const rid of rids) {
      const { t, name } = roomLabel(rid);
      const room = state.rooms.get(rid);
      const sub = state.subs.get(rid);
      const when = (room && room.lm) || (sub && sub.ts) || new Date(0);
      (t === 'd' ? dms : channels).push({ rid, name, when });
    }
    channels.sort((a, b) => a.name.localeCompare(b.name));
    dms.sort((a, b) => b.when - a.when || a.name.localeCompare(b.name));
    for (const [rid, li] of state.roomItems) {
      if (!rids.has(rid)) {
        li.remove();
        state.roomItems.delete(rid);
      }
    }
    for (const [list, items] of [[el.channelList, channels], [el.dmList, dms]]) {
      items.forEach(({ rid }, i) => {
        const li = roomItem(rid);
        fillRoomItem(li, rid);
        if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      });
    }
    el.dmEmpty.hidden = dms.length > 0;
    let total = 0;
    for (const [rid, sub] of state.subs) if (rid !== state.current) total += sub.unread || 0;
    document.title = `${total ? `(${total}) ` : ''}${state.me.name} · imrelay demo`;
  }

  function renderDmButtons() {
    el.dmButtons.replaceChildren();
    for (const u of USERS) {
      if (u.username === state.me.username) continue;
      const b = h('button', 'dm-button');
      b.type = 'button';
      b.dataset.testid = `dm-${u.username}`;
      b.dataset.username = u.username;
      b.appendChild(avatar(u.username, u.name, 'avatar-small'));
      b.appendChild(h('span', '', `Message ${u.name}`));
      b.addEventListener('click', () => openDirect(u.username, b));
      el.dmButtons.appendChild(b);
    }
  }

  function waitForSub(rid, ms) {
    return new Promise((resolve) => {
      const list = state.subWaiters.get(rid) || [];
      list.push(resolve);
      state.subWaiters.set(rid, list);
      setTimeout(() => resolve(false), ms);
    });
  }

  async function openDirect(username, button) {
    button.disabled = true;
    try {
      const data = await rc('POST', 'im.create', { username });
      const room = normRoom(data.room);
      const rid = data.room.rid || data.room._id;
      if (!state.rooms.has(rid)) state.rooms.set(rid, { ...room, _id: rid });
      // A new DM's subscription arrives live (getRoomSubscriptionChangedNotification
      // "insert"); read the list only if it does not come.
      if (!state.subs.has(rid) && !(await waitForSub(rid, 3000))) await loadRooms();
      await openRoom(rid);
    } catch (err) {
      showComposerError(`Could not open a conversation with ${displayName(username)}: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ open room

  function historyPath(t) {
    return t === 'd' ? 'im.history' : t === 'p' ? 'groups.history' : 'channels.history';
  }

  async function loadHistory(rid, seq) {
    const { t } = roomLabel(rid);
    const data = await rc('GET', `${historyPath(t)}?roomId=${encodeURIComponent(rid)}&count=50`);
    if (seq !== state.openSeq || rid !== state.current) return;
    for (const raw of data.messages || []) {
      const m = normMessage(raw);
      const live = state.messages.get(m._id);
      // A live edit may be newer than the snapshot.
      if (!live || (m.editedAt && (!live.editedAt || m.editedAt > live.editedAt))) state.messages.set(m._id, m);
    }
    el.messages.dataset.state = 'ready';
    renderMessages('bottom');
  }

  async function openRoom(rid) {
    if (!rid) return;
    const seq = ++state.openSeq;
    const switching = rid !== state.current;
    state.current = rid;
    sessionStorage.setItem(`${STORAGE_KEY}-room-${state.me.username}`, rid);
    if (switching) {
      state.messages = new Map();
      el.messages.dataset.roomId = rid;
      el.messages.dataset.state = 'loading';
      renderMessages('bottom');
      el.input.value = '';
      autosize();
    }
    renderHeader();
    renderRooms();
    updateComposer();
    hideComposerError();
    if (switching && !matchMedia('(pointer: coarse)').matches) el.input.focus();
    markRead(rid);
    try {
      await loadHistory(rid, seq);
    } catch (err) {
      if (seq !== state.openSeq) return;
      el.messages.dataset.state = 'error';
      renderMessages('bottom', `Could not load the history: ${err.message}`);
    }
  }

  // subscriptions.read for the open room while Rocket.Chat counts it unread or flagged, so
  // its badge stays 0. Calls are coalesced (a short delay, one in flight per room) since
  // Rocket.Chat rate-limits each REST route; a 429 retries after its Retry-After.
  function markRead(rid) {
    const sub = state.subs.get(rid);
    if (sub && !(sub.unread > 0 || sub.alert)) return;
    let job = state.reads.get(rid);
    if (job) {
      job.again = true;
      return;
    }
    job = { again: true };
    state.reads.set(rid, job);
    const me = state.me;
    (async () => {
      try {
        await new Promise((r) => setTimeout(r, READ_DELAY_MS));
        while (job.again && state.me === me && !state.ended && state.current === rid) {
          job.again = false;
          const s0 = state.subs.get(rid);
          if (s0 && !(s0.unread > 0 || s0.alert)) break;
          try {
            await rc('POST', 'subscriptions.read', { rid });
            const s1 = state.subs.get(rid);
            if (s1 && !job.again) {
              s1.unread = 0;
              s1.alert = false;
            }
          } catch (err) {
            if (err.status !== 429) throw err;
            await new Promise((r) => setTimeout(r, Math.min(err.retryAfter, 60) * 1000));
            job.again = true;
          }
        }
      } catch (err) {
        console.warn('imrelay demo: subscriptions.read failed', err);
      } finally {
        if (state.reads.get(rid) === job) state.reads.delete(rid);
      }
      renderRooms();
    })();
  }

  function renderHeader() {
    const rid = state.current;
    if (!rid) {
      el.roomTitle.textContent = '';
      el.roomSubtitle.textContent = '';
      return;
    }
    const { t, name, username } = roomLabel(rid);
    const room = state.rooms.get(rid);
    el.roomIcon.replaceChildren();
    if (t === 'd') {
      el.roomIcon.className = 'chat-icon chat-icon-avatar';
      el.roomIcon.appendChild(avatar(username, name));
      el.roomTitle.textContent = name;
      el.roomSubtitle.textContent = `@${username} · direct message`;
      el.input.placeholder = `Message ${name}`;
    } else {
      el.roomIcon.className = 'chat-icon';
      el.roomIcon.textContent = '#';
      el.roomTitle.textContent = name;
      const members = room && room.usersCount ? `${room.usersCount} members` : '';
      el.roomSubtitle.textContent = [t === 'p' ? 'Private group' : 'Public channel', members].filter(Boolean).join(' · ');
      el.input.placeholder = `Message #${name}`;
    }
  }

  // ------------------------------------------------------------------ messages

  const SYSTEM_TEXT = {
    uj: () => 'joined the channel',
    ul: () => 'left the channel',
    ut: () => 'joined the conversation',
    au: (m) => `added @${m.msg}`,
    ru: (m) => `removed @${m.msg}`,
    r: (m) => `renamed the room to ${m.msg}`,
    'message_pinned': () => 'pinned a message',
  };

  function messageText(m) {
    const node = h('div', 'msg-text');
    node.dataset.testid = 'message-text';
    const me = state.me.username;
    for (const part of String(m.msg || '').split(/(@[A-Za-z0-9._-]+)/)) {
      if (!part) continue;
      if (/^@[A-Za-z0-9._-]+$/.test(part)) {
        const who = part.slice(1).replace(/[.]+$/, '');
        const mine = who === me || who === 'all' || who === 'here';
        node.appendChild(h('span', mine ? 'mention mention-me' : 'mention', part));
      } else {
        node.appendChild(document.createTextNode(part));
      }
    }
    return node;
  }

  function renderMessages(scroll, errorMessage) {
    const box = el.messages;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
    const previousTop = box.scrollTop;
    const list = [...state.messages.values()].sort((a, b) => a.ts - b.ts);
    const frag = document.createDocumentFragment();
    const { t, name } = state.current ? roomLabel(state.current) : { t: 'c', name: '' };

    if (errorMessage) {
      frag.appendChild(h('div', 'messages-empty messages-error', errorMessage));
    } else if (box.dataset.state === 'loading') {
      frag.appendChild(h('div', 'messages-empty', 'Loading…'));
    } else if (list.length === 0) {
      const empty = h('div', 'messages-empty');
      empty.appendChild(h('strong', '', t === 'd' ? `This is the start of your conversation with ${name}.` : `This is the start of #${name}.`));
      empty.appendChild(h('span', '', 'Messages appear here live, as they are posted.'));
      frag.appendChild(empty);
    }

    let prev = null;
    for (const m of list) {
      if (!prev || !sameDay(prev.ts, m.ts)) {
        const divider = h('div', 'day-divider');
        divider.appendChild(h('span', '', dayLabel(m.ts)));
        frag.appendChild(divider);
        prev = null;
      }
      const username = m.u.username;
      const author = displayName(username, m.u.name);
      const row = h('div', 'msg');
      row.dataset.testid = 'message';
      row.dataset.messageId = m._id;
      row.dataset.username = username || '';
      if (m.t) {
        row.classList.add('msg-system');
        row.dataset.system = m.t;
        const fn = SYSTEM_TEXT[m.t];
        const text = h('div', 'msg-system-text');
        text.appendChild(h('strong', '', author));
        text.appendChild(document.createTextNode(` ${fn ? fn(m) : m.msg || m.t}`));
        text.appendChild(h('time', 'msg-time', timeLabel(m.ts)));
        row.appendChild(text);
        frag.appendChild(row);
        prev = null;
        continue;
      }
      const continued = prev && !prev.t && prev.u.username === username && m.ts - prev.ts < GROUP_GAP_MS;
      if (username === state.me.username) row.classList.add('msg-mine');
      const time = h('time', 'msg-time', timeLabel(m.ts));
      time.dateTime = m.ts.toISOString();
      time.title = m.ts.toLocaleString();
      const body = h('div', 'msg-body');
      if (continued) {
        row.classList.add('msg-continued');
        const gutter = h('div', 'msg-gutter');
        gutter.appendChild(time);
        row.appendChild(gutter);
      } else {
        row.appendChild(avatar(username, author));
        const meta = h('div', 'msg-meta');
        meta.appendChild(h('strong', 'msg-author', author));
        if (username && username.endsWith('.bot')) meta.appendChild(h('span', 'tag', 'bot'));
        meta.appendChild(time);
        body.appendChild(meta);
      }
      const text = messageText(m);
      if (m.editedAt) {
        row.dataset.edited = 'true';
        const edited = h('span', 'msg-edited', ' (edited)');
        edited.title = `Edited ${m.editedAt.toLocaleString()}`;
        text.appendChild(edited);
      }
      body.appendChild(text);
      row.appendChild(body);
      frag.appendChild(row);
      prev = m;
    }
    box.replaceChildren(frag);
    if (scroll === 'bottom' || (scroll === 'follow' && nearBottom)) box.scrollTop = box.scrollHeight;
    else box.scrollTop = previousTop;
  }

  // ------------------------------------------------------------------ composer

  function autosize() {
    el.input.style.height = 'auto';
    el.input.style.height = `${Math.min(el.input.scrollHeight, 160)}px`;
  }

  function updateComposer() {
    const off = !state.current || state.ended;
    el.input.disabled = off;
    el.send.disabled = off;
    el.composer.classList.toggle('disabled', off);
  }

  function showComposerError(text) {
    el.composerError.textContent = text;
    el.composerError.hidden = false;
  }

  function hideComposerError() {
    el.composerError.hidden = true;
  }

  async function send() {
    const text = el.input.value.trim();
    const rid = state.current;
    if (!text || !rid || state.ended) return;
    el.input.value = '';
    autosize();
    hideComposerError();
    try {
      const data = await rc('POST', 'chat.postMessage', { roomId: rid, text });
      const m = data.message && normMessage(data.message);
      if (m && m.rid === state.current && !state.messages.has(m._id)) {
        state.messages.set(m._id, m);
        renderMessages('bottom');
      }
      const room = state.rooms.get(rid);
      if (m && room && (!room.lm || m.ts >= room.lm)) {
        room.lm = m.ts;
        room.lastMessage = m;
        renderRooms();
      }
    } catch (err) {
      if (state.current === rid && !el.input.value) {
        el.input.value = text;
        autosize();
      }
      showComposerError(`Not sent: ${err.message}`);
    }
  }

  el.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
    el.input.focus();
  });
  el.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  el.input.addEventListener('input', autosize);

  // ------------------------------------------------------------------ simulate

  async function loadSimulate() {
    try {
      const res = await fetch('/demo/simulate');
      const data = await res.json();
      el.simulate.checked = !!data.on;
    } catch {
      /* keep the switch as it is */
    }
  }

  el.simulate.addEventListener('change', async () => {
    const want = el.simulate.checked;
    el.simulate.disabled = true;
    try {
      const res = await fetch('/demo/simulate', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ on: want }),
      });
      const data = await res.json();
      el.simulate.checked = !!data.on;
    } catch {
      el.simulate.checked = !want;
    } finally {
      el.simulate.disabled = false;
    }
  });
  window.addEventListener('focus', () => {
    if (state.me) loadSimulate();
  });

  // ------------------------------------------------------------------ sign in / out

  function resetChat() {
    state.subs = new Map();
    state.rooms = new Map();
    state.messages = new Map();
    state.current = null;
    state.openSeq++;
    state.reads = new Map();
    state.resyncing = null;
    state.subWaiters = new Map();
    state.ended = false;
    for (const li of state.roomItems.values()) li.remove();
    state.roomItems = new Map();
    el.messages.replaceChildren();
    delete el.messages.dataset.roomId;
    delete el.messages.dataset.state;
    el.ended.hidden = true;
    hideComposerError();
  }

  async function signIn(username) {
    el.loginError.hidden = true;
    el.loginButtons.forEach((b) => (b.disabled = true));
    let me;
    try {
      const res = await fetch(`/demo/login/${encodeURIComponent(username)}`, { method: 'POST' });
      const data = await res.json().catch(() => null);
      if (!res.ok || !data || !data.client_token) throw new Error(errorText(data, res.status));
      me = data;
    } catch (err) {
      el.loginError.textContent = `Could not sign in as ${username}: ${err.message}`;
      el.loginError.hidden = false;
      el.loginButtons.forEach((b) => (b.disabled = false));
      return;
    }
    el.loginButtons.forEach((b) => (b.disabled = false));
    await stopConnection();
    resetChat();
    state.me = me;
    sessionStorage.setItem(STORAGE_KEY, me.username);
    el.meAvatar.dataset.username = me.username;
    el.meAvatar.textContent = initials(me.name || me.username);
    el.meName.textContent = me.name || me.username;
    el.meUsername.textContent = `@${me.username}`;
    document.body.dataset.user = me.username;
    el.login.hidden = true;
    el.app.hidden = false;
    renderDmButtons();
    updateComposer();
    loadSimulate();
    // Connect first, then read the rooms, so nothing posted in between is missed.
    await connect();
    if (state.me !== me) return;
    try {
      await loadRooms();
    } catch (err) {
      showComposerError(`Could not load your rooms: ${err.message}`);
      return;
    }
    if (state.me !== me) return;
    const remembered = sessionStorage.getItem(`${STORAGE_KEY}-room-${me.username}`);
    await openRoom(remembered && state.subs.has(remembered) ? remembered : defaultRoom());
  }

  async function stopConnection() {
    const conn = state.connection;
    state.connection = null;
    if (conn) await conn.stop().catch(() => {});
  }

  async function signOut() {
    await stopConnection();
    state.me = null;
    sessionStorage.removeItem(STORAGE_KEY);
    if (location.search) history.replaceState(null, '', location.pathname);
    resetChat();
    setStatus('offline');
    delete document.body.dataset.user;
    document.title = 'imrelay demo chat';
    el.app.hidden = true;
    el.login.hidden = false;
  }

  el.loginButtons.forEach((b) => b.addEventListener('click', () => signIn(b.dataset.username)));
  el.signout.addEventListener('click', signOut);
  el.endedAction.addEventListener('click', () => {
    if (state.me) signIn(state.me.username);
  });

  // ?as=alice signs in directly; a reload keeps this tab's user.
  const wanted = new URLSearchParams(location.search).get('as') || sessionStorage.getItem(STORAGE_KEY);
  if (wanted && USERS.some((u) => u.username === wanted)) signIn(wanted);
})();
