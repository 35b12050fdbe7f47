// infp live demo page. One audio clock: the page's AudioContext (16 kHz). The microphone's samples
// are sent to the server as they are captured; sample s of the session was captured at context time
// T0 + s / 16000. The server returns frames stamped k (showing samples 640k .. 640k+639) and the
// agent's voice stamped with its first sample s; both are presented `delay` seconds later:
// frame k at T0 + k / 25 + delay, agent sample s at T0 + s / 16000 + delay. The protocol is in
// docs/PROTOCOL.md.
'use strict';

const KIND_FRAME = 1, KIND_AGENT_AUDIO = 2;
const $ = (id) => document.getElementById(id);

const demo = {
  info: null, ws: null, ctx: null, T0: null, delay: 0.25, fps: 25, rate: 16000,
  started: false, busy: false, error: null, live: false,  // live: the server said hello (the session is set up)
  frames: new Map(),        // k -> {meta, bitmap}
  shownK: -1, shownAt: [],  // context times at which a new frame was drawn
  metaK: -1, statsShownAt: 0,  // the frame whose meters and state are shown; when the figures were last shown
  latencies: [],            // ms, frames with a picture, the last 250
  avOffsets: [],            // ms, presentation position minus the drawn frame's time
  received: 0, lateOnPage: 0, framesWithPicture: 0, audioLate: 0, audioChunks: 0,
  helloAt: null,            // context time at which the server's hello came (the session was set up)
  states: [],               // [{state, t}] transitions of the presented state
  server: null,             // last server stats
  micOk: null,
  recordings: [],
  controls: null,           // the controls in effect, as the server last said ({k, t, speak, listen, by})
};
window.demo = demo;

function setStatus(text, error = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

function pct(arr, q) {
  if (!arr.length) return null;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q / 100 * s.length))];
}

demo.stats = function () {
  const now = demo.ctx ? demo.ctx.currentTime : 0;
  const recent = demo.shownAt.filter((t) => now - t <= 2.0);
  return {
    started: demo.started, busy: demo.busy, error: demo.error, micOk: demo.micOk,
    received: demo.received, framesWithPicture: demo.framesWithPicture, lateOnPage: demo.lateOnPage,
    helloAt: demo.helloAt, T0: demo.T0,
    shownFrame: demo.shownK, fps: recent.length / 2.0,
    latencyP50: pct(demo.latencies, 50), latencyP95: pct(demo.latencies, 95),
    avOffsetMs: demo.avOffsets.length ? demo.avOffsets.reduce((a, b) => a + b, 0) / demo.avOffsets.length : null,
    audioChunks: demo.audioChunks, audioLate: demo.audioLate,
    states: demo.states.slice(), server: demo.server, recordings: demo.recordings.slice(), controls: demo.controls,
  };
};

async function loadInfo() {
  const r = await fetch('/api/info');
  demo.info = await r.json();
  const sel = $('files');
  sel.innerHTML = '';
  for (const name of demo.info.files) {
    const o = document.createElement('option');
    o.value = o.textContent = name;
    sel.appendChild(o);
  }
  if (sel.options.length) sel.options[0].selected = true;
  $('ttsnote').textContent = demo.info.tts ? 'espeak-ng text-to-speech' : demo.info.tts_note;
  $('agenturl').textContent = `ws://${location.host}${demo.info.agent_endpoint}`;
  $('quality').textContent = `${demo.info.size}×${demo.info.size}, ${demo.info.steps} steps`;
  buildControls(demo.info);
  if (demo.info.busy) setStatus('Another session is live on this server; it serves one at a time.');
}

async function start() {
  if (demo.started) return;
  demo.started = true;
  $('start').disabled = true;
  setStatus('Starting…');
  const ctx = new AudioContext({ sampleRate: demo.rate, latencyHint: 'interactive' });
  demo.ctx = ctx;
  await ctx.resume();
  await ctx.audioWorklet.addModule('/static/mic-worklet.js');
  let source;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    source = ctx.createMediaStreamSource(stream);
    demo.micOk = true;
  } catch (e) {
    demo.micOk = false;
    source = ctx.createConstantSource(); // silence keeps the clock running
    source.offset.value = 0;
    source.start();
  }
  const node = new AudioWorkletNode(ctx, 'mic-capture', { processorOptions: { chunk: 640 } });
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(node).connect(mute).connect(ctx.destination);

  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  demo.ws = ws;
  ws.onmessage = onMessage;
  ws.onclose = (ev) => {
    if (!demo.busy) setStatus(`Connection closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''}). Reload to start again.`, ev.code !== 1000);
    demo.open = false;
    node.port.onmessage = null;
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  demo.open = true;
  node.port.onmessage = (e) => {
    // the microphone is sent from the server's hello on: it sets the session up in between, and audio sent earlier
    // would reach the session as one backlog whose frames come too late to show
    if (!demo.open || !demo.live || demo.busy || ws.readyState !== WebSocket.OPEN) return;
    const { frame, pcm } = e.data;
    if (demo.T0 === null) demo.T0 = frame / demo.rate;
    const out = new Int16Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) out[i] = Math.max(-32768, Math.min(32767, Math.round(pcm[i] * 32767)));
    ws.send(out.buffer);
  };
  requestAnimationFrame(draw);
  setInterval(reportStats, 2000);
}

function onMessage(ev) {
  if (typeof ev.data === 'string') return onControl(JSON.parse(ev.data));
  const buf = ev.data;
  const dv = new DataView(buf);
  const kind = dv.getUint8(0);
  const hlen = dv.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, hlen)));
  const payload = new Uint8Array(buf, 8 + hlen);
  if (kind === KIND_FRAME) onFrame(header, payload);
  else if (kind === KIND_AGENT_AUDIO) onAgentAudio(header, buf, 8 + hlen);
}

function onControl(msg) {
  if (msg.type === 'hello') {
    demo.delay = msg.delay_ms / 1000;
    demo.live = true;
    demo.helloAt = demo.ctx ? demo.ctx.currentTime : null;
    setStatus(demo.micOk ? 'Live: talk to the avatar; give it a voice below.'
      : 'Live without a microphone (permission denied or no device): the avatar only speaks.');
    for (const id of ['record', 'play', 'stop', 'upload']) $(id).disabled = false;
    $('tts').disabled = $('say').disabled = !msg.tts;
    showControls(msg.controls);
    enableControls(msg.controls_available);
  } else if (msg.type === 'busy') {
    demo.busy = true;
    setStatus(msg.message, true);
  } else if (msg.type === 'stats') {
    demo.server = msg;
    $('quality').textContent = `${msg.size}×${msg.size}, ${msg.steps} steps, delay ${msg.delay_ms} ms` +
      (msg.load != null ? `, load ${msg.load}` : '');
    const note = $('note');
    note.hidden = !msg.note;
    note.textContent = msg.note ? `Reduced quality: ${msg.note}.` : '';
    const a = msg.agent;
    $('agentstatus').textContent = a && a.playing ? `playing ${a.playing} (${a.queued_s} s queued)` : 'agent quiet';
  } else if (msg.type === 'controls') {
    onControls(msg);
  } else if (msg.type === 'agent') {
    $('agentstatus').textContent = msg.playing ? `playing ${msg.playing} (${msg.queued_s} s queued)` : 'agent quiet';
  } else if (msg.type === 'recording') {
    if (msg.state === 'on') {
      $('record').classList.add('recording');
      $('record').textContent = '■ Stop recording';
      $('recinfo').textContent = 'recording…';
    } else {
      $('record').classList.remove('recording');
      $('record').textContent = '● Record';
      $('recinfo').textContent = '';
      demo.recordings.push(msg);
      const li = document.createElement('li');
      li.innerHTML = `<a href="${msg.url}" download>${msg.name}</a> (${msg.seconds} s)`;
      $('recordings').appendChild(li);
    }
  } else if (msg.type === 'error') {
    demo.error = msg.message;
    setStatus(msg.message, true);
  }
}

function onFrame(meta, jpeg) {
  demo.received++;
  const now = demo.ctx.currentTime;
  const due = demo.T0 + meta.k / demo.fps + demo.delay;
  const entry = { meta, bitmap: null };
  if (jpeg.length) {
    demo.framesWithPicture++;
    const lat = (now - (demo.T0 + meta.k / demo.fps)) * 1000;
    demo.latencies.push(lat);
    if (demo.latencies.length > 250) demo.latencies.shift();
    if (now > due + 1 / demo.fps) {
      demo.lateOnPage++; // arrived after its turn: not shown
    } else {
      createImageBitmap(new Blob([jpeg], { type: 'image/jpeg' })).then((bmp) => { entry.bitmap = bmp; });
    }
  }
  demo.frames.set(meta.k, entry);
  // frames whose time has passed go even when drawing is paused (a hidden tab gets no animation frames)
  const kNow = Math.floor((now - demo.T0 - demo.delay) * demo.fps);
  for (const [key, e] of demo.frames) {
    if (key >= kNow - 1) break; // insertion order = frame order
    if (e.bitmap) e.bitmap.close();
    demo.frames.delete(key);
  }
}

function onAgentAudio(header, buf, offset) {
  const ctx = demo.ctx;
  const pcm = new Int16Array(buf.slice(offset));
  const audio = ctx.createBuffer(1, pcm.length, demo.rate);
  const ch = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = audio;
  src.connect(ctx.destination);
  const when = demo.T0 + header.s / demo.rate + demo.delay;
  demo.audioChunks++;
  if (when >= ctx.currentTime) src.start(when);
  else {
    demo.audioLate++;
    const skip = ctx.currentTime - when;
    if (skip < audio.duration) src.start(ctx.currentTime, skip);
  }
}

// The page is redrawn at the display's rate; the DOM is touched only where a value changed, so that the
// browser does not lay out and paint text and meters 60 times a second on the cores that render the avatar.
function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

function setMeter(which, level, vad) {
  const pctw = `${Math.max(0, Math.min(100, (level + 60) / 60 * 100)).toFixed(0)}%`;
  const bar = $(`lvl-${which}`);
  if (bar.style.width !== pctw) bar.style.width = pctw;
  const el = $(`vad-${which}`);
  const on = vad > 0.5;
  setText(el, on ? `speech ${vad.toFixed(2)}` : `silent ${vad.toFixed(2)}`);
  const cls = `vad ${which}${on ? ' on' : ''}`;
  if (el.className !== cls) el.className = cls;
}

function draw() {
  requestAnimationFrame(draw);
  const ctx = demo.ctx;
  if (!ctx || demo.T0 === null) return;
  // session time being heard now: the context time of the sample leaving the speakers, minus T0 and the delay
  let heard = ctx.currentTime - (ctx.outputLatency || 0);
  if (ctx.getOutputTimestamp) {
    const ts = ctx.getOutputTimestamp();
    if (ts.contextTime > 0) heard = ts.contextTime + (performance.now() - ts.performanceTime) / 1000;
  }
  const pos = heard - demo.T0 - demo.delay;
  const k = Math.floor(pos * demo.fps);
  if (k < 0) return;
  // the newest frame with a picture at or before k is drawn; frame k's metadata drives meters and state
  let meta = null, best = null;
  for (const [key, entry] of demo.frames) {
    if (key > k) continue;
    if (!meta || key > meta.k) meta = entry.meta;
    if (entry.bitmap && key > demo.shownK && (!best || key > best.key)) best = { key, bitmap: entry.bitmap };
  }
  if (best) {
    const canvas = $('avatar');
    if (canvas.width !== best.bitmap.width) canvas.width = canvas.height = best.bitmap.width;
    canvas.getContext('2d').drawImage(best.bitmap, 0, 0);
    demo.shownK = best.key;
    demo.shownAt.push(ctx.currentTime);
    if (demo.shownAt.length > 200) demo.shownAt.shift();
    demo.avOffsets.push((pos - best.key / demo.fps) * 1000);
    if (demo.avOffsets.length > 250) demo.avOffsets.shift();
  }
  for (const key of [...demo.frames.keys()]) {
    if (key < k) { const e = demo.frames.get(key); if (e.bitmap) e.bitmap.close(); demo.frames.delete(key); }
  }
  if (meta && meta.k !== demo.metaK) {
    demo.metaK = meta.k;
    setMeter('self', meta.level[0], meta.vad[0]);
    setMeter('other', meta.level[1], meta.vad[1]);
    const st = $('state');
    if (st.textContent !== meta.state) {
      st.textContent = meta.state;
      st.className = `state ${meta.state}`;
      demo.states.push({ state: meta.state, t: ctx.currentTime, k: meta.k });
      if (demo.states.length > 500) demo.states.shift();
    }
  }
  const now = performance.now();
  if (now - demo.statsShownAt < 250) return;  // the figures, four times a second
  demo.statsShownAt = now;
  const s = demo.stats();
  setText($('fps'), s.fps.toFixed(1));
  setText($('latency'), s.latencyP50 == null ? '–' : `${s.latencyP50.toFixed(0)} / ${s.latencyP95.toFixed(0)} ms`);
  const srv = demo.server;
  setText($('drops'), `${srv ? srv.dropped + srv.late : 0} / ${demo.lateOnPage}`);
  setText($('avoffset'), s.avOffsetMs == null ? '–' : `${s.avOffsetMs.toFixed(0)} ms (frame behind audio)`);
}

function reportStats() {
  if (demo.ws && demo.ws.readyState === WebSocket.OPEN) {
    const s = demo.stats();
    demo.ws.send(JSON.stringify({ type: 'client_stats', fps: s.fps, latency_p50: s.latencyP50, latency_p95: s.latencyP95,
      late_on_page: s.lateOnPage, av_offset_ms: s.avOffsetMs, received: s.received }));
  }
}

function send(msg) { if (demo.ws && demo.ws.readyState === WebSocket.OPEN) demo.ws.send(JSON.stringify(msg)); }

$('start').onclick = start;
$('play').onclick = () => {
  const files = [...$('files').selectedOptions].map((o) => o.value);
  if (files.length) send({ type: 'play', files });
};
$('stop').onclick = () => send({ type: 'stop' });
$('say').onclick = () => { const t = $('tts').value.trim(); if (t) send({ type: 'say', text: t }); };
$('tts').onkeydown = (e) => { if (e.key === 'Enter') $('say').onclick(); };
$('record').onclick = () => send({ type: 'record', on: !$('record').classList.contains('recording') });
$('upload').onchange = async (e) => {
  for (const f of e.target.files) {
    const r = await fetch(`/api/upload?name=${encodeURIComponent(f.name)}`, { method: 'POST', body: f });
    const j = await r.json();
    if (j.error) setStatus(j.error, true);
  }
  e.target.value = '';
};
$('protolink').href = '/protocol';

// -- expression controls: a slider per name for speaking and listening; "auto" leaves it to the model --
const ctl = { names: [], throttleMs: 150, lastSent: 0, timer: null, adopt: false };
const SIDES = ['speak', 'listen'];

function buildControls(info) {
  if (ctl.names.length) return;
  ctl.names = info.control_names || [];
  const body = $('sliders');
  for (const name of ctl.names) {
    const tr = document.createElement('tr');
    tr.innerHTML = `<th>${name.replace('_', ' ')}</th>` + SIDES.map((side) =>
      `<td><div class="slider auto" id="ctl-${side}-${name}">` +
      `<input type="range" min="0" max="1" step="0.05" value="0.5" data-side="${side}" data-name="${name}" ` +
      `aria-label="${name} while ${side === 'speak' ? 'speaking' : 'listening'}" disabled>` +
      `<output>–</output><label><input type="checkbox" checked disabled> auto</label></div></td>`).join('');
    body.appendChild(tr);
  }
  for (const box of body.querySelectorAll('.slider')) {
    const range = box.querySelector('input[type=range]');
    const auto = box.querySelector('input[type=checkbox]');
    range.addEventListener('input', () => { setSlider(box, Number(range.value)); userChangedControls(); });
    auto.addEventListener('change', () => { setSlider(box, auto.checked ? null : Number(range.value)); userChangedControls(); });
  }
  const sel = $('preset');
  for (const name of Object.keys(info.presets || {})) {
    const o = document.createElement('option');
    o.value = o.textContent = name;
    sel.appendChild(o);
  }
  sel.onchange = () => {
    if (!sel.value) return;
    ctl.adopt = true; // the reply sets the sliders
    send({ type: 'controls', preset: sel.value });
  };
  $('allauto').onclick = () => {
    for (const box of body.querySelectorAll('.slider')) setSlider(box, null);
    userChangedControls();
  };
  if (!info.controls_available) $('ctrlnote').textContent = `Controls unavailable: ${info.controls_note}.`;
}

function setSlider(box, value) {
  const auto = value === null || value === undefined;
  box.classList.toggle('auto', auto);
  box.querySelector('input[type=checkbox]').checked = auto;
  if (!auto) box.querySelector('input[type=range]').value = value;
  box.querySelector('output').textContent = auto ? '–' : Number(value).toFixed(2);
}

function enableControls(on) {
  for (const el of document.querySelectorAll('#sliders input, #preset, #allauto')) el.disabled = !on;
}

function slidersState() {
  const out = { speak: {}, listen: {} };
  for (const range of document.querySelectorAll('#sliders input[type=range]')) {
    const box = range.parentElement;
    out[range.dataset.side][range.dataset.name] = box.classList.contains('auto') ? null : Number(range.value);
  }
  return out;
}

function showControls(c) {
  if (!c) return;
  for (const side of SIDES) {
    for (const name of ctl.names) {
      const box = $(`ctl-${side}-${name}`);
      if (box) setSlider(box, c[side] ? c[side][name] : null);
    }
  }
}

function userChangedControls() {
  $('preset').value = '';
  ctl.adopt = false;
  // throttled: at once, then at most one message per throttleMs with the latest values
  const wait = ctl.lastSent + ctl.throttleMs - performance.now();
  if (ctl.timer) return;
  if (wait <= 0) sendControls();
  else ctl.timer = setTimeout(sendControls, wait);
}

function sendControls() {
  ctl.timer = null;
  ctl.lastSent = performance.now();
  send({ type: 'controls', ...slidersState() });
}

function onControls(msg) {
  demo.controls = msg;
  if (msg.by !== 'page' || ctl.adopt) { showControls(msg); ctl.adopt = false; }
  const fmt = (side) => Object.entries(msg[side]).map(([n, v]) => `${n} ${v}`).join(', ') || 'auto';
  $('ctrlstatus').textContent = `In effect from ${msg.t.toFixed(2)} s (set by ${msg.by === 'page' ? 'this page' : 'an agent'}): ` +
    `speaking: ${fmt('speak')}; listening: ${fmt('listen')}.`;
}

loadInfo().then(() => {
  if (new URLSearchParams(location.search).has('autostart')) start().catch((e) => { demo.error = String(e); setStatus(String(e), true); });
});
