// Pays `payhost demo`'s open-platform merchant (open-shop: APPID + RSA2) in headless Chromium
// through the sandbox's OpenAPI cashier (`/sandbox/openapi/gateway.do`), once on a phone (390 px,
// an iPhone's User-Agent: `alipay.trade.wap.pay`) and once on a desktop (`alipay.trade.page.pay`).
// Each walk ends on the shop's return page saying paid and with the order listed as paid on the
// shop page; the order numbers are printed (`paid <device> <out_trade_no>`) for the test to ask
// payhost's API. Usage: node openapi.mjs <base-url> <artifacts-dir>
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [base, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
const expectText = async (locator, text) => {
  await locator.waitFor();
  const got = await locator.innerText();
  if (!got.includes(text)) throw new Error(`expected "${text}", found "${got}"`);
};

const devices = {
  phone: {
    method: 'alipay.trade.wap.pay',
    context: {
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN',
      userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
    },
  },
  desktop: {
    method: 'alipay.trade.page.pay',
    context: {
      viewport: { width: 1200, height: 900 }, locale: 'zh-CN',
      userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
    },
  },
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  for (const [device, { method, context }] of Object.entries(devices)) {
    const page = await (await browser.newContext(context)).newPage();
    await page.goto(`${base}/shop`);
    await page.click('#buy-fan');
    // payhost's pay_url: the app-signed request on the sandbox's gateway.do, which checked the
    // RSA2 signature before showing its cashier.
    await page.waitForURL(/\/sandbox\/openapi\/gateway\.do\?/);
    const payUrl = new URL(page.url());
    if (payUrl.searchParams.get('method') !== method) {
      throw new Error(`${device}: expected ${method}, the pay_url says ${payUrl.searchParams.get('method')}`);
    }
    if (payUrl.searchParams.get('sign_type') !== 'RSA2') throw new Error(`${device}: not RSA2: ${payUrl}`);
    const outTradeNo = JSON.parse(payUrl.searchParams.get('biz_content')).out_trade_no;
    await expectText(page.locator('h1'), '支付宝收银台');
    await expectText(page.locator('body'), '25.00');
    await expectText(page.locator('body'), outTradeNo);
    await shot(page, `openapi-${device}-1-cashier`);
    await page.click('button:has-text("确认付款")');
    // The signed return goes through payhost (/return/open-shop) to the shop's return page, which
    // shows "waiting" until the notify is applied and refreshes itself.
    await page.waitForURL(/\/shop\/return/);
    await page.locator('#order-status', { hasText: '支付成功' }).waitFor({ timeout: 20000 });
    await expectText(page.locator('#order-no'), outTradeNo);
    await shot(page, `openapi-${device}-2-paid`);
    // The shop's order list says paid too.
    await page.goto(`${base}/shop`);
    await expectText(page.locator('#orders tr', { hasText: outTradeNo }), '已支付');
    console.log(`paid ${device} ${outTradeNo}`);
  }
  console.log('openapi walk: ok');
} finally {
  await browser.close();
}
