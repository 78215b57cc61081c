/**
 * Where a migration's alerts go (engine/alerts/): on AWS, where the construct set
 * PGFERRY_ALERTS=sns, its alerts.snsTopicArn (platform/aws/sns.ts); elsewhere (the local runner,
 * tests) the terminal: the alert is recorded as an event either way, and locally printed as a
 * line on stderr, or through the printer the CLI installs (setLocalAlertPrinter).
 */
import type { Alert, AlertSink } from '../engine/alerts/index.js';
import { alertEnvironment } from './aws/deployment.js';
import { SnsAlertSink } from './aws/sns.js';

/** One line for a person at the terminal. */
export const alertLine = (alert: Alert) =>
  `${alert.state === 'resolved' ? 'Resolved' : 'Alert'} (${alert.kind}, for ${alert.topicArn}): ${alert.subject}\n  ${alert.message.replace(/\n/g, '\n  ')}`;

let localPrinter: (line: string) => void = (line) => console.error(line);

/** How local alerts are shown (the CLI's progress display); returns what restores the previous printer. */
export function setLocalAlertPrinter(printer: (line: string) => void): () => void {
  const previous = localPrinter;
  localPrinter = printer;
  return () => {
    localPrinter = previous;
  };
}

/** Prints each alert where a local run shows it. */
export const localAlertSink: AlertSink = {
  async publish(alert) {
    localPrinter(alertLine(alert));
  },
};

let snsSink: SnsAlertSink | undefined;

/** The sink the environment asks for: SNS in a deployment that publishes alerts, else the terminal. */
export function alertSinkFromEnvironment(env: NodeJS.ProcessEnv = process.env): AlertSink {
  if (env[alertEnvironment.publish.name] !== alertEnvironment.publish.sns) return localAlertSink;
  snsSink ??= new SnsAlertSink();
  return snsSink;
}

/**
 * The alert topics the deployment may publish to (ValidateSpec's check): in a Lambda, the list
 * the construct set, none when it set none (the stack lists no alertTopicArns); undefined outside
 * a deployment (local runs check nothing).
 */
export function allowedAlertTopicsFromEnvironment(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const raw = env[alertEnvironment.allowedTopics];
  if (raw === undefined) return env.AWS_LAMBDA_FUNCTION_NAME ? [] : undefined;
  const list = JSON.parse(raw) as unknown;
  return Array.isArray(list) ? list.filter((item): item is string => typeof item === 'string') : [];
}
