/** A loosely typed client of the OIP gRPC service, and a promise of one unary call. */
import * as grpc from "@grpc/grpc-js";
import { loadInferenceService } from "tributary/internal";

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

/**
 * A client of the OIP gRPC service on 127.0.0.1:`port`. With `longs: String` it reads
 * int64 fields as decimal strings (exact past 2^53), as the server does.
 */
export function inferenceClient(
  port: number | undefined,
  longs: typeof String | typeof Number = Number,
): Client {
  const Service = loadInferenceService(longs);
  return new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Client;
}
