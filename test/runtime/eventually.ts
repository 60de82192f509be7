import assert from "node:assert/strict";

/** Polls `predicate` every 20 ms until it holds, failing after `ms`. */
export async function eventually(
  predicate: () => Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
