// Opens a workflow in the Temporal Web UI (headless Debian Chromium, driven by playwright-core)
// and waits until its input shows decoded by the codec server; saves a screenshot.
// Usage: node webui.mjs UI_URL NAMESPACE WORKFLOW_ID EXPECTED_TEXT SCREENSHOT_PATH
// Env: PLAYWRIGHT_DIR = directory holding node_modules/playwright-core; CHROMIUM = browser path.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.PLAYWRIGHT_DIR}/`);
const { chromium } = require('playwright-core');
const [uiUrl, namespace, workflowId, expected, screenshot] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const decodeCalls = [];
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('request', (r) => { if (r.url().includes('/decode')) decodeCalls.push({ url: r.url(), method: r.method() }); });
  page.on('requestfailed', (r) => failures.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  await page.goto(`${uiUrl}/namespaces/${namespace}/workflows/${workflowId}`, { waitUntil: 'domcontentloaded' });
  try {
    await page.getByText(expected, { exact: false }).first().waitFor({ timeout: 90000 });
  } finally {
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  console.log(JSON.stringify({ ok: true, decodeCalls, failures }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), decodeCalls, failures }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
