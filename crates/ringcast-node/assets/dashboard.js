// ringcast dashboard. Plain JavaScript, no build step, no external origin.
//
// Data flow, all driven by events (the page never polls on a timer):
// - EventSource on this node's /v1/events?view=1: cluster events for the
//   timeline, and `view` messages whenever this node's map or tables change;
// - on such a message (and on cluster events), GET /v1/overview, which this
//   node answers with the supervisor's own view when the supervisor answers;
// - a second EventSource on the supervisor's /v1/events (allowed by CORS for
//   the cluster's own nodes) for the events only the supervisor sees:
//   failures it marked, disk failures, reassignments, takeovers.
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const MAX_EVENTS = 300;
  // Events whose observer is the supervisor and that only it sees.
  const SUPERVISOR_KINDS = [
    'became_supervisor', 'stopped_supervising', 'admitted', 'released', 'marked_failed',
    'disk_failed', 'disk_recovered', 'path_broken', 'path_restored', 'reassigned',
  ];
  // Changes of the cluster map, the same at every node.
  const MAP_KINDS = ['supervisor', 'joined', 'failed', 'left'];
  const LOCAL_KINDS = [
    'follows', 'joined_cluster', 'left_cluster', 'declared', 'refuted', 'clock_slipped',
    'config_outdated',
  ];
  const CATEGORY = {
    failed: 'failure', marked_failed: 'failure', declared: 'failure', disk_failed: 'failure',
    path_broken: 'failure', joined: 'join', admitted: 'join', joined_cluster: 'join',
    disk_recovered: 'join', path_restored: 'join', refuted: 'join', left: 'leave',
    released: 'leave', left_cluster: 'leave', supervisor: 'takeover',
    became_supervisor: 'takeover', stopped_supervising: 'takeover', follows: 'takeover',
    reassigned: 'reassign',
  };

  const state = {
    overview: null,
    seen: new Set(),
    supervisorSource: null,
    supervisorOrigin: null,
    fetching: false,
    fetchAgain: false,
    hls: null,
    streamId: null,
    playing: null,
    stalled: false,
    kickTimer: null,
    lastFragAt: 0,
    titlesRetry: null,
    catalogs: null,
    // Content-Security-Policy violations seen by this page (none expected).
    violations: [],
  };
  // What the player went through (segments, errors, recoveries), newest last.
  const playerLog = [];
  function note(line) {
    playerLog.push(`${clock(Date.now())} ${line}`);
    if (playerLog.length > 100) playerLog.shift();
  }
  window.ringcastDashboard = { violations: state.violations, player: playerLog };
  document.addEventListener('securitypolicyviolation', (e) => {
    state.violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
  });

  // Titles a <video> can play; HLS segments and the like are left out.
  const PLAYABLE = /\.(m3u8|mp4|m4v|webm|mov)$/i;

  const $ = (id) => document.getElementById(id);

  // Builds an element; children are nodes or text (never parsed as HTML).
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, String(v));
      else e[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function s(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function bar(value, max) {
    const frac = max > 0 ? Math.min(1, value / max) : 0;
    const b = h('span', { class: 'bar' + (frac >= 1 ? ' full' : frac >= 0.8 ? ' high' : '') });
    const fill = h('span');
    fill.style.width = (frac * 100).toFixed(1) + '%';
    b.append(fill);
    return b;
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = Number(n) || 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
  }

  function clock(ms) {
    const d = new Date(ms);
    const p = (x, n) => String(x).padStart(n || 2, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  // ----- the cluster -----

  function clusterView() {
    const c = state.overview && state.overview.clusters && state.overview.clusters[0];
    return c ? c.view : null;
  }

  function nodeHttp(id) {
    const v = clusterView();
    const n = v && (v.nodes || []).find((x) => x.id === id);
    return n ? n.http : null;
  }

  function render(overview) {
    state.overview = overview;
    const root = $('clusters');
    const sections = new Map();
    // Parents first; a child cluster nests in its parent's section.
    for (const c of overview.clusters || []) {
      const section = renderCluster(c, overview);
      sections.set(c.id, section);
      const parent = c.parent !== null && c.parent !== undefined ? sections.get(c.parent) : null;
      (parent ? parent.querySelector('.children') : root).append(section);
    }
    for (const old of Array.from(root.children)) {
      if (!Array.from(sections.values()).includes(old)) old.remove();
    }
    const top = (overview.clusters || [])[0];
    if (top) {
      const v = top.view;
      const up = (v.nodes || []).filter((n) => n.status === 'up').length;
      $('summary').textContent =
        `cluster ${top.name}: supervisor n${v.supervisor}, epoch ${v.epoch}, ` +
        `${up} of ${(v.nodes || []).length} nodes up; page served by n${overview.answered_by}`;
      $('summary').setAttribute('data-supervisor', String(v.supervisor));
      document.title = `ringcast: ${top.name}, n${v.supervisor} supervises, ${up} up`;
      followSupervisor(v);
      // A disk's library changed (its digest did): list the titles again.
      const catalogs = ((v.tables && v.tables.disk_usage) || [])
        .map((d) => `${d.disk}:${d.catalog}`).join(',');
      if (state.catalogs !== null && catalogs !== state.catalogs) loadTitles();
      state.catalogs = catalogs;
    }
  }

  function renderCluster(c, overview) {
    const existing = document.querySelector(`section.cluster[data-cluster="${c.id}"]`);
    const section = existing ||
      $('cluster-template').content.firstElementChild.cloneNode(true);
    section.setAttribute('data-cluster', String(c.id));
    const v = c.view;
    section.querySelector('.cluster-title').textContent =
      `Cluster ${c.name} (id ${c.id})`;
    section.querySelector('.cluster-meta').textContent =
      (c.supervisor_view
        ? `As supervisor n${c.view_of} sees it`
        : `As n${c.view_of} sees it (the supervisor did not answer)`) +
      ` · epoch ${v.epoch} · map version ${v.map_version} · ring ${(v.ring || []).map((n) => 'n' + n).join(' → ') || 'none'}`;
    renderRing(section.querySelector('svg.ring'), v);
    renderNodes(section.querySelector('table.nodes tbody'), v, overview);
    renderUsage(section.querySelector('table.node-usage tbody'), v);
    renderDisks(section.querySelector('table.disk-usage tbody'), v);
    renderStreams(section.querySelector('.streams-chart'), v);
    return section;
  }

  function usageOf(v, id) {
    return ((v.tables && v.tables.node_usage) || []).find((u) => u.node === id);
  }

  function renderRing(svg, v) {
    svg.replaceChildren();
    svg.setAttribute('aria-label', 'ring ' + (v.ring || []).join(' to '));
    const defs = s('defs');
    const marker = s('marker', {
      id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
    });
    marker.append(s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }));
    defs.append(marker);
    svg.append(defs);
    const R = 120;
    const r = 26;
    svg.append(s('circle', { cx: 0, cy: 0, r: R, class: 'track' }));
    const nodes = v.nodes || [];
    const pos = new Map();
    nodes.forEach((n, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, nodes.length);
      pos.set(n.id, { x: R * Math.cos(a), y: R * Math.sin(a), a });
    });
    const ring = v.ring || [];
    if (ring.length > 1) {
      ring.forEach((id, i) => {
        const from = pos.get(id);
        const to = pos.get(ring[(i + 1) % ring.length]);
        if (!from || !to) return;
        // An arc along the ring, from the edge of one node to the next.
        let sweep = to.a - from.a;
        while (sweep <= 0) sweep += 2 * Math.PI;
        const pad = r / R;
        const a0 = from.a + pad;
        const a1 = from.a + sweep - pad;
        const large = a1 - a0 > Math.PI ? 1 : 0;
        const d = `M ${R * Math.cos(a0)} ${R * Math.sin(a0)} A ${R} ${R} 0 ${large} 1 ${R * Math.cos(a1)} ${R * Math.sin(a1)}`;
        svg.append(s('path', { d, class: 'edge' }));
      });
    }
    for (const n of nodes) {
      const p = pos.get(n.id);
      const g = s('g', {
        class: 'node', 'data-node': n.id, 'data-status': n.status,
        'data-role': n.status === 'up' ? n.role : 'none',
      });
      g.append(s('circle', { cx: p.x, cy: p.y, r }));
      const label = s('text', { x: p.x, y: p.y });
      label.textContent = 'n' + n.id;
      g.append(label);
      // The caption sits just outside the circle, towards the ring's centre.
      const k = (r + 11) / R;
      const sub = s('text', { x: p.x * (1 - k), y: p.y * (1 - k), class: 'sub' });
      const u = usageOf(v, n.id);
      sub.textContent = n.status !== 'up' ? n.status
        : n.role === 'supervisor' ? 'supervisor'
          : u ? `${u.load.streams} str` : '';
      g.append(sub);
      if (n.status === 'failed') {
        const k = r * 0.55;
        g.append(s('line', { x1: p.x - k, y1: p.y - k, x2: p.x + k, y2: p.y + k, class: 'cross' }));
        g.append(s('line', { x1: p.x - k, y1: p.y + k, x2: p.x + k, y2: p.y - k, class: 'cross' }));
      }
      const title = s('title');
      title.textContent = `n${n.id}: ${n.status}, ${n.role}, ring ${n.ring}, http ${n.http}`;
      g.append(title);
      svg.append(g);
    }
  }

  function renderNodes(tbody, v, overview) {
    tbody.replaceChildren();
    const ring = v.ring || [];
    for (const n of v.nodes || []) {
      const u = usageOf(v, n.id);
      const at = ring.indexOf(n.id);
      const role = n.status === 'up' ? n.role : '—';
      const leave = h('button', { type: 'button', textContent: 'Leave' });
      leave.setAttribute('data-leave', String(n.id));
      leave.disabled = n.status !== 'up';
      leave.addEventListener('click', () => adminAction(n.id, 'leave'));
      // A node the tables show with no capacity takes no new stream and
      // has handed its address on: it drains (docs/streaming.md).
      const draining = n.status === 'up' && !!u && u.capacity.max_streams === 0;
      const drain = h('button', { type: 'button', textContent: draining ? 'Undrain' : 'Drain' });
      drain.setAttribute('data-drain', String(n.id));
      drain.disabled = n.status !== 'up';
      drain.addEventListener('click', () => adminAction(n.id, draining ? 'undrain' : 'drain'));
      const status = draining ? 'draining' : n.status;
      const here = n.id === overview.answered_by ? ' (this page)' : '';
      tbody.append(h('tr', { 'data-node': n.id, 'data-status': status, 'data-role': role },
        h('td', {}, `n${n.id}${here}`),
        h('td', { class: 'role', 'data-role': role }, role),
        h('td', { class: 'status', 'data-status': status }, status),
        h('td', {}, at >= 0 ? `${at + 1} of ${ring.length}` : '—'),
        h('td', {}, u ? bar(u.load.streams, u.capacity.max_streams) : '',
          u ? `${u.load.streams}/${u.capacity.max_streams}` : '—'),
        h('td', {}, h('a', { href: `${location.protocol}//${n.http}/`, textContent: n.http })),
        h('td', {}, drain, ' ', leave)));
    }
  }

  function renderUsage(tbody, v) {
    tbody.replaceChildren();
    for (const u of (v.tables && v.tables.node_usage) || []) {
      tbody.append(h('tr', { 'data-node': u.node },
        h('td', {}, `n${u.node}`),
        h('td', {}, bar(u.load.streams, u.capacity.max_streams),
          `${u.load.streams} of ${u.capacity.max_streams}`),
        h('td', {}, bar(u.load.bytes_per_s, u.capacity.max_bytes_per_s),
          `${bytes(u.load.bytes_per_s)}/s of ${bytes(u.capacity.max_bytes_per_s)}/s`)));
    }
  }

  function renderDisks(tbody, v) {
    tbody.replaceChildren();
    const topology = (v.tables && v.tables.topology) || [];
    for (const d of (v.tables && v.tables.disk_usage) || []) {
      const readers = topology
        .filter((t) => (t.disks || []).some((l) => l.disk === d.disk))
        .map((t) => {
          const link = t.disks.find((l) => l.disk === d.disk);
          return `n${t.node}${link.status === 'Ok' ? '' : ' (broken)'}`;
        });
      tbody.append(h('tr', { 'data-disk': d.disk, 'data-status': d.status },
        h('td', {}, `d${d.disk}`),
        h('td', { class: 'status', 'data-status': d.status }, d.status === 'Ok' ? 'ok' : 'failed'),
        h('td', {}, bar(d.used_bytes, d.capacity_bytes),
          `${bytes(d.used_bytes)} of ${bytes(d.capacity_bytes)}`),
        h('td', {}, String(d.streams)),
        h('td', {}, `${bytes(d.bytes_per_s)}/s`),
        h('td', {}, readers.join(', '))));
    }
  }

  function renderStreams(chart, v) {
    chart.replaceChildren();
    const usage = (v.tables && v.tables.node_usage) || [];
    const most = Math.max(1, ...usage.map((u) => u.load.streams));
    for (const u of usage) {
      chart.append(h('span', {}, `n${u.node}`), bar(u.load.streams, most),
        h('span', { 'data-streams': u.node }, String(u.load.streams)));
    }
    if (usage.length === 0) chart.append(h('span', { class: 'hint' }, 'no node usage reported yet'));
  }

  // Fetches the supervisor-following overview; one request at a time, and
  // one more if something happened meanwhile.
  async function refresh() {
    if (state.fetching) { state.fetchAgain = true; return; }
    state.fetching = true;
    try {
      const r = await fetch('/v1/overview', { cache: 'no-store' });
      if (r.ok) render(await r.json());
      // Who holds each service address: the player is sent to those.
      const a = await fetch('/v1/addresses', { cache: 'no-store' });
      if (a.ok) state.addresses = (await a.json()).addresses;
    } catch (e) {
      $('summary').textContent = 'this node does not answer: ' + e;
    } finally {
      state.fetching = false;
      if (state.fetchAgain) { state.fetchAgain = false; refresh(); }
    }
  }

  // ----- events -----

  function addEvent(e, source) {
    const key = `${e.observer}|${e.at_ms}|${e.kind}|${e.node}|${e.text}`;
    if (state.seen.has(key)) return;
    state.seen.add(key);
    const list = $('timeline');
    const li = h('li', {
      class: 'fresh', 'data-kind': e.kind, 'data-node': e.node === undefined ? null : e.node,
      'data-observer': e.observer, 'data-source': source, 'data-at': e.at_ms,
      'data-category': CATEGORY[e.kind] || 'other',
    },
    h('span', { class: 'time' }, clock(e.at_ms)),
    h('span', { class: 'observer', title: 'observed by' }, `n${e.observer}`),
    h('span', { class: 'kind' }, e.kind.replace(/_/g, ' ')),
    h('span', { class: 'text' }, e.text));
    // Newest first, whatever order the streams deliver in.
    let before = list.firstElementChild;
    while (before && Number(before.getAttribute('data-at')) > e.at_ms) {
      before = before.nextElementSibling;
    }
    list.insertBefore(li, before);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function listen(source, kinds, label, onEvent) {
    for (const kind of kinds) {
      source.addEventListener(kind, (m) => {
        let e;
        try { e = JSON.parse(m.data); } catch (_) { return; }
        addEvent(e, label);
        if (onEvent) onEvent(e);
      });
    }
  }

  function setLive(s) {
    const b = $('live');
    b.setAttribute('data-state', s);
    b.textContent = s;
  }

  function connect() {
    const es = new EventSource('/v1/events?view=1');
    es.addEventListener('open', () => { setLive('live'); refresh(); });
    es.addEventListener('error', () => setLive('reconnecting'));
    es.addEventListener('view', (m) => {
      let ov;
      try { ov = JSON.parse(m.data); } catch (_) { return; }
      const own = ov.clusters && ov.clusters[0];
      // The supervisor's own view is the one to show; a member asks it.
      if (own && own.supervisor_view) render(ov);
      else refresh();
    });
    listen(es, MAP_KINDS.concat(LOCAL_KINDS, SUPERVISOR_KINDS), 'node', (e) => {
      if (MAP_KINDS.includes(e.kind)) refresh();
    });
  }

  // Follows the supervisor's own event stream when this page's node is not it.
  function followSupervisor(v) {
    const me = state.overview.answered_by;
    const http = v.supervisor !== me ? nodeHttp(v.supervisor) : null;
    const origin = http ? `${location.protocol}//${http}` : null;
    if (origin === state.supervisorOrigin) return;
    if (state.supervisorSource) state.supervisorSource.close();
    state.supervisorSource = null;
    state.supervisorOrigin = origin;
    $('events-source').textContent = origin
      ? `Live from this node (n${me}) and from the supervisor n${v.supervisor}.`
      : `Live from this node (n${me}), the supervisor.`;
    if (!origin) return;
    const es = new EventSource(origin + '/v1/events');
    state.supervisorSource = es;
    listen(es, SUPERVISOR_KINDS, 'supervisor');
  }

  // ----- admin -----

  // `action` is `leave`, `drain` or `undrain`: this node passes it on to
  // node `id`, which checks the token again.
  async function adminAction(id, action) {
    const token = $('token').value.trim();
    const status = $('admin-status');
    if (!token) { status.textContent = 'Enter the admin token first.'; return; }
    status.textContent = `asking n${id} to ${action}…`;
    try {
      const r = await fetch(`/v1/nodes/${id}/${action}`, {
        method: 'POST', headers: { Authorization: 'Bearer ' + token }, cache: 'no-store',
      });
      const text = (await r.text()).trim();
      status.textContent = r.ok ? `n${id}: ${text}` : `n${id} refused (${r.status}): ${text}`;
    } catch (e) {
      status.textContent = `the request failed: ${e}`;
    }
  }

  // ----- player -----

  async function loadTitles() {
    const select = $('title-select');
    clearTimeout(state.titlesRetry);
    try {
      const r = await fetch('/v1/titles', { cache: 'no-store' });
      const body = r.ok ? await r.json() : { titles: [], settled: true };
      // A node has not rescanned a changed disk yet: the list changes
      // without the tables changing again, so ask once more shortly.
      if (body.settled === false) state.titlesRetry = setTimeout(loadTitles, 1000);
      const current = select.value;
      const titles = body.titles.filter((t) => PLAYABLE.test(t.title));
      select.replaceChildren(...titles.map((t) =>
        h('option', { value: t.title, textContent: `${t.title} (${t.content_type})` })));
      if (current) select.value = current;
      if (!state.playing) {
        $('player-status').textContent = titles.length === 0
          ? 'The cluster has no playable titles.'
          : `${titles.length} playable titles. Pick one and press Play; kill nodes and watch it keep playing.`;
      }
    } catch (e) {
      $('player-status').textContent = 'cannot list titles: ' + e;
    }
  }

  function nodeOfUrl(url) {
    const v = clusterView();
    if (!v || !url) return null;
    const host = new URL(url, location.href).host;
    const n = (v.nodes || []).find((x) => x.http === host);
    if (n) return `n${n.id} (${host})`;
    // A service address: the node holding it now serves it.
    const a = (state.addresses || []).find((x) => x.address === host);
    return a && a.holder != null ? `n${a.holder} (${host})` : host;
  }

  function stopPlayer() {
    const video = $('video');
    clearTimeout(state.kickTimer);
    state.stalled = false;
    if (state.hls) { state.hls.destroy(); state.hls = null; }
    video.removeAttribute('src');
    video.load();
    state.playing = null;
  }

  function play() {
    const title = $('title-select').value;
    if (!title) return;
    stopPlayer();
    const video = $('video');
    const status = $('player-status');
    // One stream id for the whole playback: the supervisor keeps it on its
    // node and moves it when that node fails.
    state.streamId = Math.floor(Math.random() * 2 ** 52);
    const url = `/v1/play/${title.split('/').map(encodeURIComponent).join('/')}?stream=${state.streamId}`;
    state.playing = { title, url };
    if (title.endsWith('.m3u8')) {
      if (window.Hls && window.Hls.isSupported()) {
        const retry = { maxNumRetry: 20, retryDelayMs: 250, maxRetryDelayMs: 2000 };
        const policy = { default: { maxTimeToFirstByteMs: 5000, maxLoadTimeMs: 20000, timeoutRetry: retry, errorRetry: retry } };
        const hls = new window.Hls({
          // No worker: the CSP allows none. A short buffer keeps segments
          // coming through placement, so a failover shows within seconds.
          enableWorker: false,
          maxBufferLength: 6,
          maxMaxBufferLength: 12,
          fragLoadPolicy: policy,
          playlistLoadPolicy: policy,
          manifestLoadPolicy: policy,
        });
        state.hls = hls;
        // A stall with nothing arriving (a segment's retries went nowhere,
        // seen while its node died): restart loading at the playhead, and
        // again every 3 s while still stalled. Nothing runs otherwise.
        const kick = (why) => {
          if (state.hls !== hls || !state.stalled) return;
          note(`restarting segment loading at ${video.currentTime.toFixed(1)} s (${why})`);
          hls.startLoad(video.currentTime);
          clearTimeout(state.kickTimer);
          state.kickTimer = setTimeout(() => kick('still stalled'), 3000);
        };
        video.addEventListener('playing', () => { state.stalled = false; });
        hls.on(window.Hls.Events.FRAG_LOADED, (_, data) => {
          state.stalled = false;
          state.lastFragAt = performance.now();
          const from = data.networkDetails && data.networkDetails.responseURL;
          status.textContent = `HLS: segment ${data.frag.sn} from ${nodeOfUrl(from) || 'the cluster'}`;
          note(status.textContent);
        });
        hls.on(window.Hls.Events.ERROR, (_, data) => {
          const code = data.response && data.response.code;
          note(`${data.fatal ? 'fatal' : 'error'} ${data.type} ${data.details}${code ? ' ' + code : ''}`);
          status.textContent = `HLS ${data.fatal ? 'error' : 'retrying'}: ${data.details}`;
          if (data.details === window.Hls.ErrorDetails.FRAG_LOAD_ERROR && !data.fatal) {
            // hls.js retries by itself, but a segment whose node died
            // mid-request is sometimes never asked again: if nothing has
            // arrived 1.5 s later, ask for it at the playhead.
            const failedAt = performance.now();
            setTimeout(() => {
              if (state.hls === hls && !(state.lastFragAt > failedAt)) {
                note(`no segment since the error: loading again at ${video.currentTime.toFixed(1)} s`);
                hls.startLoad(video.currentTime);
              }
            }, 1500);
          }
          if (data.details === window.Hls.ErrorDetails.BUFFER_STALLED_ERROR && !state.stalled) {
            state.stalled = true;
            kick('stalled');
          }
          if (!data.fatal) return;
          // Fatal after every retry: start over from where it stands.
          if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
          else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        });
        hls.loadSource(url);
        hls.attachMedia(video);
      } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
        video.src = url;
      } else {
        status.textContent = 'This browser cannot play HLS.';
        return;
      }
    } else {
      video.src = url;
      status.textContent = `${title}: native playback through ${location.host}`;
    }
    video.play().catch(() => {});
  }

  // A native (MP4) player whose node died: ask the play URL again with the
  // same stream id (the supervisor placed it elsewhere) and resume.
  function recoverNative() {
    const video = $('video');
    if (!state.playing || state.hls || !video.error) return;
    const at = video.currentTime;
    $('player-status').textContent = `the serving node went away at ${at.toFixed(1)} s; resuming through the cluster`;
    video.src = state.playing.url;
    video.addEventListener('loadedmetadata', () => {
      video.currentTime = at;
      video.play().catch(() => {});
    }, { once: true });
  }

  function init() {
    $('play').addEventListener('click', play);
    $('stop').addEventListener('click', stopPlayer);
    $('reload-titles').addEventListener('click', loadTitles);
    $('video').addEventListener('error', recoverNative);
    connect();
    refresh();
    loadTitles();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
}());
