/** PgferryStack (infra/pgferry-stack.ts): the configuration it reads from CDK context. */
import { describe, expect, it } from 'vitest';
import { infraTestStacks } from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { synthStack } = infraTestStacks('infra-stack');

describe('PgferryStack context', () => {
  it('rejects context that is not what it should be', () => {
    expect(() => synthStack({ secretArns: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:x' })).toThrow(/secretArns.*JSON/);
    expect(() => synthStack({ secretArns: ['*'] })).toThrow(/secretArns/);
    expect(() => synthStack({ logRetentionDays: 42 })).toThrow(/logRetentionDays/);
  });

  it('takes the log retention and state machine name from context', () => {
    const { template } = synthStack({ logRetentionDays: '7', stateMachineName: 'pgferry-prod' });
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineName: 'pgferry-prod' });
  });
});
