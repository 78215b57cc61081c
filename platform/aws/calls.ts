/**
 * Calls to AWS on behalf of the CLI, and their errors worded for a person: what to check
 * (credentials, account and region, the permission the call needs). Also the tags the pgferry
 * construct puts on its state machine, through which the CLI finds the rest of a deployment.
 */
import { ListTagsForResourceCommand, SFNClient } from '@aws-sdk/client-sfn';
import { unqualifiedStateMachineArn, type ParsedArn } from './arns.js';
import { stateMachineTags } from './deployment.js';

/** An AWS call failed; the message says what to check, `awsError` is the SDK's error name. */
export class AwsCallError extends Error {
  override name = 'AwsCallError';
  constructor(
    message: string,
    readonly awsError: string,
  ) {
    super(message);
  }
}

export interface Call {
  /** What was being done, as in "Could not <action>". */
  action: string;
  /** The IAM action the person's role needs. */
  permission: string;
  resource: ParsedArn | { arn: string; region?: string; account?: string };
  notFound?: string;
  conflict?: string;
}

const CREDENTIALS_REJECTED = new Set([
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'ExpiredToken',
  'ExpiredTokenException',
  'SignatureDoesNotMatch',
]);
const ACCESS_DENIED = new Set(['AccessDeniedException', 'AccessDenied', 'AuthorizationError']);
const NOT_FOUND = new Set(['StateMachineDoesNotExist', 'ExecutionDoesNotExist', 'ResourceNotFoundException', 'ResourceNotFound']);
const CONFLICT = new Set(['ExecutionAlreadyExists', 'ConflictException']);

function explainAwsError(error: unknown, call: Call): string {
  const name = (error as { name?: string } | null)?.name ?? 'Error';
  const message = (error as { message?: string } | null)?.message ?? String(error);
  const where = [call.resource.account && `account ${call.resource.account}`, call.resource.region && `region ${call.resource.region}`]
    .filter(Boolean)
    .join(', ');
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(message)) {
    return `Could not ${call.action}: no AWS credentials found. Set AWS_PROFILE (after "aws sso login" if it uses SSO) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.`;
  }
  if (CREDENTIALS_REJECTED.has(name)) {
    return `Could not ${call.action}: AWS rejected the credentials (${name}). They may have expired: refresh them (e.g. "aws sso login") and try again.`;
  }
  if (ACCESS_DENIED.has(name)) {
    return (
      `Could not ${call.action}: access denied. Check that your credentials are for ${where || 'the right account'} ` +
      `and that they allow ${call.permission} on ${call.resource.arn}. (${message})`
    );
  }
  if (NOT_FOUND.has(name)) return `Could not ${call.action}: ${call.notFound ?? `${call.resource.arn} does not exist`} (${where}).`;
  if (CONFLICT.has(name) && call.conflict) return `Could not ${call.action}: ${call.conflict}`;
  return `Could not ${call.action} (${name}): ${message}`;
}

export async function send<T>(call: Call, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    throw new AwsCallError(explainAwsError(error, call), (error as { name?: string } | null)?.name ?? 'Error');
  }
}

const sfnClients = new Map<string, SFNClient>();

/** One client per region, for every call and history page of a command. */
export function sfnClient(region: string): SFNClient {
  let client = sfnClients.get(region);
  if (!client) sfnClients.set(region, (client = new SFNClient({ region })));
  return client;
}

export async function readTags(stateMachine: ParsedArn): Promise<Map<string, string>> {
  const arn = unqualifiedStateMachineArn(stateMachine.arn);
  const response = await send(
    {
      action: `read the tags of state machine ${stateMachine.name}`,
      permission: 'states:ListTagsForResource',
      resource: stateMachine,
      notFound: `state machine ${arn} does not exist; check the ARN and that the stack is deployed`,
    },
    () => sfnClient(stateMachine.region).send(new ListTagsForResourceCommand({ resourceArn: arn })),
  );
  return new Map((response.tags ?? []).flatMap((tag) => (tag.key && tag.value ? [[tag.key, tag.value] as const] : [])));
}

/** Thrown when a state machine lacks the tags pgferry's construct puts on it (platform/aws/deployment.ts). */
export class NotPgferryDeploymentError extends AwsCallError {
  override name = 'NotPgferryDeploymentError';
}

export function requireTag(tags: Map<string, string>, tag: keyof typeof stateMachineTags, stateMachine: ParsedArn): string {
  const value = tags.get(stateMachineTags[tag]);
  if (!value) {
    throw new NotPgferryDeploymentError(
      `State machine ${stateMachine.arn} has no tag ${stateMachineTags[tag]}: it was not deployed by pgferry's construct ` +
        '(or by an older version of it). Pass the StateMachineArn output of a pgferry stack.',
      'MissingTag',
    );
  }
  return value;
}
