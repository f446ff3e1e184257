// Walks the shop owner's back office of `payhost demo` in headless Chromium, on a desktop and on a
// 360 px phone: the operator adds two shop owners; the owner of the C2C marketplace ("market")
// logs in, searches an order, opens it, refunds part of it (confirms the amount and the order on
// the payment page, then the seller confirms on the sandbox's password page), sees 部分退款 and the refunded amount, downloads the CSV and checks its rows
// against the JSON API, and sees the 30-day chart; the owner of another merchant sees none of it.
// No page scrolls sideways at 360 px.
// Usage: node admin.mjs <base-url> <admin-password> <api-token> <artifacts-dir>
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';

const [base, password, token, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
const docs = process.env.PAYHOST_SCREENSHOTS;
if (docs) mkdirSync(docs, { recursive: true });
const doc = async (target, name, options = {}) => {
  if (docs) await target.screenshot({ path: `${docs}/${name}.png`, ...options });
};
const expectText = async (locator, text) => {
  await locator.first().waitFor();
  const got = await locator.first().innerText();
  if (!got.includes(text)) throw new Error(`expected "${text}", found "${got}"`);
};
const api = async (path) => {
  const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
};
// The page must fit the viewport: nothing wider than the window (no sideways scrolling).
const fits = async (page, what) => {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (scroll > inner) throw new Error(`${what}: ${scroll} px wide in a ${inner} px window (sideways scrolling)`);
};
// RFC 4180: quoted fields may hold commas, quotes (doubled) and line breaks.
const parseCsv = (text) => {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n') { row.push(field.replace(/\r$/, '')); rows.push(row); row = []; field = ''; }
    else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
};
// docs/LEDGER.md's columns of `GET /v1/payments.csv`, in order.
const CSV_COLUMNS = ['merchant_id', 'out_trade_no', 'trade_no', 'subject', 'status', 'total_fee', 'refunded_amount',
  'buyer', 'created_at_beijing', 'created_at_utc', 'paid_at_beijing', 'paid_at_utc', 'review', 'updated_at_utc'];
const OWNER_PASSWORD = 'market-owner-password-1';
const OTHER_PASSWORD = 'demo-owner-password-22';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const desktop = { viewport: { width: 1200, height: 900 }, locale: 'zh-CN', acceptDownloads: true };
const phone = {
  viewport: { width: 360, height: 780 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN',
  acceptDownloads: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
};
const login = async (ctx, user, pass) => {
  const page = await ctx.newPage();
  await page.goto(`${base}/admin`);
  await page.fill('#user', user);
  await page.fill('#password', pass);
  await page.click('#login');
  await page.waitForURL(`${base}/admin`);
  return page;
};

try {
  // The operator adds the owners; a refused form keeps what was typed (never the password).
  const op = await browser.newContext(desktop);
  const admin = await login(op, '', password);
  await admin.goto(`${base}/admin/users`);
  await admin.fill('#user-name', 'owner-market');
  await admin.selectOption('#user-role', 'owner');
  await admin.fill('#user-password', 'short');
  await admin.click('#add-user');
  await expectText(admin.locator('#password-error'), '12');
  await expectText(admin.locator('#merchants-error'), 'owner');
  if ((await admin.inputValue('#user-name')) !== 'owner-market') throw new Error('the refused form lost the name');
  if ((await admin.inputValue('#user-password')) !== '') throw new Error('the password was echoed');
  await admin.check('input[name=merchant][value=market]');
  await admin.fill('#user-password', OWNER_PASSWORD);
  await admin.click('#add-user');
  await expectText(admin.locator('#flash'), 'owner-market');
  await admin.fill('#user-name', 'owner-demo');
  await admin.check('input[name=merchant][value=demo]');
  await admin.fill('#user-password', OTHER_PASSWORD);
  await admin.click('#add-user');
  await expectText(admin.locator('#users'), 'owner-demo');
  await shot(admin, 'admin-users');
  await doc(admin, 'admin-12-users');

  // The marketplace's paid orders (two, paid before this walk).
  const paid = (await api('/v1/payments?merchant=market&status=TRADE_SUCCESS')).payments;
  if (paid.length < 2) throw new Error(`expected two paid market orders, found ${paid.length}`);

  for (const [name, options, order] of [['desktop', desktop, paid[0]], ['phone', phone, paid[1]]]) {
    const ctx = await browser.newContext(options);
    const page = await login(ctx, 'owner-market', OWNER_PASSWORD);
    await expectText(page.locator('#who'), 'owner-market');
    if (name === 'phone') await fits(page, 'overview');
    // Search the order from the overview, open it.
    await page.fill('#quick-q', order.out_trade_no);
    await page.click('#quick-search button');
    await page.waitForURL(/\/admin\/payments\?/);
    await expectText(page.locator('#payments'), order.out_trade_no);
    if (name === 'phone') await fits(page, 'payments list');
    if (name === 'desktop') await doc(page, 'admin-7-payment-search');
    await page.click(`a.order-link:text("${order.out_trade_no}")`);
    await expectText(page.locator('#order-no'), order.out_trade_no);
    await expectText(page.locator('#payment-status'), '已支付');
    if (name === 'phone') await fits(page, 'payment page');
    // Refund part of it; the seller confirms on the sandbox's payment-password page.
    const part = name === 'desktop' ? '1.88' : '2.00';
    await page.fill('#refund-amount', part);
    await page.fill('#refund-reason', '部分退货');
    await page.click('#refund');
    // Nothing is refunded before the owner confirms the amount and the order.
    await expectText(page.locator('#confirm-amount'), part);
    await expectText(page.locator('#confirm-order'), order.out_trade_no);
    if (name === 'phone') {
      await fits(page, 'refund confirmation');
      // The page opens at the confirmation, far below its top on a phone.
      if (!new URL(page.url()).hash.includes('refund-confirm-card')) throw new Error(`the confirmation opened at ${page.url()}`);
      const shown = await page.locator('#refund-confirm').evaluate((b) => {
        const r = b.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight;
      });
      if (!shown) throw new Error('the refund confirmation button is below the fold');
    }
    await shot(page, `admin-refund-ask-${name}`);
    // As a person who reads it: a confirmation quicker than 1.2 s is taken for a double tap.
    await page.waitForTimeout(1300);
    await page.click('#refund-confirm');
    await expectText(page.locator('#flash'), part);
    await page.locator('a.confirm-refund').first().click();
    await page.waitForURL(/\/sandbox\/mapi\?service=refund_fastpay_by_platform_pwd/);
    // The seller's page says what goes back: the order and the amount.
    await expectText(page.locator('#refund-total'), part);
    await expectText(page.locator('.refund-detail'), order.out_trade_no);
    await expectText(page.locator('.refund-detail'), '部分退货');
    if (name === 'phone') {
      await fits(page, 'seller refund page');
      // A wrong payment password is refused; the page still shows what is being refunded.
      await page.fill('#password', '000000');
      await page.click('#confirm');
      await expectText(page.locator('#password-error'), '支付密码不正确');
      await expectText(page.locator('.refund-detail'), order.out_trade_no);
      await expectText(page.locator('#refund-total'), part);
    }
    await shot(page, `refund-confirm-${name}`);
    await page.fill('#password', '123456');
    await page.click('#confirm');
    await expectText(page.locator('#refund-result'), '退款成功');
    if (name === 'phone') await fits(page, 'seller refund result');
    // Back on the payment page, the refund's notify lands: 部分退款 and the amount.
    const url = `${base}/admin/merchants/market/payments/${encodeURIComponent(order.out_trade_no)}`;
    for (let i = 0; ; i++) {
      await page.goto(url);
      if ((await page.locator('#payment-status').innerText()).includes('部分退款')) break;
      if (i > 60) throw new Error(`${order.out_trade_no} never showed 部分退款`);
      await page.waitForTimeout(250);
    }
    await expectText(page.locator('#refunded-amount'), part);
    await expectText(page.locator('#refunds'), '退款成功');
    await expectText(page.locator('#timeline'), '退款');
    if (name === 'phone') await fits(page, 'refunded payment page');
    await shot(page, `admin-payment-${name}`);
    if (name === 'desktop') await doc(page, 'admin-8-payment-refunded');

    // The CSV of the list's filter: the same rows as the JSON API.
    await page.goto(`${base}/admin/payments`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const csv = readFileSync(await download.path(), 'utf8');
    if (!csv.startsWith('\ufeff')) throw new Error('the CSV has no BOM');
    const [header, ...rows] = parseCsv(csv.replace(/^\ufeff/, ''));
    const col = (n) => {
      const i = header.indexOf(n);
      if (i < 0) throw new Error(`the CSV has no ${n} column: ${header}`);
      return i;
    };
    if (header.join(',') !== CSV_COLUMNS.join(',')) throw new Error(`CSV columns ${header}, documented ${CSV_COLUMNS}`);
    const all = (await api('/v1/payments?merchant=market&limit=200')).payments;
    if (rows.length !== all.length) throw new Error(`CSV ${rows.length} rows, API ${all.length}`);
    // Each row is the API's payment, newest first as the list is.
    const same = [['merchant_id', 'merchant_id'], ['out_trade_no', 'out_trade_no'], ['trade_no', 'trade_no'],
      ['subject', 'subject'], ['status', 'status'], ['total_fee', 'total_fee'], ['refunded_amount', 'refunded_amount'],
      ['buyer', 'buyer_email'], ['created_at_utc', 'created_at'], ['paid_at_utc', 'paid_at']];
    all.forEach((p, i) => {
      const r = rows[i];
      if (r.length !== header.length) throw new Error(`CSV row ${i + 1} has ${r.length} cells: ${r}`);
      for (const [c, f] of same) {
        if (r[col(c)] !== (p[f] ?? '')) throw new Error(`${p.out_trade_no}: CSV ${c} "${r[col(c)]}" ≠ API ${f} "${p[f]}"`);
      }
      if (!/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(r[col('paid_at_beijing')])) throw new Error(`${p.out_trade_no}: paid_at_beijing "${r[col('paid_at_beijing')]}"`);
    });
    const mine = all.find((p) => p.out_trade_no === order.out_trade_no);
    if (mine.status !== 'PARTIALLY_REFUNDED' || mine.refunded_amount !== part) throw new Error(`the API shows ${JSON.stringify(mine)}`);
    // 退款记录: the refund just made, found from the menu without opening its order.
    await page.click('#nav-refunds');
    const refundRow = page.locator('#refunds tbody tr', { hasText: order.out_trade_no });
    await expectText(refundRow, part);
    await expectText(refundRow, '退款成功');
    await expectText(page.locator('#totals'), '退款成功');
    if (name === 'phone') await fits(page, 'refund list');
    // The chart: 30 days, the paid ones counted.
    await page.goto(`${base}/admin`);
    if ((await page.locator('#chart rect.bar').count()) !== 30) throw new Error('the chart has no 30 bars');
    // Only the marketplace's two orders (refunded in part, still paid); not the other shop's.
    const counted = await page.locator('#chart-total-count').innerText();
    const amount = await page.locator('#chart-total-amount').innerText();
    if (counted !== '2' || amount !== '17.76') throw new Error(`the chart counts ${counted} paid payments, ¥${amount}`);
    if (name === 'phone') await fits(page, 'chart');
    await shot(page, `admin-chart-${name}`);
    if (name === 'desktop') await doc(page, 'admin-9-chart');
    if (name === 'phone') await doc(page, 'admin-10-phone-chart');
    // English on request, kept for the session's pages.
    await page.click('#lang-switch');
    await expectText(page.locator('nav'), 'Payments');
    await page.goto(`${base}/admin/payments`);
    await expectText(page.locator('nav'), 'Payments');
    await page.click('#lang-switch');
    await ctx.close();
  }

  // The owner of another merchant sees none of the marketplace's payments, pages or CSV rows.
  const other = await browser.newContext(phone);
  const page = await login(other, 'owner-demo', OTHER_PASSWORD);
  const secret = paid[0].out_trade_no;
  await page.goto(`${base}/admin/payments?q=${encodeURIComponent(secret)}`);
  await page.locator('#no-payments').waitFor();
  await fits(page, 'empty list');
  for (const path of [`/admin/merchants/market/payments/${encodeURIComponent(secret)}`, '/admin/merchants/market']) {
    const r = await page.goto(`${base}${path}`);
    if (r.status() !== 404) throw new Error(`${path}: ${r.status()} for another merchant's owner`);
  }
  const users = await page.goto(`${base}/admin/users`);
  if (users.status() !== 403) throw new Error(`/admin/users: ${users.status()} for a shop owner`);
  // Their audit log: their own login, nothing of the other merchant's owner or refunds.
  await page.click('#nav-audit');
  await page.locator('#audit').waitFor();
  const entries = await page.locator('#audit tbody tr').allInnerTexts();
  if (!entries.some((e) => e.includes('owner-demo'))) throw new Error(`the owner's own login is not in their audit log: ${entries}`);
  if (entries.some((e) => e.includes('owner-market') || e.includes(secret))) {
    throw new Error(`another merchant's entries in an owner's audit log: ${entries}`);
  }
  await fits(page, 'audit log');
  const csv = await page.evaluate(async (u) => (await fetch(u)).text(), `${base}/admin/payments.csv?merchant=market`);
  if (csv.includes(secret) || /^market,/m.test(csv)) throw new Error('another merchant\'s rows in the CSV');
  // A refund posted to another merchant's payment is refused (404), nothing started.
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  const posted = await page.evaluate(async ([u, c]) => (await fetch(u, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `csrf=${c}&amount=0.01&reason=x`, redirect: 'manual' })).status,
  [`${base}/admin/merchants/market/payments/${encodeURIComponent(secret)}/refunds`, csrf]);
  if (posted !== 404) throw new Error(`another merchant's refund answered ${posted}`);
  const untouched = await api(`/v1/merchants/market/payments/${encodeURIComponent(secret)}`);
  if (untouched.refunds.length !== 1 || untouched.refunded_amount !== '1.88') {
    throw new Error(`another merchant's owner changed the refunds: ${JSON.stringify(untouched.refunds)}`);
  }
  // Their own overview counts their own shop's paid order only.
  await page.goto(`${base}/admin`);
  const theirs = await page.locator('#chart-total-count').innerText();
  if (theirs !== '1') throw new Error(`the other owner's chart counts ${theirs} paid payments`);

  // The operator's audit log holds the owners' actions: each refund, by whom, of which order.
  await admin.goto(`${base}/admin/audit`);
  for (const [order, part] of [[paid[0], '1.88'], [paid[1], '2.00']]) {
    const row = admin.locator('#audit tbody tr', { has: admin.locator('td.audit-action', { hasText: 'refund.start' }) })
      .filter({ hasText: order.out_trade_no });
    if ((await row.count()) !== 1) throw new Error(`the audit log has no refund.start of ${order.out_trade_no}`);
    const text = await row.innerText();
    if (!text.includes('owner-market') || !text.includes('market') || !text.includes(part)) {
      throw new Error(`the audit entry of ${order.out_trade_no} misses who, merchant or amount: ${text}`);
    }
  }
  await expectText(admin.locator('#audit'), 'user.add');
  await doc(admin, 'admin-11-audit');
  console.log('admin walk: ok');
} finally {
  await browser.close();
}
