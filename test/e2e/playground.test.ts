/**
 * The playground page in a real browser: Debian's chromium, headless, driven by playwright-core, against
 * the whole stack started as `npm start` does. Screenshots land in test-artifacts/ (ignored by git).
 * Without /usr/bin/chromium this fails with one line saying how to get it (`npm test` runs
 * .ci/install-chromium first); it never skips.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { estimatedCost } from "../../shared/pricing.ts";
import { metric, startStack, type Stack } from "../../stack/stack-process.ts";

const run = promisify(execFile);
const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = path.resolve("test-artifacts");
// Nothing that talks to the outside world, and a fresh profile for every run.
const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

let stack: Stack;
let context: BrowserContext;
let page: Page;
let profile: string;
const requestedURLs: string[] = [];
const pageErrors: string[] = [];
const sentBodies: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run .ci/install-chromium (apt-get install -y chromium); the playground's browser test needs it`);
  }
  await mkdir(ARTIFACTS, { recursive: true });
  stack = await startStack({ gpuNodes: 1 });
  profile = await mkdtemp(path.join(os.tmpdir(), "phi4-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] ?? await context.newPage();
  page.on("request", (request) => {
    requestedURLs.push(request.url());
    if (request.method() === "POST") sentBodies.push(request.postDataJSON() as Record<string, unknown>);
  });
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Trusted Type/i.test(message.text())) pageErrors.push(message.text());
  });
}, 240_000);

afterAll(async () => {
  await context?.close();
  await stack?.stop();
  if (profile) await rm(profile, { recursive: true, force: true });
}, 60_000);

const answers = () => page.locator(".message.assistant");
const lastAnswer = () => answers().last();

type Seen = Array<{ text: string; usageShown: boolean }>;

/**
 * Records every text the newest answer shows, from the moment it appears, to prove the text grows.
 * (Browser-side code is passed as strings: this project type-checks against Node and workerd, not the DOM.)
 */
async function watchAnswerText(): Promise<void> {
  await page.evaluate(`(() => {
    const seen = [];
    window.answerTexts = seen;
    new MutationObserver(() => {
      const answer = [...document.querySelectorAll(".message.assistant")].at(-1);
      const text = answer?.querySelector(".content")?.textContent ?? "";
      if (text && seen.at(-1)?.text !== text) seen.push({ text, usageShown: !!answer?.querySelector(".usage") });
    }).observe(document.getElementById("transcript"), { childList: true, subtree: true, characterData: true });
  })()`);
}

const answerTexts = () => page.evaluate<Seen>("window.answerTexts");
const focusedId = () => page.evaluate<string | undefined>("document.activeElement?.id");

async function setField(id: string, value: string): Promise<void> {
  await page.locator(`#${id}`).fill(value);
}

describe("the playground in chromium against the whole stack", () => {
  it("keyboard only: the key typed once, a message sent with Enter, text streamed in, then the usage line", async () => {
    await page.goto(stack.playgroundURL);
    await expect.poll(() => focusedId()).toBe("api-key");
    // Settings as a user tabs to them: greedy and short, so the API can replay the same answer.
    await setField("temperature", "0");
    await setField("max_tokens", "40");
    await page.locator("#api-key").focus();
    await page.keyboard.type(stack.apiKey);
    await page.keyboard.press("Enter");
    await expect.poll(() => page.locator("#key-state").textContent()).toBe("Key saved in this browser.");
    expect(await page.evaluate<string[]>("Object.values(localStorage)")).toContain(stack.apiKey);
    expect(await focusedId()).toBe("message");

    await watchAnswerText();
    await page.keyboard.type("Tell me a story about a lighthouse.");
    await page.keyboard.press("Enter");
    const usage = lastAnswer().locator(".usage");
    await usage.waitFor({ timeout: 60_000 });

    const texts = await answerTexts();
    expect(texts.length, "the answer should arrive in several steps").toBeGreaterThan(2);
    for (let i = 1; i < texts.length; i++) expect(texts[i].text.startsWith(texts[i - 1].text)).toBe(true);
    expect(texts.slice(0, -1).every((t) => !t.usageShown)).toBe(true);

    const line = (await usage.textContent())!;
    const m = /^(\d+) tokens in · (\d+) out · estimated_cost \$([\d.]+) · first token (\d+) ms · ([\d.]+) tokens\/s · finish: (\w+)$/.exec(line);
    expect(m, line).not.toBeNull();
    const [promptTokens, completionTokens] = [Number(m![1]), Number(m![2])];
    expect(completionTokens).toBeGreaterThan(0);
    expect(completionTokens).toBeLessThanOrEqual(40);
    expect(Number(m![3])).toBeCloseTo(estimatedCost(promptTokens, completionTokens), 10);
    expect(Number(m![5])).toBeGreaterThan(0);

    // What the page showed is exactly what the API answers for the same (greedy) request.
    const shown = (await lastAnswer().locator(".content").textContent())!;
    expect(shown).toBe(texts.at(-1)!.text);
    const direct = await fetch(`${stack.baseURL}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "microsoft/phi-4", messages: [{ role: "user", content: "Tell me a story about a lighthouse." }], temperature: 0, max_tokens: 40 }),
    });
    const whole = await direct.json() as { choices: Array<{ message: { content: string } }>; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(shown).toBe(whole.choices[0].message.content);
    expect([promptTokens, completionTokens]).toEqual([whole.usage.prompt_tokens, whole.usage.completion_tokens]);

    // The key travels in the Authorization header only, never in a URL; nothing came from another origin.
    expect(requestedURLs.some((u) => u.includes(stack.apiKey))).toBe(false);
    expect(requestedURLs.filter((u) => !u.startsWith(stack.origin) && !u.startsWith("data:"))).toEqual([]);
    expect(sentBodies.at(-1)).toMatchObject({ stream: true, temperature: 0, max_tokens: 40, stream_options: { include_usage: true } });
    await page.screenshot({ path: path.join(ARTIFACTS, "playground.png") });
  }, 120_000);

  it("the code view shows the same request as curl, Python and JavaScript, and the curl one runs", async () => {
    await setField("top_k", "40");
    await page.locator("#message").fill("Say hi");
    await page.locator("#show-code").click();
    const code = page.locator("#code-sample");
    const curl = (await code.textContent())!;
    expect(curl).toContain(`curl ${stack.baseURL}/chat/completions`);
    expect(curl).toContain('"content": "Say hi"');
    expect(curl).toContain('"top_k": 40');
    expect(curl).not.toContain(stack.apiKey);
    // Run it as written, with the key from the environment: it streams a real answer.
    const { stdout } = await run("bash", ["-c", curl], { env: { ...process.env, PHI4_API_KEY: stack.apiKey }, timeout: 60_000 });
    expect(stdout).toContain("data: [DONE]");
    expect(stdout).toContain('"usage"');

    await page.screenshot({ path: path.join(ARTIFACTS, "playground-code.png") });

    await page.locator(".lang[data-lang=python]").click();
    const py = (await code.textContent())!;
    expect(py).toContain(`OpenAI(base_url="${stack.baseURL}", api_key=os.environ["PHI4_API_KEY"])`);
    expect(py).toContain("stream=True");
    expect(py).toContain('extra_body={\n        "top_k": 40\n    },');

    await page.locator(".lang[data-lang=javascript]").click();
    const js = (await code.textContent())!;
    expect(js).toContain(`new OpenAI({ baseURL: "${stack.baseURL}", apiKey: process.env.PHI4_API_KEY })`);
    // Run the JavaScript one through the real openai SDK too.
    const file = path.join(ARTIFACTS, "snippet.mjs");
    await writeFile(file, js);
    const node = await run(process.execPath, [file], { env: { ...process.env, PHI4_API_KEY: stack.apiKey }, timeout: 60_000 });
    expect(node.stdout).toContain("completion_tokens");

    await page.locator("#show-chat").click();
    await setField("top_k", "");
    await page.locator("#message").fill("");
  }, 120_000);

  it("Stop aborts a long answer: the text stops growing and the node lets the work go", async () => {
    await setField("max_tokens", "8000");
    await setField("temperature", "1");
    await page.locator("#message").fill("Write a very long essay.");
    await page.locator("#send").click();
    const content = lastAnswer().locator(".content");
    await expect.poll(async () => (await content.textContent())!.length, { timeout: 60_000 }).toBeGreaterThan(20);
    expect(await page.locator("#stop-button").isEnabled()).toBe(true);
    await page.locator("#stop-button").click();
    const usage = lastAnswer().locator(".usage");
    await usage.waitFor();
    expect(await usage.textContent()).toMatch(/^Stopped after \d+ characters/);
    const stoppedAt = (await content.textContent())!;
    await new Promise((r) => setTimeout(r, 1000));
    expect(await content.textContent()).toBe(stoppedAt);
    expect(await page.locator("#send").isEnabled()).toBe(true);
    expect(await page.locator("#stop-button").isDisabled()).toBe(true);
    const deadline = Date.now() + 20_000;
    let running = -1;
    while (Date.now() < deadline) {
      running = await metric(stack.nodes[0].metrics, "phi4_running_sequences") + await metric(stack.nodes[0].metrics, "phi4_jobs_in_flight");
      if (running === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(running).toBe(0);
    await setField("max_tokens", "40");
  }, 120_000);

  it("a wrong key shows the API's own message, and the message stays in the box to send again", async () => {
    await page.locator("#forget-key").click();
    await page.locator("#api-key").fill("sk-not-a-real-key");
    await page.locator("#api-key").press("Enter");
    const before = await answers().count();
    await page.locator("#message").fill("Hello?");
    await page.locator("#message").press("Enter");
    const error = page.locator("#error");
    await error.waitFor({ state: "visible", timeout: 30_000 });
    const direct = await fetch(`${stack.baseURL}/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer sk-not-a-real-key", "content-type": "application/json" },
      body: JSON.stringify({ model: "microsoft/phi-4", messages: [{ role: "user", content: "Hello?" }] }),
    });
    expect(direct.status).toBe(401);
    const apiMessage = (await direct.json() as { error: { message: string } }).error.message;
    expect(await error.textContent()).toBe(apiMessage);
    expect(await answers().count()).toBe(before);
    expect(await page.locator("#message").inputValue()).toBe("Hello?");
    await page.screenshot({ path: path.join(ARTIFACTS, "playground-wrong-key.png") });
    // Back to the right key: the same message goes through.
    await page.locator("#api-key").fill(stack.apiKey);
    await page.locator("#api-key").press("Enter");
    await page.locator("#message").press("Enter");
    await lastAnswer().locator(".usage").waitFor({ timeout: 60_000 });
    expect(await error.isHidden()).toBe(true);
  }, 120_000);

  it("JSON mode sends response_format json_object; an answer or the API's refusal, the page stays usable", async () => {
    await page.locator("#json-mode").check();
    const before = await answers().count();
    await page.locator("#message").fill("Reply with a JSON object.");
    await page.locator("#message").press("Enter");
    await expect.poll(async () => (await page.locator("#error").isVisible()) || (await answers().count()) > before && (await lastAnswer().locator(".usage").count()) > 0, { timeout: 60_000 }).toBe(true);
    expect(sentBodies.at(-1)).toMatchObject({ response_format: { type: "json_object" } });
    if (await page.locator("#error").isVisible()) expect(await page.locator("#error").textContent()).toMatch(/response_format/);
    expect(await page.locator("#send").isEnabled()).toBe(true);
    await page.locator("#json-mode").uncheck();
  }, 120_000);

  it("fits a narrow screen: settings folded, no sideways scrolling, the chat in reach", async () => {
    await page.setViewportSize({ width: 375, height: 740 });
    await page.reload();
    expect(await page.evaluate<boolean>('document.getElementById("settings").open')).toBe(false);
    expect(await page.evaluate<boolean>("document.documentElement.scrollWidth <= window.innerWidth")).toBe(true);
    // The key survived the reload; the message box has focus, ready to type.
    expect(await page.locator("#api-key").inputValue()).toBe(stack.apiKey);
    expect(await focusedId()).toBe("message");
    await page.screenshot({ path: path.join(ARTIFACTS, "playground-narrow.png") });
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
