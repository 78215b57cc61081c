/**
 * The per-migration alert topic (issue 15, item 4) without a database: the SNS publisher (the
 * request it signs and sends: topic, region, subject and body, and never a secret), the texts,
 * which sink the environment picks, and ValidateSpec on AWS refusing a topic the deployment may
 * not publish to. SNS itself is a fake HTTP endpoint (@aws-sdk/client-sns is not a dependency,
 * so aws-sdk-client-mock has no client to mock).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { alertSubject, type Alert } from '../../engine/alerts/index.js';
import { failureAlert, lagAlert, pauseAlert, withoutCredentials } from '../../engine/alerts/messages.js';
import { parseSpec } from '../../engine/spec/index.js';
import { validateSpecStep } from '../../engine/steps/validate-spec.js';
import { alertSinkFromEnvironment, allowedAlertTopicsFromEnvironment, localAlertSink, setLocalAlertPrinter } from '../../platform/alerts.js';
import { alertEnvironment } from '../../platform/aws/deployment.js';
import { SnsAlertSink, type FetchLike } from '../../platform/aws/sns.js';

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:shop-alerts';
const SOURCE_SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/source-AbCdEf';
const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: 'session-token-example' };

/** The spec as a person writes it, and as ValidateSpec normalizes it. */
const written = {
  name: 'shop',
  mode: 'full+cdc',
  source: { secret: SOURCE_SECRET },
  target: { secret: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/target-GhIjKl' },
  alerts: { snsTopicArn: TOPIC, lagThresholdSeconds: 60 },
};
const spec = parseSpec(written);

const alert = (overrides: Partial<Alert> = {}): Alert => ({
  ...lagAlert(spec, { lagSeconds: 125, lagBytes: 52_428_800, appliedLsn: '0/5000000', rowsApplied: 1200 }),
  migration: 'shop',
  kind: 'lag',
  state: 'raised',
  topicArn: TOPIC,
  ...overrides,
});

/** A fake SNS endpoint: records each request, answers `status` with `body`. */
function fakeSns(status = 200, body = '<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult></PublishResponse>') {
  const requests: { url: string; headers: Record<string, string>; body: URLSearchParams; raw: string }[] = [];
  const fetch: FetchLike = async (url, init) => {
    requests.push({ url, headers: init.headers, body: new URLSearchParams(init.body), raw: `${JSON.stringify(init.headers)}\n${init.body}` });
    return { status, text: async () => body };
  };
  return { fetch, requests };
}

describe('the SNS publisher', () => {
  it('publishes the alert to its topic, in the topic\'s region, signed with the role\'s credentials', async () => {
    const sns = fakeSns();
    await new SnsAlertSink({ credentials, fetch: sns.fetch }).publish(alert());
    expect(sns.requests).toHaveLength(1);
    const [request] = sns.requests;
    expect(request!.url).toBe('https://sns.eu-west-1.amazonaws.com/');
    expect(Object.fromEntries(request!.body)).toMatchObject({
      Action: 'Publish',
      Version: '2010-03-31',
      TopicArn: TOPIC,
      Subject: 'pgferry shop: replication lag 125 s, over 60 s',
      'MessageAttributes.entry.1.Value.StringValue': 'shop',
      'MessageAttributes.entry.2.Value.StringValue': 'lag',
      'MessageAttributes.entry.3.Value.StringValue': 'raised',
    });
    const message = request!.body.get('Message')!;
    expect(message).toContain('Migration shop (mode full+cdc): change data capture is 125 s behind the source (50.0 MB of WAL not yet applied)');
    expect(message).toContain('above alerts.lagThresholdSeconds (60 s)');
    expect(message).toContain('What to do');
    expect(request!.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/sns\/aws4_request, SignedHeaders=\S*host\S*, Signature=[0-9a-f]{64}$/);
    expect(request!.headers['x-amz-security-token']).toBe('session-token-example');
    // Nothing secret travels: not the key the request is signed with, not a secret's ARN of the spec.
    expect(request!.raw).not.toContain(credentials.secretAccessKey);
    expect(request!.raw).not.toContain(SOURCE_SECRET);
  });

  it('gives a FIFO topic its message group (the migration) and a deduplication id', async () => {
    const sns = fakeSns();
    await new SnsAlertSink({ credentials, fetch: sns.fetch }).publish(alert({ topicArn: 'arn:aws-cn:sns:cn-north-1:123456789012:shop.fifo' }));
    expect(sns.requests[0]!.url).toBe('https://sns.cn-north-1.amazonaws.com.cn/');
    expect(sns.requests[0]!.body.get('MessageGroupId')).toBe('shop');
    expect(sns.requests[0]!.body.get('MessageDeduplicationId')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives up on an SNS that does not answer, saying what the subnets may lack', async () => {
    const silent: FetchLike = async () => {
      throw Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' });
    };
    await expect(new SnsAlertSink({ credentials, fetch: silent }).publish(alert())).rejects.toThrow(
      'Publishing to SNS topic shop-alerts failed: no answer within 10 s (can the subnets reach SNS: a NAT gateway or an SNS VPC endpoint?)',
    );
  });

  it("says which topic refused and SNS's reason", async () => {
    const sns = fakeSns(
      403,
      '<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code><Message>User is not authorized to perform: SNS:Publish</Message></Error></ErrorResponse>',
    );
    await expect(new SnsAlertSink({ credentials, fetch: sns.fetch }).publish(alert())).rejects.toThrow(
      'Publishing to SNS topic shop-alerts failed: SNS answered HTTP 403 AuthorizationError: User is not authorized to perform: SNS:Publish',
    );
  });
});

describe('the alert texts', () => {
  it('name the migration, the condition, the figures and what to do, never a credential from a cause', () => {
    const cause = 'connect to postgres://app:hunter2@db.internal:5432/shop failed; password=hunter2 token: abc123';
    for (const text of [pauseAlert(spec, { error: 'pgferry.ConnectionFailed', cause, phase: 'replicate' }), failureAlert(spec, { error: 'pgferry.ConnectionFailed', cause, phase: 'load', slot: 'dropped' })]) {
      expect(text.subject).toMatch(/^pgferry shop: migration (paused|failed) \(pgferry\.ConnectionFailed\)$/);
      expect(text.message).toContain('What to do');
      expect(text.message).not.toContain('hunter2');
      expect(text.message).not.toContain('abc123');
      expect(text.message).toContain('[connection string removed]');
    }
    expect(pauseAlert(spec, { error: 'e', cause: 'c', phase: 'load' }).message).toContain('pgferry resume SPEC');
    expect(failureAlert(spec, { error: 'e', cause: 'c', phase: 'load', slot: 'dropped' }).message).toContain('slot and publication are dropped');
    expect(withoutCredentials('host=db port=5432 dbname=shop')).toBe('host=db port=5432 dbname=shop');
  });

  it('keep a subject within the 100 characters SNS takes, on one line', () => {
    const subject = alertSubject(`pgferry ${'x'.repeat(120)}\nsecond line`);
    expect(subject).toHaveLength(100);
    expect(subject).not.toContain('\n');
  });
});

describe('where alerts go', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('to SNS where the deployment switched it on, else to the terminal', async () => {
    expect(alertSinkFromEnvironment({ [alertEnvironment.publish.name]: alertEnvironment.publish.sns })).toBeInstanceOf(SnsAlertSink);
    expect(alertSinkFromEnvironment({})).toBe(localAlertSink);
    const lines: string[] = [];
    const restore = setLocalAlertPrinter((line) => lines.push(line));
    try {
      await localAlertSink.publish(alert({ state: 'resolved', subject: 'pgferry shop: replication lag back under 60 s', message: 'Nothing to do.' }));
    } finally {
      restore();
    }
    expect(lines).toEqual([`Resolved (lag, for ${TOPIC}): pgferry shop: replication lag back under 60 s\n  Nothing to do.`]);
  });

  it('ValidateSpec on AWS refuses a topic the deployment may not publish to, naming the context to set', async () => {
    const other = 'arn:aws:sns:eu-west-1:123456789012:other-alerts';
    const input = { ...written, alerts: { snsTopicArn: other } };
    await expect(validateSpecStep(input, { allowedAlertTopics: [TOPIC] })).rejects.toMatchObject({
      name: 'SpecInvalid',
      message: expect.stringContaining(
        `alerts.snsTopicArn: this deployment may not publish to ${other} (it may publish to ${TOPIC}): add the topic to the stack's context "alertTopicArns"`,
      ),
    });
    expect((await validateSpecStep(input, { allowedAlertTopics: [other] })).spec.alerts.snsTopicArn).toBe(other);
    // Locally nothing restricts the topic.
    expect((await validateSpecStep(input)).spec.alerts.snsTopicArn).toBe(other);
    // A continuation goes on with the topic its run started with.
    const normalized = parseSpec(input);
    expect((await validateSpecStep({ spec: normalized, continues: 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1' }, { allowedAlertTopics: [] })).spec.alerts.snsTopicArn).toBe(other);
  });

  it('the ValidateSpec function reads the allowed topics the construct set, and none in a deployment that set none', async () => {
    expect(allowedAlertTopicsFromEnvironment({ [alertEnvironment.allowedTopics]: JSON.stringify([TOPIC]) })).toEqual([TOPIC]);
    expect(allowedAlertTopicsFromEnvironment({ AWS_LAMBDA_FUNCTION_NAME: 'pgferry-ValidateSpec' })).toEqual([]);
    expect(allowedAlertTopicsFromEnvironment({})).toBeUndefined();

    vi.stubEnv(alertEnvironment.allowedTopics, JSON.stringify(['arn:aws:sns:eu-west-1:123456789012:ops']));
    const { handler } = await import('../../lambdas/validate-spec.js');
    const context = { functionName: 'pgferry-ValidateSpec', functionVersion: '$LATEST', awsRequestId: 'req-1', getRemainingTimeInMillis: () => 30_000, callbackWaitsForEmptyEventLoop: false } as never;
    await expect(handler({ spec: written }, context)).rejects.toMatchObject({
      name: 'SpecInvalid',
      message: expect.stringContaining(`this deployment may not publish to ${TOPIC} (it may publish to arn:aws:sns:eu-west-1:123456789012:ops)`),
    });
  });
});
