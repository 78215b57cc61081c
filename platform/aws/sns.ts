/**
 * The migration's alerts (engine/alerts/) on AWS: each one published to the spec's
 * alerts.snsTopicArn, in the topic's own region. @aws-sdk/client-sns is not among pgferry's
 * dependencies, so this sends SNS's Publish action (the Query protocol: a form-encoded POST)
 * itself, signed with Signature V4 by the signer and the credential chain the SDK clients of
 * pgferry use (@smithy/signature-v4, @aws-sdk/credential-provider-node): the function's or the
 * task's role. The request holds the alert and the topic, nothing else.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { Alert, AlertSink } from '../../engine/alerts/index.js';

/** The parts of a topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:NAME). */
export function topicArnParts(topicArn: string): { partition: string; region: string; account: string; name: string } {
  const match = /^arn:(aws[a-z-]*):sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]+)$/.exec(topicArn);
  if (!match) throw new Error(`${topicArn} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)`);
  return { partition: match[1]!, region: match[2]!, account: match[3]!, name: match[4]! };
}

/** SNS's endpoint for a topic's partition and region. */
export function snsEndpoint(partition: string, region: string): string {
  return partition === 'aws-cn' ? `sns.${region}.amazonaws.com.cn` : `sns.${region}.amazonaws.com`;
}

/** The Publish action's parameters for `alert` (a FIFO topic needs a message group and a deduplication id). */
export function publishParameters(alert: Alert): URLSearchParams {
  const params = new URLSearchParams({
    Action: 'Publish',
    Version: '2010-03-31',
    TopicArn: alert.topicArn,
    Subject: alert.subject,
    Message: alert.message,
    'MessageAttributes.entry.1.Name': 'migration',
    'MessageAttributes.entry.1.Value.DataType': 'String',
    'MessageAttributes.entry.1.Value.StringValue': alert.migration,
    'MessageAttributes.entry.2.Name': 'kind',
    'MessageAttributes.entry.2.Value.DataType': 'String',
    'MessageAttributes.entry.2.Value.StringValue': alert.kind,
    'MessageAttributes.entry.3.Name': 'state',
    'MessageAttributes.entry.3.Value.DataType': 'String',
    'MessageAttributes.entry.3.Value.StringValue': alert.state,
  });
  if (alert.topicArn.endsWith('.fifo')) {
    params.set('MessageGroupId', alert.migration);
    params.set('MessageDeduplicationId', createHash('sha256').update(`${alert.kind}\n${alert.state}\n${alert.subject}\n${alert.message}`).digest('hex'));
  }
  return params;
}

/** SHA-256 (and its HMAC) from node:crypto, in the shape the signer asks for. */
class NodeSha256 {
  private readonly hash: Hash | Hmac;

  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(secret));
  }

  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBuffer(data));
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  reset(): void {
    throw new Error('not used by the signer');
  }
}

function toBuffer(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/** What SNS answered with an error: its code and message, from the XML body. */
function snsError(status: number, body: string): string {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
  return `SNS answered HTTP ${status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`;
}

export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; signal: AbortSignal },
) => Promise<{ status: number; text(): Promise<string> }>;

/**
 * How long a publish may take: a step waits for it, and a subnet that cannot reach SNS (no NAT,
 * no SNS endpoint) would otherwise hold the step until its function's timeout.
 */
export const PUBLISH_TIMEOUT_MS = 10_000;

export interface SnsAlertSinkOptions {
  /** The role's credentials; default the SDK's chain (the Lambda's or the task's role). */
  credentials?: AwsCredentialIdentityProvider | AwsCredentialIdentity;
  /** HTTP; default the global fetch (tests pass their own). */
  fetch?: FetchLike;
}

/**
 * Publishes each alert to its topic. Throws a readable error when SNS refuses it (the topic's
 * name, SNS's error code: AuthorizationError when the deployment's `alertTopicArns` lacks it,
 * KMS.* when the role may not use the topic's key); the caller records that as an event.
 */
export class SnsAlertSink implements AlertSink {
  private readonly credentials: AwsCredentialIdentityProvider | AwsCredentialIdentity;
  private readonly fetch: FetchLike;

  constructor(options: SnsAlertSinkOptions = {}) {
    this.credentials = options.credentials ?? defaultProvider();
    this.fetch = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
  }

  async publish(alert: Alert): Promise<void> {
    const { partition, region, name } = topicArnParts(alert.topicArn);
    const hostname = snsEndpoint(partition, region);
    const body = publishParameters(alert).toString();
    const signer = new SignatureV4({ credentials: this.credentials, region, service: 'sns', sha256: NodeSha256 });
    const signed = await signer.sign({
      method: 'POST',
      protocol: 'https:',
      hostname,
      path: '/',
      query: {},
      headers: { host: hostname, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
      body,
    });
    const response = await this.fetch(`https://${hostname}/`, {
      method: 'POST',
      headers: signed.headers as Record<string, string>,
      body,
      signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
    }).catch((error: unknown) => {
      const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${PUBLISH_TIMEOUT_MS / 1000} s (can the subnets reach SNS: a NAT gateway or an SNS VPC endpoint?)` : (error as Error).message;
      throw new Error(`Publishing to SNS topic ${name} failed: ${reason}`);
    });
    if (response.status < 200 || response.status >= 300) {
      throw new Error(`Publishing to SNS topic ${name} failed: ${snsError(response.status, await response.text())}`);
    }
  }
}
