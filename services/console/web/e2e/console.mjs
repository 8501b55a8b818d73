// Browser check of the dispatcher console, run by services/console's
// TestBrowser against a real `hexride dev --sim`:
//   node e2e/console.mjs <console URL> <screenshot path>
// Uses Debian's /usr/bin/chromium through playwright-core (never downloads
// a browser). Prints one JSON summary line; exits non-zero on failure.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node e2e/console.mjs <url> <screenshot.png>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "hexride-chromium-"));
const log = (...a) => console.error(new Date().toISOString(), ...a);

// A fresh profile directory per run (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1600, height: 1000 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const summary = {};
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.setDefaultTimeout(20000);
  const resp = await page.goto(url, { waitUntil: "domcontentloaded" });
  if (!resp || resp.status() !== 200) throw new Error(`GET ${url}: ${resp?.status()}`);

  const count = (sel) => page.locator(sel).count();
  const text = async (id) => (await page.getByTestId(id).textContent())?.trim() ?? "";
  const seq = async () => Number(await text("snapshot-seq"));

  await page.getByTestId("live-status").filter({ hasText: "live" }).waitFor();
  await page.waitForFunction(() => Number(document.getElementById("snapshot-seq")?.textContent) >= 1);
  // The simulated city needs a few seconds to put drivers, hexes and trips on the map.
  await page.waitForFunction(() =>
    document.querySelectorAll('[data-testid="hex"]').length > 0 &&
    document.querySelectorAll('[data-testid="driver"]').length > 0 &&
    document.querySelectorAll('[data-testid="trip-row"]').length > 0, null, { timeout: 30000 });
  // The road network the platform routes on is drawn, with its data's notice.
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="roads"]')?.getAttribute("data-segments")) > 1000);
  const attribution = (await page.getByTestId("map-attribution").textContent())?.trim() ?? "";
  if (!/OpenStreetMap/.test(attribution) || !/ODbL|Open Database License/.test(attribution) || !(await page.getByTestId("map-attribution").isVisible()))
    throw new Error(`map attribution missing or wrong: ${JSON.stringify(attribution)}`);
  summary.roadSegments = Number(await page.getByTestId("roads").getAttribute("data-segments"));
  summary.attribution = attribution;
  const first = {
    seq: await seq(),
    hexes: await count('[data-testid="hex"]'),
    drivers: await count('[data-testid="driver"]'),
    tripLines: await count('[data-testid="trip-line"]'),
    tripRows: await count('[data-testid="trip-row"]'),
    positions: await page.$$eval('[data-testid="driver"]', (ds) => ds.map((d) => d.getAttribute("cx") + "," + d.getAttribute("cy")).join(";")),
    requests: (await page.getByTestId("kpi-requests").locator(".value").textContent())?.trim(),
    kpiTiles: await count('[data-testid^="kpi-"]'),
    members: await count('[data-testid="member"]'),
    partitions: await count('[data-testid="partition"]'),
  };
  log("first view", JSON.stringify({ ...first, positions: undefined }));
  if (first.kpiTiles < 9) throw new Error(`expected 9 KPI tiles, got ${first.kpiTiles}`);
  if (first.members < 1 || first.partitions < 1) throw new Error("partition map is empty");

  // Live updates: two more snapshots, and the map must have moved.
  await page.waitForFunction((s) => Number(document.getElementById("snapshot-seq")?.textContent) >= s + 2, first.seq, { timeout: 15000 });
  const later = {
    seq: await seq(),
    hexes: await count('[data-testid="hex"]'),
    drivers: await count('[data-testid="driver"]'),
    tripLines: await count('[data-testid="trip-line"]'),
    tripRows: await count('[data-testid="trip-row"]'),
    positions: await page.$$eval('[data-testid="driver"]', (ds) => ds.map((d) => d.getAttribute("cx") + "," + d.getAttribute("cy")).join(";")),
  };
  log("later view", JSON.stringify({ ...later, positions: undefined }));
  if (later.positions === first.positions) throw new Error("drivers did not move between snapshots");
  if (later.tripRows === first.tripRows && later.tripLines === first.tripLines && later.hexes === first.hexes)
    throw new Error("no count changed between snapshots");
  summary.first = { ...first, positions: undefined };
  summary.later = { ...later, positions: undefined };

  // Hex colouring switch.
  await page.getByTestId("hex-mode-demand").click();
  await page.getByTestId("hex-mode-supply").click();

  // Dispatcher action: cancel an active trip from the table, see it in its history.
  await page.getByTestId("trip-state-filter").selectOption("active");
  const row = page.locator('[data-testid="trip-row"][data-state="DRIVER_ASSIGNED"], [data-testid="trip-row"][data-state="REQUESTED"], [data-testid="trip-row"][data-state="IN_PROGRESS"], [data-testid="trip-row"][data-state="DRIVER_ARRIVED"]').first();
  await row.waitFor();
  const tripID = await row.getAttribute("data-trip-id");
  // Click that trip's row, not "the first active row" again: new trips
  // arrive at the top of the table between the two steps.
  await page.locator(`[data-testid="trip-row"][data-trip-id="${tripID}"]`).click();
  await page.getByTestId("trip-detail-id").filter({ hasText: tripID }).waitFor();
  await page.locator('[data-testid="trip-event"][data-type="CREATED"]').waitFor();
  await page.getByTestId("action-reason").fill("browser test");
  await page.getByTestId("action-cancel").click();
  await page.locator('[data-testid="action-status"][data-kind="ok"]').waitFor();
  await page.locator('[data-testid="trip-event"][data-type="CANCELLED"]').filter({ hasText: "browser test" }).first().waitFor();
  await page.locator('[data-testid="trip-detail-state"][data-state="CANCELLED"]').waitFor();
  log("cancelled trip", tripID);
  summary.cancelledTrip = tripID;

  // Search finds it by id.
  await page.getByTestId("trip-state-filter").selectOption("");
  await page.getByTestId("trip-search").fill(tripID);
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('[data-testid="trip-row"]');
    return rows.length === 1 && rows[0].getAttribute("data-trip-id") === id && rows[0].getAttribute("data-state") === "CANCELLED";
  }, tripID);
  await page.getByTestId("trip-search").fill("");

  // Dispatcher action: take an available driver offline; it leaves the map.
  const dot = page.locator('[data-testid="driver"][data-status="AVAILABLE"]').first();
  const driverID = await dot.getAttribute("data-driver-id");
  await dot.dispatchEvent("click");
  if ((await page.getByTestId("driver-id-input").inputValue()) !== driverID) throw new Error("driver click did not select it");
  await page.getByTestId("action-offline").click();
  await page.locator('[data-testid="action-status"][data-kind="ok"]').filter({ hasText: driverID }).waitFor();
  await page.waitForFunction((id) => {
    const d = document.querySelector(`[data-testid="driver"][data-driver-id="${id}"]`);
    return !d || d.getAttribute("data-status") !== "AVAILABLE";
  }, driverID, { timeout: 15000 });
  log("driver offline", driverID);
  summary.offlineDriver = driverID;

  // Let one more snapshot land, then keep a picture of the result.
  const s = await seq();
  await page.waitForFunction((n) => Number(document.getElementById("snapshot-seq")?.textContent) > n, s);
  await page.screenshot({ path: shot, fullPage: true });
  summary.screenshot = shot;
  if (pageErrors.length) throw new Error("page errors: " + pageErrors.join("; "));
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
