/**
 * Every Fargate task the workflow runs. The ASL names a task definition by the placeholder
 * `${<taskDefinitionPlaceholder>}`; CDK substitutes the deployed ARN, the local runner starts
 * `entry` as a child process with the container overrides as its environment.
 * Paths only, so infra/ can import it.
 */
export interface FargateTaskDefinition {
  readonly name: string;
  readonly entry: string;
  readonly taskDefinitionPlaceholder: string;
  /** Name of the container in the task definition, as the ASL's ContainerOverrides name it. */
  readonly containerName: string;
  /** Publishes the migration's alerts (retained WAL) to its alerts.snsTopicArn: may publish to the stack's alertTopicArns. */
  readonly publishesAlerts?: true;
}

export const fargateTasks: readonly FargateTaskDefinition[] = [
  { name: 'Snapshot', entry: 'tasks/snapshot.ts', taskDefinitionPlaceholder: 'SnapshotTaskDefinitionArn', containerName: 'pgferry' },
  { name: 'Copy', entry: 'tasks/copy.ts', taskDefinitionPlaceholder: 'CopyTaskDefinitionArn', containerName: 'pgferry' },
  { name: 'PostData', entry: 'tasks/post-data.ts', taskDefinitionPlaceholder: 'PostDataTaskDefinitionArn', containerName: 'pgferry' },
  { name: 'Compare', entry: 'tasks/compare.ts', taskDefinitionPlaceholder: 'CompareTaskDefinitionArn', containerName: 'pgferry' },
  { name: 'Replicate', entry: 'tasks/replicate.ts', taskDefinitionPlaceholder: 'ReplicateTaskDefinitionArn', containerName: 'pgferry', publishesAlerts: true },
];

export function taskByPlaceholder(placeholder: string): FargateTaskDefinition | undefined {
  return fargateTasks.find((task) => task.taskDefinitionPlaceholder === placeholder);
}
