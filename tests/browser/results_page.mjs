// Check the gateway's results page in Debian's headless Chromium.
//
//   node tests/browser/results_page.mjs URL IMAGE SCREENSHOT
//
// Opens URL, waits for the model information, picks IMAGE in the file input, waits for the
// overlay, the legend and the latency, checks that the original and the overlay have IMAGE's
// size, saves SCREENSHOT, then sends a text file named .jpg and checks the error shown, and a
// file over the gateway's upload limit and checks it is refused before sending.
// Prints one line of JSON and exits 0, or prints what was missing and exits 1.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

// The whole run: Chromium's start (30 s at most) and each wait (30 s at most) on a slow 2-core
// machine.
const TIMEOUT_MS = 120_000;
// This machine's network is closed: no sandbox (root in a container), no GPU, and nothing
// that phones home at start-up.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let browser = null;
let failing = false;

// Print the failure, close the browser (5 s at most: no Chromium left behind) and exit 1.
// Never returns: `await fail(...)` ends the caller.
async function fail(message, details = {}) {
  if (failing) return new Promise(() => {});  // the first failure is the one reported
  failing = true;
  console.log(JSON.stringify({ ok: false, error: message, ...details }));
  if (browser) {
    const grace = new Promise((resolve) => { setTimeout(resolve, 5_000); });
    await Promise.race([browser.close().catch(() => {}), grace]);
  }
  process.exit(1);
}

// Width and height from a PNG's IHDR or a JPEG's SOFn marker: the size the page must show.
function imageSize(bytes) {
  if (bytes.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))) {
    return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    let at = 2;
    while (at + 9 < bytes.length) {
      if (bytes[at] !== 0xff) { at += 1; continue; }
      const marker = bytes[at + 1];
      const sof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
      if (sof) return { width: bytes.readUInt16BE(at + 7), height: bytes.readUInt16BE(at + 5) };
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) at += 2;
      else at += 2 + bytes.readUInt16BE(at + 2);
    }
  }
  return null;
}

// What the page shows now; also the report when a wait times out.
function pageState() {
  const text = (id) => (document.getElementById(id)?.textContent || '').trim();
  const size = (id) => {
    const img = document.getElementById(id);
    return img && img.complete ? { width: img.naturalWidth, height: img.naturalHeight } : null;
  };
  const error = document.getElementById('error');
  return {
    model: text('model'),
    legend: [...document.querySelectorAll('#legend li')].map((li) => li.textContent.trim()),
    swatches: [...document.querySelectorAll('#legend li .swatch')]
      .map((s) => getComputedStyle(s).backgroundColor),
    latency: text('latency'),
    original: size('original'),
    overlay: size('overlay'),
    error: error && !error.hidden ? error.textContent.trim() : '',
  };
}

async function main() {
  const [url, imagePath, screenshotPath] = process.argv.slice(2);
  if (!url || !imagePath || !screenshotPath) {
    await fail('usage: node results_page.mjs URL IMAGE SCREENSHOT');
  }
  const image = readFileSync(imagePath);
  const expected = imageSize(image);
  if (!expected) await fail(`${imagePath} is neither a JPEG nor a PNG with a readable size`);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  const consoleErrors = [];
  let state = null;
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    page.setDefaultTimeout(TIMEOUT_MS);
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    page.on('response', (r) => {
      if (r.status() >= 400) consoleErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    });

    const response = await page.goto(url);
    if (!response || !response.ok()) {
      await fail(`GET ${url} answered ${response && response.status()}`);
    }

    const step = async (what, predicate) => {
      try {
        await page.waitForFunction(predicate, null, { timeout: 30_000 });
      } catch (error) {
        state = await page.evaluate(pageState).catch(() => null);
        await fail(`timed out waiting for ${what}`, { state, console_errors: consoleErrors });
      }
      state = await page.evaluate(pageState);
    };

    await step('the model information (#model)', () => {
      const model = document.getElementById('model').textContent;
      return !/loading/i.test(model) || !document.getElementById('error').hidden;
    });
    if (state.error) await fail('the page shows an error after loading', { state });

    await page.setInputFiles('#file', imagePath);
    await step('the overlay, a legend entry and the latency (or an error)', () => {
      const overlay = document.getElementById('overlay');
      const done = overlay.complete && overlay.naturalWidth > 0 && !overlay.hidden &&
        document.querySelector('#legend li') &&
        /\bms\b/.test(document.getElementById('latency').textContent);
      return done || !document.getElementById('error').hidden;
    });
    if (state.error) await fail('the page shows an error for the image', { state });

    const sameSize = (s) => s && s.width === expected.width && s.height === expected.height;
    if (!sameSize(state.original) || !sameSize(state.overlay)) {
      await fail('#original and #overlay must have the size of the image', { expected, state });
    }
    await page.screenshot({ path: screenshotPath, fullPage: true });

    // A text file dressed as a JPEG: the API's detail must appear in #error.
    await page.setInputFiles('#file', {
      name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a picture\n'),
    });
    const before = state;
    const pageErrors = [...consoleErrors];  // the bad file adds the browser's own 400 line
    await step('#error for a text file named .jpg', () => !document.getElementById('error').hidden);
    const badFileError = state.error;

    // One byte over the upload limit of GET /v1/model: refused by the page, nothing sent.
    const limits = await page.evaluate(() => fetch('/v1/model').then((r) => r.json()))
      .then((info) => info.limits);
    let tooLargeError = null;
    if (limits) {
      let posted = false;
      page.on('request', (r) => { if (r.url().includes('/v1/segment')) posted = true; });
      await page.setInputFiles('#file', {
        name: 'huge.jpg', mimeType: 'image/jpeg', buffer: Buffer.alloc(limits.max_upload_bytes + 1),
      });
      await step('#error for a file over the upload limit',
        () => /upload limit/.test(document.getElementById('error').textContent));
      if (posted) await fail('a file over the upload limit was sent', { state });
      tooLargeError = state.error;
    }
    const summary = {
      ok: true,
      model: before.model,
      legend: before.legend,
      swatches: before.swatches,
      latency: before.latency,
      image: expected,
      original: before.original,
      overlay: before.overlay,
      bad_file_error: badFileError,
      too_large_error: tooLargeError,
      console_errors: pageErrors,
    };
    console.log(JSON.stringify(summary));
  } finally {
    await browser.close();
  }
}

setTimeout(() => fail(`no result within ${TIMEOUT_MS / 1000} s`), TIMEOUT_MS).unref();
main().then(() => process.exit(0), (error) => fail(String(error && error.stack || error)));
