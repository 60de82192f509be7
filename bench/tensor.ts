/**
 * `npm run bench tensor`: a 1 MiB Float32Array through a hop to a thread replica and back,
 * moved (transferred) vs copied (structured clone), in one run. Target: moving ≥ 10× faster.
 */
import { run } from "tributary";
import { app, type Echo } from "./fixtures/tensor-echo.js";
import { latencyUs, machine, median, printTable } from "./stats.js";

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 400);
const FLOATS = 256 * 1024; // 1 MiB

export async function main(): Promise<string> {
  console.log(`1 MiB Float32Array through a hop — ${machine()}\n`);
  const server = await run(app, { port: 0, logLevel: "silent" });
  try {
    const echo = server.getHandle<Echo>("echo");
    // Moved: the array owns its buffer, goes to the replica and comes back; reuse what returns.
    let moving: Float32Array = new Float32Array(FLOATS).fill(1);
    const move = async (): Promise<void> => {
      moving = await echo.echo(moving);
    };
    // Copied: a view one element short of its buffer is cloned, there and back.
    const copying = new Float32Array(FLOATS + 1).fill(1).subarray(0, FLOATS);
    const copy = async (): Promise<void> => {
      const back = await echo.echoView(copying);
      if (back.length !== FLOATS - 1) throw new Error("bad echo");
    };
    const copied: number[] = [];
    const moved: number[] = [];
    for (let round = 0; round < 4; round++) {
      copied.push(...(await latencyUs(copy, SAMPLES / 4, round === 0 ? 50 : 5)));
      moved.push(...(await latencyUs(move, SAMPLES / 4, round === 0 ? 50 : 5)));
    }
    if (moving.length !== FLOATS || moving[FLOATS - 1] !== 1)
      throw new Error("the moved array came back wrong");
    const rows = [
      {
        metric: "median round trip, 1 MiB there and back",
        baseline: median(copied),
        subject: median(moved),
        unit: "µs",
        target: "≤ 0.1× (≥ 10× faster)",
      },
    ];
    return printTable(
      "1 MiB Float32Array through a hop: moved vs copied",
      "structured clone",
      "transfer",
      rows,
    );
  } finally {
    await server.close();
  }
}
