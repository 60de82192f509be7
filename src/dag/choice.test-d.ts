/**
 * Type tests for `branch()` and `split()`. Never run: `npm run check` (tsc) checks it. Each
 * `@ts-expect-error` line must be a compile error; each `expectTypeOf` must hold exactly.
 */
import { expectTypeOf } from "expect-type";
import { z } from "zod";
import { branch, deployment, InputNode, split, type GraphNode } from "../index.js";

const schema = z.object({ image: z.instanceof(Uint8Array), user: z.string() });
const input = new InputNode(schema);
type Input = z.input<typeof schema>;

const classify = deployment(function classify(image: Uint8Array): "photo" | "document" {
  return image.length > 10 ? "photo" : "document";
});
const vision = deployment(async function vision(image: Uint8Array): Promise<{ labels: string[] }> {
  return { labels: [String(image.length)] };
});
const ocr = deployment(async function ocr(image: Uint8Array): Promise<string> {
  return String(image.length);
});
const label = classify.bind(input.image);
const photo = vision.bind(input.image);
const document = ocr.bind(input.image);

// ---- the result is the union of the arms' results; the input is the graph's ----
const out = branch(label, { photo, document });
expectTypeOf(out).toEqualTypeOf<GraphNode<{ labels: string[] } | string, Input>>();
expectTypeOf(out.execute).returns.resolves.toEqualTypeOf<{ labels: string[] } | string>();

// A consumer of the union binds it; one that takes only one arm's type does not.
const report = deployment(function report(result: { labels: string[] } | string): number {
  return typeof result === "string" ? result.length : result.labels.length;
});
const textOnly = deployment(function textOnly(text: string): number {
  return text.length;
});
report.bind(out);
// @ts-expect-error the branch may produce { labels }, which a string parameter does not take
textOnly.bind(out);

// ---- the arms must be exactly the selector's keys ----
// @ts-expect-error the "document" arm is missing
branch(label, { photo });
// @ts-expect-error "video" is not a value the selector can produce
branch(label, { photo, document, video: photo });
// @ts-expect-error the selector must produce a string key
branch(vision.bind(input.image), { photo, document });
// @ts-expect-error an arm must be a node, not a plain value
branch(label, { photo, document: "text" });

// An arm built on an input of another type is a branch of the wrong input type.
const textInput = new InputNode<{ text: string }>();
const textArm = deployment((t: string) => t.length, { name: "textArm" }).bind(textInput.text);
// @ts-expect-error the "document" arm reads { text: string }, not this graph's input
branch(label, { photo, document: textArm });
// A selector that reads no input leaves the arms' input to them.
const fixed = deployment((): "a" | "b" => "a", { name: "fixed" }).bind();
expectTypeOf(branch(fixed, { a: textArm, b: textArm })).toEqualTypeOf<
  GraphNode<number, { text: string }>
>();

// A selector typed plain `string` accepts any arms (an unknown value fails at run time).
const anyLabel = deployment((s: string) => s, { name: "anyLabel" }).bind(input.user);
expectTypeOf(branch(anyLabel, { a: photo, b: document })).toEqualTypeOf<
  GraphNode<{ labels: string[] } | string, Input>
>();

// ---- split: weights keyed by the arms ----
const s = split(
  { stable: document, canary: ocr.options({ name: "ocr2" }).bind(input.image) },
  {
    name: "ocr",
    weights: { stable: 90, canary: 10 },
    sticky: { header: "x-user-id" },
  },
);
expectTypeOf(s).toEqualTypeOf<GraphNode<string, Input>>();
textOnly.bind(s);
// @ts-expect-error a weight for an arm the split does not have
split({ stable: document }, { name: "x", weights: { stable: 90, canary: 10 } });
// @ts-expect-error every arm needs a weight
split({ stable: document, canary: document }, { name: "x", weights: { stable: 100 } });
// @ts-expect-error a split needs a name (serve.yaml sets its weights by it)
split({ stable: document }, { weights: { stable: 100 } });

// Branches and splits compose: a split inside a branch's arm.
const nested = branch(label, { photo, document: s });
expectTypeOf(nested).toEqualTypeOf<GraphNode<{ labels: string[] } | string, Input>>();
