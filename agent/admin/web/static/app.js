// slotagent admin panel: live refresh of server-rendered parts, forms that
// call the JSON API, live deploy and app logs. Every text from the server
// is inserted with textContent, or as HTML the server escaped.
'use strict';
(function () {
  const body = document.body;
  const root = body.dataset.root || './';
  const slot = body.dataset.slot;
  const ansi = /\x1b\[[0-9;?]*[ -\/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

  function showError(msg) {
    const box = document.getElementById('error');
    if (!box) return;
    box.textContent = msg;
    box.hidden = !msg;
    if (msg) box.scrollIntoView({ block: 'nearest' });
  }

  async function api(method, path, payload) {
    const opts = { method, headers: { 'Accept': 'application/json' } };
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(payload || {});
    }
    const resp = await fetch(root + path, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { /* not JSON */ }
    if (!resp.ok) {
      const msg = data && data.error ? data.error + (data.details ? ' (' + data.details + ')' : '') : method + ' ' + path + ': ' + resp.status;
      throw new Error(msg);
    }
    return data;
  }

  // Live parts: elements with data-live="part-x" are re-rendered by the
  // server every data-every milliseconds.
  function refresh(el) {
    const u = new URL(location.href);
    u.hash = '';
    u.searchParams.set('part', el.dataset.live); // keeps the page's own query (?range=)
    return fetch(u, { cache: 'no-store' })
      .then(r => r.ok ? r.text() : Promise.reject(new Error('refresh: ' + r.status)))
      .then(html => { el.innerHTML = html; el.dispatchEvent(new Event('refreshed', { bubbles: true })); });
  }
  function refreshAll() { document.querySelectorAll('[data-live]').forEach(el => refresh(el).catch(() => {})); }
  // A part refreshes while it has data-every (a finished deploy's page
  // drops it).
  document.querySelectorAll('[data-live][data-every]').forEach(el => {
    setInterval(() => { if (!document.hidden && el.dataset.every) refresh(el).catch(() => {}); }, Number(el.dataset.every) || 2000);
  });

  function appendLine(pre, line) {
    pre.appendChild(document.createTextNode(line.replace(ansi, '') + '\n'));
    pre.scrollTop = pre.scrollHeight;
  }

  // The deploy log follows one deploy over Server-Sent Events.
  let source = null;
  function followDeploy(id) {
    const card = document.getElementById('deploy-log-card');
    const pre = document.getElementById('deploy-log');
    const badge = document.getElementById('deploy-status');
    if (!card) return;
    if (source) source.close();
    card.hidden = false;
    pre.textContent = '';
    const link = document.getElementById('deploy-link');
    if (link) link.href = root + 'deploys/' + encodeURIComponent(id);
    source = new EventSource(root + 'api/deploys/' + encodeURIComponent(id) + '/log');
    source.onopen = () => { if (!body.dataset.deploy) { badge.textContent = 'running'; badge.className = 'badge st-running'; } };
    source.onmessage = e => appendLine(pre, e.data);
    source.addEventListener('end', e => {
      source.close();
      source = null;
      const rec = JSON.parse(e.data);
      badge.textContent = rec.status;
      badge.className = 'badge st-' + rec.status;
      if (rec.status !== 'succeeded' && rec.error && !body.dataset.deploy) showError('Deploy ' + rec.status + ': ' + rec.error);
      const live = document.getElementById('deploy-card');
      if (live) delete live.dataset.every;
      refreshAll();
      loadAppLog();
    });
    source.onerror = () => { if (source && source.readyState === EventSource.CLOSED) source = null; };
  }

  async function act(fn) {
    showError('');
    try { await fn(); } catch (e) { showError(e.message); }
  }

  document.addEventListener('click', e => {
    const btn = e.target.closest('button[data-action], button[data-rollback]');
    if (!btn || !slot) return;
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    act(async () => {
      if (btn.dataset.rollback) {
        const rec = await api('POST', 'api/slots/' + slot + '/rollback', { release: btn.dataset.rollback });
        if (body.dataset.deploy) { location.href = root + rec.page; return; }
        followDeploy(rec.id);
      } else if (btn.dataset.action === 'restart') {
        await api('POST', 'api/restart/' + slot);
      } else if (btn.dataset.action === 'stop') {
        await api('POST', 'api/processes/' + slot + '/stop');
      }
      refreshAll();
    });
  });

  // Follow buttons: turn following on (or resume), off, or check now.
  document.addEventListener('click', e => {
    const btn = e.target.closest('button[data-follow]');
    if (!btn || !slot) return;
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    act(async () => {
      if (btn.dataset.follow === 'check') {
        await api('POST', 'api/slots/' + slot + '/follow/check');
      } else {
        await api('PUT', 'api/slots/' + slot + '/follow', { on: btn.dataset.follow === 'on' });
      }
      refreshAll();
    });
  });

  const previewForm = document.getElementById('preview-form');
  if (previewForm) {
    previewForm.addEventListener('submit', e => {
      e.preventDefault();
      const f = new FormData(previewForm);
      const req = { repo: String(f.get('repo') || '').trim(), branch: String(f.get('branch') || '').trim(),
        release_on_delete: f.get('release_on_delete') === 'on' };
      act(async () => {
        const ans = await api('POST', 'api/previews', req);
        const out = document.getElementById('preview-result');
        out.textContent = '';
        const a = document.createElement('a');
        a.href = root + 'slots/' + encodeURIComponent(ans.slot);
        a.textContent = 'slot ' + ans.slot;
        out.append(a, ' now follows ' + req.branch + (ans.url ? ' (' + ans.url + ')' : '') + ': ' + ans.follow.message);
        out.hidden = false;
        refreshAll();
      });
    });
  }

  // Copy buttons: data-copy names the element whose text they copy.
  document.addEventListener('click', async e => {
    const btn = e.target.closest('button[data-copy]');
    if (!btn) return;
    const el = document.getElementById(btn.dataset.copy);
    if (!el) return;
    try {
      await navigator.clipboard.writeText(el.textContent);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(el);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      document.execCommand('copy');
    }
    btn.textContent = 'Copied';
    setTimeout(() => { btn.textContent = 'Copy'; }, 2000);
  });

  const deployForm = document.getElementById('deploy-form');
  if (deployForm) {
    deployForm.addEventListener('submit', e => {
      e.preventDefault();
      const f = new FormData(deployForm);
      const req = {};
      for (const k of ['repo', 'ref', 'build', 'start']) {
        const v = String(f.get(k) || '').trim();
        if (v) req[k] = v;
      }
      act(async () => {
        const rec = await api('POST', 'api/slots/' + slot + '/deploy', req);
        followDeploy(rec.id);
      });
    });
  }

  const envForm = document.getElementById('env-form');
  if (envForm) {
    document.getElementById('env-add').addEventListener('click', () => {
      const row = document.createElement('div');
      row.className = 'env-row';
      const name = document.createElement('input');
      name.placeholder = 'NAME';
      name.className = 'env-name';
      name.autocomplete = 'off';
      const value = document.createElement('input');
      value.type = 'password';
      value.placeholder = 'value';
      value.className = 'env-value';
      value.autocomplete = 'new-password';
      row.append(name, value);
      document.getElementById('env-new').appendChild(row);
      name.focus();
    });
    envForm.addEventListener('submit', e => {
      e.preventDefault();
      const set = {};
      envForm.querySelectorAll('.env-row').forEach(row => {
        const k = row.querySelector('.env-name').value.trim();
        if (k) set[k] = row.querySelector('.env-value').value;
      });
      const unset = Array.from(envForm.querySelectorAll('input[name=unset]:checked')).map(i => i.value);
      act(async () => {
        const ans = await api('POST', 'api/slots/' + slot + '/env', { set, unset });
        document.getElementById('env-new').textContent = '';
        const list = document.getElementById('env-list');
        list.textContent = '';
        Object.keys(ans.env).sort().forEach(k => {
          const li = document.createElement('li');
          const code = document.createElement('code');
          code.textContent = k;
          li.append(code, ' = ', ans.env[k]);
          list.appendChild(li);
        });
        if (ans.deploy) followDeploy(ans.deploy.id);
      });
    });
  }

  // The app log: the last lines, then, on demand, new ones as they come.
  const appLog = document.getElementById('app-log');
  let follow = null;
  function loadAppLog() {
    if (!appLog || follow) return;
    fetch(root + 'api/slots/' + slot + '/logs?n=200').then(r => r.text()).then(t => {
      appLog.textContent = '';
      t.split('\n').filter(Boolean).forEach(l => appendLine(appLog, l));
    }).catch(err => showError('logs: ' + err.message));
  }
  if (appLog && slot) {
    loadAppLog();
    document.getElementById('log-follow').addEventListener('click', async ev => {
      const btn = ev.target;
      if (follow) { follow.abort(); follow = null; btn.textContent = 'Follow'; return; }
      follow = new AbortController();
      btn.textContent = 'Stop following';
      appLog.textContent = '';
      try {
        const resp = await fetch(root + 'api/slots/' + slot + '/logs?n=50&follow=1', { signal: follow.signal });
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let rest = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const lines = (rest + dec.decode(value, { stream: true })).split('\n');
          rest = lines.pop();
          lines.forEach(l => appendLine(appLog, l));
        }
      } catch (err) {
        if (err.name !== 'AbortError') showError('logs: ' + err.message);
      }
    });
  }

  // The charts' crosshair: one vertical line across every chart and one
  // tip with every series at that moment, on hover (mouse) and on tap
  // (touch, pinned until a tap elsewhere). It lives outside the refreshed
  // part: after a refresh it is put back at the same time.
  const history = document.getElementById('history');
  if (history) {
    const tip = document.createElement('div');
    tip.className = 'tip';
    tip.hidden = true;
    tip.setAttribute('role', 'status');
    history.appendChild(tip);
    let cur = null; // {time, x, y, pinned}

    function data() {
      const box = history.querySelector('.charts[data-tips]');
      return box ? JSON.parse(box.dataset.tips) : null;
    }
    function clear() {
      history.querySelectorAll('.crosshair').forEach(el => el.remove());
      tip.hidden = true;
    }
    // show puts the crosshair on the column of data row i and the tip
    // near the pointer at (x, y).
    function show(d, i, x, y) {
      clear();
      const row = d.rows[i];
      if (!row) return;
      const left = (d.off + i + 0.5) / d.columns * 100 + '%';
      history.querySelectorAll('.area').forEach(area => {
        const line = document.createElement('div');
        line.className = 'crosshair';
        line.style.left = left;
        area.appendChild(line);
      });
      tip.textContent = '';
      const head = document.createElement('strong');
      head.textContent = row.t;
      tip.appendChild(head);
      row.l.forEach(l => { const p = document.createElement('div'); p.textContent = l; tip.appendChild(p); });
      tip.hidden = false;
      const w = tip.offsetWidth, h = tip.offsetHeight;
      tip.style.left = Math.max(4, Math.min(x + 14, window.innerWidth - w - 4)) + 'px';
      tip.style.top = Math.max(4, y - h - 14 < 4 ? y + 18 : y - h - 14) + 'px';
      cur = Object.assign(cur || {}, { time: row.t, x, y });
    }
    function at(ev) {
      const area = ev.target.closest && ev.target.closest('.area');
      const d = data();
      if (!area || !d) return false;
      const r = area.getBoundingClientRect();
      const i = Math.floor((ev.clientX - r.left) / r.width * d.columns) - d.off;
      if (i < 0 || i >= d.rows.length) return false;
      show(d, i, ev.clientX, ev.clientY);
      return true;
    }
    history.addEventListener('pointermove', ev => {
      if (ev.pointerType === 'mouse' && !(cur && cur.pinned)) { if (!at(ev)) { clear(); cur = null; } }
    });
    history.addEventListener('pointerleave', ev => { if (ev.pointerType === 'mouse' && !(cur && cur.pinned)) { clear(); cur = null; } });
    document.addEventListener('pointerdown', ev => {
      if (ev.pointerType === 'mouse') return;
      if (at(ev)) { cur.pinned = true; } else { clear(); cur = null; }
    });
    // After a refresh: the same time's column, if it is still shown.
    history.addEventListener('refreshed', () => {
      const d = data();
      if (!cur || !d) return;
      const i = d.rows.findIndex(r => r.t === cur.time);
      if (i >= 0) show(d, i, cur.x, cur.y); else { clear(); cur = null; }
    });
  }

  if (body.dataset.deploy) followDeploy(body.dataset.deploy);
  else if (body.dataset.running) followDeploy(body.dataset.running);
})();
