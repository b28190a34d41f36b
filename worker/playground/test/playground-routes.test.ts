/** The playground's routes inside workerd: public, self-contained, under a strict CSP, and leaving the API as it was. */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { playgroundScript } from "../page-script.ts";

const origin = "http://edge.test";

function csp(response: Response): Map<string, string> {
  const header = response.headers.get("content-security-policy") ?? "";
  return new Map(header.split(";").map((d) => d.trim()).filter(Boolean).map((d) => {
    const [name, ...values] = d.split(/\s+/);
    return [name, values.join(" ")] as [string, string];
  }));
}

describe("the playground page", () => {
  for (const path of ["/", "/playground"]) {
    it(`GET ${path} serves the page without a key, under a CSP that allows only this origin`, async () => {
      const response = await SELF.fetch(`${origin}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/html/);
      const policy = csp(response);
      expect(policy.get("default-src")).toBe("'none'");
      expect(policy.get("script-src")).toBe("'self'");
      expect(policy.get("style-src")).toBe("'self'");
      expect(policy.get("connect-src")).toBe("'self'");
      expect(policy.get("frame-ancestors")).toBe("'none'");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      const html = await response.text();
      expect(html).toContain('data-model="microsoft/phi-4"');
      expect(html).toContain('<script src="/playground.js" defer></script>');
      expect(html).toContain('<link rel="stylesheet" href="/playground.css">');
      // Self-contained: no inline script or style (the CSP would block them), nothing from another origin.
      expect(html).not.toMatch(/<script>|<style|style="|\son[a-z]+=/i);
      expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
    });
  }

  it("serves its script and stylesheet with their types, and they fetch nothing from elsewhere", async () => {
    const script = await SELF.fetch(`${origin}/playground.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const code = await script.text();
    expect(code).toBe(playgroundScript);
    // The key goes in a header, read from localStorage; API calls go to this origin only.
    expect(code).toContain('Authorization: "Bearer " + key');
    expect(code).toContain("localStorage");
    expect(code).toContain('API_BASE = location.origin + "/v1"');
    const style = await SELF.fetch(`${origin}/playground.css`);
    expect(style.status).toBe(200);
    expect(style.headers.get("content-type")).toBe("text/css; charset=utf-8");
    const css = await style.text();
    expect(css).not.toMatch(/@import|url\(/);
  });

  it("leaves the API's headers and 404s as they were (the page's CSP is not on /v1)", async () => {
    const models = await SELF.fetch(`${origin}/v1/models`);
    expect(models.status).toBe(401);
    expect(models.headers.get("content-security-policy")).toBeNull();
    const unknown = await SELF.fetch(`${origin}/playground/nothing`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "unknown_url" } });
  });
});
