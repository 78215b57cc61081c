/**
 * ValidateSpec: the spec as a person wrote it, checked and normalized (defaults filled in) for
 * every later state. The execution's input is the spec itself, or the spec with run options:
 * `{"spec": {...}, "resume": true}` resumes the paused run of that name (what `pgferry resume`
 * and the "Resume migration" event start); `{"spec": {...}, "force": true}` lets a new run drop
 * or truncate the tables a finished run of that name loaded (`pgferry run --force`);
 * `{"spec": {...}, "continues": "<execution>"}` is the workflow continuing itself as a new
 * execution before its history grows too long (ContinueAsNew).
 */
import { PgferryError } from '../errors.js';
import { parseSpec, SpecInvalidError } from '../spec/index.js';

/** What an execution was started with: the spec as given, and its run options. */
export interface RunInput {
  spec: unknown;
  resume: boolean;
  force: boolean;
  /** The execution this one continues (ContinueAsNew), which owns the run until this one takes it over. */
  continues: string | null;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Tells run options from a spec: a spec has a name and never a `spec` field (its schema refuses unknown fields). */
export function runInputOf(input: unknown): RunInput {
  if (!isObject(input) || !('spec' in input) || 'name' in input) return { spec: input, resume: false, force: false, continues: null };
  const { spec, resume = false, force = false, continues = null, ...rest } = input;
  const problems = [
    ...Object.keys(rest).map((field) => `unknown field "${field}"`),
    ...(typeof resume !== 'boolean' ? ['"resume" must be true or false'] : []),
    ...(typeof force !== 'boolean' ? ['"force" must be true or false'] : []),
    ...(!isObject(spec) ? ['"spec" must be the spec object'] : []),
    ...(continues !== null && typeof continues !== 'string' ? ['"continues" must be an execution id'] : []),
  ];
  if (problems.length > 0) {
    throw new PgferryError('SpecInvalid', `The run options are {"spec": {…the migration's spec…}, "resume": true|false, "force": true|false}: ${problems.join('; ')}.`);
  }
  // A continuation resumes the run where its predecessor was, without pausing it.
  return { spec, resume: (resume as boolean) || continues !== null, force: force as boolean, continues: continues as string | null };
}

export interface ValidateSpecOptions {
  /**
   * The alert topics the deployment may publish to (its `alertTopicArns` context, given to the
   * function in its environment); undefined where nothing restricts them (local runs).
   */
  allowedAlertTopics?: readonly string[];
}

/** Every problem of the spec is one SpecInvalid error. */
export async function validateSpecStep(input: unknown, { allowedAlertTopics }: ValidateSpecOptions = {}) {
  const run = runInputOf(input);
  // loop.turns counts the turns of the CDC and paused loops, which continue as a new execution past a bound.
  const spec = parseSpec(run.spec);
  // A continuation goes on with the topic its run was started with.
  if (!run.continues && allowedAlertTopics) assertAlertTopicAllowed(spec.alerts.snsTopicArn, allowedAlertTopics);
  return { spec, resume: run.resume, force: run.force, continues: run.continues, loop: { turns: 0 } };
}

/** Refuses an alert topic the deployment may not publish to: its functions and tasks get sns:Publish on the listed topics only. */
export function assertAlertTopicAllowed(topicArn: string | undefined, allowed: readonly string[]): void {
  if (topicArn === undefined || allowed.includes(topicArn)) return;
  const listed = allowed.length > 0 ? `it may publish to ${allowed.join(', ')}` : 'it may publish to none';
  throw new SpecInvalidError([
    {
      path: 'alerts.snsTopicArn',
      message:
        `this deployment may not publish to ${topicArn} (${listed}): add the topic to the stack's context "alertTopicArns" ` +
        `(cdk deploy -c 'alertTopicArns=["${topicArn}"]', or the list in cdk.json) and deploy again, or name one of those topics`,
    },
  ]);
}
