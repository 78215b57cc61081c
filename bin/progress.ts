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
  return new StateProgress(stream);
}

class StateProgress implements Progress {
  private readonly started = new Map<string, number>();
  private readonly tty: boolean;
  private readonly timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private liveLines = 0;
  private details: string[] = [];
  private lastPlainDetail = 0;

  constructor(private readonly stream: NodeJS.WriteStream) {
    this.tty = Boolean(stream.isTTY);
    this.timer = this.tty ? setInterval(() => this.drawLive(), 100) : undefined;
    this.timer?.unref();
  }

  onEvent(event: WorkflowEvent): void {
    switch (event.type) {
      case 'StateEntered':
        if (!shownTypes.has(event.state.type) || loopStates.has(event.state.name)) return;
        this.started.set(labelOf(event), Date.now());
        if (!this.tty) this.print(`${labelOf(event)} started`);
        else this.drawLive();
        return;
      case 'StateExited': {
        const at = this.started.get(labelOf(event));
        if (at === undefined) return;
        this.started.delete(labelOf(event));
        this.print(`${this.tty ? '✓ ' : ''}${labelOf(event)} done (${seconds(Date.now() - at)})`);
        return;
      }
      case 'StateRetried':
        this.print(`${this.tty ? '↻ ' : ''}${labelOf(event)} retrying (attempt ${event.retry.attempt})`);
        return;
      case 'StateCaught':
        this.finish(labelOf(event), 'failed');
        return;
      case 'ExecutionFailed':
      case 'ExecutionAborted':
      case 'ExecutionTimeout':
        for (const name of [...this.started.keys()]) this.finish(name, event.type === 'ExecutionFailed' ? 'failed' : 'stopped');
        return;
      default:
        return;
    }
  }

  note(line: string): void {
    this.print(line);
  }

  detail(lines: string[]): void {
    this.details = lines;
    if (this.tty) return this.drawLive();
    if (lines.length > 0 && Date.now() - this.lastPlainDetail >= PLAIN_DETAIL_INTERVAL_MS) {
      this.lastPlainDetail = Date.now();
      this.print(lines[0]!);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.details = [];
    this.clearLive();
  }

  private clearLive(): void {
    if (!this.tty || this.liveLines === 0) return;
    this.stream.write(`\r\x1b[2K${'\x1b[1A\x1b[2K'.repeat(this.liveLines - 1)}`);
    this.liveLines = 0;
  }

  private drawLive(): void {
    if (!this.tty || (this.started.size === 0 && this.details.length === 0)) return;
    this.clearLive();
    const now = Date.now();
    const running = [...this.started].map(([name, at]) => `${name} ${seconds(now - at)}`).join(' · ');
    const width = this.stream.columns ?? 100;
    const lines = [`${spinner[this.frame++ % spinner.length]} ${running}`, ...this.details].map((l) => l.slice(0, width - 1));
    this.stream.write(lines.join('\n'));
    this.liveLines = lines.length;
  }

  private print(line: string): void {
    this.clearLive();
    this.stream.write(this.tty ? `${line}\n` : `${new Date().toISOString()} ${line}\n`);
    this.drawLive();
  }

  private finish(name: string, how: 'failed' | 'stopped'): void {
    const at = this.started.get(name);
    if (at === undefined) return;
    this.started.delete(name);
    this.print(`${this.tty ? '✗ ' : ''}${name} ${how} (${seconds(Date.now() - at)})`);
  }
}
