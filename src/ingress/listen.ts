/** @internal What a front door or the admin API says when it cannot listen. */

/** Where a user sets each front door's port, named in the error when it cannot listen. */
export const PORT_SETTINGS = {
  HTTP: "http.port in the YAML, --port, or run()'s port",
  gRPC: "grpc.port in the YAML, --grpc-port, or run()'s grpc.port",
} as const;

/**
 * Rethrows a failed `listen` as what a user can act on: which port, which setting chooses
 * it, and that 0 picks a free one (the error's `code` and `cause` are kept).
 */
export function listenFailed(
  error: unknown,
  what: string,
  host: string,
  port: number,
  setting: string,
): never {
  const code = (error as { code?: string } | undefined)?.code;
  const why =
    code === "EADDRINUSE"
      ? "is in use (another process, or another Tributary, listens there)"
      : code === "EACCES"
        ? "may not be used by this user (ports below 1024 need privileges)"
        : code === "EADDRNOTAVAIL"
          ? `is on an address this machine does not have (${host})`
          : undefined;
  if (!why) throw error;
  throw Object.assign(
    new Error(
      `The ${what} port ${port} on ${host} ${why}: choose another with ${setting} (0 picks a free one).`,
      { cause: error },
    ),
    { code },
  );
}
