// The district dashboard in a real browser: Debian's Chromium, headless, driven by
// playwright-core, against a server seeded with the demo district.
//
//   node dashboard.mjs <base-url> <screenshot-dir> [--name demo-admin --password demo-admin-2025]
//
// For Vietnamese and English: loads every page, checks its language, its size (under 200 KB),
// that charts render, and that a cadre's counts on the results page equal the JSON API's;
// saves a screenshot of each page. Prints one line per check and `N passed, M failed`;
// exits 1 if any failed.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
if (args.length < 2) {
  console.error('usage: node dashboard.mjs <base-url> <screenshot-dir> [--name N --password P]');
  process.exit(2);
}
const [base, shots] = args;
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
};
const account = { name: option('name', 'demo-admin'), password: option('password', 'demo-admin-2025') };
const campaign = option('campaign', 'tin-nhiem-2026');
// The demo's chair of the second commune's People's Committee (xa-02), whom the whole commune
// evaluates: the subject with the most answers (the others are evaluated where they live).
const subject = option('subject', 'can-bo-04');
const MAX_BYTES = 200 * 1024;

mkdirSync(shots, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'hamlet-chromium-'));
let passed = 0;
let failed = 0;
const check = (ok, what) => {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'ok' : 'FAILED'} ${what}`);
};

/** Signs in through the login form: the one step a server with accounts needs. */
async function signIn(page) {
  await page.goto(`${base}/login`);
  await page.fill('input[name=name]', account.name);
  await page.fill('input[name=password]', account.password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit], input[type=submit]')]);
}

/** The number written on the page in `lang`'s convention ("1.234" or "1,234"). */
const number = (text) => Number(String(text).replace(/[.,\s]/g, ''));

const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
  ],
  viewport: { width: 1280, height: 900 },
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  await signIn(page);
  check(!page.url().includes('/login'), `signed in as ${account.name}`);

  const pages = [
    ['campaigns', '/'],
    ['overview', `/campaigns/${campaign}`],
    ['overview-commune', `/campaigns/${campaign}?commune=xa-02`],
    ['results', `/campaigns/${campaign}/results`],
    ['subject', `/campaigns/${campaign}/results/${subject}`],
    ['hamlet', `/campaigns/${campaign}/hamlets/xa-02-thon01`],
    ['comments', `/campaigns/${campaign}/comments?q=tot`],
    ['review', `/campaigns/${campaign}/review`],
    ['devices', `/campaigns/${campaign}/devices`],
    ['audit', '/admin/audit'],
    ['manage', '/admin/campaigns'],
    ['campaign-admin', `/admin/campaigns/${campaign}`],
    ['units', '/admin/units'],
  ];
  const words = {
    vi: { overview: 'Tiến độ', results: 'Kết quả theo cán bộ', comments: 'Ý kiến của người dân', review: 'Cần xem xét' },
    en: { overview: 'Progress', results: 'Results per cadre', comments: "Residents' comments", review: 'To review' },
  };
  for (const lang of ['vi', 'en']) {
    for (const [name, path] of pages) {
      const sep = path.includes('?') ? '&' : '?';
      const response = await page.goto(`${base}${path}${sep}lang=${lang}`);
      const body = await response.body();
      check(response.status() === 200, `${lang} ${name}: HTTP ${response.status()}`);
      check(body.length < MAX_BYTES, `${lang} ${name}: ${body.length} bytes, under 200 KB`);
      check((await page.getAttribute('html', 'lang')) === lang, `${lang} ${name}: <html lang="${lang}">`);
      check(await page.locator('h1').count() === 1, `${lang} ${name}: one h1`);
      // Chromium compiles an input's pattern with the v flag and ignores one it cannot compile.
      const patterns = await page.$$eval('input[pattern]', (inputs) => inputs.map((input) => {
        const pattern = input.getAttribute('pattern');
        try { new RegExp(pattern, 'v'); return [pattern, true]; } catch { return [pattern, false]; }
      }));
      for (const [pattern, valid] of patterns) check(valid, `${lang} ${name}: the pattern ${pattern} is valid in Chromium`);
      await page.screenshot({ path: join(shots, `${name}-${lang}.png`), fullPage: true });
    }
    // Words of the language, with their diacritics.
    await page.goto(`${base}/campaigns/${campaign}?lang=${lang}`);
    const text = await page.textContent('main');
    check(text.includes(words[lang].overview), `${lang}: the overview says "${words[lang].overview}"`);
    check(text.includes('Xã An Bình'), `${lang}: unit names keep their diacritics`);
    check((await page.textContent('nav.tabs')).includes(words[lang].review), `${lang}: tabs in the language`);

    // The results page: charts render, and a cadre's counts equal the API's.
    await page.goto(`${base}/campaigns/${campaign}/results?lang=${lang}`);
    const chart = page.locator('svg[role=img]').first();
    const box = await chart.boundingBox();
    check(box !== null && box.width > 300 && box.height > 100, `${lang}: the results chart has a size (${box?.width}x${box?.height})`);
    check(await chart.locator('rect').count() >= 20, `${lang}: the chart draws a bar per cadre`);
    const api = await (await context.request.get(`${base}/api/campaigns/${campaign}/results`)).json();
    const item = api.subjects.find((s) => s.subject === subject);
    const overall = item.rows[0];
    const row = page.locator(`tr:has(a[href$="/results/${subject}"])`);
    const total = number(await row.locator('td[data-total]').textContent());
    check(total === overall.total, `${lang}: ${subject} total on the page ${total} = API ${overall.total}`);
    const cells = await row.locator('td.n').allTextContents();
    // cells: total, then count and share for each level.
    const counts = item.levels.map((_, i) => number(cells[1 + 2 * i]));
    check(JSON.stringify(counts) === JSON.stringify(overall.counts), `${lang}: ${subject} counts ${counts} = API ${overall.counts}`);
    // Each cadre's participation is that of their own voters (the hamlets that evaluate them).
    const percent = (text) => Number(String(text).replace('%', '').replace(',', '.').trim());
    const shown = (await page.locator('td[data-participation]').allTextContents()).map(percent);
    const expected = api.subjects.map((s) => s.rows[0].participation_percent);
    check(JSON.stringify(shown) === JSON.stringify(expected), `${lang}: participation per cadre as the API (${shown.slice(0, 3)}…)`);
    check(new Set(expected).size > 1, `${lang}: cadres evaluated by different hamlets show different participation`);
    const flagged = await row.locator('.badge.x').count();
    check(flagged === overall.crossed.filter(Boolean).length, `${lang}: ${subject} shows ${flagged} threshold flags as the API`);

    // The subject page draws one bar per unit shown.
    await page.goto(`${base}/campaigns/${campaign}/results/${subject}?lang=${lang}`);
    const bars = await page.locator('svg[role=img] > g').count();
    const rows = await page.locator('main table tbody tr').count();
    check(bars === rows && rows > 3, `${lang}: the subject chart has ${bars} bars for ${rows} rows`);
  }

  // A form, as staff use it: mark the first conflict as reviewed (the session's CSRF token
  // travels in the form), then find the review and its audit entry.
  await page.goto(`${base}/campaigns/${campaign}/review?lang=vi`);
  const form = page.locator('form.review').first();
  const comment = 'Đã gọi điện cho hai thư ký, giữ giá trị đang hiển thị';
  await form.locator('textarea').fill(comment);
  await Promise.all([page.waitForNavigation(), form.locator('button').click()]);
  check(page.url().includes('/review'), `the review form returns to the review page (${page.url()})`);
  await page.goto(`${base}/campaigns/${campaign}/review?status=all&lang=vi`);
  check((await page.textContent('main')).includes(comment), 'the review and its comment are shown');
  await page.goto(`${base}/admin/audit?action=review&lang=vi`);
  check((await page.textContent('main')).includes('review.mark'), 'the review is in the audit log');

  // Signing out from the header of any page ends the session.
  await page.goto(`${base}/campaigns/${campaign}/results?lang=vi`);
  await Promise.all([page.waitForNavigation(), page.click('header form.out button')]);
  check(page.url().includes('/login'), `signing out leads to the sign-in page (${page.url()})`);
  await page.goto(`${base}/admin/audit?lang=vi`);
  check(page.url().includes('/login'), `after signing out, pages ask to sign in again (${page.url()})`);
} catch (e) {
  check(false, `the browser run threw: ${e.stack || e}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
