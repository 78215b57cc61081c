/**
 * The migration's own alerts (issue 15, item 4): with `alerts.snsTopicArn` set, the steps that
 * see a condition (ReplicationStatus: lag; Cleanup: failure and pause; whoever measures the
 * slot's retained WAL) raise an alert once per episode (engine/control/alerts.ts), and a
 * resolved one when lag or retained WAL fall back under their threshold. Every alert is
 * recorded as an event (pgferry.events) and handed to the AlertSink the caller gives: SNS on
 * AWS (platform/aws/sns.ts), the terminal locally (platform/alerts.ts). An alert is never the
 * reason a step fails: what goes wrong sending it is recorded as a warning event instead.
 */
import type pg from 'pg';
import { claimAlert, claimAlertResolution } from '../control/alerts.js';
import { recordEvent } from '../control/events.js';
import type { MigrationSpec } from '../spec/index.js';
import { messageOf } from '../sql.js';

export type AlertKind = 'lag' | 'failure' | 'pause' | 'retained-wal';

/** What a person reads: a subject of at most 100 characters (SNS's limit) and a body. */
export interface AlertText {
  level: 'info' | 'warn' | 'error';
  subject: string;
  message: string;
}

export interface Alert extends AlertText {
  migration: string;
  kind: AlertKind;
  /** raised: the condition began; resolved: it ended. */
  state: 'raised' | 'resolved';
  /** alerts.snsTopicArn of the spec. */
  topicArn: string;
}

/** Where alerts go. Implementations never put more in them than the alert holds. */
export interface AlertSink {
  publish(alert: Alert): Promise<void>;
}

/** SNS refuses a subject over 100 characters, or with a line break. */
export const SUBJECT_MAX = 100;

export const alertSubject = (text: string) => {
  const line = text.replace(/[\r\n\t]+/g, ' ').trim();
  return line.length <= SUBJECT_MAX ? line : `${line.slice(0, SUBJECT_MAX - 1)}…`;
};

type AlertSpec = Pick<MigrationSpec, 'name' | 'alerts'>;

/**
 * The alerts of one migration, for one step invocation. It remembers what it last claimed per
 * kind, so a step that looks every 100 ms touches the control schema only when a condition
 * changes. Undefined (alertsOf) when the spec has no alert topic: nothing is raised then.
 */
export class MigrationAlerts {
  private readonly known = new Map<AlertKind, boolean>();

  constructor(
    private readonly spec: AlertSpec & { alerts: { snsTopicArn: string } },
    private readonly sink: AlertSink | undefined,
    private readonly log: (message: string) => void = () => undefined,
  ) {}

  /** Raises `kind` for `episode` unless that episode was alerted already. Never throws. */
  async raise(control: pg.ClientBase, kind: AlertKind, text: AlertText, episode = ''): Promise<void> {
    if (this.known.get(kind) === true && episode === '') return;
    await this.guarded(kind, async () => {
      const claimed = await claimAlert(control, this.spec.name, kind, episode, alertSubject(text.subject));
      this.known.set(kind, true);
      if (claimed) await this.send(control, { ...text, kind, state: 'raised' });
    });
  }

  /** Ends the episode of `kind`; sends `text` (a resolved message) if it was active. Never throws. */
  async resolve(control: pg.ClientBase, kind: AlertKind, text: AlertText): Promise<void> {
    if (this.known.get(kind) === false) return;
    await this.guarded(kind, async () => {
      const claimed = await claimAlertResolution(control, this.spec.name, kind);
      this.known.set(kind, false);
      if (claimed) await this.send(control, { ...text, kind, state: 'resolved' });
    });
  }

  /**
   * Sends `text` without claiming or recording it: for a run that never registered on the target,
   * where there is no control schema to keep it in. The caller sends it once. Never throws.
   */
  async sendUnrecorded(text: AlertText, kind: AlertKind): Promise<void> {
    const warning = await this.deliver(this.alertOf({ ...text, kind, state: 'raised' }));
    if (warning) this.log(warning);
  }

  private async guarded(kind: AlertKind, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      // Not remembered: the next look tries again.
      this.known.delete(kind);
      this.log(`could not raise the ${kind} alert of migration ${this.spec.name}: ${messageOf(error)}`);
    }
  }

  private async send(control: pg.ClientBase, text: Omit<Alert, 'migration' | 'topicArn'>): Promise<void> {
    const alert = this.alertOf(text);
    await recordEvent(control, alert.migration, alert.level, `alert ${alert.state === 'resolved' ? 'resolved' : 'raised'} (${alert.kind}): ${alert.subject}. ${alert.message}`);
    // Claimed before it was sent: an alert is sent at most once, never at every poll of a broken topic.
    const warning = await this.deliver(alert);
    if (!warning) return;
    this.log(warning);
    await recordEvent(control, alert.migration, 'warn', warning).catch(() => undefined);
  }

  private alertOf(text: Omit<Alert, 'migration' | 'topicArn'>): Alert {
    return { ...text, subject: alertSubject(text.subject), migration: this.spec.name, topicArn: this.spec.alerts.snsTopicArn };
  }

  /** Hands the alert to the sink; what went wrong, as a warning, or undefined. */
  private async deliver(alert: Alert): Promise<string | undefined> {
    try {
      await this.sink?.publish(alert);
      return undefined;
    } catch (error) {
      return `The ${alert.kind} alert "${alert.subject}" could not be sent to alerts.snsTopicArn (${alert.topicArn}): ${messageOf(error)}`;
    }
  }
}

/** The migration's alerts when its spec names an alert topic; undefined otherwise. */
export function alertsOf(spec: AlertSpec, sink: AlertSink | undefined, log?: (message: string) => void): MigrationAlerts | undefined {
  const topicArn = spec.alerts.snsTopicArn;
  if (topicArn === undefined) return undefined;
  return new MigrationAlerts({ ...spec, alerts: { ...spec.alerts, snsTopicArn: topicArn } }, sink, log);
}
