import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAll } from "../fixtures/cli/spawn.ts";
import { browserAvailable, CHROMIUM, type Service, startService } from "../fixtures/ui/service.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// The dashboard in a real browser over a real `pgwake start` (API keys on, a worker serving
// every queue): sign in (a wrong key refused), the overview live, a job followed to completion,
// a failed job's error and stack, its retry, a bulk retry of 1,000 failed jobs, pause and resume,
// a queue, the schedules. No request may leave localhost, and the key may appear in no URL and
// no log line. Screenshots of every page in light and dark go to a temporary directory, or to
// docs/screenshots with PGWAKE_SCREENSHOTS=1 (how the committed ones were made).

const KEY = `ui-key-${randomBytes(12).toString("hex")}`;
const SCREENSHOTS = fileURLToPath(new URL("../../docs/screenshots/", import.meta.url));
const WAIT = { timeout: 20_000 };

const suite = browserAvailable() ? describe : describe.skip;

suite("the web dashboard, in a browser", () => {
  let db: TestDb;
  let service: Service;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let tmp: string;
  let shots: string;
  const left: string[] = [];
  const requested: string[] = [];
  const pageErrors: string[] = [];

  /** The API, as a client with the key. */
  const http = async <T = unknown>(
    path: string,
    init: { method?: string; body?: unknown } = {},
  ): Promise<T> => {
    const res = await fetch(`${service.url}${path}`, {
      method: init.method ?? "GET",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    const body: unknown = await res.json();
    if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body as T;
  };
  const submit = async (task: string, payload: unknown, queue = "default") =>
    (
      await http<{ job: { id: number } }>("/jobs", {
        method: "POST",
        body: { task, payload, queue },
      })
    ).job.id;
  const jobStatus = async (id: number) => (await http<{ status: string }>(`/jobs/${id}`)).status;

  /** The page as it is now, in light and in dark. */
  const shoot = async (name: string) => {
    for (const colorScheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme });
      await page.evaluate("new Promise((resolve) => requestAnimationFrame(resolve))");
      await page.screenshot({ path: join(shots, `${name}-${colorScheme}.png`) });
    }
    await page.emulateMedia({ colorScheme: "light" });
  };

  /** Counts the page's navigations from now: a live page updates with none. */
  const navigations = () => {
    let count = 0;
    const listener = (frame: { parentFrame: () => unknown }) => {
      if (frame.parentFrame() === null) count++;
    };
    page.on("framenavigated", listener);
    return () => {
      page.off("framenavigated", listener);
      return count;
    };
  };

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "pgwake-ui-"));
    shots = process.env.PGWAKE_SCREENSHOTS ? SCREENSHOTS : join(tmp, "screenshots");
    await mkdir(shots, { recursive: true });
    db = await createTestDb("ui_dashboard");
    service = await startService(db.url, db.schema, { PGWAKE_API_KEYS: KEY });
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const served = new URL(service.url);
    await context.route("**/*", (route) => {
      const url = new URL(route.request().url());
      requested.push(url.href);
      if (url.host !== served.host) {
        left.push(url.href);
        return route.abort();
      }
      return route.continue();
    });
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await service?.stop();
    killAll();
    await db?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it("refuses a wrong key visibly, then signs in with a right one kept in the tab only", async () => {
    await page.goto(`${service.url}/ui`);
    await page.locator("#sign-in").waitFor({ state: "visible", ...WAIT });
    expect(await page.locator("#main").isHidden()).toBe(true);
    await shoot("sign-in");

    await page.fill("#sign-in-key", "not-the-key");
    await page.click("#sign-in button[type=submit]");
    const refused = page.locator("#sign-in-error");
    await refused.waitFor({ state: "visible", ...WAIT });
    expect(await refused.textContent()).toMatch(/refused \(FORBIDDEN\)/);
    expect(await page.locator("#main").isHidden()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem("pgwake.apiKey"))).toBeNull();

    await page.fill("#sign-in-key", KEY);
    await page.click("#sign-in button[type=submit]");
    await page.locator("#main").waitFor({ state: "visible", ...WAIT });
    expect(await page.locator("#sign-in").isHidden()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem("pgwake.apiKey"))).toBe(KEY);
    expect(page.url()).toBe(`${service.url}/ui`);
  });

  it("shows the queues and the fleet, and counts that change without a reload", async () => {
    const moves = navigations();
    const ids = await Promise.all([1, 2, 3].map((n) => submit("ui.echo", { n }, "live")));
    const row = page.locator('#queues tr[data-queue="live"]');
    await row.locator("td.completed", { hasText: /^3$/ }).waitFor(WAIT);
    expect(await Promise.all(ids.map(jobStatus))).toEqual(["completed", "completed", "completed"]);
    // The fleet: the child's worker, with its pid.
    await page
      .locator("#workers tbody tr", { hasText: String(service.run.child.pid) })
      .waitFor(WAIT);
    // The last hour drawn from the per-minute counts (written by the worker every few seconds).
    await page.locator('#chart-throughput g.series[data-series="live"]').waitFor(WAIT);
    expect(await page.locator("#legend-throughput li", { hasText: "live" }).count()).toBe(1);
    expect(moves()).toBe(0);
    await shoot("overview");
  });

  it("follows a submitted job from running to completed, live", async () => {
    const gate = join(tmp, "hold-gate");
    const id = await submit("ui.hold", { gate });
    await page.goto(`${service.url}/ui/jobs/${id}`);
    const status = page.locator("#job-status");
    await status.filter({ hasText: /^running$/ }).waitFor(WAIT);
    await page.locator("#timeline li", { hasText: "waiting for the gate" }).waitFor(WAIT);
    const moves = navigations();
    await writeFile(gate, "open");
    await status.filter({ hasText: /^completed$/ }).waitFor(WAIT);
    await page.locator("#timeline li.completed").waitFor(WAIT);
    expect(await page.locator("#job-result").textContent()).toContain('"released": true');
    expect(moves()).toBe(0);
  });

  it("opens a failed job from the list, shows its error and stack, and a retry runs it to completed", async () => {
    const gate = join(tmp, "flaky-gate");
    const id = await submit("ui.flaky", { gate });
    await waitFor(async () => (await jobStatus(id)) === "failed", { message: "the job to fail" });

    await page.goto(`${service.url}/ui/jobs?queue=default&status=failed`);
    const link = page.locator(`#jobs a[href$="/ui/jobs/${id}"]`);
    await link.waitFor(WAIT);
    await shoot("jobs");
    await link.click();
    await page.waitForURL(`**/ui/jobs/${id}`);
    const message = page.locator("#job-error-message");
    await message.filter({ hasText: "the gate is closed" }).waitFor(WAIT);
    const stack = await page.locator("#job-error-stack").textContent();
    expect(stack).toMatch(/^Error: the gate is closed/);
    expect(stack).toMatch(/\n\s+at .*tasks\.ts/);
    await page.locator("#attempts tbody tr", { hasText: "failed" }).waitFor(WAIT);
    await shoot("job");

    await writeFile(gate, "open");
    const moves = navigations();
    await page.click("#job-retry");
    await page.locator("#job-status", { hasText: /^completed$/ }).waitFor(WAIT);
    // Two runs now: the failed one, and the retried one that completed.
    await page
      .locator("#attempts tbody tr", { hasText: "2.1" })
      .filter({ hasText: "completed" })
      .waitFor(WAIT);
    await page.locator("#timeline li.retried").waitFor(WAIT);
    expect(await jobStatus(id)).toBe("completed");
    expect(moves()).toBe(0);
  });

  it("bulk-retries the 1,000 failed jobs of one queue, after a confirmation that shows the count", async () => {
    const gate = join(tmp, "bulk-gate");
    await http("/jobs/batch", {
      method: "POST",
      body: {
        jobs: Array.from({ length: 1_000 }, () => ({
          task: "ui.flaky",
          queue: "bulk",
          payload: { gate },
        })),
      },
    });
    const failedCount = async () =>
      Number(
        (
          await db.query<{ n: string }>(
            "SELECT count(*) AS n FROM {{schema}}.job_history WHERE queue = 'bulk' AND status = $1",
            ["failed"],
          )
        )[0]!.n,
      );
    await waitFor(async () => (await failedCount()) === 1_000, {
      timeoutMs: 60_000,
      intervalMs: 100,
      message: "1,000 failed jobs",
    });
    await writeFile(gate, "open");

    await page.goto(`${service.url}/ui/jobs?queue=bulk&status=failed`);
    await page.locator("#jobs tbody tr[data-status=failed]").first().waitFor(WAIT);
    await page.click('button[data-bulk="retry"]');
    const dialog = page.locator("#confirm");
    await dialog.waitFor({ state: "visible", ...WAIT });
    expect(await page.locator("#confirm-title").textContent()).toBe("Retry 1,000 failed jobs?");
    expect(await page.locator("#confirm-text").textContent()).toContain("queue bulk");
    await shoot("bulk-retry");
    await page.click("#confirm-yes");
    await page.locator("#banner", { hasText: "1,000 jobs retried." }).waitFor(WAIT);
    expect(await failedCount()).toBe(0);
    // They run again, and complete.
    await waitFor(
      async () =>
        (
          await db.query(
            "SELECT 1 FROM {{schema}}.job_history WHERE queue = 'bulk' AND status = 'completed' OFFSET 999",
          )
        ).length === 1,
      { timeoutMs: 60_000, intervalMs: 100, message: "the 1,000 retried jobs to complete" },
    );
    // A repeat finds nothing to do, and says so.
    await page.click('button[data-bulk="retry"]');
    await page.locator("#banner", { hasText: "No failed jobs match" }).waitFor(WAIT);
  });

  it("pauses a queue from the overview, and resumes it", async () => {
    await page.goto(`${service.url}/ui`);
    const row = page.locator('#queues tr[data-queue="live"]');
    await row.locator('button[data-action="pause"]').click(WAIT);
    await row.locator(".badge.paused").waitFor(WAIT);
    const paused = async () =>
      (
        await db.query<{ paused: boolean }>(
          "SELECT paused FROM {{schema}}.queues WHERE name = 'live'",
        )
      )[0]!.paused;
    expect(await paused()).toBe(true);
    // Its jobs wait while it is paused.
    const id = await submit("ui.echo", { n: 4 }, "live");
    await row.locator("td.pending", { hasText: /^1$/ }).waitFor(WAIT);
    expect(await jobStatus(id)).toBe("pending");
    await row.locator('button[data-action="resume"]').click(WAIT);
    await row.locator(".badge.paused").waitFor({ state: "detached", ...WAIT });
    expect(await paused()).toBe(false);
    await waitFor(async () => (await jobStatus(id)) === "completed", { message: "the job to run" });
  });

  it("shows a queue, and the schedules with their next runs; triggers one", async () => {
    await page.goto(`${service.url}/ui/queues/bulk`);
    await page.locator("#queue-counts .count.completed dd", { hasText: /^1,000$/ }).waitFor(WAIT);
    await page.locator('#chart-throughput g.series[data-series="completed"]').waitFor(WAIT);
    await shoot("queue");

    await http("/schedules", {
      method: "POST",
      body: {
        name: "ui-nightly",
        cron: "0 3 * * *",
        timeZone: "UTC",
        task: "ui.echo",
        payload: {},
      },
    });
    await page.goto(`${service.url}/ui/schedules`);
    const row = page.locator('#schedules tr[data-schedule="ui-nightly"]');
    await row.waitFor(WAIT);
    await row.locator("button.link").click();
    await page.locator("#schedule-upcoming li").nth(4).waitFor(WAIT);
    expect(
      await page.locator("#schedule-upcoming li time").first().getAttribute("datetime"),
    ).toMatch(/T03:00:00\.000Z$/);
    await shoot("schedules");
    await row.locator("button", { hasText: "Trigger now" }).click();
    await page.click("#confirm-yes");
    const banner = page.locator("#banner", { hasText: "Schedule ui-nightly triggered: job" });
    await banner.waitFor(WAIT);
    const id = Number(/job (\d+)/.exec((await banner.textContent()) ?? "")?.[1]);
    await waitFor(async () => (await jobStatus(id)) === "completed", {
      message: "the triggered job",
    });
  });

  it("switches the theme and keeps it; works at a phone's width", async () => {
    await page.goto(`${service.url}/ui`);
    await page.locator("#queues tbody tr[data-queue]").first().waitFor(WAIT);
    const theme = () => page.evaluate<string>('document.documentElement.dataset.theme ?? "auto"');
    expect(await theme()).toBe("auto");
    await page.click("#theme");
    expect(await theme()).toBe("light");
    await page.click("#theme");
    expect(await theme()).toBe("dark");
    await page.reload();
    expect(await theme()).toBe("dark");
    await page.click("#theme");
    expect(await theme()).toBe("auto");
    await page.setViewportSize({ width: 390, height: 800 });
    await page.locator("#queues tbody tr[data-queue]").first().waitFor(WAIT);
    // Nothing but the tables' own scroll boxes is wider than the screen.
    const width = await page.evaluate<number>("document.documentElement.scrollWidth");
    expect(width).toBeLessThanOrEqual(390);
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it("sent no request beyond localhost, and the key reached no address and no log line", () => {
    expect(left).toEqual([]);
    expect(requested.length).toBeGreaterThan(20);
    expect(requested.filter((url) => url.includes(KEY))).toEqual([]);
    expect(service.run.stdout()).not.toContain(KEY);
    expect(service.run.stderr()).not.toContain(KEY);
    expect(service.run.logs().length).toBeGreaterThan(10);
    expect(pageErrors).toEqual([]);
  });
});
