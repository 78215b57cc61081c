/**
 * Progress output driven by the runner's event log: on a terminal, a live block — a spinner
 * line with the running states and their elapsed time, then detail lines such as progress
 * bars; otherwise plain timestamped lines (detail at most every few seconds).
 */
import type { WorkflowEvent } from '../local/runner/index.js';

const shownTypes = new Set(['Task', 'Wait', 'Map', 'Parallel']);
/** The CDC loop's states run every few seconds; the lag line shows what they do. */
const loopStates = new Set(['CatchUp', 'ReplicationStatus']);
const spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const PLAIN_DETAIL_INTERVAL_MS = 5000;

export interface Progress {
  onEvent(event: WorkflowEvent): void;
  /** A line from outside the event log (task output, notes), printed without breaking the live block. */
  note(line: string): void;
  /** Lines shown under the running states (a terminal) or, the first of them, now and then (plain output). */
  detail(lines: string[]): void;
  stop(): void;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** States inside a Map iteration carry the iteration's index: `CopyWorker #2`. */
const labelOf = (event: { state: { name: string }; index?: number }) =>
  event.index === undefined ? event.state.name : `${event.state.name} #${event.index + 1}`;

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = new Map<string, number>();
  const tty = Boolean(stream.isTTY);
  let frame = 0;
  let liveLines = 0;
  let details: string[] = [];
  let lastPlainDetail = 0;

  const clearLive = () => {
    if (!tty || liveLines === 0) return;
    stream.write(`\r\x1b[2K${'\x1b[1A\x1b[2K'.repeat(liveLines - 1)}`);
    liveLines = 0;
  };
  const drawLive = () => {
    if (!tty || (started.size === 0 && details.length === 0)) return;
    clearLive();
    const now = Date.now();
    const running = [...started].map(([name, at]) => `${name} ${seconds(now - at)}`).join(' · ');
    const width = stream.columns ?? 100;
    const lines = [`${spinner[frame++ % spinner.length]} ${running}`, ...details].map((l) => l.slice(0, width - 1));
    stream.write(lines.join('\n'));
    liveLines = lines.length;
  };
  const print = (line: string) => {
    clearLive();
    stream.write(tty ? `${line}\n` : `${new Date().toISOString()} ${line}\n`);
    drawLive();
  };
  const finish = (name: string, how: 'failed' | 'stopped') => {
    const at = started.get(name);
    if (at === undefined) return;
    started.delete(name);
    print(`${tty ? '✗ ' : ''}${name} ${how} (${seconds(Date.now() - at)})`);
  };
  const timer = tty ? setInterval(drawLive, 100) : undefined;
  timer?.unref();

  return {
    onEvent(event) {
      switch (event.type) {
        case 'StateEntered':
          if (!shownTypes.has(event.state.type) || loopStates.has(event.state.name)) return;
          started.set(labelOf(event), Date.now());
          if (!tty) print(`${labelOf(event)} started`);
          else drawLive();
          return;
        case 'StateExited': {
          const at = started.get(labelOf(event));
          if (at === undefined) return;
          started.delete(labelOf(event));
          print(`${tty ? '✓ ' : ''}${labelOf(event)} done (${seconds(Date.now() - at)})`);
          return;
        }
        case 'StateRetried':
          print(`${tty ? '↻ ' : ''}${labelOf(event)} retrying (attempt ${event.retry.attempt})`);
          return;
        case 'StateCaught':
          finish(labelOf(event), 'failed');
          return;
        case 'ExecutionFailed':
        case 'ExecutionAborted':
        case 'ExecutionTimeout':
          for (const name of [...started.keys()]) finish(name, event.type === 'ExecutionFailed' ? 'failed' : 'stopped');
          return;
        default:
          return;
      }
    },
    note: print,
    detail(lines) {
      details = lines;
      if (tty) return drawLive();
      if (lines.length > 0 && Date.now() - lastPlainDetail >= PLAIN_DETAIL_INTERVAL_MS) {
        lastPlainDetail = Date.now();
        print(lines[0]!);
      }
    },
    stop() {
      if (timer) clearInterval(timer);
      details = [];
      clearLive();
    },
  };
}
