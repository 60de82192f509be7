/**
 * @internal Optional peer dependencies: packages that only some features need (`sharp`
 * for `image()`, grpc-js for the gRPC front door, tsx for TypeScript modules). A user who
 * does not use the feature installs nothing; one who does gets an error that names what
 * to install.
 */
import { createRequire } from "node:module";
import { TributaryError } from "./errors.js";

const here = createRequire(import.meta.url);

/** The error for a feature whose packages are not installed. */
export function missingPackage(feature: string, packages: readonly string[]): TributaryError {
  const names = packages.join(" and ");
  return new TributaryError(
    "MISSING_PACKAGE",
    `${feature} needs ${names}, which ${packages.length > 1 ? "are" : "is"} not installed: run npm install ${packages.join(" ")}`,
  );
}

/** Throws {@link missingPackage} unless every package resolves from this library. */
export function requirePackages(feature: string, packages: readonly string[]): void {
  const missing = packages.filter((name) => {
    try {
      here.resolve(name);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) throw missingPackage(feature, missing);
}
