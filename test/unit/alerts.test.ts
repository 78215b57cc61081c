/**
 * The per-migration alert topic (issue 15, item 4) without a database: the SNS publisher (the
 * request it sends: topic, region, subject and body, and never a secret), the texts, which sink
 * the environment picks, and ValidateSpec on AWS refusing a topic the deployment may not publish
 * to. SNS is mocked (aws-sdk-client-mock).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { alertSubject, type Alert } from '../../engine/alerts/index.js';
import { failureAlert, lagAlert, pauseAlert, withoutCredentials } from '../../engine/alerts/messages.js';
import { parseSpec } from '../../engine/spec/index.js';
import { validateSpecStep } from '../../engine/steps/validate-spec.js';
import { alertSinkFromEnvironment, allowedAlertTopicsFromEnvironment, localAlertSink, setLocalAlertPrinter } from '../../platform/alerts.js';
import { alertEnvironment } from '../../platform/aws/deployment.js';
import { SnsAlertSink } from '../../platform/aws/sns.js';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:shop-alerts';
const SOURCE_SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/source-AbCdEf';

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

describe('the SNS publisher', () => {
  const sns = mockClient(SNSClient);
  afterEach(() => sns.reset());

  it("publishes the alert to its topic, in the topic's region, with the migration, kind and state as attributes", async () => {
    sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
    await new SnsAlertSink().publish(alert());
    const calls = sns.commandCalls(PublishCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0]!.args[0].input;
    expect(await sns.call(0).thisValue.config.region()).toBe('eu-west-1');
    expect(input).toMatchObject({
      TopicArn: TOPIC,
      Subject: 'pgferry shop: replication lag 125 s, over 60 s',
      MessageAttributes: {
        migration: { DataType: 'String', StringValue: 'shop' },
        kind: { DataType: 'String', StringValue: 'lag' },
        state: { DataType: 'String', StringValue: 'raised' },
      },
    });
    expect(input.Message).toContain('Migration shop (mode full+cdc): change data capture is 125 s behind the source (50.0 MB of WAL not yet applied)');
    expect(input.Message).toContain('above alerts.lagThresholdSeconds (60 s)');
    expect(input.Message).toContain('What to do');
    // Nothing secret travels: not a secret's ARN of the spec.
    expect(JSON.stringify(input)).not.toContain(SOURCE_SECRET);
  });

  it('gives a FIFO topic its message group (the migration) and a deduplication id, in its own region', async () => {
    sns.on(PublishCommand).resolves({ MessageId: 'm-2' });
    await new SnsAlertSink().publish(alert({ topicArn: 'arn:aws-cn:sns:cn-north-1:123456789012:shop.fifo' }));
    const input = sns.commandCalls(PublishCommand)[0]!.args[0].input;
    expect(await sns.call(0).thisValue.config.region()).toBe('cn-north-1');
    expect(input.MessageGroupId).toBe('shop');
    expect(input.MessageDeduplicationId).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives up on an SNS that does not answer, saying what the subnets may lack', async () => {
    sns.on(PublishCommand).rejects(Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }));
    await expect(new SnsAlertSink().publish(alert())).rejects.toThrow(
      'Publishing to SNS topic shop-alerts failed: no answer within 10 s (can the subnets reach SNS: a NAT gateway or an SNS VPC endpoint?)',
    );
  });

  it("says which topic refused and SNS's reason", async () => {
    sns.on(PublishCommand).rejects(Object.assign(new Error('User is not authorized to perform: SNS:Publish'), { name: 'AuthorizationErrorException' }));
    await expect(new SnsAlertSink().publish(alert())).rejects.toThrow(
      'Publishing to SNS topic shop-alerts failed: AuthorizationErrorException: User is not authorized to perform: SNS:Publish',
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
