import assert from "node:assert/strict";
import { test } from "node:test";
import { isTypeScript } from "./typescript-loader.js";

test("typescript loader - only TypeScript modules need one, whatever their query string", () => {
  for (const url of [
    "file:///app/app.ts",
    "file:///app/app.mts?v=abc",
    "file:///app/app.cts",
    "file:///app/page.tsx",
    "/app/app.ts",
  ])
    assert.equal(isTypeScript(url), true, url);
  for (const url of [
    "file:///app/app.js",
    "file:///app/app.mjs?v=1.ts",
    "file:///app/dist/app.cjs",
    "file:///app/app.d.ts.js",
  ])
    assert.equal(isTypeScript(url), false, url);
});
