// Meshlet dashboard: plain DOM, no framework. Everything shown comes from the admin API of the sidecar
// that serves this page. Data is only ever inserted as text (textContent / text nodes), never as markup:
// request paths, span names and attributes come from users.
'use strict';

const POLL_MS = 2000;
const LIVE_ROWS = 200;
const TRACE_ROWS = 30;

/** Builds an element; string and number children become text nodes. Only safe properties are set. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    if (props.className) node.className = props.className;
    if (props.title !== undefined) node.title = String(props.title);
    if (props.onclick) node.addEventListener('click', props.onclick);
    if (props.dataset) for (const [k, v] of Object.entries(props.dataset)) node.dataset[k] = String(v);
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

async function getJson(path) {
  const res = await fetch(path, { cache: 'no-store' });
  if (!res.ok) {
    const error = new Error(`${path}: ${res.status}`);
    error.status = res.status;
    throw error;
  }
  return res.json();
}

function fmtMs(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '–';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/** A stable colour per service name. */
function serviceColor(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360}, 55%, 55%)`;
}

// ---------- Prometheus text -> samples ----------

function parseLabels(text) {
  const labels = {};
  const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(text))) labels[m[1]] = m[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  return labels;
}

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('meshlet_')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m) samples.push({ name: m[1], labels: m[2] ? parseLabels(m[2]) : {}, value: Number(m[3]) });
  }
  return samples;
}

// ---------- state: service, cards, traffic, upstreams, certificate ----------

let previousTotals = null;

function renderCards(items) {
  const cards = $('cards');
  cards.replaceChildren(...items.map(([label, value]) => el('div', { className: 'card' }, el('div', { className: 'value' }, value), el('div', { className: 'label' }, label))));
}

function renderTraffic(samples) {
  const series = new Map();
  const row = (labels) => {
    const key = `${labels.direction}\u0000${labels.upstream}`;
    if (!series.has(key)) series.set(key, { direction: labels.direction, upstream: labels.upstream, total: 0, errors: 0, sum: 0, count: 0, active: 0, proxyErrors: 0 });
    return series.get(key);
  };
  for (const s of samples) {
    if (s.name === 'meshlet_requests_total') {
      const r = row(s.labels);
      r.total += s.value;
      if (s.labels.code_class === '5xx') r.errors += s.value;
    } else if (s.name === 'meshlet_request_duration_seconds_sum') row(s.labels).sum += s.value;
    else if (s.name === 'meshlet_request_duration_seconds_count') row(s.labels).count += s.value;
    else if (s.name === 'meshlet_active_requests') row(s.labels).active += s.value;
    else if (s.name === 'meshlet_proxy_errors_total') row(s.labels).proxyErrors += s.value;
  }
  const now = performance.now();
  const rates = new Map();
  if (previousTotals) {
    const seconds = (now - previousTotals.at) / 1000;
    for (const [key, r] of series) rates.set(key, Math.max(0, (r.total - (previousTotals.totals.get(key) ?? 0)) / seconds));
  }
  previousTotals = { at: now, totals: new Map([...series].map(([k, r]) => [k, r.total])) };

  const rows = [...series.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  const tbody = $('traffic').tBodies[0];
  tbody.replaceChildren(
    ...(rows.length === 0
      ? [el('tr', null, el('td', { className: 'empty' }, 'no requests yet'))]
      : rows.map(([key, r]) =>
          el(
            'tr',
            null,
            el('td', null, r.direction),
            el('td', null, r.upstream),
            el('td', { className: 'num' }, rates.has(key) ? rates.get(key).toFixed(1) : '–'),
            el('td', { className: 'num' }, r.total),
            el('td', { className: 'num' }, r.total ? `${((r.errors / r.total) * 100).toFixed(1)}%` : '–'),
            el('td', { className: 'num' }, r.count ? fmtMs((r.sum / r.count) * 1000) : '–'),
            el('td', { className: 'num' }, r.active),
            el('td', { className: 'num' }, r.proxyErrors),
          ),
        )),
  );

  let total = 0, errors = 0, sum = 0, count = 0, active = 0, rate = 0;
  for (const [key, r] of series) {
    total += r.total; errors += r.errors; sum += r.sum; count += r.count; active += r.active;
    rate += rates.get(key) ?? 0;
  }
  const expiry = samples.find((s) => s.name === 'meshlet_certificate_expiry_seconds');
  const cards = [
    ['requests / s', previousTotals && rates.size ? rate.toFixed(1) : '–'],
    ['requests', total],
    ['5xx', total ? `${((errors / total) * 100).toFixed(1)}%` : '–'],
    ['mean latency', count ? fmtMs((sum / count) * 1000) : '–'],
    ['in flight', active],
  ];
  if (expiry) cards.push(['certificate expires in', fmtDuration(expiry.value)]);
  renderCards(cards);
}

function fmtDuration(seconds) {
  if (seconds < 0) return 'expired';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function renderUpstreams(data) {
  const rows = [];
  for (const [name, u] of Object.entries(data.upstreams ?? {})) {
    if (!u.endpoints || u.endpoints.length === 0) {
      rows.push(el('tr', null, el('td', null, name), el('td', null, u.service), el('td', { className: 'empty' }, u.discovered ? 'no endpoints' : 'waiting for discovery'), el('td'), el('td'), el('td'), el('td')));
      continue;
    }
    for (const e of u.endpoints) {
      const state = el('span', { className: `state state-${e.state}`, title: e.ejectedUntil ? `ejected until ${e.ejectedUntil}` : '' }, e.state);
      rows.push(
        el(
          'tr',
          { dataset: { upstream: name } },
          el('td', null, name),
          el('td', null, u.service),
          el('td', { className: 'mono' }, `${e.address}:${e.port}`),
          el('td', { className: 'num' }, e.weight),
          el('td', null, state),
          el('td', { className: 'num' }, e.activeRequests),
          el('td', { className: 'muted' }, (e.tags ?? []).join(', ')),
        ),
      );
    }
  }
  const tbody = $('upstreams').tBodies[0];
  tbody.replaceChildren(...(rows.length ? rows : [el('tr', null, el('td', { className: 'empty' }, 'no upstreams configured'))]));
  const providers = (Array.isArray(data.providers) ? data.providers : []).map((p) => `${p.provider}: ${p.state}${p.lastError ? ` (${p.lastError})` : ''}`);
  $('providers').textContent = providers.length ? `discovery — ${providers.join(' · ')}` : '';
}

async function loadCert() {
  const box = $('cert');
  try {
    const c = await getJson('/certs');
    const expires = new Date(c.notAfter);
    box.replaceChildren(
      el('div', null, 'mTLS on — identity ', el('span', { className: 'mono', title: 'SPIFFE ID of this sidecar' }, c.identity)),
      el('div', { className: 'muted' }, `expires ${expires.toISOString()} (in ${fmtDuration((expires.getTime() - Date.now()) / 1000)}) · issuer ${c.issuer} · CA ${c.ca}`),
    );
  } catch (err) {
    box.textContent = err.status === 404 ? 'mTLS is off: this sidecar has no mesh certificate.' : `certificate unavailable (${err.message})`;
  }
}

async function refreshState() {
  try {
    const [ready, endpoints, metricsText] = await Promise.all([
      fetch('/ready', { cache: 'no-store' }).then((r) => r.json()),
      getJson('/endpoints'),
      fetch('/metrics', { cache: 'no-store' }).then((r) => (r.ok ? r.text() : '')),
    ]);
    const badge = $('state');
    badge.textContent = ready.state;
    badge.className = `badge ${ready.state}`;
    renderUpstreams(endpoints);
    renderTraffic(parseMetrics(metricsText));
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    const badge = $('state');
    badge.textContent = 'unreachable';
    badge.className = 'badge down';
    $('updated').textContent = String(err.message);
  }
}

// ---------- live requests (GET /tap) ----------

let paused = false;
let tap = null;

function liveFilter() {
  const params = new URLSearchParams();
  const upstream = $('live-upstream').value.trim();
  const status = $('live-status-filter').value.trim();
  if (upstream) params.set('upstream', upstream);
  if (status) params.set('status', status);
  return params.toString();
}

function connectTap() {
  if (tap) tap.close();
  const query = liveFilter();
  tap = new EventSource(`/tap${query ? `?${query}` : ''}`);
  const status = $('live-status');
  tap.addEventListener('hello', () => (status.textContent = '(streaming)'));
  tap.addEventListener('dropped', (e) => (status.textContent = `(skipped ${JSON.parse(e.data).dropped} while the page was busy)`));
  tap.addEventListener('message', (e) => {
    if (!paused) addLiveRow(JSON.parse(e.data));
  });
  tap.onerror = () => (status.textContent = '(reconnecting…)');
}

function addLiveRow(r) {
  const statusClass = `status-${Math.floor(r.status / 100)}xx`;
  const trace = r.traceId ? el('a', { className: 'trace-link mono', title: r.traceId, onclick: () => selectTrace(r.traceId) }, r.traceId.slice(0, 8)) : '';
  const row = el(
    'tr',
    null,
    el('td', { className: 'mono' }, r.time.slice(11, 23)),
    el('td', null, r.direction === 'inbound' ? 'in' : 'out'),
    el('td', null, r.upstream),
    el('td', null, r.method),
    el('td', { className: 'path', title: r.path }, r.path),
    el('td', { className: `num ${statusClass}` }, r.status || '—'),
    el('td', { className: 'num' }, r.durationMs.toFixed(1)),
    el('td', { className: 'mono' }, r.endpoint ?? ''),
    el('td', { className: 'mono', title: r.peer ?? '' }, r.peer ?? ''),
    el('td', { className: 'status-5xx' }, r.error ?? ''),
    el('td', null, trace),
  );
  const tbody = $('live').tBodies[0];
  tbody.prepend(row);
  while (tbody.rows.length > LIVE_ROWS) tbody.deleteRow(-1);
}

// ---------- traces ----------

let selectedTrace = null;
let userPicked = false;

async function refreshTraces() {
  let data;
  try {
    data = await getJson(`/traces?limit=${TRACE_ROWS}`);
  } catch (err) {
    $('traces-status').textContent = `(${err.message})`;
    return;
  }
  $('traces-status').textContent = `(${data.held} held, newest first)`;
  const list = $('trace-list');
  list.replaceChildren(
    ...(data.traces.length === 0
      ? [el('li', { className: 'empty' }, 'No traces yet. Turn tracing on (telemetry.tracing) and point sidecars at this admin API: endpoint http://<admin>/v1/traces.')]
      : data.traces.map((t) =>
          el(
            'li',
            { className: t.traceId === selectedTrace ? 'selected' : '', dataset: { traceId: t.traceId }, onclick: () => { userPicked = true; selectTrace(t.traceId); } },
            el('div', null, el('span', { className: 'wf-service' }, t.service), t.name, t.errorCount ? el('span', { className: 'err' }, ` · ${t.errorCount} error${t.errorCount > 1 ? 's' : ''}`) : ''),
            el('div', { className: 'muted mono' }, `${t.startTime.slice(11, 23)} · ${fmtMs(t.durationMs)} · ${t.spanCount} spans · ${t.services.join(', ')}`),
          ),
        )),
  );
  if (!userPicked && data.traces.length > 0 && data.traces[0].traceId !== selectedTrace) await selectTrace(data.traces[0].traceId);
  else if (selectedTrace) await selectTrace(selectedTrace, true);
}

async function selectTrace(traceId, quiet) {
  selectedTrace = traceId;
  for (const li of $('trace-list').children) li.classList.toggle('selected', li.dataset.traceId === traceId);
  let trace;
  try {
    trace = await getJson(`/traces/${encodeURIComponent(traceId)}`);
  } catch (err) {
    if (!quiet) {
      $('trace-title').textContent = err.status === 404 ? `Trace ${traceId} is not in the store (yet): spans arrive with each export batch.` : err.message;
      $('waterfall').replaceChildren();
    }
    return;
  }
  renderWaterfall(trace);
}

let selectedSpan = null;

function renderWaterfall(trace) {
  $('trace-title').replaceChildren(
    el('span', { className: 'mono' }, trace.traceId),
    ` · ${fmtMs(trace.durationMs)} · ${trace.spanCount} spans · ${trace.services.join(', ')}`,
    trace.droppedSpans ? ` · ${trace.droppedSpans} spans dropped` : '',
  );
  const total = Math.max(trace.durationMs, 0.001);
  const ticks = el('div', { className: 'ticks' }, ...[0, 0.25, 0.5, 0.75, 1].map((f) => el('span', null, fmtMs(total * f))));
  const rows = trace.spans.map((s) => {
    const bar = el('div', { className: `wf-bar${s.status === 'error' ? ' error' : ''}`, title: `${s.service}: ${s.name} (${fmtMs(s.durationMs)})` });
    const left = (s.offsetMs / total) * 100;
    const width = (s.durationMs / total) * 100;
    bar.style.left = `${left}%`;
    bar.style.width = `${Math.max(width, 0.2)}%`;
    bar.style.background = serviceColor(s.service);
    const label = el(
      'div',
      { className: 'wf-label', title: `${s.service} ${s.name}${s.parentMissing ? ' (parent not received)' : ''}` },
      el('span', { className: 'wf-service' }, s.service),
      `${s.name} `,
      el('span', { className: 'muted' }, s.kind),
    );
    label.style.paddingLeft = `${Math.min(s.depth, 20) * 14}px`;
    const row = el('div', { className: `wf-row${s.spanId === selectedSpan ? ' selected' : ''}`, dataset: { spanId: s.spanId }, onclick: () => showSpan(s) }, label, el('div', { className: 'wf-track' }, bar), el('div', { className: 'wf-time' }, fmtMs(s.durationMs)));
    row.setAttribute('role', 'row');
    return row;
  });
  $('waterfall').replaceChildren(el('div', { className: 'wf-axis' }, el('div'), ticks, el('div')), ...rows);
  const keep = trace.spans.find((s) => s.spanId === selectedSpan);
  if (keep) showSpan(keep);
  else $('span-detail').replaceChildren();
}

function showSpan(s) {
  selectedSpan = s.spanId;
  for (const row of $('waterfall').querySelectorAll('.wf-row')) row.classList.toggle('selected', row.dataset.spanId === s.spanId);
  const entries = [
    ['span', s.spanId],
    ['parent', s.parentSpanId ? `${s.parentSpanId}${s.parentMissing ? ' (not received)' : ''}` : '(root)'],
    ['service', s.service],
    ['kind', s.kind],
    ['start', s.startTime],
    ['duration', fmtMs(s.durationMs)],
    ['status', s.statusMessage ? `${s.status}: ${s.statusMessage}` : s.status],
    ...Object.entries(s.attributes).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
  ];
  $('span-detail').replaceChildren(el('table', null, el('tbody', null, ...entries.map(([k, v]) => el('tr', null, el('td', null, k), el('td', { className: 'mono' }, v))))));
}

// ---------- start ----------

async function start() {
  try {
    const config = await getJson('/config');
    $('service').textContent = `${config.service.name}${config.service.namespace ? ` · ${config.service.namespace}` : ''}`;
    document.title = `Meshlet · ${config.service.name}`;
  } catch (err) {
    $('service').textContent = `(${err.message})`;
  }
  $('live-pause').addEventListener('click', () => {
    paused = !paused;
    $('live-pause').textContent = paused ? 'resume' : 'pause';
  });
  $('live-clear').addEventListener('click', () => $('live').tBodies[0].replaceChildren());
  for (const id of ['live-upstream', 'live-status-filter']) $(id).addEventListener('change', connectTap);
  connectTap();
  void loadCert();
  // Certificates renew: show the current one.
  setInterval(() => void loadCert(), 60_000);
  const tick = async () => {
    await Promise.all([refreshState(), refreshTraces()]);
    setTimeout(tick, POLL_MS);
  };
  void tick();
}

start();
