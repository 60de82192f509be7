/**
 * @internal Applications by the module that built them. A replica imports the user's
 * module, whose top-level code builds the graph again, and finds its deployment here.
 */
import type { Application } from "./application.js";

const applications = new Map<string, Application>();

const COPIES = Symbol.for("tributary.copies");

const key = (moduleUrl: string, name: string): string => `${moduleUrl}#${name}`;

export function registerApplication(app: Application): void {
  applications.set(key(app.moduleUrl, app.name), app);
}

export function findApplication(moduleUrl: string, name: string): Application | undefined {
  return applications.get(key(moduleUrl, name));
}

/** Every copy of this library loaded in this thread, and what each has registered. */
interface Copy {
  readonly url: string;
  has(key: string): boolean;
}
const global = globalThis as unknown as Record<symbol, Copy[] | undefined>;
const copies = (global[COPIES] ??= []);
copies.push({ url: import.meta.url, has: (k) => applications.has(k) });

/**
 * The location of another copy of Tributary, loaded in this thread, whose registry has the
 * application (the user's module imported that copy, not this one: two installs, a link,
 * or other export conditions), or undefined.
 */
export function otherCopyWith(moduleUrl: string, name: string): string | undefined {
  return copies.find((c) => c.url !== import.meta.url && c.has(key(moduleUrl, name)))?.url;
}

export { inReplicaContext, markReplicaContext } from "../replica-context.js";
