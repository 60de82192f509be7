/**
 * @internal Applications by the module that built them. A replica imports the user's
 * module, whose top-level code builds the graph again, and finds its deployment here.
 */
import type { Application } from "./application.js";

const applications = new Map<string, Application>();

const key = (moduleUrl: string, name: string): string => `${moduleUrl}#${name}`;

export function registerApplication(app: Application): void {
  applications.set(key(app.moduleUrl, app.name), app);
}

export function findApplication(moduleUrl: string, name: string): Application | undefined {
  return applications.get(key(moduleUrl, name));
}

export { inReplicaContext, markReplicaContext } from "../replica-context.js";
