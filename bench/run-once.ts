/**
 * One pgferry run for bench/full-load.ts, in a process of its own that starts as `pgferry run`
 * does: it loads the CLI (bin/cli.ts, and with it what the CLI imports), then calls the local
 * runner, with no module loaded by an earlier run. Takes the spec as JSON and prints, as its
 * last line, the run's result, its seconds, each state's seconds, and how long the process took
 * to reach the runner (Node, tsx, the CLI's imports): the clock starts at the runner's call.
 */
import '../bin/cli.js';
import { runLocalWorkflow } from '../local/runner/index.js';

const spec = JSON.parse(process.argv[2]!);
const entered = new Map<string, number>();
const phases: [string, number][] = [];
// performance.now() counts from the process's start.
const started = performance.now();
const result = await runLocalWorkflow(spec, {
  onEvent: (event) => {
    if (event.type === 'StateEntered') entered.set(event.state.name, performance.now());
    if (event.type === 'StateExited') phases.push([event.state.name, (performance.now() - entered.get(event.state.name)!) / 1000]);
  },
  onTaskOutput: ({ stream, line }) => stream === 'stderr' && console.error(line),
});
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ result, seconds, phases, processStartSeconds: started / 1000 }));
