/**
 * @internal Checks that a bound value survives the trip to a replica unchanged. The
 * structured clone algorithm throws on functions and symbols, and silently turns class
 * instances into plain objects (losing their methods) and drops symbol keys; each of those
 * is reported here, with the path to the offending part.
 */
import { isPlainObject } from "../values.js";
import { stateOf } from "./state.js";

const CLONEABLE_BUILTINS: readonly (abstract new (...args: never) => unknown)[] = [
  Date,
  RegExp,
  ArrayBuffer,
  SharedArrayBuffer,
  DataView,
  Boolean,
  Number,
  String,
  Error,
];

/** Typed arrays, including `Buffer` (which arrives as a `Uint8Array`). */
function isTypedArray(value: object): boolean {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

function describeValue(value: unknown): string {
  if (typeof value === "function") {
    return /^class[\s{]/.test(Function.prototype.toString.call(value))
      ? `a class (${(value as { name: string }).name || "anonymous"})`
      : `a function (${(value as { name: string }).name || "anonymous"})`;
  }
  if (typeof value === "symbol") return `a symbol (${String(value)})`;
  const ctor = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)
    ?.constructor;
  return `an instance of ${ctor?.name || "an unnamed class"}`;
}

/**
 * Returns why `value` cannot be sent to a replica (naming the path below `root`), or
 * `undefined` when it can.
 */
export function whyNotCloneable(value: unknown, root: string): string | undefined {
  const seen = new Set<object>();
  const visit = (v: unknown, path: string): string | undefined => {
    if (typeof v === "function" || typeof v === "symbol") {
      return `${path} is ${describeValue(v)}, which cannot be sent to a replica`;
    }
    if (typeof v !== "object" || v === null) return undefined;
    if (seen.has(v)) return undefined;
    seen.add(v);
    if (stateOf(v) !== undefined) {
      return `${path} is a graph node nested inside a value; pass the node as an argument of its own`;
    }
    if (isTypedArray(v) || CLONEABLE_BUILTINS.some((type) => v instanceof type)) return undefined;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const why = visit(v[i], `${path}[${i}]`);
        if (why) return why;
      }
      return undefined;
    }
    if (v instanceof Map) {
      for (const [k, item] of v) {
        const why = visit(k, `${path} (a Map key)`) ?? visit(item, `${path}.get(${String(k)})`);
        if (why) return why;
      }
      return undefined;
    }
    if (v instanceof Set) {
      for (const item of v) {
        const why = visit(item, `${path} (a Set item)`);
        if (why) return why;
      }
      return undefined;
    }
    if (!isPlainObject(v)) {
      return `${path} is ${describeValue(v)}; its class and methods would be lost on the way to a replica (only plain data crosses)`;
    }
    if (Object.getOwnPropertySymbols(v).length > 0) {
      return `${path} has symbol keys, which are dropped on the way to a replica`;
    }
    for (const [key, item] of Object.entries(v)) {
      const why = visit(
        item,
        /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`,
      );
      if (why) return why;
    }
    return undefined;
  };
  return visit(value, root);
}
