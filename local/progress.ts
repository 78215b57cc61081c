/**
 * Progress output driven by the runner's event log: on a terminal, a live line per running
 * state with a spinner and the elapsed time; otherwise, plain timestamped lines.
 */
import type { WorkflowEvent } from './runner.js';

const shownTypes = new Set(['Task', 'Wait', 'Map', 'Parallel']);
const spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export interface Progress {
  onEvent(event: WorkflowEvent): void;
  /** A line from outside the event log (task output, notes), printed without breaking the live line. */
  note(line: string): void;
  stop(): void;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = new Map<string, number>();
  const tty = Boolean(stream.isTTY);
  let frame = 0;
  let liveLineShown = false;

  const clearLive = () => {
    if (tty && liveLineShown) stream.write('\r\x1b[2K');
    liveLineShown = false;
  };
  const drawLive = () => {
    if (!tty || started.size === 0) return;
    const now = Date.now();
    const running = [...started].map(([name, at]) => `${name} ${seconds(now - at)}`).join(' · ');
    stream.write(`\r\x1b[2K${spinner[frame++ % spinner.length]} ${running}`);
    liveLineShown = true;
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
          if (!shownTypes.has(event.state.type)) return;
          started.set(event.state.name, Date.now());
          if (!tty) print(`${event.state.name} started`);
          else drawLive();
          return;
        case 'StateExited': {
          const at = started.get(event.state.name);
          if (at === undefined) return;
          started.delete(event.state.name);
          print(`${tty ? '✓ ' : ''}${event.state.name} done (${seconds(Date.now() - at)})`);
          return;
        }
        case 'StateRetried':
          print(`${tty ? '↻ ' : ''}${event.state.name} retrying (attempt ${event.retry.attempt})`);
          return;
        case 'StateCaught':
          finish(event.state.name, 'failed');
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
    stop() {
      if (timer) clearInterval(timer);
      clearLive();
    },
  };
}
