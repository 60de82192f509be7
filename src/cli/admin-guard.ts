/**
 * @internal What the admin API refuses before reading a request: a web page in the
 * operator's browser can reach a loopback port, so the `Host`, `Origin` /
 * `Sec-Fetch-Site` and content type of every request are checked.
 */
export const isWildcard = (host: string): boolean =>
  host === "0.0.0.0" || host === "::" || host === "";

/** `127.0.0.1:8265` → `127.0.0.1`, `[::1]:8265` → `::1`; undefined when it cannot be read. */
function hostnameOf(hostHeader: string): string | undefined {
  try {
    return new URL(`http://${hostHeader}`).hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * Why a request to the admin API is refused before it is read, or undefined. A web page in
 * the operator's browser can reach a loopback port: it is kept out by the `Host` check
 * (DNS rebinding), the `Origin` / `Sec-Fetch-Site` checks (cross-site requests) and by
 * accepting only `application/json` bodies (which a page cannot send without a CORS
 * preflight, which this API never grants).
 */
export function refusal(
  headers: Record<string, string | string[] | undefined>,
  method: string,
  allowedHosts: ReadonlySet<string> | undefined,
): { status: number; code: "FORBIDDEN" | "UNSUPPORTED_MEDIA_TYPE"; message: string } | undefined {
  const one = (name: string): string | undefined => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const host = one("host") ?? "";
  if (allowedHosts) {
    const name = hostnameOf(host);
    if (name === undefined || !allowedHosts.has(name))
      return {
        status: 403,
        code: "FORBIDDEN",
        message: `The admin API answers requests addressed to ${[...allowedHosts].join(" or ")}, not to ${JSON.stringify(host.slice(0, 100))}.`,
      };
  }
  const origin = one("origin");
  if (origin !== undefined) {
    let sameOrigin = false;
    try {
      const url = new URL(origin);
      sameOrigin = url.protocol === "http:" && url.host.toLowerCase() === host.toLowerCase();
    } catch {
      sameOrigin = false;
    }
    if (!sameOrigin)
      return {
        status: 403,
        code: "FORBIDDEN",
        message: `The admin API does not answer cross-origin requests (from ${JSON.stringify(origin.slice(0, 100))}).`,
      };
  }
  const site = one("sec-fetch-site");
  if (site !== undefined && site !== "same-origin" && site !== "none")
    return {
      status: 403,
      code: "FORBIDDEN",
      message: `The admin API does not answer ${site} requests.`,
    };
  if (method !== "GET" && method !== "HEAD") {
    const type = (one("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json")
      return {
        status: 415,
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: `The admin API takes application/json bodies only (found ${JSON.stringify(type || "no content type")}).`,
      };
  }
  return undefined;
}
