/** A loosely typed client of the OIP gRPC service, and a promise of one unary call. */
import type * as grpc from "@grpc/grpc-js";

export type Client = grpc.Client &
  Record<
    string,
    (
      request: unknown,
      callback: (error: grpc.ServiceError | null, response: unknown) => void,
    ) => void
  >;

export function rpc<T>(client: Client, method: string, request: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method]!(request, (error, response) => (error ? reject(error) : resolve(response as T)));
  });
}
