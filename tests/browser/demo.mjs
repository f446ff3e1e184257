// Walks `payhost demo` in headless Chromium as a buyer on a phone (WAP cashier) and on a desktop
// (PC cashier: `product = "auto"` picks by User-Agent), and as a shop owner. Usage: node demo.mjs <base-url> <admin-password> <artifacts-dir>
// With PAYHOST_SCREENSHOTS=<dir> it also saves the pictures README.zh-CN.md shows (docs/images/).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [base, password, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
// The documentation's pictures: only when asked for, so a test run leaves the tree as it was.
const docs = process.env.PAYHOST_SCREENSHOTS;
if (docs) mkdirSync(docs, { recursive: true });
const doc = async (target, name, options = {}) => {
  if (docs) await target.screenshot({ path: `${docs}/${name}.png`, ...options });
};
const expectText = async (locator, text) => {
  await locator.waitFor();
  const got = await locator.innerText();
  if (!got.includes(text)) throw new Error(`expected "${text}", found "${got}"`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN',
    userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
  });
  const page = await phone.newPage();

  // The buyer: product → cashier → pay → back on the shop, paid. Once per merchant kind.
  for (const product of ['tea', 'papercut', 'cup']) {
    await page.goto(`${base}/shop`);
    if (product === 'tea') await shot(page, '1-shop');
    if (product === 'tea') await doc(page, 'shop-1-product');
    await page.click(`#buy-${product}`);
    await page.waitForURL(/sandbox\/gateway/);
    await expectText(page.locator('#pay'), '确认付款');
    await expectText(page.locator('#cashier-kind'), '手机收银台');
    if (product === 'tea') await shot(page, '2-cashier');
    if (product === 'tea') await doc(page, 'shop-2-cashier');
    await page.fill('#buyer', '13900001111');
    await page.click('#pay');
    await page.waitForURL(/\/shop\/return/);
    // The page shows "waiting" until Alipay's notify is confirmed, refreshing itself each second.
    await page.locator('#order-status', { hasText: '支付成功' }).waitFor({ timeout: 20000 });
    if (product === 'tea') await shot(page, '3-paid');
    if (product === 'tea') await doc(page, 'shop-3-paid');
  }

  // A desktop buyer gets the PC cashier (create_direct_pay_by_user), a phone never does.
  const desk = await browser.newContext({
    viewport: { width: 1200, height: 900 }, locale: 'zh-CN',
    userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  });
  const buyer = await desk.newPage();
  for (const product of ['tea', 'papercut', 'cup']) {
    await buyer.goto(`${base}/shop`);
    await buyer.click(`#buy-${product}`);
    await buyer.waitForURL(/sandbox\/mapi\?.*create_direct_pay_by_user/);
    await expectText(buyer.locator('#pay'), '确认付款');
    await expectText(buyer.locator('#cashier-kind'), '即时到账');
    if (product === 'tea') await shot(buyer, '7-desktop-pc-cashier');
    await buyer.fill('#buyer', 'desk@example.com');
    await buyer.click('#pay');
    await buyer.waitForURL(/\/shop\/return/);
    await buyer.locator('#order-status', { hasText: '支付成功' }).waitFor({ timeout: 20000 });
    if (product === 'tea') await shot(buyer, '8-desktop-paid');
  }

  // The app checkout: the shop's server signs the order string, the SDK stand-in pays it, and the
  // order turns paid by the notify alone.
  await buyer.goto(`${base}/shop`);
  await buyer.click('#app-cup');
  await expectText(buyer.locator('#order-string'), 'service="mobile.securitypay.pay"');
  const appOrder = await buyer.locator('#app-order').innerText();
  await shot(buyer, '9-app-order-string');
  await buyer.click('#sdk-pay');
  await expectText(buyer.locator('body'), 'resultStatus={9000}');
  for (let i = 0; ; i++) {
    await buyer.goto(`${base}/shop`);
    const row = buyer.locator('#orders tr', { hasText: appOrder });
    if ((await row.innerText()).includes('已支付')) break;
    if (i > 40) throw new Error(`app order ${appOrder} not paid`);
    await buyer.waitForTimeout(250);
  }

  // A buyer who leaves the cashier without paying: the admin page offers Sync for that payment.
  await page.goto(`${base}/shop`);
  await page.click('#buy-tea');
  await page.waitForURL(/sandbox\/gateway/);

  // The shop owner: log in, paste a partner ID and key with stray spaces, save, see them masked.
  const admin = await desk.newPage();
  // Every admin page's own scripts and styles run under its CSP (each allowed by its SHA-256, no
  // 'unsafe-inline'); Chromium reports anything it refuses on the console.
  const refused = [];
  admin.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) refused.push(m.text()); });
  // The pages name an empty icon (allowed by the CSP): no request for a /favicon.ico, no 404.
  const icons = [];
  admin.on('request', (r) => { if (new URL(r.url()).pathname === '/favicon.ico') icons.push(r.url()); });
  await admin.goto(`${base}/admin`);
  // The style element applied (the page's background is its colour, not the browser's white).
  const background = await admin.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (background !== 'rgb(244, 246, 248)') throw new Error(`the admin's style did not apply: body background ${background}`);
  await doc(admin, 'admin-1-login', { clip: { x: 0, y: 0, width: 1200, height: 300 } });
  await admin.fill('#password', password);
  await admin.click('#login');
  await admin.goto(`${base}/admin?m=pasted`);
  await admin.fill('#partner', '  2088000000000009 \n');
  await admin.fill('#key', ' 1234567890abcdef1234567890abcdef  ');
  await admin.fill('#seller_email', ' owner@demo.example ');
  await admin.click('#save');
  await expectText(admin.locator('#flash'), '已保存并校验');
  await expectText(admin.locator('#key-saved'), '****cdef');
  const partner = await admin.inputValue('#partner');
  if (partner !== '2088000000000009') throw new Error(`partner not trimmed: "${partner}"`);
  if ((await admin.content()).includes('1234567890abcdef1234567890abcdef')) throw new Error('the key is shown in full');
  await shot(admin, '4-admin-saved');
  await doc(admin.locator('#settings').locator('xpath=..'), 'admin-2-merchant-settings');
  // A key of the wrong length is refused with the field named.
  await admin.fill('#key', 'too-short');
  await admin.click('#save');
  await expectText(admin.locator('#errors'), 'key');
  await shot(admin, '5-admin-refused');
  // The demo merchant's payments and notifications are listed.
  await admin.goto(`${base}/admin?m=demo`);
  await expectText(admin.locator('#payments'), '已支付');
  await expectText(admin.locator('#payments'), '待付款');
  await expectText(admin.locator('#payments'), '查询');
  // In words first (the codes in the cells' titles).
  await expectText(admin.locator('#notifications'), '已处理');
  await expectText(admin.locator('#notifications'), '待付款 → 已支付');
  await shot(admin, '6-admin-payments');
  await doc(admin.locator('#payments').locator('xpath=..'), 'admin-3-payments');
  await doc(admin.locator('#notifications').locator('xpath=..'), 'admin-4-notifications');
  await doc(admin.locator('#dead-webhooks').locator('xpath=..'), 'admin-5-dead-letters');
  // A per-merchant API token for the shop's payment settings, shown once.
  await admin.goto(`${base}/admin?m=pasted`);
  await admin.fill('input[name=label]', 'ecshop');
  await admin.click('#new-token-button');
  await expectText(admin.locator('#new-token'), 'phm_');
  await doc(admin, 'admin-6-new-token');
  // The merchant page's own script runs under the admin's CSP: a gateway preset fills its field.
  await admin.goto(`${base}/admin/merchants/open-shop`);
  await admin.fill('#gateway', '');
  await admin.click('#gateway-presets .preset[data-value*="sandbox"]');
  const gateway = await admin.inputValue('#gateway');
  if (!gateway.includes('openapi-sandbox')) throw new Error(`the preset did not fill #gateway: "${gateway}"`);
  if (refused.length) throw new Error(`Chromium refused a script or style: ${refused.join(' | ')}`);
  if (icons.length) throw new Error(`the admin pages asked for ${icons.join(', ')}`);
  console.log('browser walk: ok');
} finally {
  await browser.close();
}
