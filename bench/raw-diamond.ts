/**
 * The HTTP diamond without Tributary: bare Fastify and four worker threads that each do one
 * stage of `bench/fixtures/diamond-noop.ts`, with nothing but `postMessage` between them.
 * What any design that runs the four stages in worker threads can reach on this machine,
 * beside the pipeline in `npm run bench http`:
 * - `"hub"`: the route's handler walks the stages (first; left and right at once; join),
 *   one `postMessage` per call each way: the shape of Tributary's front door.
 * - `"chain"`: the handler sends to the first stage only; each stage sends its answer
 *   straight on over a `MessageChannel` (first to left and right, both to join, which
 *   answers the main thread): no hop through the main thread between stages.
 */
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import Fastify from "fastify";

const STAGE = `
const { parentPort, workerData } = require("node:worker_threads");
const { role, walk, ports } = workerData;
const step = { first: (x) => x, left: (x) => x + 1, right: (x) => x + 2 };
if (walk === "hub") {
  parentPort.on("message", (m) =>
    parentPort.postMessage({ id: m.id, v: role === "join" ? { sum: m.a[0] + m.a[1] } : step[role](m.a[0]) }));
} else if (role === "first") {
  parentPort.on("message", (m) => {
    ports.left.postMessage({ id: m.id, v: m.a[0] });
    ports.right.postMessage({ id: m.id, v: m.a[0] });
  });
} else if (role === "join") {
  const half = new Map();
  const arrive = (side) => (m) => {
    const other = half.get(m.id);
    if (other === undefined) return void half.set(m.id, { side, v: m.v });
    half.delete(m.id);
    const [l, r] = side === "left" ? [m.v, other.v] : [other.v, m.v];
    parentPort.postMessage({ id: m.id, v: { sum: l + r } });
  };
  ports.left.on("message", arrive("left"));
  ports.right.on("message", arrive("right"));
} else {
  ports.in.on("message", (m) => ports.join.postMessage({ id: m.id, v: step[role](m.v) }));
}`;

export type RawWalk = "hub" | "chain";

/** Serves POST `/diamond` `{ x }` → `{ sum }` as the fixture does; `close` stops it all. */
export async function rawDiamond(
  walk: RawWalk,
): Promise<{ url: string; close: () => Promise<void> }> {
  const stage = (role: string, ports: Record<string, MessagePort> = {}): Worker =>
    new Worker(STAGE, {
      eval: true,
      workerData: { role, walk, ports },
      transferList: Object.values(ports),
    });
  let workers: Record<"first" | "left" | "right" | "join", Worker>;
  if (walk === "hub") {
    workers = {
      first: stage("first"),
      left: stage("left"),
      right: stage("right"),
      join: stage("join"),
    };
  } else {
    const [toLeft, toRight, leftJoin, rightJoin] = [0, 1, 2, 3].map(() => new MessageChannel());
    workers = {
      first: stage("first", { left: toLeft!.port1, right: toRight!.port1 }),
      left: stage("left", { in: toLeft!.port2, join: leftJoin!.port1 }),
      right: stage("right", { in: toRight!.port2, join: rightJoin!.port1 }),
      join: stage("join", { left: leftJoin!.port2, right: rightJoin!.port2 }),
    };
  }
  const pending = new Map<number, (value: unknown) => void>();
  let next = 0;
  for (const worker of Object.values(workers)) {
    worker.on("message", (m: { id: number; v: unknown }) => {
      pending.get(m.id)?.(m.v);
      pending.delete(m.id);
    });
    // A stage that fails ends the benchmark with its error, not with requests left waiting.
    worker.on("error", (error) => {
      throw error;
    });
  }
  const call = <T>(worker: Worker, a: unknown[]): Promise<T> =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve as (value: unknown) => void);
      worker.postMessage({ id, a });
    });
  const server = Fastify({ logger: false });
  server.post<{ Body: { x: number } }>("/diamond", async (request) => {
    if (walk === "chain") return call(workers.first, [request.body.x]);
    const x = await call<number>(workers.first, [request.body.x]);
    const [a, b] = await Promise.all([call(workers.left, [x]), call(workers.right, [x])]);
    return call(workers.join, [a, b]);
  });
  const close = async (): Promise<void> => {
    await Promise.allSettled([
      server.close(),
      ...Object.values(workers).map((worker) => worker.terminate()),
    ]);
  };
  try {
    await server.listen({ host: "127.0.0.1", port: 0 });
  } catch (error) {
    await close();
    throw error;
  }
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, close };
}
