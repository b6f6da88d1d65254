// Opens a workflow in the Temporal Web UI (headless Debian Chromium, driven by playwright-core)
// and waits until EXPECTED_TEXT shows (its input decoded by the codec server); saves a
// screenshot. With DOWNLOAD_EXPECTED, the input is an external-storage reference: clicks its
// download button (labelled with the stored size) and checks the downloaded file holds that text.
// Usage: node webui.mjs UI_URL NAMESPACE WORKFLOW_ID EXPECTED_TEXT SCREENSHOT_PATH [DOWNLOAD_EXPECTED]
// Env: PLAYWRIGHT_DIR = directory holding node_modules/playwright-core; CHROMIUM = browser path.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(`${process.env.PLAYWRIGHT_DIR}/`);
const { chromium } = require('playwright-core');
const [uiUrl, namespace, workflowId, expected, screenshot, downloadExpected] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const codecCalls = [];
const failures = [];
let download = null;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  page.on('request', (r) => {
    if (/\/(decode|download)/.test(r.url())) codecCalls.push({ url: r.url(), method: r.method() });
  });
  page.on('requestfailed', (r) => failures.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  await page.goto(`${uiUrl}/namespaces/${namespace}/workflows/${workflowId}`, { waitUntil: 'domcontentloaded' });
  try {
    await page.getByText(expected, { exact: false }).first().waitFor({ timeout: 90000 });
    if (downloadExpected) {
      const button = page.getByRole('button', { name: /^\s*[\d.]+\s*(Bytes|KB|MB|GB)\s*$/ }).first();
      const [file] = await Promise.all([
        page.waitForEvent('download', { timeout: 60000 }),
        button.click(),
      ]);
      const content = readFileSync(await file.path(), 'utf8');
      download = {
        name: file.suggestedFilename(),
        bytes: content.length,
        holdsExpected: content.includes(downloadExpected),
      };
      if (!download.holdsExpected) throw new Error(`the downloaded file lacks the expected text: ${content.slice(0, 300)}`);
    }
  } finally {
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  console.log(JSON.stringify({ ok: true, codecCalls, failures, download }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), codecCalls, failures, download }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
