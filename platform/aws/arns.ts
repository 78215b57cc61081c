/**
 * The ARNs a person gives the CLI's AWS commands, checked before any call: a state machine's,
 * an execution's, and the spec's secrets, which on AWS must be Secrets Manager ARNs. No AWS SDK.
 */
import type { SpecProblem } from '../../engine/spec/index.js';

/** Something the person typed is wrong (an ARN, a time): the CLI treats it as a usage error. */
export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
}

const PARTITION = 'aws[-a-z]*';
const REGION = '[a-z]{2}(?:-[a-z]+)+-\\d+';
/** Step Functions names exclude whitespace, ":" and "/" among others. */
const SFN_NAME = '[^\\s:/]{1,80}';
const STATE_MACHINE_ARN = new RegExp(`^arn:${PARTITION}:states:(${REGION}):(\\d{12}):stateMachine:(${SFN_NAME})(?::${SFN_NAME})?$`);
const EXECUTION_ARN = new RegExp(`^arn:${PARTITION}:states:(${REGION}):(\\d{12}):execution:(${SFN_NAME}):(${SFN_NAME})$`);
const ANY_ARN_REGION = new RegExp(`^arn:${PARTITION}:[a-z0-9-]+:(${REGION}):`);

export interface ParsedArn {
  arn: string;
  region: string;
  account: string;
  /** The state machine's name; for an execution, the execution's name. */
  name: string;
}

export function parseStateMachineArn(value: string, argument = '--state-machine'): ParsedArn {
  const match = STATE_MACHINE_ARN.exec(value);
  if (!match) {
    throw new InvalidArgumentError(
      `${argument}: ${JSON.stringify(value)} is not a Step Functions state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME); ` +
        'the pgferry stack prints it as its StateMachineArn output.',
    );
  }
  return { arn: value, region: match[1]!, account: match[2]!, name: match[3]! };
}

export function parseExecutionArn(value: string, argument = 'EXECUTION_ARN'): ParsedArn {
  const match = EXECUTION_ARN.exec(value);
  if (!match) {
    throw new InvalidArgumentError(
      `${argument}: ${JSON.stringify(value)} is not a Step Functions execution ARN (arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME); ` +
        '"pgferry start" prints it.',
    );
  }
  return { arn: value, region: match[1]!, account: match[2]!, name: match[4]! };
}

/** A versioned or aliased state machine ARN carries its deployment's tags on the unqualified one. */
export function unqualifiedStateMachineArn(arn: string): string {
  return arn.split(':').slice(0, 7).join(':');
}

/** The region of any ARN that has one. */
export function regionOfArn(arn: string): string | undefined {
  return ANY_ARN_REGION.exec(arn)?.[1];
}

const LOCAL_SECRET_PREFIXES = ['file:', 'env:'] as const;

/** Secret references that only resolve on the person's machine: on AWS the tasks could not read them. */
export function localOnlySecretProblems(input: unknown): SpecProblem[] {
  return (['source', 'target'] as const).flatMap((side) => {
    const endpoint = (input as Record<string, unknown> | null)?.[side];
    const secret = typeof endpoint === 'object' && endpoint !== null ? (endpoint as Record<string, unknown>).secret : undefined;
    const prefix = LOCAL_SECRET_PREFIXES.find((p) => typeof secret === 'string' && secret.startsWith(p));
    if (!prefix) return [];
    return [
      {
        path: `${side}.secret`,
        message: `on AWS this must be a Secrets Manager ARN (arn:aws:secretsmanager:…); "${prefix}…" only works with "pgferry run"`,
      },
    ];
  });
}
