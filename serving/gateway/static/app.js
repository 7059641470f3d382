// The results page: send a picture (file, drop or webcam frame) to POST /v1/segment and show the
// overlay beside it, a legend of the classes present and the latency. Plain JS, no build step.
'use strict';

const $ = (id) => document.getElementById(id);
const els = {
  model: $('model'), file: $('file'), drop: $('drop'), camera: $('camera'),
  alpha: $('alpha'), alphaValue: $('alpha-value'), error: $('error'),
  original: $('original'), video: $('video'), overlay: $('overlay'),
  legend: $('legend'), latency: $('latency'),
};

let model = null;          // GET /v1/model: class_names, palette, version, limits
let lastImage = null;      // the last picked file, re-sent when the opacity changes
let request = 0;           // sequence number: only the newest answer is shown
let stream = null;         // the webcam's MediaStream while live
const urls = {};           // object URLs per <img>, revoked when replaced

// Text is only written when it changes: no DOM churn, nothing re-announced.
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function showError(message) {
  setText(els.error, message);
  els.error.hidden = !message;
}

function formatBytes(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

function setImage(img, blob) {
  if (urls[img.id]) URL.revokeObjectURL(urls[img.id]);
  urls[img.id] = URL.createObjectURL(blob);
  img.src = urls[img.id];
  img.hidden = false;
}

// The API answers errors as {"detail": "..."}; anything else (a proxy's HTML page) is reported
// by its status line.
async function errorDetail(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === 'string') return body.detail;
    if (body.detail) return JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`.trim();
}

async function loadModel() {
  try {
    const response = await fetch('/v1/model');
    if (!response.ok) throw new Error(await errorDetail(response));
    model = await response.json();
    els.model.textContent = `Model ${model.model}, version ${model.version}` +
      ` (${model.class_names.length} classes)`;
  } catch (error) {
    els.model.textContent = 'Model information unavailable.';
    showError(`Cannot load the model information: ${error.message}`);
  }
}

// "decode;dur=1.2, rpc;dur=40.1" → [["decode", 1.2], ["rpc", 40.1]]
function parseServerTiming(header) {
  if (!header) return [];
  return header.split(',').map((entry) => {
    const [name, ...params] = entry.trim().split(';');
    const dur = params.map((p) => p.trim()).find((p) => p.startsWith('dur='));
    return [name.trim(), dur ? Number(dur.slice(4)) : NaN];
  }).filter(([name, dur]) => name && Number.isFinite(dur));
}

function showLatency(roundTrip, serverTiming) {
  const parts = parseServerTiming(serverTiming).map(([name, dur]) => `${name} ${dur.toFixed(1)}`);
  const server = parts.length ? ` (server: ${parts.join(', ')} ms)` : '';
  setText(els.latency, `${Math.round(roundTrip)} ms round trip${server}`);
}

function showLegend(header) {
  const ids = (header || '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const key = `${model ? model.version : ''}:${ids}`;  // the same classes: leave the list be
  if (els.legend.dataset.key === key) return;
  els.legend.dataset.key = key;
  els.legend.replaceChildren(...ids.map((id) => {
    const item = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.setAttribute('aria-hidden', 'true');
    const rgb = model && model.palette[id];
    if (rgb) swatch.style.background = `rgb(${rgb.join(',')})`;
    const name = (model && model.class_names[id]) || `class ${id}`;
    item.append(swatch, document.createTextNode(name));
    return item;
  }));
}

function clearResults() {
  els.overlay.hidden = true;
  showLegend('');
  setText(els.latency, '–');
}

// POST one picture; true when its overlay is shown. Never throws: failures go to #error.
async function segment(blob) {
  const mine = ++request;
  // Checked here: a browser often reports an early-closed oversized upload as a network error.
  const limit = model?.limits?.max_upload_bytes;
  if (limit && blob.size > limit) {
    showError(`The picture is ${formatBytes(blob.size)}, over the gateway's upload limit of ` +
      `${formatBytes(limit)}: choose a smaller one.`);
    return false;
  }
  const alpha = els.alpha.value;
  const started = performance.now();
  let response;
  let overlay;
  try {
    response = await fetch(`/v1/segment?format=overlay&alpha=${encodeURIComponent(alpha)}`, {
      method: 'POST',
      headers: { 'Content-Type': blob.type || 'application/octet-stream' },
      body: blob,
    });
    if (response.ok) overlay = await response.blob();
  } catch (error) {  // no connection, or it broke before the whole answer was in
    if (mine === request) showError(`No answer from the gateway: ${error.message}`);
    return false;
  }
  if (!response.ok) {
    const detail = await errorDetail(response);
    if (mine === request) showError(`${response.status}: ${detail}`);
    return false;
  }
  const roundTrip = performance.now() - started;
  if (mine !== request) return false;  // a newer picture was sent, or the webcam stopped
  showError('');
  setImage(els.overlay, overlay);
  showLegend(response.headers.get('X-Classes-Present'));
  showLatency(roundTrip, response.headers.get('Server-Timing'));
  return true;
}

function pickFile(file) {
  if (!file) return;
  if (stream) stopCamera();
  lastImage = file;
  clearResults();  // the previous picture's results no longer apply
  setImage(els.original, file);
  segment(file);
}

// --- webcam: one request at a time, the next frame captured when the answer is in ----------

// Live mode: the video in place of the picture, and no announcements: the legend and the error
// would otherwise be read out again with every frame.
function setLiveMode(on) {
  els.video.hidden = !on;
  els.original.hidden = on || !els.original.naturalWidth;  // the picked file again, if shown
  els.camera.textContent = on ? 'Stop webcam' : 'Start webcam';
  els.camera.setAttribute('aria-pressed', String(on));
  els.legend.setAttribute('aria-live', on ? 'off' : 'polite');
  if (on) els.error.removeAttribute('role');
  else els.error.setAttribute('role', 'alert');
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError('This browser cannot use a camera here (a camera needs HTTPS or localhost).');
    return;
  }
  let live;
  els.camera.disabled = true;  // a second click while asking would open a second stream
  try {
    live = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    const reasons = {
      NotAllowedError: 'Permission to use the camera was denied.',
      SecurityError: 'Permission to use the camera was denied.',
      NotFoundError: 'No camera was found.',
      OverconstrainedError: 'No camera was found.',
      NotReadableError: 'The camera is in use by another program.',
    };
    showError(reasons[error.name] || `The camera could not be started: ${error.message}`);
    return;
  } finally {
    els.camera.disabled = false;
  }
  stream = live;
  showError('');
  els.video.srcObject = live;
  setLiveMode(true);
  try {
    await els.video.play();
  } catch (error) {  // also when stopped meanwhile: then stream is no longer live
    if (stream === live) stopCamera(`The webcam preview could not be played: ${error.message}`);
    return;
  }
  liveLoop(live).catch((error) => {
    if (stream === live) stopCamera(`The webcam stopped: ${error.message}`);
  });
}

// Stops the tracks (the camera light goes off); `message` goes to #error.
function stopCamera(message = '') {
  if (!stream) return;
  stream.getTracks().forEach((track) => track.stop());
  stream = null;
  request += 1;  // answers still on their way are for frames no longer shown: ignored
  els.video.srcObject = null;
  setLiveMode(false);
  showError(message);
}

async function liveLoop(live) {
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d');
  while (stream === live) {
    const { videoWidth: w, videoHeight: h } = els.video;
    if (w && h) {
      canvas.width = w;
      canvas.height = h;
      context.drawImage(els.video, 0, 0, w, h);
      const frame = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.85));
      if (frame && stream === live && !(await segment(frame))) {
        await new Promise((resolve) => setTimeout(resolve, 1000));  // back off after an error
      }
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

// --- wiring ---------------------------------------------------------------------------------

els.file.addEventListener('change', () => pickFile(els.file.files[0]));

['dragenter', 'dragover'].forEach((type) => els.drop.addEventListener(type, (event) => {
  event.preventDefault();
  els.drop.classList.add('dragover');
}));
['dragleave', 'drop'].forEach((type) => els.drop.addEventListener(type, () => {
  els.drop.classList.remove('dragover');
}));
els.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  pickFile(event.dataTransfer.files[0]);
});

// A file the browser cannot show either (the API's error says why): no broken-image icon.
els.original.addEventListener('error', () => { els.original.hidden = true; });

els.camera.addEventListener('click', () => {
  if (!stream) {
    startCamera();
    return;
  }
  stopCamera();
  clearResults();  // the last frame's: the picked file's come back, if there is one
  if (lastImage) segment(lastImage);
});

els.alpha.addEventListener('input', () => { els.alphaValue.value = els.alpha.value; });
els.alpha.addEventListener('change', () => { if (lastImage && !stream) segment(lastImage); });

loadModel();
