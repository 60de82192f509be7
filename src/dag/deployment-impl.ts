/**
 * @internal The object `deployment()` returns. Immutable: `.options()` makes a new one.
 */
import { mergeOptions, validateOptions, type DeploymentOptions } from "../options.js";
import { OptionsError } from "../errors.js";
import { userCallSite, formatCallSite, type CallSite } from "./call-site.js";
import { createCallNode, createClassNode } from "./node.js";

export type DeploymentKind = "function" | "class";

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

/** Whether a function value is a class (class syntax; a class cannot be called). */
function isClass(target: unknown): boolean {
  return (
    typeof target === "function" && /^class[\s{]/.test(Function.prototype.toString.call(target))
  );
}

export class DeploymentImpl {
  readonly kind: DeploymentKind;
  /** The user's function or class. */
  readonly target: (...args: unknown[]) => unknown;
  /** The options set in code (validated). */
  readonly config: Readonly<DeploymentOptions>;
  /** The function's or class's own name, made a valid deployment name. */
  readonly sourceName: string;
  /** Where `deployment()` was called. */
  readonly site: CallSite | undefined;

  constructor(
    target: (...args: unknown[]) => unknown,
    config: DeploymentOptions,
    site: CallSite | undefined,
  ) {
    this.kind = isClass(target) ? "class" : "function";
    this.target = target;
    this.site = site;
    this.sourceName = target.name.replace(/[^A-Za-z0-9_.-]/g, "_").replace(/^[.-]/, "_");
    // A private deep copy: later changes to the caller's objects cannot reach it.
    this.config = deepFreeze(structuredClone(config));
    if (this.config.name === undefined && this.sourceName === "") {
      throw new OptionsError(
        `The ${this.kind} passed to deployment() at ${formatCallSite(site)} has no name: ` +
          `declare it with a name, or pass { name: "…" } as the options.`,
      );
    }
  }

  /** The explicit name when one was set, else the source name. */
  get name(): string {
    return this.config.name ?? this.sourceName;
  }

  get hasExplicitName(): boolean {
    return this.config.name !== undefined;
  }

  options(options: DeploymentOptions): DeploymentImpl {
    validateOptions(options, `deployment "${this.name}"`);
    return new DeploymentImpl(this.target, mergeOptions(this.config, options), this.site);
  }

  bind(...args: unknown[]): unknown {
    return this.kind === "class"
      ? createClassNode(this, args)
      : createCallNode(this, undefined, undefined, args);
  }
}

/** `deployment(fnOrClass, options)`: validates and wraps. */
export function createDeployment(
  target: unknown,
  options: DeploymentOptions | undefined,
): DeploymentImpl {
  const site = userCallSite();
  if (target instanceof DeploymentImpl) {
    throw new OptionsError(
      `deployment() at ${formatCallSite(site)} was given a deployment; use .options() to change it.`,
    );
  }
  if (typeof target !== "function") {
    throw new OptionsError(
      `deployment() at ${formatCallSite(site)} expects a function or a class, got ${target === null ? "null" : typeof target}.`,
    );
  }
  const name = (target as { name?: unknown }).name;
  const config = validateOptions(
    options ?? {},
    `deployment "${typeof name === "string" && name ? name : "(anonymous)"}"`,
  );
  return new DeploymentImpl(target as (...args: unknown[]) => unknown, config, site);
}
