// The analyst's page: ask, show the SQL, the table and the chart the server
// chose (drawn here as SVG), keep the history in localStorage.  No build
// step, no library.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#2f5fd0', '#e07b39', '#3a9d5d', '#b8439b', '#8a6d3b', '#1fa3a3',
                '#d04848', '#6a5acd', '#7a8b99', '#c7a100', '#5b8c2a', '#9c4f96'];
const HISTORY_KEY = 'analyst.history';
let current = { question: '', sql: '' };

async function post(path, body) {
    const response = await fetch(path, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    let data;
    try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
    return data;
}

function status(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
}

function busy(on) {
    for (const id of ['ask', 'run', 'summarise']) $(id).disabled = on;
}

// --- history ---------------------------------------------------------------
function history() {
    try { return JSON.parse(localStorage.getItem(HISTORY_KEY)) || []; } catch (e) { return []; }
}

function remember(question, sql) {
    const items = history().filter((h) => h.question !== question);
    items.unshift({ question, sql, at: new Date().toISOString() });
    localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, 50)));
    drawHistory();
}

function drawHistory() {
    const list = $('history');
    list.replaceChildren();
    for (const item of history()) {
        const li = document.createElement('li');
        li.textContent = item.question;
        li.title = item.sql || '';
        li.addEventListener('click', () => {
            $('question').value = item.question;
            if (item.sql) { $('sql').value = item.sql; current.question = item.question; runSql(); }
        });
        list.appendChild(li);
    }
}

// --- the answer ------------------------------------------------------------
function show(answer) {
    $('answer').hidden = false;
    $('summary').hidden = true;
    const message = $('message');
    message.hidden = !answer.message;
    message.textContent = answer.message || '';
    const attempts = $('attempts');
    attempts.replaceChildren();
    const failed = (answer.attempts || []).filter((a) => a.error);
    attempts.hidden = failed.length === 0;
    for (const a of failed) {
        const li = document.createElement('li');
        li.textContent = `The database rejected a first query (${a.error})` +
            (answer.error ? '' : '; the model corrected it.');
        attempts.appendChild(li);
    }
    if (answer.sql !== undefined && answer.sql !== null) $('sql').value = answer.sql;
    drawTable(answer.columns || [], answer.rows || [], answer.truncated);
    drawChart(answer.chart || { type: 'none' });
}

function drawTable(columns, rows, truncated) {
    const table = $('table');
    table.replaceChildren();
    $('table-note').textContent = columns.length
        ? `${rows.length} row${rows.length === 1 ? '' : 's'}${truncated ? ' (cut at the row limit)' : ''}`
        : '';
    if (!columns.length) return;
    const head = table.createTHead().insertRow();
    for (const c of columns) {
        const th = document.createElement('th');
        th.textContent = c;
        head.appendChild(th);
    }
    const body = table.createTBody();
    for (const row of rows) {
        const tr = body.insertRow();
        for (const v of row) {
            const td = tr.insertCell();
            td.textContent = v === null ? '' : typeof v === 'number' ? v.toLocaleString() : v;
            if (typeof v === 'number') td.className = 'num';
        }
    }
}

function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
}

function text(parent, x, y, content, attrs) {
    const t = el('text', Object.assign({ x, y }, attrs || {}), parent);
    t.textContent = content;
    return t;
}

function short(label, n) {
    label = String(label);
    return label.length > n ? label.slice(0, n - 1) + '…' : label;
}

function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
}

function legend(svg, series, x, y) {
    if (series.length < 2) return;
    series.forEach((s, i) => {
        el('rect', { x, y: y + i * 16, width: 10, height: 10, fill: COLORS[i % COLORS.length] }, svg);
        text(svg, x + 14, y + i * 16 + 9, short(s.name, 18));
    });
}

function drawChart(spec) {
    const box = $('chart');
    box.replaceChildren();
    if (!spec || spec.type === 'none') return;
    const W = 760, H = 320, L = 64, R = spec.series.length > 1 ? 150 : 20, T = 16, B = 64;
    const svg = el('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                            'data-chart': spec.type, role: 'img' });
    el('title', {}, svg).textContent = `${spec.type} chart of ${spec.series.map((s) => s.name).join(', ')} by ${spec.x}`;
    if (spec.type === 'pie') drawPie(svg, spec, W, H);
    else {
        const values = spec.series.flatMap((s) => s.values).filter((v) => v !== null);
        const lo = Math.min(0, ...values), hi = niceMax(Math.max(...values, 0));
        const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo || 1));
        for (let i = 0; i <= 4; i++) {
            const v = lo + (hi - lo) * i / 4;
            el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#e5e8ee' }, svg);
            text(svg, L - 6, y(v) + 4, Number(v.toPrecision(4)).toLocaleString(), { 'text-anchor': 'end' });
        }
        const n = spec.labels.length, step = (W - L - R) / Math.max(n, 1);
        const every = Math.ceil(n / 16);
        spec.labels.forEach((label, i) => {
            if (i % every) return;
            text(svg, L + step * (i + 0.5), H - B + 14, short(label, 12),
                 { 'text-anchor': 'end', transform: `rotate(-35 ${L + step * (i + 0.5)} ${H - B + 14})` });
        });
        if (spec.type === 'bar') {
            const k = spec.series.length, bw = step * 0.8 / k;
            spec.series.forEach((s, j) => s.values.forEach((v, i) => {
                if (v === null) return;
                const x = L + step * i + step * 0.1 + j * bw;
                const bar = el('rect', { class: 'bar', x, y: Math.min(y(v), y(0)), width: Math.max(bw - 1, 1),
                                         height: Math.abs(y(0) - y(v)), fill: COLORS[j % COLORS.length] }, svg);
                el('title', {}, bar).textContent = `${spec.labels[i]}: ${v.toLocaleString()}`;
            }));
        } else {
            spec.series.forEach((s, j) => {
                const points = s.values.map((v, i) => v === null ? null : [L + step * (i + 0.5), y(v)])
                    .filter((p) => p);
                el('polyline', { class: 'line', fill: 'none', stroke: COLORS[j % COLORS.length], 'stroke-width': 2,
                                 points: points.map((p) => p.join(',')).join(' ') }, svg);
                for (const [px, py] of points) {
                    el('circle', { class: 'point', cx: px, cy: py, r: 2.5, fill: COLORS[j % COLORS.length] }, svg);
                }
            });
        }
        el('line', { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: '#8a94a6' }, svg);
        legend(svg, spec.series, W - R + 12, T);
    }
    box.appendChild(svg);
}

function drawPie(svg, spec, W, H) {
    const values = spec.series[0].values.map((v) => Math.max(v || 0, 0));
    const total = values.reduce((a, b) => a + b, 0) || 1;
    const cx = 180, cy = H / 2, r = H / 2 - 20;
    let angle = -Math.PI / 2;
    values.forEach((v, i) => {
        const a2 = angle + 2 * Math.PI * v / total;
        const large = a2 - angle > Math.PI ? 1 : 0;
        const p = (a) => `${cx + r * Math.cos(a)},${cy + r * Math.sin(a)}`;
        const d = v >= total ? `M ${cx - r},${cy} a ${r},${r} 0 1,0 ${2 * r},0 a ${r},${r} 0 1,0 ${-2 * r},0`
            : `M ${cx},${cy} L ${p(angle)} A ${r},${r} 0 ${large},1 ${p(a2)} Z`;
        const slice = el('path', { class: 'slice', d, fill: COLORS[i % COLORS.length], stroke: '#fff' }, svg);
        el('title', {}, slice).textContent = `${spec.labels[i]}: ${spec.series[0].values[i]}`;
        angle = a2;
    });
    spec.labels.forEach((label, i) => {
        el('rect', { x: 380, y: 30 + i * 20, width: 12, height: 12, fill: COLORS[i % COLORS.length] }, svg);
        const share = (100 * values[i] / total).toFixed(1);
        text(svg, 398, 40 + i * 20, `${short(label, 30)} (${share} %)`);
    });
}

// --- actions ---------------------------------------------------------------
async function ask(event) {
    event.preventDefault();
    const question = $('question').value.trim();
    if (!question) return;
    busy(true);
    status('Asking the model…');
    const started = performance.now();
    try {
        const answer = await post('/api/ask', { question });
        current = { question, sql: answer.sql || '' };
        show(answer);
        const took = `${Math.round(performance.now() - started)} ms (generation ${answer.generation_ms ?? '–'} ms, query ${answer.query_ms ?? '–'} ms)`;
        if (answer.error) status(`${answer.error} · ${took}`, true);
        else status(`Done in ${took}`);
        if (answer.sql) remember(question, answer.sql);
    } catch (e) {
        status(`The application did not answer: ${e}`, true);
    } finally {
        busy(false);
    }
}

async function runSql() {
    const sql = $('sql').value.trim();
    if (!sql) return;
    busy(true);
    status('Running the SQL…');
    try {
        const answer = await post('/api/run', { sql });
        show(answer);
        current.sql = sql;
        if (answer.error) status(answer.error, true);
        else status(`Ran in ${answer.query_ms} ms`);
    } catch (e) {
        status(`The application did not answer: ${e}`, true);
    } finally {
        busy(false);
    }
}

async function summarise() {
    const sql = $('sql').value.trim();
    const question = current.question || $('question').value.trim();
    if (!sql || !question) return;
    busy(true);
    status('Sending the result to the model for a summary…');
    try {
        const answer = await post('/api/summary', { question, sql });
        if (answer.error) status(answer.error, true);
        else {
            $('summary').hidden = false;
            $('summary').textContent = answer.summary;
            status(`Summarised in ${answer.generation_ms} ms`);
        }
    } finally {
        busy(false);
    }
}

async function info() {
    try {
        const response = await fetch('/api/info');
        const data = await response.json();
        $('info').textContent = `${data.database} · ${data.tables.length} tables · ${data.model} through seekmesh`;
    } catch (e) {
        $('info').textContent = 'the application is not answering';
    }
}

$('ask-form').addEventListener('submit', ask);
$('question').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('ask-form').requestSubmit(); }
});
$('sql').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runSql(); }
});
$('run').addEventListener('click', runSql);
$('summarise').addEventListener('click', summarise);
$('clear-history').addEventListener('click', () => { localStorage.removeItem(HISTORY_KEY); drawHistory(); });
drawHistory();
info();
