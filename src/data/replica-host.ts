/**
 * @internal The code running inside every replica (worker thread or child process). It
 * imports the user's module, finds its deployment in the application that module built,
 * constructs it, and serves calls, health checks, reconfiguration and shutdown.
 */
import { parentPort, type MessagePort } from "node:worker_threads";
import { initValue } from "../dag/compile.js";
import { unsendableResult } from "../dag/call-args.js";
import { findApplication, markReplicaContext, otherCopyWith } from "../app/registry.js";
import { setReplicaMaxOngoing } from "../replica-context.js";
import { CancelledError, TimeoutError, TributaryError } from "../errors.js";
import { changeable, MessageBatcher, unbatch } from "./transport/batch.js";
import { listen, SocketChannel, socketPath } from "./transport/socket.js";
import {
  connectionLost,
  connectNats,
  NatsMailbox,
  watchConnection,
} from "./transport/nats-link.js";
import type { Socket } from "node:net";
import { transferablesOf, transferablesOfValue } from "./transport/transfer.js";
import { ActiveRequest, carries, returned, runForRequest, uncarry } from "./context.js";
import { runInSpan, startCallSpan, type CallSpan } from "./call-span.js";
import { captureConsole } from "./replica-log.js";
import { exportTraces, type TraceExport } from "../tracing-export.js";
import { serializeError } from "../wire/error-codec.js";
import { createRemoteHandle, OutgoingCalls } from "./remote-handle.js";
import { reportModelsTo } from "./multiplex.js";
import {
  STREAM_WINDOW,
  type CallMessage,
  type FromReplica,
  type InitMessage,
  type ReplicaNats,
  type ReplyMessage,
  type ToReplica,
} from "../wire/protocol.js";
import { HANDLE_REF } from "./handle-ref.js";
import type { ResetMessage } from "../wire/cluster.js";
import { watchParent } from "./orphan-watchdog.js";
import { watchMemory } from "./memory-limit.js";
import { isAsyncIterable, isPromiseLike } from "../values.js";
import { ensureTypeScriptLoader } from "../app/typescript-loader.js";
import { replicaStats, type Outcome } from "./replica-stats.js";
import { CallTable } from "./call-table.js";

type Callable = (...args: unknown[]) => unknown;
type Instance = Record<string, unknown>;

markReplicaContext();

const batcher = new MessageBatcher<FromReplica>(
  parentPort
    ? (message, transfer) => parentPort!.postMessage(message, transfer as ArrayBuffer[])
    : (message) => process.send!(message),
  (message, error) => {
    if (message.t === "ok" || message.t === "item") undeliverableReply(runtime, message, error);
  },
  "microtask",
  parentPort !== null,
);
const post = (
  message: FromReplica,
  transfer?: readonly (ArrayBuffer | MessagePort)[],
  now?: boolean,
): void => batcher.push(message, transfer, now);
/** Sends at once, past the batcher. */
const postNow = (message: FromReplica): void => {
  if (parentPort) parentPort.postMessage(message);
  else process.send!(message);
};
/** On a cluster node: this replica's own NATS connection. */
let natsConnection: Awaited<ReturnType<typeof connectNats>> | undefined;

/**
 * A stream's flow control: how many items its caller lets it send. It starts at
 * {@link STREAM_WINDOW}; the caller gives more as its consumer takes items.
 */
class StreamFlow {
  granted = STREAM_WINDOW;
  #wake: (() => void) | undefined;

  grant(n: number): void {
    this.granted += n;
    this.wake();
  }

  /** Resolves on the next credit (or `wake()`: the stream was cancelled). */
  wait(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve));
  }

  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/**
 * One channel calls arrive on: the runtime's (this replica's transport) or a port another
 * replica was handed by the control plane. Replies go back on the channel the call came on.
 */
class Caller {
  /** The caller's calls running here, by the caller's ids (not a `Map`: see CallTable). */
  readonly active = new CallTable<ActiveRequest>();
  /** Flow control of this caller's streams running here, by call id. */
  readonly flows = new Map<number, StreamFlow>();
  /**
   * `movesBuffers`: the channel is a thread's (buffers can move on it), so a call this
   * replica does not run gives its arguments back: the caller's moved buffers are detached.
   */
  /**
   * `post`'s `now`: the message holds a value the user's code may still change (a result, a
   * stream item): it goes at once, not with the batch (see `MessageBatcher.push`).
   */
  constructor(
    readonly post: (
      message: ReplyMessage,
      transfer?: readonly ArrayBuffer[],
      now?: boolean,
    ) => void,
    readonly movesBuffers = false,
  ) {}
}

const runtime = new Caller(post, parentPort !== null);
const outgoing = new OutgoingCalls(post, () => reportLoad());
let appName = "";
/** `tracing.otlpEndpoint`'s exporter in this replica, when set. */
let traceExport: TraceExport | undefined;
let deploymentName = "";
let replicaName = "";
let target: Instance | Callable | undefined;
let isClass = false;
let stopping = false;
/** Calls running here, from every caller; at most `maxOngoing` (the replica's own cap). */
let ongoing = 0;
let maxOngoing = Infinity;
/** Callers told `busy` since a slot was last freed: each is told `free` when one is. */
const rejected = new Set<Caller>();

/**
 * A caller on a channel of its own (a port or a socket): its replies go out through
 * `send`, batched per microtask; `receive` takes the calls that arrive on the channel.
 */
function channelCaller(
  send: (message: ReplyMessage | ReplyMessage[], transfer: readonly ArrayBuffer[]) => void,
  movesBuffers = false,
): { caller: Caller; receive: (data: CallMessage | CallMessage[]) => void } {
  const batcher = new MessageBatcher<ReplyMessage>(
    (message, transfer) => send(message, transfer as readonly ArrayBuffer[]),
    (message, error) => undeliverableReply(caller, message, error),
    "microtask",
    movesBuffers,
  );
  const caller = new Caller(
    (message, transfer, now) => batcher.push(message, transfer, now),
    movesBuffers,
  );
  channelBatchers.set(caller, batcher);
  return {
    caller,
    // The answers of synchronous methods go once the message is handled; later ones with
    // the next microtask.
    receive: (data) => batcher.within(() => unbatch(data, (message) => onCall(caller, message))),
  };
}

/** Serves calls from a replica in another process, on a connection to this replica's socket. */
function acceptSocket(socket: Socket): void {
  const channel = new SocketChannel<CallMessage, ReplyMessage>(socket, (data) => receive(data));
  const { caller, receive } = channelCaller((message) => channel.send(message));
  channel.onClose(() => callerGone(caller));
}

/**
 * Each channel caller's batcher: what they hold goes out when this replica ends itself
 * (the last stream item yielded before a `process.exit`), as the runtime's batcher's does.
 */
const channelBatchers = new Map<Caller, MessageBatcher<ReplyMessage>>();

/** The caller went away (its replica stopped): what it asked for is cancelled. */
function callerGone(caller: Caller): void {
  channelBatchers.delete(caller);
  for (const id of caller.active.ids()) cancel(caller, id, "abort");
  rejected.delete(caller);
}

/**
 * On a cluster node: connects to NATS and serves the replica's subject, each sender (the
 * head, a router in a replica on another node, a front door's bridge) on a channel of its
 * own, keyed by its address; a caller's `bye` ends its channel. Resolves once the server
 * has the subscription, so a call sent after `ready` is not missed. This replica's
 * routers call replicas on other nodes on the same connection.
 */
async function serveNats(options: ReplicaNats): Promise<void> {
  const { url, subject, ...auth } = options;
  let nc: Awaited<ReturnType<typeof connectNats>>;
  try {
    nc = await connectNats(url, { name: `tributary-replica-${replicaName}`, ...auth });
  } catch (error) {
    throw new TributaryError(
      "DEPLOY_FAILED",
      `the replica could not connect to NATS at ${url}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  type Inbound = CallMessage | CallMessage[] | { t: "bye" };
  const mailbox = NatsMailbox.open<Inbound, ReplyMessage | ReplyMessage[] | ResetMessage>(
    nc,
    subject,
  );
  const callers = new Map<string, ReturnType<typeof channelCaller>>();
  mailbox.onMessage((data, from) => {
    let channel = callers.get(from);
    if (!Array.isArray(data) && data.t === "bye") {
      if (!channel) return;
      callers.delete(from);
      callerGone(channel.caller);
      post({ t: "caller", from, on: false });
      return;
    }
    if (!channel) {
      channel = channelCaller((message) => mailbox.send(from, message));
      callers.set(from, channel);
      // Not batched: the node knows the caller even if this first call blocks or ends the thread.
      postNow({ t: "caller", from, on: true });
    }
    channel.receive(data);
  });
  await mailbox.ready();
  natsConnection = nc;
  outgoing.useNats(nc);
  // A connection closed for good (nats.js gives up only on errors like a refused login):
  // this replica can no longer be reached, so it ends and is replaced.
  void nc.closed().then((error) => {
    if (!stopping)
      endReplica(
        `its NATS connection closed${error ? ` (${error.message})` : ""}: it cannot be reached`,
      );
  });
  const lost = (): void => outgoing.natsLost(connectionLost("the calling replica's"));
  watchConnection(nc, {
    // What this replica's routers sent over NATS may never arrive, or its answer not; what
    // they sent while it was away, nats.js drops when it reconnects.
    lost,
    // A call or an answer in the connection when it dropped is lost: each caller fails
    // what it has in flight here (and counts a slot free, for a lost `free`), and those
    // calls are cancelled.
    back: () => {
      lost();
      for (const [from, { caller }] of callers) {
        mailbox.send(from, {
          t: "reset",
          reason: connectionLost(`replica ${replicaName}'s`),
        });
        for (const id of caller.active.ids()) cancel(caller, id, "abort");
      }
    },
  });
}

/** Serves calls from another replica on `port`. */
function accept(port: MessagePort): void {
  const { caller, receive } = channelCaller(
    (message, transfer) => port.postMessage(message, transfer as ArrayBuffer[]),
    true,
  );
  port.on("message", receive);
  port.on("close", () => callerGone(caller));
}

/**
 * The last result (or stream item) that could not be sent, while {@link postValue} sends
 * one: the call it answers counts as failed, not as answered.
 */
let undelivered: { caller: Caller; id: number; error: Error } | undefined;

/** A result (or stream item) that cannot be cloned: the caller gets an error instead. */
function undeliverableReply(caller: Caller, message: ReplyMessage, error: Error): void {
  if (message.t !== "ok" && message.t !== "item") return;
  const what = message.t === "item" ? "stream item" : "result";
  // What in it cannot cross, when that can be told (a handle call's response nested in it
  // has its stream stopped: no one will read it).
  const part = unsendableResult(message.v, message.t === "item" ? "item" : "result");
  const sent = new TypeError(
    `the ${what} could not be sent back to the caller: ${part ?? error.message}` +
      (/detached/i.test(error.message)
        ? ". Typed arrays in results move to the caller, they are not copied, so a buffer " +
          "the replica keeps (a field of the instance, one yielded again) is gone after it " +
          "was first sent: return or yield a copy (x.slice())"
        : ""),
  );
  undelivered = { caller, id: message.id, error: sent };
  caller.post({ t: "err", id: message.id, e: serializeError(sent), user: true });
}

/** A call is over (answered, ended, or cancelled): its slot is free. */
function finish(caller: Caller, id: number, outcome: Outcome): void {
  const request = caller.active.take(id);
  if (!request) return;
  if (request.startedAt > 0)
    replicaStats.call(outcome, (performance.now() - request.startedAt) / 1000);
  release();
}

/** A slot is free: callers that were told busy are told so. */
function release(): void {
  ongoing--;
  if (rejected.size > 0) {
    for (const waiting of rejected) waiting.post({ t: "free" });
    rejected.clear();
  }
  reportLoad();
}

let loadTimer: NodeJS.Timeout | undefined;
let reported = "";
let reportedStats = 0;

/**
 * Tells the control plane (soon, not per call) how loaded this replica and its routers are,
 * with what it has served so far (the metrics' replica series).
 */
function reportLoad(): void {
  loadTimer ??= setTimeout(() => {
    loadTimer = undefined;
    const load = { ongoing, queued: outgoing.queued() };
    const text = JSON.stringify(load);
    const version = replicaStats.version;
    if (text === reported && version === reportedStats) return;
    reported = text;
    reportedStats = version;
    post({
      t: "load",
      ...load,
      ...(replicaStats.enabled && { stats: replicaStats.snapshot() }),
    });
  }, LOAD_REPORT_MS);
}

/** How often, at most, the replica reports its load (status and autoscaling read it). */
const LOAD_REPORT_MS = 20;

function cancel(caller: Caller, id: number, reason: "timeout" | "abort"): void {
  const request = caller.active.take(id);
  if (!request) return;
  // The reason the call's signal and its own handle calls get: which call, and why.
  const what = `${deploymentName}.${request.method ?? "call"}()`;
  const error = reason === "timeout" ? new TimeoutError(what) : new CancelledError(what);
  request.cancel(error);
  request.endSpan(reason === "timeout" ? "timeout" : "cancelled", error);
  if (request.startedAt > 0)
    replicaStats.call("cancelled", (performance.now() - request.startedAt) / 1000);
  // The caller has its answer and nothing more is sent for the call, but its code may still
  // run (a method that ignores its signal): its slot stays taken until that code ends, so
  // this replica never runs more than maxOngoingRequests calls. A router that sends more
  // meanwhile is answered busy, then told free.
  stillRunning.add(request);
}

/** Cancelled calls whose code has not ended yet: each holds its slot until it does. */
const stillRunning = new Set<ActiveRequest>();

/** The code of a call ended: a cancelled one frees its slot now. */
function codeEnded(request: ActiveRequest): void {
  if (stillRunning.delete(request)) release();
}

function onCall(caller: Caller, message: CallMessage): void {
  if (message.t === "call")
    call(caller, message.id, message.m, message.a, message.r, message.mm, message.tp);
  else if (message.t === "credit") caller.flows.get(message.id)?.grant(message.n);
  else cancel(caller, message.id, message.reason);
}

function startStream(
  caller: Caller,
  id: number,
  iterable: AsyncIterable<unknown>,
  request: ActiveRequest,
  span: CallSpan,
): void {
  void runForRequest(request, true, () =>
    runInSpan(span, () => stream(caller, id, iterable, request)),
  )
    .finally(uncarry)
    .then((outcome) => {
      finish(caller, id, outcome);
      codeEnded(request);
    });
}

async function init(message: InitMessage): Promise<void> {
  appName = message.app;
  deploymentName = message.deployment;
  replicaName = message.replica;
  maxOngoing = message.maxOngoing;
  setReplicaMaxOngoing(maxOngoing);
  replicaStats.enabled = message.metrics !== false;
  if (message.nats) await serveNats(message.nats);
  captureConsole(
    { application: message.app, deployment: message.deployment, replica: message.replica },
    (line) => post({ t: "log", lines: [line] }),
  );
  try {
    await ensureTypeScriptLoader(message.moduleUrl);
    await import(message.moduleUrl);
  } catch (error) {
    throw new TributaryError(
      "DEPLOY_FAILED",
      `importing ${message.moduleUrl} failed: ${String((error as Error)?.message ?? error)}`,
      {
        cause: error,
      },
    );
  }
  // After the module: an SDK its code registered wins over this one.
  if (message.tracing)
    traceExport = await exportTraces(message.tracing.otlpEndpoint, message.tracing.serviceName);
  const app = findApplication(message.moduleUrl, message.app);
  const other = app ? undefined : otherCopyWith(message.moduleUrl, message.app);
  if (other) {
    throw new TributaryError(
      "DEPLOY_FAILED",
      `${message.moduleUrl} built application "${message.app}" with another copy of Tributary ` +
        `(${other}) than the one this replica runs (${import.meta.url}): its import of ` +
        `"tributary" resolved elsewhere (two installs, an npm link, or a replica started with ` +
        `other export conditions than the main process). Install one copy (npm ls tributary).`,
    );
  }
  if (!app) {
    throw new TributaryError(
      "DEPLOY_FAILED",
      `importing ${message.moduleUrl} did not build application "${message.app}". Replicas re-import ` +
        `the module that called build() and find the graph by name, so build() must run at the ` +
        `module's top level, not inside a function.`,
    );
  }
  const spec = app.spec(message.deployment);
  if (!spec) {
    throw new TributaryError(
      "DEPLOY_FAILED",
      `application "${message.app}" has no deployment "${message.deployment}".`,
    );
  }
  const args = message.args.map((arg) =>
    initValue(arg, (deployment) => {
      outgoing.subscribe(deployment);
      return createRemoteHandle(deployment, outgoing);
    }),
  );
  // Every router of this deployment learns which models this replica has loaded.
  reportModelsTo((models) => post({ t: "models", models }));
  if (spec.deployment.kind === "class") {
    const Class = spec.deployment.target as unknown as new (...args: unknown[]) => Instance;
    const instance = new Class(...args);
    target = instance;
    isClass = true;
    if (message.userConfig !== undefined) {
      try {
        await reconfigure(message.userConfig);
      } catch (error) {
        // The instance may have started native work (a model loading on another thread):
        // let its close() finish that before the replica is ended, or ending the thread
        // under it can abort the whole process.
        await closeQuietly(instance, INIT_CLOSE_TIMEOUT_MS);
        throw error;
      }
    }
  } else {
    target = spec.deployment.target;
  }
}

/** How long a replica whose initialisation failed waits for its instance's close(). */
const INIT_CLOSE_TIMEOUT_MS = 10_000;

async function closeQuietly(instance: Instance, timeoutMs: number): Promise<void> {
  if (typeof instance.close !== "function") return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(() => (instance.close as Callable)()),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
  } catch {
    // The reconfigure error is the one reported.
  } finally {
    clearTimeout(timer);
  }
}

async function reconfigure(config: unknown): Promise<void> {
  const instance = target as Instance;
  if (typeof instance.reconfigure === "function") await (instance.reconfigure as Callable)(config);
}

/**
 * Errors a method lets through that keep their own code instead of becoming its failure
 * (`EXECUTION_FAILED`): the client's fault, and an overloaded deployment further on (the
 * request may be retried: HTTP 503 with Retry-After, as when the first deployment is full).
 */
const PASSED_THROUGH: ReadonlySet<string> = new Set([
  "BAD_REQUEST",
  "BACK_PRESSURE",
  "QUEUE_TIMEOUT",
]);

/**
 * `user`: the deployment's code failed (the caller wraps it as `EXECUTION_FAILED`, naming the
 * deployment). A `BAD_REQUEST` it threw (as `multiplexed()` does for a request that names no
 * model) is the request's fault, and reaches the client as it is (400); so is back-pressure
 * from a deployment further on (see {@link PASSED_THROUGH}).
 */
function respondError(caller: Caller, id: number, error: unknown, user: boolean): void {
  const through = error instanceof TributaryError && PASSED_THROUGH.has(error.code);
  caller.post({ t: "err", id, e: serializeError(error), user: user && !through });
}

async function stream(
  caller: Caller,
  id: number,
  iterable: AsyncIterable<unknown>,
  request: ActiveRequest,
): Promise<Outcome> {
  const flow = new StreamFlow();
  let iterator: AsyncIterator<unknown>;
  // Everything inside the try: whatever throws fails this call (and `finish` frees its
  // slot), not the replica. An iterable whose iterator throws, for one.
  try {
    caller.post({ t: "stream", id });
    caller.flows.set(id, flow);
    request.onCancel(() => flow.wake());
    iterator = iterable[Symbol.asyncIterator]();
    for (let sent = 1; !request.cancelled; sent++) {
      const next = await iterator.next();
      if (next.done) break;
      const failed = postValue(caller, "item", id, next.value);
      if (failed) {
        // The caller was answered with why the item could not be sent: the stream ends there.
        await iterator.return?.();
        request.endSpan("error", failed);
        return "error";
      }
      // As many items as the caller took credit for: the next waits until it takes more.
      while (sent >= flow.granted && !request.cancelled) await flow.wait();
      // A generator that never waits would starve the message loop: let a cancel arrive.
      if (sent % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    if (request.cancelled) {
      await iterator.return?.();
      caller.post({ t: "end", id });
      request.endSpan("cancelled");
      return "cancelled";
    }
    caller.post({ t: "end", id });
    request.endSpan("ok");
    return "ok";
  } catch (error) {
    respondError(caller, id, error, true);
    request.endSpan("error", error);
    return "error";
  } finally {
    caller.flows.delete(id);
  }
}

function call(
  caller: Caller,
  id: number,
  method: string | undefined,
  args: unknown[],
  requestId: string | undefined,
  model: string | undefined,
  traceparent: string | undefined,
): void {
  if (stopping) {
    refuse(caller, id, args, true);
    return;
  }
  if (ongoing >= maxOngoing) {
    // Other routers filled this replica: the caller's router tries another, or waits for `free`.
    rejected.add(caller);
    refuse(caller, id, args, false);
    return;
  }
  let fn: unknown;
  // A function deployment answers its graph calls and a handle's `call(...)`.
  if (!isClass) fn = method === undefined || method === "call" ? target : undefined;
  else if (method !== undefined) fn = (target as Instance)[method];
  if (typeof fn !== "function") {
    respondError(
      caller,
      id,
      new TributaryError(
        "NOT_FOUND",
        `Deployment "${deploymentName}" has no method "${method ?? "(call)"}".`,
      ),
      false,
    );
    return;
  }
  for (let i = 0; i < args.length; i++) {
    const ref = args[i] as Record<string, unknown> | null;
    if (typeof ref === "object" && ref !== null && typeof ref[HANDLE_REF] === "string") {
      args[i] = createRemoteHandle(ref[HANDLE_REF], outgoing);
    }
  }
  const span = startCallSpan(appName, deploymentName, replicaName, method, requestId, traceparent);
  const request = new ActiveRequest(requestId, deploymentName, replicaName, model, span);
  request.method = method;
  caller.active.set(id, request);
  if (replicaStats.enabled) request.startedAt = performance.now();
  ongoing++;
  reportLoad();
  // The request is carried across awaits only for code that can await (context.ts).
  const kind = isClass ? (method ?? "") : "";
  const carry = carries(kind);
  let result: unknown;
  try {
    result = runForRequest(request, carry, () =>
      runInSpan(span, () => (fn as Callable).apply(isClass ? target : undefined, args)),
    );
  } catch (error) {
    finish(caller, id, "error");
    respondError(caller, id, error, true);
    request.endSpan("error", error);
    return;
  }
  // A thenable is awaited (a handle's response is both thenable and iterable); a stream is
  // read later too.
  const later = isPromiseLike(result);
  returned(kind, later || isAsyncIterable(result));
  // A plain value (a synchronous method) or a stream is answered now: no promise, no extra
  // microtask.
  if (!later) {
    try {
      answer(caller, id, result, request, span);
    } finally {
      if (carry) uncarry();
    }
    return;
  }
  Promise.resolve(result).then(
    (value) => {
      try {
        answer(caller, id, value, request, span);
      } finally {
        if (carry) uncarry();
      }
    },
    (error: unknown) => {
      if (carry) uncarry();
      if (!caller.active.has(id)) {
        codeEnded(request); // cancelled: the caller has its answer
        return;
      }
      finish(caller, id, "error");
      respondError(caller, id, error, true);
      request.endSpan("error", error);
    },
  );
}

/** Sends a call's result (or starts its stream), unless the call was cancelled meanwhile. */
function answer(
  caller: Caller,
  id: number,
  value: unknown,
  request: ActiveRequest,
  span: CallSpan,
): void {
  if (isAsyncIterable(value)) {
    startStream(caller, id, value, request, span);
    return;
  }
  if (!caller.active.has(id)) {
    codeEnded(request); // cancelled: the caller has its answer
    return;
  }
  // A result that cannot be sent back answers the caller with why: the call failed.
  const failed = postValue(caller, "ok", id, value);
  finish(caller, id, failed ? "error" : "ok");
  if (failed) request.endSpan("error", failed);
  else request.endSpan("ok");
}

/**
 * Posts a result or stream item as it is now. The instance or the generator may change an
 * object after this (a field it keeps, the item it yields again), so one is taken at once:
 * to a thread, copied here (its whole buffers move into the copy, as they would to the
 * caller) and the copy waits for the batch; on a channel that serializes (a process's IPC,
 * a socket, NATS), sent at once. A value that cannot be copied is answered with why, and
 * returned: the error its caller got.
 */
function postValue(
  caller: Caller,
  t: "ok" | "item",
  id: number,
  value: unknown,
): Error | undefined {
  if (!changeable(value)) {
    caller.post({ t, id, v: value });
    return undefined;
  }
  undelivered = undefined;
  sendValue(caller, t, id, value);
  return takeUndelivered(caller, id);
}

/** The error call `id` of `caller` got instead of its result, if sending it failed just now. */
function takeUndelivered(caller: Caller, id: number): Error | undefined {
  const last = undelivered;
  undelivered = undefined;
  return last?.caller === caller && last.id === id ? last.error : undefined;
}

function sendValue(caller: Caller, t: "ok" | "item", id: number, value: unknown): void {
  // Copying a large value costs more than a message of its own: it goes at once instead.
  if (!caller.movesBuffers || !fewParts(value)) {
    caller.post(
      { t, id, v: value },
      caller.movesBuffers ? transferablesOfValue(value) : undefined,
      true,
    );
    return;
  }
  const transfer = transferablesOfValue(value);
  let taken: { v: unknown; transfer: ArrayBuffer[] };
  try {
    taken = structuredClone({ v: value, transfer }, { transfer });
  } catch (error) {
    undeliverableReply(caller, { t, id, v: value }, error as Error);
    return;
  }
  caller.post({ t, id, v: taken.v }, taken.transfer);
}

/**
 * Whether `value` has at most {@link COPY_PARTS} parts (objects, array items, fields; a typed
 * array over its whole buffer is one: it moves into a copy without being copied), all
 * plain: a copy of it costs about a microsecond.
 */
function fewParts(value: unknown): boolean {
  let left = COPY_PARTS;
  const walk = (v: unknown): boolean => {
    if (--left < 0) return false;
    if (typeof v !== "object" || v === null) return true;
    // A whole buffer moves into the copy; a view into part of one would be copied twice.
    if (ArrayBuffer.isView(v)) return v.byteLength === v.buffer.byteLength;
    if (v instanceof ArrayBuffer) return true;
    if (Array.isArray(v)) return v.length <= left && v.every(walk);
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    for (const key in v) if (!walk((v as Record<string, unknown>)[key])) return false;
    return true;
  };
  return walk(value);
}

/** See {@link fewParts}. */
const COPY_PARTS = 64;

/**
 * Answers `busy`: the call is not run here. Buffers it moved here go back with its
 * arguments, so that the caller's router can send it again (its own are detached).
 */
function refuse(caller: Caller, id: number, args: unknown[], closing: boolean): void {
  const moved = caller.movesBuffers ? transferablesOf(args) : NO_BUFFERS;
  // Objects go back too: they are as the call was made, which its caller's may be no more.
  const giveBack = moved.length > 0 || args.some(changeable);
  caller.post(
    {
      t: "busy",
      id,
      ...(closing && { closing: true }),
      ...(giveBack && { a: args }),
    },
    moved,
  );
}

const NO_BUFFERS: readonly ArrayBuffer[] = [];

/** Says why (past the batcher, so the message leaves first), then ends this replica. */
function endReplica(message: string): void {
  const fatal: FromReplica = { t: "fatal", message };
  if (parentPort) {
    parentPort.postMessage(fatal);
    process.exit(1); // in a worker: ends this thread only
  } else {
    process.send!(fatal, () => process.exit(1));
  }
}

/** Runs a control operation and answers it. */
function control(id: number, operation: () => unknown): void {
  Promise.resolve()
    .then(operation)
    .then(
      () => post({ t: "ok", id, v: undefined }),
      (error: unknown) => respondError(runtime, id, error, true),
    );
}

/** Takes no new calls, lets those running finish (up to `drainMs`), then closes the instance. */
async function stop(drainMs: number): Promise<void> {
  stopping = true;
  const deadline = Date.now() + drainMs;
  while (ongoing > 0 && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 10));
  const instance = target as Instance | undefined;
  try {
    if (isClass && instance && typeof instance.close === "function")
      await (instance.close as Callable)();
  } finally {
    await traceExport?.close();
    // The last answers go out on this replica's NATS connection, the stop's answer on its
    // node's: they are on the server before the stop is answered (and the host ended).
    if (natsConnection) {
      outgoing.sayBye();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        natsConnection.flush().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, 2_000))),
      ]);
      clearTimeout(timer);
    }
  }
}

function onMessage(message: ToReplica): void {
  switch (message.t) {
    case "call":
    case "cancel":
    case "credit":
      onCall(runtime, message);
      return;
    case "health":
      control(message.id, () => {
        const instance = target as Instance;
        return isClass && typeof instance.checkHealth === "function"
          ? (instance.checkHealth as Callable)()
          : undefined;
      });
      return;
    case "reconfigure":
      control(message.id, () => (isClass ? reconfigure(message.config) : undefined));
      return;
    case "stop":
      control(message.id, () => stop(message.drainMs));
      return;
    case "limits":
      maxOngoing = message.maxOngoing;
      setReplicaMaxOngoing(maxOngoing);
      return;
    case "accept":
      accept(message.port);
      return;
    case "members":
      outgoing.onMembers(message);
      return;
    case "peer-lost":
      outgoing.peerLost(message.node, message.reason);
      return;
    case "init":
      init(message)
        .then(() => listen(acceptSocket))
        .then(
          ({ path }) => {
            post({ t: "ready", socket: path });
            if (message.memoryLimit) watchMemory(message.memoryLimit, !!parentPort, endReplica);
          },
          (error: unknown) => post({ t: "init-failed", e: serializeError(error) }),
        );
      return;
  }
}

// What the replica's code logged just before it ends itself (process.exit) goes first: a
// batch waiting for its microtask would be lost with the thread.
process.on("exit", () => {
  batcher.flush();
  for (const channel of channelBatchers.values()) channel.flush();
});

if (parentPort) {
  parentPort.on("message", (data: ToReplica | ToReplica[]) =>
    batcher.within(() => unbatch(data, onMessage)),
  );
} else {
  process.on("message", (data) =>
    batcher.within(() => unbatch(data as ToReplica | ToReplica[], onMessage)),
  );
  // The runtime going away (its IPC channel closing) ends this process; the watchdog
  // ends it even when its event loop is too busy to see that.
  process.on("disconnect", () => process.exit(0));
  watchParent(socketPath());
}
