// Browser test of the HTTP service's page and API docs.
//
//   node tests/web/page.mjs <base-url> <screenshot-path>
//
// Drives the system Chromium (/usr/bin/chromium, or $CHROMIUM) headless through playwright-core:
// runs ReviewedPipeline from the page, screenshots it mid-run, answers its review pause
// through the page's form, and checks the graph, the node panel, the past runs and /docs.
// With $ACCESS_TOKEN set, the page is opened with ?access_token= (the server's bearer token).
// Prints one line per check and exits non-zero on the first failure.

import { chromium } from "playwright-core";
import { existsSync } from "node:fs";
import process from "node:process";

const WAIT = 30_000;
const WORKFLOW = "ReviewedPipeline";
const NODES = ["research", "post", "linkedin", "tweet", "email", "meta", "checked", "review", "publish_reviewed"];

const [baseArg, shotPath] = process.argv.slice(2);
if (!baseArg || !shotPath) {
  console.error("usage: node tests/web/page.mjs <base-url> <screenshot-path>");
  process.exit(2);
}
const base = baseArg.endsWith("/") ? baseArg : `${baseArg}/`;
const token = process.env.ACCESS_TOKEN || "";
const withToken = (path) => {
  const u = new URL(path, base);
  if (token) u.searchParams.set("access_token", token);
  return u.href;
};

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`FAIL: no browser at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
  process.exit(1);
}

let passed = 0;
function ok(what) {
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

class CheckFailed extends Error {}

/** Runs one check: `fn` returns (or resolves to) a detail string, or throws. */
async function check(what, fn) {
  try {
    const detail = await fn();
    ok(detail ? `${what} (${detail})` : what);
  } catch (e) {
    // eslint-disable-next-line no-control-regex
    const message = (e && e.message ? e.message : String(e)).replace(/\x1b\[[0-9;]*m/g, "").split("\n").slice(0, 6).join("\n    ");
    throw new CheckFailed(`${what}: ${message}`);
  }
}

const args = [];
if (typeof process.getuid === "function" && process.getuid() === 0) args.push("--no-sandbox");
args.push("--disable-dev-shm-usage");

const browser = await chromium.launch({ executablePath, headless: true, args });
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(WAIT);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
// Failed requests are logged by the browser too; the test provokes some (422s) on purpose, and
// the checks look at what the page shows for them instead.
page.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
});

/** The status of every node of the graph, by name. */
const nodeStatuses = () => page.$$eval("#graph [data-node]", (els) =>
  Object.fromEntries(els.map((e) => [e.getAttribute("data-node"), e.getAttribute("data-status")])));

async function waitFor(description, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT });
  } catch (e) {
    const run = await page.$eval("#run-status", (e) => e.dataset.status).catch(() => "?");
    const nodes = await nodeStatuses().catch(() => ({}));
    const shown = await page.$$eval(".error:not([hidden])", (els) => els.map((e) => e.textContent.trim())).catch(() => []);
    throw new Error(`timed out after ${WAIT / 1000}s waiting for ${description}; run status ${run}, nodes ${JSON.stringify(nodes)}` +
      (shown.length ? `; errors shown: ${shown.join(" / ")}` : ""));
  }
}

let runId = "";
let failure = null;
try {
  await check("GET / serves the page", async () => {
    const res = await page.goto(withToken(""), { waitUntil: "domcontentloaded" });
    if (!res || res.status() !== 200) throw new Error(`status ${res && res.status()}`);
    await page.waitForSelector("body[data-ready='true']", { timeout: WAIT });
    return `status ${res.status()}`;
  });

  await check(`the workflow list shows ${WORKFLOW}`, async () => {
    await page.waitForSelector(`.workflow-item[data-workflow="${WORKFLOW}"]`, { timeout: WAIT });
    const names = await page.$$eval(".workflow-item", (els) => els.map((e) => e.dataset.workflow));
    return names.join(", ");
  });

  await check(`picking ${WORKFLOW} draws its graph with every node pending`, async () => {
    await page.click(`.workflow-item[data-workflow="${WORKFLOW}"]`);
    await page.waitForSelector('#graph [data-node="review"]', { timeout: WAIT });
    const statuses = await nodeStatuses();
    const missing = NODES.filter((n) => !(n in statuses));
    if (missing.length) throw new Error(`nodes missing from the graph: ${missing.join(", ")}; has ${Object.keys(statuses).join(", ")}`);
    const notPending = Object.entries(statuses).filter(([, s]) => s !== "pending");
    if (notPending.length) throw new Error(`not pending: ${JSON.stringify(notPending)}`);
    const edges = await page.$$eval("#graph path.edge", (els) => els.length);
    if (edges < 12) throw new Error(`only ${edges} edges drawn`);
    return `${Object.keys(statuses).length} nodes, ${edges} edges`;
  });

  await check("the input is pre-filled with JSON", async () => {
    const text = await page.inputValue("#input-json");
    JSON.parse(text);
    return text.replace(/\s+/g, " ").slice(0, 60);
  });

  await check("a bad input shows the API's error message", async () => {
    await page.fill("#input-json", '{"title": 42}');
    await page.click("#start-run");
    await page.waitForSelector("#start-error:not([hidden])", { timeout: WAIT });
    const status = await page.$eval("#start-error", (e) => e.dataset.status);
    const text = (await page.textContent("#start-error")).trim();
    if (status !== "422") throw new Error(`expected a 422 shown, got status ${status}: ${text}`);
    return text.slice(0, 90);
  });

  await check("starting a run shows it running", async () => {
    await page.fill("#input-json", JSON.stringify({ title: "Durable workflows in Rust", audience: "backend developers" }, null, 2));
    await page.click("#start-run");
    await waitFor("a run id", () => document.getElementById("run-id").dataset.run !== "");
    runId = await page.$eval("#run-id", (e) => e.dataset.run);
    const startError = await page.$eval("#start-error", (e) => (e.hidden ? "" : e.textContent));
    if (startError) throw new Error(`start error shown: ${startError}`);
    return `run ${runId}`;
  });

  await check("nodes turn running, and the screenshot is taken mid-run", async () => {
    await waitFor("a running node", () => !!document.querySelector('#graph [data-node][data-status="running"]'));
    // The moment worth a picture: the blog post done, its three posts running side by side.
    await waitFor("parallel steps running", () => {
      const status = (n) => document.querySelector(`#graph [data-node="${n}"]`)?.dataset.status;
      return status("post") === "done" && ["linkedin", "tweet", "email"].some((n) => status(n) === "running");
    });
    const running = await page.$$eval('#graph [data-node][data-status="running"]', (els) => els.map((e) => e.dataset.node));
    await page.screenshot({ path: shotPath, fullPage: false });
    const runStatus = await page.$eval("#run-status", (e) => e.dataset.status);
    if (runStatus !== "running") throw new Error(`the run status shows ${runStatus}`);
    return `running: ${running.join(", ")}; saved ${shotPath}`;
  });

  await check("the event log lists the events as they arrive", async () => {
    await waitFor("step events in the log", () => document.querySelectorAll('#event-log [data-kind="step_succeeded"]').length > 0);
    const kinds = await page.$$eval("#event-log [data-kind]", (els) => [...new Set(els.map((e) => e.dataset.kind))]);
    if (!kinds.includes("step_started")) throw new Error(`kinds: ${kinds.join(", ")}`);
    return kinds.join(", ");
  });

  await check("the review node waits, and the page shows its request", async () => {
    await waitFor("review waiting", () => {
      const n = document.querySelector('#graph [data-node="review"]');
      return n && n.dataset.status === "waiting" && document.getElementById("run-status").dataset.status === "waiting";
    });
    await page.waitForSelector("#interrupt:not([hidden])", { timeout: WAIT });
    await waitFor("the interrupt request", () => document.getElementById("interrupt-request").textContent.trim() !== "");
    const request = await page.textContent("#interrupt-request");
    JSON.parse(request);
    const node = await page.textContent("#interrupt-node");
    if (node !== "review") throw new Error(`the interrupt names ${node}`);
    return `request ${request.replace(/\s+/g, " ").slice(0, 60)}`;
  });

  await check("an answer of the wrong type shows the 422", async () => {
    await page.fill("#answer-json", '"Maybe"');
    await page.click("#answer-submit");
    await page.waitForSelector("#answer-error:not([hidden])", { timeout: WAIT });
    const status = await page.$eval("#answer-error", (e) => e.dataset.status);
    const text = (await page.textContent("#answer-error")).trim();
    if (status !== "422") throw new Error(`expected 422, got ${status}: ${text}`);
    return text.slice(0, 90);
  });

  await check('answering "approve" through the form resumes the run', async () => {
    await page.fill("#answer-json", '"approve"');
    await page.click("#answer-submit");
    await waitFor("the answer form to close", () => document.getElementById("interrupt").hidden);
    const err = await page.$eval("#answer-error", (e) => (e.hidden ? "" : e.textContent));
    if (err) throw new Error(`answer error shown: ${err}`);
  });

  await check("the run succeeds with every node done", async () => {
    await waitFor("run-status succeeded and every node done", () => {
      if (document.getElementById("run-status").dataset.status !== "succeeded") return false;
      const nodes = [...document.querySelectorAll("#graph [data-node]")];
      return nodes.length > 0 && nodes.every((n) => n.dataset.status === "done");
    });
    await waitFor("the run output", () => !document.getElementById("run-result").hidden);
    const output = await page.textContent("#run-output");
    JSON.parse(output);
    const statuses = await nodeStatuses();
    return `${Object.keys(statuses).length} nodes done`;
  });

  await check("clicking a node shows its output as JSON and its attempts", async () => {
    await page.click('#graph [data-node="research"]');
    await page.waitForSelector("#node-panel:not([hidden])", { timeout: WAIT });
    await waitFor("research's output", () => {
      const out = document.getElementById("node-output");
      if (document.getElementById("node-panel").dataset.node !== "research" || out.dataset.empty !== "false") return false;
      try { const v = JSON.parse(out.textContent); return v !== null; } catch { return false; }
    });
    const attempts = await page.$$eval("#node-attempts tr.attempt", (rows) => rows.map((r) => r.dataset.outcome));
    if (!attempts.length) throw new Error("no attempts listed");
    const output = await page.textContent("#node-output");
    return `output ${output.replace(/\s+/g, " ").slice(0, 50)}…; attempts ${attempts.join(", ")}`;
  });

  await check("the past runs list has the run, succeeded", async () => {
    await page.click("#tab-runs");
    await page.waitForSelector(`#runs-list .run-item[data-run="${runId}"]`, { timeout: WAIT });
    const status = await page.$eval(`#runs-list .run-item[data-run="${runId}"]`, (e) => e.dataset.status);
    if (status !== "succeeded") throw new Error(`listed as ${status}`);
    const count = await page.$$eval("#runs-list .run-item", (els) => els.length);
    return `${count} runs listed`;
  });

  await check("clicking the past run shows it again from its replayed events", async () => {
    // Another workflow first, so the graph is drawn anew for the past run.
    await page.click("#tab-workflows");
    const other = await page.$$eval(".workflow-item", (els, wf) => els.map((e) => e.dataset.workflow).find((n) => n !== wf), WORKFLOW);
    if (other) await page.click(`.workflow-item[data-workflow="${other}"]`);
    await page.click("#tab-runs");
    await page.click(`#runs-list .run-item[data-run="${runId}"]`);
    await waitFor("the past run, succeeded with every node done", (id) => {
      if (document.getElementById("run-id").dataset.run !== id) return false;
      if (document.getElementById("run-status").dataset.status !== "succeeded") return false;
      const nodes = [...document.querySelectorAll("#graph [data-node]")];
      return nodes.length > 0 && nodes.every((n) => n.dataset.status === "done");
    }, runId);
    const events = await page.$$eval("#event-log [data-kind]", (els) => els.length);
    return `${events} events replayed`;
  });

  if (pageErrors.length) throw new CheckFailed(`the page reported errors: ${pageErrors.join(" | ")}`);
  ok("the page raised no script errors");

  let operations = 0;
  await check("GET /openapi.json is an OpenAPI 3.1 document", async () => {
    const res = await page.request.get(withToken("openapi.json"));
    if (res.status() !== 200) throw new Error(`status ${res.status()}`);
    const doc = await res.json();
    if (!String(doc.openapi).startsWith("3.1")) throw new Error(`openapi ${doc.openapi}`);
    for (const p of Object.values(doc.paths || {})) for (const m of ["get", "post", "put", "patch", "delete"]) if (p[m]) operations += 1;
    if (operations < 10) throw new Error(`only ${operations} operations`);
    return `${operations} operations`;
  });

  await check("GET /docs renders the list of operations", async () => {
    const res = await page.goto(withToken("docs"), { waitUntil: "domcontentloaded" });
    if (!res || res.status() !== 200) throw new Error(`status ${res && res.status()}`);
    await page.waitForSelector(".operation", { timeout: WAIT });
    await waitFor("every operation", (n) => document.querySelectorAll(".operation").length >= n, operations);
    const ops = await page.$$eval(".operation", (els) => els.map((e) => `${e.dataset.method.toUpperCase()} ${e.dataset.path}`));
    for (const want of ["GET /workflows", "POST /workflows/{name}/runs", "GET /runs/{id}/events", "POST /runs/{id}/resume"]) {
      if (!ops.includes(want)) throw new Error(`${want} is not listed; listed: ${ops.join(", ")}`);
    }
    return `${ops.length} operations`;
  });

  await check("the docs' try-it form sends GET /workflows", async () => {
    const op = page.locator('.operation[data-method="get"][data-path="/workflows"]');
    await op.locator(":scope > summary").click();
    await op.locator(".try-send").click();
    await waitFor("the response", () => {
      const s = document.querySelector('.operation[data-method="get"][data-path="/workflows"] .try-status');
      return s && s.dataset.status;
    });
    const status = await op.locator(".try-status").getAttribute("data-status");
    const body = await op.locator(".try-body").textContent();
    if (status !== "200") throw new Error(`status ${status}: ${body.slice(0, 200)}`);
    if (!JSON.parse(body).workflows) throw new Error("the body has no workflows");
    return `status ${status}`;
  });

  if (pageErrors.length) throw new CheckFailed(`the docs reported errors: ${pageErrors.join(" | ")}`);
} catch (e) {
  failure = e;
} finally {
  await browser.close().catch(() => {});
}

if (failure) {
  console.log(`FAIL - ${failure instanceof CheckFailed ? failure.message : failure.stack || failure}`);
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
}
console.log(`${passed} passed, 0 failed`);
