import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { Construct } from 'constructs';
import { afterAll, beforeAll, expect } from 'vitest';
import { type PgferryMigration, PgferryStack } from '../../infra/index.js';
import { fargateTasks } from '../../tasks/registry.js';

/** The repository's root directory. */
export { repoRoot } from '../../infra/paths.js';

/** An existing VPC, security groups and alarm topic, all from context (no lookups). */
export const existingVpc = {
  vpcId: 'vpc-0123456789abcdef0',
  subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  databaseClientSecurityGroupId: 'sg-0123456789abcdef0',
  taskSecurityGroupId: 'sg-0123456789abcdef1',
  alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:pgferry-ops',
  alarmEmails: ['ops@example.com'],
};

/**
 * What a test file that synthesizes CDK apps needs; call it once, at the top level of the file.
 * While the file runs, any attempt to use Docker fails (synth, and the whole file, must not need it);
 * afterwards the temporary directories are removed and CDK_DOCKER is restored.
 * `label` names the temporary directories: `pgferry-<label>-…`.
 */
export function cdkTestApps(label: string) {
  const tempDirs: string[] = [];
  const previousDocker = process.env.CDK_DOCKER;
  beforeAll(() => {
    process.env.CDK_DOCKER = '/nonexistent/docker';
  });
  afterAll(() => {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    if (previousDocker === undefined) delete process.env.CDK_DOCKER;
    else process.env.CDK_DOCKER = previousDocker;
  });

  /** A temporary directory, removed after the file's tests. */
  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), `pgferry-${label}-`));
    tempDirs.push(dir);
    return dir;
  }

  /** An app writing to a temporary directory; without `bundle`, NodejsFunction skips esbuild (the template is the same). */
  function newApp(context: Record<string, unknown> = {}, { bundle = false } = {}): App {
    return new App({
      outdir: tempDir(),
      context: bundle ? context : { ...context, 'aws:cdk:bundling-stacks': [] },
    });
  }

  /** A PgferryStack with id `Pgferry` in a new app (without bundling) with this context. */
  function synthStack(context: Record<string, unknown> = {}) {
    const app = newApp(context);
    const stack = new PgferryStack(app, 'Pgferry');
    return { app, stack, template: Template.fromStack(stack) };
  }

  return { tempDir, newApp, synthStack };
}

/** A CloudFormation value as text, intrinsic functions written as `<<LogicalId.Attribute>>`. */
export function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const intrinsic = value as Record<string, any>;
  if ('Fn::Join' in intrinsic) {
    const [separator, parts] = intrinsic['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(separator);
  }
  if ('Fn::GetAtt' in intrinsic) return `<<${intrinsic['Fn::GetAtt'][0]}.${intrinsic['Fn::GetAtt'][1]}>>`;
  if ('Ref' in intrinsic) return `<<${intrinsic.Ref}>>`;
  throw new Error(`Unexpected CloudFormation value: ${JSON.stringify(value)}`);
}

/** The definition as CloudFormation will hand it to Step Functions: DefinitionSubstitutions applied. */
export function deployedDefinition(stateMachine: Record<string, any>): string {
  const substitutions = (stateMachine.Properties.DefinitionSubstitutions ?? {}) as Record<string, unknown>;
  return render(stateMachine.Properties.DefinitionString).replace(/\$\{([^}]*)\}/g, (whole, name: string) =>
    Object.hasOwn(substitutions, name) ? render(substitutions[name]) : whole,
  );
}

export const sourceArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source-AbCdEf';
export const targetArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/target-GhIjKl';

/** What the container of each task runs, straight from the registry entry. */
export const expectedCommand = (entry: string) => [entry.replace(/^tasks\/(.+)\.ts$/, 'dist/tasks/$1.mjs')];

export type Resource = { Type: string; Properties: Record<string, any>; DependsOn?: string | string[] };
export type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

function memo<T>(make: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: make() }).v;
}

/**
 * cdkTestApps (call it once, at the top level of the file), plus the stacks most tests only
 * read, each synthesized once per file: the default, with secrets, and in an existing VPC.
 */
export function infraTestStacks(label: string) {
  const apps = cdkTestApps(label);
  return {
    ...apps,
    defaultStack: memo(() => apps.synthStack()),
    secretStack: memo(() => apps.synthStack({ secretArns: [sourceArn, targetArn] })),
    existingVpcStack: memo(() => apps.synthStack(existingVpc)),
  };
}

export function logicalId(construct: Construct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

export function only<T>(record: Record<string, T>): [string, T] {
  const entries = Object.entries(record);
  expect(entries).toHaveLength(1);
  return entries[0]!;
}

export function resourcesOf(template: Template): Record<string, Resource> {
  return template.toJSON().Resources as Record<string, Resource>;
}

export function stateMachineOf(template: Template): Resource {
  return only(template.findResources('AWS::StepFunctions::StateMachine') as Record<string, Resource>)[1];
}

export function stateMachineRoleId(template: Template): string {
  return stateMachineOf(template).Properties.RoleArn['Fn::GetAtt'][0] as string;
}

/** Every statement of the inline policies attached to a role. */
export function roleStatements(template: Template, roleLogicalId: string): Statement[] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy') as Record<string, Resource>);
  return policies
    .filter((policy) => (policy.Properties.Roles as unknown[]).some((role) => JSON.stringify(role) === JSON.stringify({ Ref: roleLogicalId })))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

export function functionRoleId(template: Template, functionLogicalId: string): string {
  const fn = resourcesOf(template)[functionLogicalId]!;
  return fn.Properties.Role['Fn::GetAtt'][0];
}

export const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);
export const actionsOf = (statement: Statement): string[] => asList(statement.Action) as string[];
export const sortJson = (values: unknown[]) => values.map((v) => JSON.stringify(v)).sort();
export const roleIdOf = (arn: unknown) => (arn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];

export function substitution(template: Template, name: string): string {
  const substitutions = stateMachineOf(template).Properties.DefinitionSubstitutions as Record<string, unknown>;
  expect(Object.keys(substitutions)).toContain(name);
  return render(substitutions[name]);
}

/** The generated task definitions, by task name. */
export function taskDefinitionsOf(template: Template, migration: PgferryMigration): Record<string, Resource> {
  const resources = resourcesOf(template);
  return Object.fromEntries(fargateTasks.map((task) => [task.name, resources[logicalId(migration.taskDefinitions[task.name]!)]!]));
}

/** Every Task state of an ASL document, Map and Parallel states included. */
export function taskStates(node: unknown, found: Record<string, any>[] = []): Record<string, any>[] {
  if (Array.isArray(node)) node.forEach((child) => taskStates(child, found));
  else if (node !== null && typeof node === 'object') {
    const value = node as Record<string, any>;
    if (value.Type === 'Task' && typeof value.Resource === 'string') found.push(value);
    Object.values(value).forEach((child) => taskStates(child, found));
  }
  return found;
}
