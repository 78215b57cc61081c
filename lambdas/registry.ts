/**
 * Every Lambda the workflow invokes. The ASL names a function by the placeholder
 * `${<arnPlaceholder>}`; CDK substitutes the deployed ARN, the local runner calls the
 * handler exported by `entry` in-process. This file holds paths only, so infra/ can import it.
 */
export interface LambdaFunctionDefinition {
  /** Logical name, also the CDK construct id. */
  readonly name: string;
  /** Path from the repository root to the module that exports `handler`. */
  readonly entry: string;
  /** The `${…}` placeholder in state-machines/migration.asl.json. */
  readonly arnPlaceholder: string;
  readonly timeoutSeconds: number;
  readonly memoryMb: number;
  /** Whether the function connects to the databases (needs the VPC and the secrets). */
  readonly needsDatabase: boolean;
  /**
   * Invoked by the pgferry CLI (found through a state machine tag), not by the workflow: the
   * ASL does not name it.
   */
  readonly operator?: true;
  /** Rewrites the application's secret (cutover.switch): may read and put the stack's applicationSecretArns. */
  readonly switchesApplication?: true;
  /** Publishes the migration's alerts to its alerts.snsTopicArn: may publish to the stack's alertTopicArns. */
  readonly publishesAlerts?: true;
}

export const lambdaFunctions: readonly LambdaFunctionDefinition[] = [
  {
    name: 'ValidateSpec',
    entry: 'lambdas/validate-spec.ts',
    arnPlaceholder: 'ValidateSpecFunctionArn',
    timeoutSeconds: 30,
    memoryMb: 256,
    needsDatabase: false,
  },
  {
    name: 'Precheck',
    entry: 'lambdas/precheck.ts',
    arnPlaceholder: 'PrecheckFunctionArn',
    timeoutSeconds: 120,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'SchemaPreData',
    entry: 'lambdas/schema-pre-data.ts',
    arnPlaceholder: 'SchemaPreDataFunctionArn',
    timeoutSeconds: 900,
    memoryMb: 512,
    needsDatabase: true,
  },
  {
    name: 'PlanFullLoad',
    entry: 'lambdas/plan-full-load.ts',
    arnPlaceholder: 'PlanFullLoadFunctionArn',
    timeoutSeconds: 300,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'FinishFullLoad',
    entry: 'lambdas/finish-full-load.ts',
    arnPlaceholder: 'FinishFullLoadFunctionArn',
    timeoutSeconds: 300,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'FinishMigration',
    entry: 'lambdas/finish-migration.ts',
    arnPlaceholder: 'FinishMigrationFunctionArn',
    // Arms the reverse stream (a slot on the target) when cutover.reverse is set.
    timeoutSeconds: 300,
    memoryMb: 256,
    needsDatabase: true,
    switchesApplication: true,
  },
  {
    name: 'BeginApply',
    entry: 'lambdas/begin-apply.ts',
    arnPlaceholder: 'BeginApplyFunctionArn',
    timeoutSeconds: 60,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'ReplicationStatus',
    entry: 'lambdas/replication-status.ts',
    arnPlaceholder: 'ReplicationStatusFunctionArn',
    timeoutSeconds: 900,
    memoryMb: 256,
    needsDatabase: true,
    publishesAlerts: true,
  },
  {
    name: 'Cutover',
    entry: 'lambdas/cutover.ts',
    arnPlaceholder: 'CutoverFunctionArn',
    timeoutSeconds: 120,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'FinishCutover',
    entry: 'lambdas/finish-cutover.ts',
    arnPlaceholder: 'FinishCutoverFunctionArn',
    // Large objects changed during CDC are copied again here, behind the fence.
    timeoutSeconds: 900,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'ReverseStatus',
    entry: 'lambdas/reverse-status.ts',
    arnPlaceholder: 'ReverseStatusFunctionArn',
    timeoutSeconds: 900,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'Fallback',
    entry: 'lambdas/fallback.ts',
    arnPlaceholder: 'FallbackFunctionArn',
    // Drains the reverse stream for up to 10 minutes.
    timeoutSeconds: 900,
    memoryMb: 256,
    needsDatabase: true,
    switchesApplication: true,
  },
  {
    name: 'FinishAfterCutover',
    entry: 'lambdas/finish-after-cutover.ts',
    arnPlaceholder: 'FinishAfterCutoverFunctionArn',
    timeoutSeconds: 120,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'Cleanup',
    entry: 'lambdas/cleanup.ts',
    arnPlaceholder: 'CleanupFunctionArn',
    timeoutSeconds: 120,
    memoryMb: 256,
    needsDatabase: true,
    publishesAlerts: true,
  },
  {
    name: 'PausedStatus',
    entry: 'lambdas/paused-status.ts',
    arnPlaceholder: 'PausedStatusFunctionArn',
    timeoutSeconds: 900,
    memoryMb: 256,
    needsDatabase: true,
    publishesAlerts: true,
  },
  {
    name: 'PlanResume',
    entry: 'lambdas/plan-resume.ts',
    arnPlaceholder: 'PlanResumeFunctionArn',
    timeoutSeconds: 120,
    memoryMb: 256,
    needsDatabase: true,
  },
  {
    name: 'DescribeFailure',
    entry: 'lambdas/describe-failure.ts',
    arnPlaceholder: 'DescribeFailureFunctionArn',
    timeoutSeconds: 30,
    memoryMb: 128,
    needsDatabase: false,
  },
  {
    name: 'Operator',
    entry: 'lambdas/operate.ts',
    arnPlaceholder: 'OperatorFunctionArn',
    timeoutSeconds: 180,
    memoryMb: 256,
    needsDatabase: true,
    operator: true,
  },
];

export function lambdaByPlaceholder(placeholder: string): LambdaFunctionDefinition | undefined {
  return lambdaFunctions.find((fn) => fn.arnPlaceholder === placeholder);
}
