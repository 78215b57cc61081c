/**
 * The migration's alerts (engine/alerts/) on AWS: each one published to the spec's
 * alerts.snsTopicArn, through a client in the topic's own region, with the function's or the
 * task's role. The request holds the alert and the topic, nothing else.
 */
import { createHash } from 'node:crypto';
import { PublishCommand, SNSClient, type PublishCommandInput } from '@aws-sdk/client-sns';
import type { Alert, AlertSink } from '../../engine/alerts/index.js';

/** The parts of a topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:NAME). */
export function topicArnParts(topicArn: string): { partition: string; region: string; account: string; name: string } {
  const match = /^arn:(aws[a-z-]*):sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]+)$/.exec(topicArn);
  if (!match) throw new Error(`${topicArn} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)`);
  return { partition: match[1]!, region: match[2]!, account: match[3]!, name: match[4]! };
}

/** The Publish request for `alert` (a FIFO topic needs a message group and a deduplication id). */
export function publishInput(alert: Alert): PublishCommandInput {
  const text = (value: string) => ({ DataType: 'String', StringValue: value });
  return {
    TopicArn: alert.topicArn,
    Subject: alert.subject,
    Message: alert.message,
    MessageAttributes: { migration: text(alert.migration), kind: text(alert.kind), state: text(alert.state) },
    ...(alert.topicArn.endsWith('.fifo')
      ? {
          MessageGroupId: alert.migration,
          MessageDeduplicationId: createHash('sha256').update(`${alert.kind}\n${alert.state}\n${alert.subject}\n${alert.message}`).digest('hex'),
        }
      : {}),
  };
}

/**
 * How long a publish may take: a step waits for it, and a subnet that cannot reach SNS (no NAT,
 * no SNS endpoint) would otherwise hold the step until its function's timeout.
 */
export const PUBLISH_TIMEOUT_MS = 10_000;

/**
 * Publishes each alert to its topic. Throws a readable error when SNS refuses it (the topic's
 * name, SNS's error name: AuthorizationError when the deployment's `alertTopicArns` lacks it,
 * KMS* when the role may not use the topic's key); the caller records that as an event.
 */
export class SnsAlertSink implements AlertSink {
  /** One client per region: a topic may live in another region than the deployment. */
  private readonly clients = new Map<string, SNSClient>();

  async publish(alert: Alert): Promise<void> {
    const { region, name } = topicArnParts(alert.topicArn);
    let client = this.clients.get(region);
    if (!client) {
      client = new SNSClient({ region, maxAttempts: 2 });
      this.clients.set(region, client);
    }
    try {
      await client.send(new PublishCommand(publishInput(alert)), { abortSignal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS) });
    } catch (error) {
      const { name: errorName, message } = error as Error;
      const reason =
        errorName === 'TimeoutError' || errorName === 'AbortError'
          ? `no answer within ${PUBLISH_TIMEOUT_MS / 1000} s (can the subnets reach SNS: a NAT gateway or an SNS VPC endpoint?)`
          : `${errorName}: ${message}`;
      throw new Error(`Publishing to SNS topic ${name} failed: ${reason}`);
    }
  }
}
