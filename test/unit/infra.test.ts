import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { PgferryMigration, PgferryStack } from '../../infra/index.js';
import { migrationDefinitionPath } from '../../infra/paths.js';
import { callbackTaskPlaceholders, definitionPlaceholders } from '../../infra/state-machine.js';
import { lambdaByPlaceholder, lambdaFunctions } from '../../lambdas/registry.js';
import { metrics, stateMachineTags, startMigrationEvent } from '../../platform/aws/deployment.js';
import { fargateTasks, taskByPlaceholder } from '../../tasks/registry.js';
import { cdkTestApps, deployedDefinition, existingVpc, render, repoRoot } from '../support/infra.js';

const sourceArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source-AbCdEf';
const targetArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/target-GhIjKl';
/** What the container of each task runs, straight from the registry entry. */
const expectedCommand = (entry: string) => [entry.replace(/^tasks\/(.+)\.ts$/, 'dist/tasks/$1.mjs')];

type Resource = { Type: string; Properties: Record<string, any>; DependsOn?: string | string[] };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { tempDir, newApp, synthStack } = cdkTestApps('infra');

function memo<T>(make: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: make() }).v;
}

// Synthesized once, shared by the tests that only read them.
const defaultStack = memo(() => synthStack());
const secretStack = memo(() => synthStack({ secretArns: [sourceArn, targetArn] }));
const existingVpcStack = memo(() => synthStack(existingVpc));

function logicalId(construct: Construct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

function only<T>(record: Record<string, T>): [string, T] {
  const entries = Object.entries(record);
  expect(entries).toHaveLength(1);
  return entries[0]!;
}

function resourcesOf(template: Template): Record<string, Resource> {
  return template.toJSON().Resources as Record<string, Resource>;
}

function stateMachineOf(template: Template): Resource {
  return only(template.findResources('AWS::StepFunctions::StateMachine') as Record<string, Resource>)[1];
}

function stateMachineRoleId(template: Template): string {
  return stateMachineOf(template).Properties.RoleArn['Fn::GetAtt'][0] as string;
}

/** Every statement of the inline policies attached to a role. */
function roleStatements(template: Template, roleLogicalId: string): Statement[] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy') as Record<string, Resource>);
  return policies
    .filter((policy) => (policy.Properties.Roles as unknown[]).some((role) => JSON.stringify(role) === JSON.stringify({ Ref: roleLogicalId })))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

function functionRoleId(template: Template, functionLogicalId: string): string {
  const fn = resourcesOf(template)[functionLogicalId]!;
  return fn.Properties.Role['Fn::GetAtt'][0];
}

const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);
const actionsOf = (statement: Statement): string[] => asList(statement.Action) as string[];
const sortJson = (values: unknown[]) => values.map((v) => JSON.stringify(v)).sort();
const roleIdOf = (arn: unknown) => (arn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];

function substitution(template: Template, name: string): string {
  const substitutions = stateMachineOf(template).Properties.DefinitionSubstitutions as Record<string, unknown>;
  expect(Object.keys(substitutions)).toContain(name);
  return render(substitutions[name]);
}

/** The generated task definitions, by task name. */
function taskDefinitionsOf(template: Template, migration: PgferryMigration): Record<string, Resource> {
  const resources = resourcesOf(template);
  return Object.fromEntries(fargateTasks.map((task) => [task.name, resources[logicalId(migration.taskDefinitions[task.name]!)]!]));
}

/** Every Task state of an ASL document, Map and Parallel states included. */
function taskStates(node: unknown, found: Record<string, any>[] = []): Record<string, any>[] {
  if (Array.isArray(node)) node.forEach((child) => taskStates(child, found));
  else if (node !== null && typeof node === 'object') {
    const value = node as Record<string, any>;
    if (value.Type === 'Task' && typeof value.Resource === 'string') found.push(value);
    Object.values(value).forEach((child) => taskStates(child, found));
  }
  return found;
}

describe('PgferryStack', () => {
  it('creates a standard state machine with tracing and ALL logging, without execution data, to a retained encrypted vended-logs group', () => {
    const { stack, template } = defaultStack();
    const stateMachine = stateMachineOf(template);
    expect(stateMachine.Properties.StateMachineType).toBe('STANDARD');
    expect(stateMachine.Properties.TracingConfiguration).toEqual({ Enabled: true });
    expect(stateMachine.Properties.LoggingConfiguration.Level).toBe('ALL');
    expect(stateMachine.Properties.LoggingConfiguration.IncludeExecutionData).toBe(false);
    const logGroupId = stateMachine.Properties.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
    expect(resourcesOf(template)[logGroupId]!.Properties).toEqual({
      LogGroupName: `/aws/vendedlogs/states/${stack.migration.serviceName}`,
      RetentionInDays: 30,
      KmsKeyId: { 'Fn::GetAtt': [logicalId(stack.migration.encryptionKey), 'Arn'] },
    });
    template.hasOutput('StateMachineArn', { Value: { Ref: logicalId(stack.migration.stateMachine) } });
    template.hasOutput('TaskSecurityGroupId', { Value: { 'Fn::GetAtt': [logicalId(stack.migration.taskSecurityGroup), 'GroupId'] } });
    template.hasOutput('DatabaseClientSecurityGroupId', {
      Value: { 'Fn::GetAtt': [logicalId(stack.migration.databaseClientSecurityGroup), 'GroupId'] },
    });
  });

  it('deploys the ASL file unchanged except that every ${…} becomes the right ARN, subnets or security group', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const asl = readFileSync(migrationDefinitionPath, 'utf8');
    const placeholders = new Set(definitionPlaceholders(asl));
    for (const name of ['ClusterArn', 'TaskSubnetIds', 'TaskSecurityGroupIds']) expect(placeholders).toContain(name);
    for (const task of fargateTasks) expect(placeholders).toContain(task.taskDefinitionPlaceholder);

    const privateSubnets = (migration.vpc as ec2.Vpc).privateSubnets;
    expect(privateSubnets).toHaveLength(2);
    const expected = asl.replace(/\$\{([^}]*)\}/g, (_whole, name: string) => {
      const fn = lambdaByPlaceholder(name);
      if (fn) return `<<${logicalId(migration.functions[fn.name]!)}.Arn>>`;
      const task = taskByPlaceholder(name);
      if (task) return `<<${logicalId(migration.taskDefinitions[task.name]!)}>>`;
      if (name === 'ClusterArn') return `<<${logicalId(migration.cluster)}.Arn>>`;
      if (name === 'TaskSubnetIds') return privateSubnets.map((subnet) => `<<${logicalId(subnet)}>>`).join(',');
      if (name === 'TaskSecurityGroupIds') return `<<${logicalId(migration.taskSecurityGroup)}.GroupId>>`;
      throw new Error(`The ASL uses \${${name}}, which nothing provides`);
    });
    const deployed = deployedDefinition(stateMachineOf(template));

    expect(deployed).toBe(expected);
    expect(deployed).not.toContain('${');
    expect(() => JSON.parse(deployed)).not.toThrow();
  });

  it('builds every registered Lambda as a nodejs22.x arm64 ESM bundle, the database ones in private subnets', () => {
    const { stack, template } = defaultStack();
    const resources = resourcesOf(template);
    const privateSubnets = (stack.migration.vpc as ec2.Vpc).privateSubnets.map((subnet) => ({ Ref: logicalId(subnet) }));
    template.resourceCountIs('AWS::Lambda::Function', lambdaFunctions.length);
    for (const definition of lambdaFunctions) {
      const fn = resources[logicalId(stack.migration.functions[definition.name]!)]!;
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Timeout: definition.timeoutSeconds,
        MemorySize: definition.memoryMb,
        TracingConfig: { Mode: 'Active' },
      });
      expect(fn.Properties.Environment).toEqual({
        Variables: {
          NODE_OPTIONS: '--enable-source-maps',
          POWERTOOLS_SERVICE_NAME: stack.migration.serviceName,
          POWERTOOLS_METRICS_NAMESPACE: metrics.namespace,
          POWERTOOLS_LOG_LEVEL: 'INFO',
        },
      });
      if (definition.needsDatabase) {
        expect(fn.Properties.VpcConfig).toEqual({
          SubnetIds: privateSubnets,
          SecurityGroupIds: [{ 'Fn::GetAtt': [logicalId(stack.migration.databaseClientSecurityGroup), 'GroupId'] }],
        });
      } else {
        expect(fn.Properties.VpcConfig).toBeUndefined();
      }
      const logGroup = resources[fn.Properties.LoggingConfig.LogGroup.Ref]!;
      expect(logGroup.Type).toBe('AWS::Logs::LogGroup');
      expect(logGroup.Properties.RetentionInDays).toBe(30);
      expect(logGroup.Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [logicalId(stack.migration.encryptionKey), 'Arn'] });

      // A role of its own, no AWS managed policy: logs to its own group only, plus X-Ray and,
      // in the VPC, the network interfaces (the only wildcards).
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      expect(resources[roleId]!.Properties.ManagedPolicyArns).toBeUndefined();
      const statements = roleStatements(template, roleId);
      expect(statements.find((s) => actionsOf(s).includes('logs:PutLogEvents'))!.Resource).toEqual({
        'Fn::GetAtt': [fn.Properties.LoggingConfig.LogGroup.Ref, 'Arn'],
      });
      const wildcards = statements.filter((s) => s.Resource === '*').flatMap(actionsOf);
      for (const action of wildcards) expect(action).toMatch(definition.needsDatabase ? /^(xray|ec2):/ : /^xray:/);
      expect(wildcards.includes('ec2:CreateNetworkInterface')).toBe(definition.needsDatabase);
    }
  });

  it('creates a VPC over 2 AZs with one NAT gateway and a cluster with container insights', () => {
    const { template } = defaultStack();
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.resourceCountIs('AWS::EC2::Subnet', 4);
    template.resourceCountIs('AWS::ECS::Cluster', 1);
    template.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
  });

  it('defines one ARM64 Fargate task per registry entry, container pgferry running its bundle, logging to a retained group', () => {
    const { app, stack, template } = defaultStack();
    const resources = resourcesOf(template);
    template.resourceCountIs('AWS::ECS::TaskDefinition', fargateTasks.length);
    const taskDefinitions = taskDefinitionsOf(template, stack.migration);
    const images = new Set<string>();
    for (const task of fargateTasks) {
      const properties = taskDefinitions[task.name]!.Properties;
      const size = task.name === 'Copy' ? { Cpu: '1024', Memory: '2048' } : { Cpu: '512', Memory: '1024' };
      expect(properties, task.name).toMatchObject({
        ...size,
        RequiresCompatibilities: ['FARGATE'],
        NetworkMode: 'awsvpc',
        RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      });
      const [container, ...others] = properties.ContainerDefinitions as Record<string, any>[];
      expect(others).toEqual([]);
      expect(container!.Name).toBe(task.containerName);
      expect(container!.Name).toBe('pgferry');
      expect(container!.Command).toEqual(expectedCommand(task.entry));
      // The metrics settings only: the workflow passes the rest as container overrides.
      expect(container!.Environment).toEqual([
        { Name: 'POWERTOOLS_SERVICE_NAME', Value: stack.migration.serviceName },
        { Name: 'POWERTOOLS_METRICS_NAMESPACE', Value: metrics.namespace },
        { Name: 'PGFERRY_METRICS', Value: 'emf' },
      ]);
      expect(container!.LogConfiguration.LogDriver).toBe('awslogs');
      const logGroup = resources[container!.LogConfiguration.Options['awslogs-group'].Ref]!;
      expect(logGroup.Type).toBe('AWS::Logs::LogGroup');
      expect(logGroup.Properties.RetentionInDays).toBe(30);
      expect(logGroup.Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [logicalId(stack.migration.encryptionKey), 'Arn'] });
      images.add(JSON.stringify(container!.Image));
    }
    // One image for every task, the one the Dockerfile builds: staged at synth, built at deploy.
    expect(images.size).toBe(1);
    const assets = JSON.parse(readFileSync(join(app.outdir, 'Pgferry.assets.json'), 'utf8'));
    const [hash, image] = only(assets.dockerImages as Record<string, any>);
    expect(image.source).toEqual({ directory: `asset.${hash}`, platform: 'linux/arm64' });
    expect([...images][0]).toContain(hash);
  });

  it('lets the state machine invoke exactly the workflow functions, run exactly the task definitions, and nothing else', () => {
    const { stack, template } = defaultStack();
    const roleId = stateMachineRoleId(template);
    const role = resourcesOf(template)[roleId]!;
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    const statements = roleStatements(template, roleId);
    const matching = (prefix: string) => statements.filter((s) => actionsOf(s).some((action) => action === '*' || action.startsWith(prefix)));

    const invoking = matching('lambda:');
    expect(invoking).toHaveLength(1);
    expect(invoking[0]!.Effect).toBe('Allow');
    expect(invoking[0]!.Action).toBe('lambda:InvokeFunction');
    // Unqualified ARNs, as the ASL names them; not the operator function, which only the CLI invokes.
    const expectedFunctions = lambdaFunctions
      .filter((definition) => !definition.operator)
      .map((definition) => ({ 'Fn::GetAtt': [logicalId(stack.migration.functions[definition.name]!), 'Arn'] }));
    expect(sortJson(asList(invoking[0]!.Resource))).toEqual(sortJson(expectedFunctions));
    expect(JSON.stringify(invoking[0]!.Resource)).not.toContain(logicalId(stack.migration.operatorFunction!));

    const inCluster = { ArnEquals: { 'ecs:cluster': { 'Fn::GetAtt': [logicalId(stack.migration.cluster), 'Arn'] } } };
    const taskDefinitions = Object.values(taskDefinitionsOf(template, stack.migration));
    const ecsStatements = matching('ecs:');
    expect(ecsStatements).toHaveLength(2);
    const [running, following] = ecsStatements;
    expect(running).toMatchObject({ Effect: 'Allow', Action: 'ecs:RunTask', Condition: inCluster });
    expect(asList(running!.Resource).map(render).sort()).toEqual(
      taskDefinitions
        .map((taskDefinition) => `arn:<<AWS::Partition>>:ecs:<<AWS::Region>>:<<AWS::AccountId>>:task-definition/${taskDefinition.Properties.Family}:*`)
        .sort(),
    );
    expect(following).toMatchObject({ Effect: 'Allow', Condition: inCluster });
    expect(actionsOf(following!).sort()).toEqual(['ecs:DescribeTasks', 'ecs:StopTask']);
    expect(render(following!.Resource)).toBe('arn:<<AWS::Partition>>:ecs:<<AWS::Region>>:<<AWS::AccountId>>:task/*');

    const passing = matching('iam:');
    expect(passing).toHaveLength(1);
    expect(passing[0]).toMatchObject({
      Effect: 'Allow',
      Action: 'iam:PassRole',
      Condition: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
    });
    const taskRoles = taskDefinitions.flatMap((taskDefinition) => [taskDefinition.Properties.TaskRoleArn, taskDefinition.Properties.ExecutionRoleArn]);
    expect(sortJson(asList(passing[0]!.Resource))).toEqual([...new Set(sortJson(taskRoles))]);
    // Four task roles and one shared execution role, each a role of this stack.
    expect(asList(passing[0]!.Resource)).toHaveLength(fargateTasks.length + 1);
    for (const arn of asList(passing[0]!.Resource)) expect(resourcesOf(template)[roleIdOf(arn)]!.Type).toBe('AWS::IAM::Role');

    const events = matching('events:');
    expect(events).toHaveLength(1);
    expect(actionsOf(events[0]!).sort()).toEqual(['events:DescribeRule', 'events:PutRule', 'events:PutTargets']);
    expect(render(events[0]!.Resource)).toBe(
      'arn:<<AWS::Partition>>:events:<<AWS::Region>>:<<AWS::AccountId>>:rule/StepFunctionsGetEventsForECSTaskRule',
    );

    // Nothing else: only the log delivery and X-Ray statements Step Functions needs remain,
    // and they are the only wildcard resources.
    const known = new Set([invoking[0], running, following, passing[0], events[0]]);
    for (const statement of statements.filter((s) => !known.has(s))) {
      expect(statement.Resource).toBe('*');
      for (const action of actionsOf(statement)) expect(action).toMatch(/^(logs|xray):/);
    }
  });

  it('runs every Fargate task in the private subnets with the task security group and no public IP', () => {
    const { stack, template } = defaultStack();
    const resources = resourcesOf(template);
    const vpc = stack.migration.vpc as ec2.Vpc;

    const subnetIds = substitution(template, 'TaskSubnetIds').split(',');
    expect(subnetIds).toEqual(vpc.privateSubnets.map((subnet) => `<<${logicalId(subnet)}>>`));
    const associations = Object.values(resources).filter((r) => r.Type === 'AWS::EC2::SubnetRouteTableAssociation');
    for (const id of subnetIds.map((text) => text.slice(2, -2))) {
      expect(resources[id]!.Type).toBe('AWS::EC2::Subnet');
      expect(resources[id]!.Properties.MapPublicIpOnLaunch).toBe(false);
      // Its default route leads to the NAT gateway, not to the internet gateway.
      const association = associations.find((a) => a.Properties.SubnetId.Ref === id)!;
      const routeTable = association.Properties.RouteTableId.Ref;
      const routes = Object.values(resources).filter((r) => r.Type === 'AWS::EC2::Route' && r.Properties.RouteTableId.Ref === routeTable);
      expect(routes).toHaveLength(1);
      expect(routes[0]!.Properties.DestinationCidrBlock).toBe('0.0.0.0/0');
      expect(routes[0]!.Properties.GatewayId).toBeUndefined();
      expect(resources[routes[0]!.Properties.NatGatewayId.Ref]!.Type).toBe('AWS::EC2::NatGateway');
    }

    const securityGroupId = logicalId(stack.migration.taskSecurityGroup);
    expect(substitution(template, 'TaskSecurityGroupIds')).toBe(`<<${securityGroupId}.GroupId>>`);
    expect(resources[securityGroupId]!.Properties.SecurityGroupEgress).toEqual([
      { CidrIp: '0.0.0.0/0', Description: 'Allow all outbound traffic by default', IpProtocol: '-1' },
    ]);
    expect(resources[securityGroupId]!.Properties.SecurityGroupIngress).toBeUndefined();
    expect(substitution(template, 'ClusterArn')).toBe(`<<${logicalId(stack.migration.cluster)}.Arn>>`);

    const ecsStates = taskStates(JSON.parse(deployedDefinition(stateMachineOf(template)))).filter((state) =>
      state.Resource.startsWith('arn:aws:states:::ecs:runTask'),
    );
    expect(ecsStates.length).toBeGreaterThanOrEqual(fargateTasks.length);
    for (const state of ecsStates) {
      expect(state.Parameters.LaunchType).toBe('FARGATE');
      expect(state.Parameters.NetworkConfiguration.AwsvpcConfiguration).toEqual({
        'Subnets.$': `States.StringSplit('${subnetIds.join(',')}', ',')`,
        'SecurityGroups.$': `States.StringSplit('<<${securityGroupId}.GroupId>>', ',')`,
        AssignPublicIp: 'DISABLED',
      });
    }
  });

  it('lets only the callback tasks report to the state machine, and no task anything else', () => {
    const { stack, template } = secretStack();
    expect(callbackTaskPlaceholders(JSON.parse(readFileSync(migrationDefinitionPath, 'utf8')))).toEqual(['SnapshotTaskDefinitionArn', 'ReplicateTaskDefinitionArn']);
    const taskDefinitions = taskDefinitionsOf(template, stack.migration);
    for (const task of fargateTasks) {
      const statements = roleStatements(template, roleIdOf(taskDefinitions[task.name]!.Properties.TaskRoleArn));
      const reporting = statements.filter((s) => actionsOf(s).some((action) => action.startsWith('states:')));
      if (task.name === 'Snapshot' || task.name === 'Replicate') {
        expect(reporting, task.name).toEqual([
          {
            Effect: 'Allow',
            Action: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
            Resource: { Ref: logicalId(stack.migration.stateMachine) },
          },
        ]);
      } else {
        expect(reporting, task.name).toEqual([]);
      }
      for (const statement of statements) {
        for (const action of actionsOf(statement)) expect(action).toMatch(/^(states:SendTask|secretsmanager:GetSecretValue$)/);
      }
    }
  });

  it('runs the Cleanup function for executions of this state machine that were stopped, timed out or failed', () => {
    const { stack, template } = secretStack();
    const rule = stack.migration.stoppedExecutionRule!;
    expect(resourcesOf(template)[logicalId(rule)]!.Properties).toMatchObject({
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [{ Ref: logicalId(stack.migration.stateMachine) }] },
      },
      Targets: [
        {
          Id: 'Target0',
          Arn: { 'Fn::GetAtt': [logicalId(stack.migration.functions.Cleanup!), 'Arn'] },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [logicalId(stack.migration.deadLetterQueue), 'Arn'] } },
          RetryPolicy: { MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 7200 },
        },
      ],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [logicalId(rule), 'Arn'] },
    });
    // A Cleanup that fails after delivery lands in the same alarmed queue, after Lambda's retries.
    const queueArn = { 'Fn::GetAtt': [logicalId(stack.migration.deadLetterQueue), 'Arn'] };
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(stack.migration.functions.Cleanup!) },
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: queueArn } },
    });
    const cleanupRole = functionRoleId(template, logicalId(stack.migration.functions.Cleanup!));
    expect(roleStatements(template, cleanupRole)).toContainEqual(expect.objectContaining({ Action: expect.arrayContaining(['sqs:SendMessage']), Resource: queueArn }));
  });

  it('has no dependency cycle (the callback grant names the state machine that runs the task)', () => {
    const { template } = secretStack();
    const resources = resourcesOf(template);
    const dependencies = (value: unknown, found = new Set<string>()): Set<string> => {
      if (Array.isArray(value)) value.forEach((child) => dependencies(child, found));
      else if (value !== null && typeof value === 'object') {
        const intrinsic = value as Record<string, any>;
        if (typeof intrinsic.Ref === 'string' && intrinsic.Ref in resources) found.add(intrinsic.Ref);
        if (Array.isArray(intrinsic['Fn::GetAtt']) && intrinsic['Fn::GetAtt'][0] in resources) found.add(intrinsic['Fn::GetAtt'][0]);
        if ('Fn::Sub' in intrinsic) {
          const text = asList(intrinsic['Fn::Sub'])[0] as string;
          for (const [, name] of text.matchAll(/\$\{([^}.!]+)/g)) if (name! in resources) found.add(name!);
        }
        Object.values(intrinsic).forEach((child) => dependencies(child, found));
      }
      return found;
    };
    const graph = new Map(
      Object.entries(resources).map(([id, resource]) => [
        id,
        [...dependencies(resource.Properties ?? {}), ...asList(resource.DependsOn ?? [])] as string[],
      ]),
    );
    const done = new Set<string>();
    const visiting: string[] = [];
    const visit = (id: string) => {
      if (done.has(id)) return;
      if (visiting.includes(id)) throw new Error(`Dependency cycle: ${[...visiting.slice(visiting.indexOf(id)), id].join(' -> ')}`);
      visiting.push(id);
      for (const next of graph.get(id) ?? []) visit(next);
      visiting.pop();
      done.add(id);
    };
    for (const id of graph.keys()) visit(id);
    expect(done.size).toBe(graph.size);
  });

  it('grants no secret access when no secret ARNs are configured', () => {
    const { template } = defaultStack();
    // (The Secrets Manager VPC endpoint names the service; no policy does.)
    expect(JSON.stringify(template.findResources('AWS::IAM::Policy'))).not.toContain('secretsmanager');
    expect(JSON.stringify(template.findResources('AWS::IAM::Role'))).not.toContain('secretsmanager');
  });

  it.each([
    ['a list (cdk.json)', () => secretStack()],
    ['a JSON string (-c on the command line)', () => synthStack({ secretArns: JSON.stringify([sourceArn, targetArn]) })],
  ])('grants GetSecretValue on exactly the context secretArns given as %s, to database functions and tasks only', (_, synth) => {
    const { stack, template } = synth();
    const secretStatementsOf = (roleId: string) =>
      roleStatements(template, roleId).filter((s) => actionsOf(s).some((action) => action.startsWith('secretsmanager:')));
    const granted = [{ Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: [sourceArn, targetArn] }];
    for (const definition of lambdaFunctions) {
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      expect(secretStatementsOf(roleId)).toEqual(definition.needsDatabase ? granted : []);
    }
    expect(lambdaFunctions.some((definition) => definition.needsDatabase)).toBe(true);

    const executionRoles = new Set<string>();
    for (const taskDefinition of Object.values(taskDefinitionsOf(template, stack.migration))) {
      expect(secretStatementsOf(roleIdOf(taskDefinition.Properties.TaskRoleArn))).toEqual(granted);
      executionRoles.add(roleIdOf(taskDefinition.Properties.ExecutionRoleArn));
    }
    for (const roleId of executionRoles) expect(secretStatementsOf(roleId)).toEqual([]);
    expect(secretStatementsOf(stateMachineRoleId(template))).toEqual([]);
  });

  it('lets the same roles decrypt with the secrets\' customer-managed KMS keys, through Secrets Manager only', () => {
    const key = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const { stack, template } = synthStack({ secretArns: [sourceArn, targetArn], secretKmsKeyArns: [key] });
    const decryptOf = (roleId: string) => roleStatements(template, roleId).filter((s) => actionsOf(s).includes('kms:Decrypt'));
    const expected = [
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: key,
        Condition: { StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } } },
      },
    ];
    for (const definition of lambdaFunctions) {
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      expect(decryptOf(roleId)).toEqual(definition.needsDatabase ? expected : []);
    }
    for (const taskDefinition of Object.values(taskDefinitionsOf(template, stack.migration))) {
      expect(decryptOf(roleIdOf(taskDefinition.Properties.TaskRoleArn))).toEqual(expected);
    }
    expect(() => synthStack({ secretKmsKeyArns: ['alias/my-key'] })).toThrow(/secretKmsKeyArns/);
  });

  it('wildcards the suffix of a partial secret ARN (the name only), which IAM would otherwise match to nothing', () => {
    const partial = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source';
    const { stack, template } = synthStack({ secretArns: [partial, targetArn] });
    const roleId = functionRoleId(template, logicalId(stack.migration.functions.Precheck!));
    const statement = roleStatements(template, roleId).find((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'));
    expect(statement?.Resource).toEqual([`${partial}-??????`, targetArn]);
  });

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

describe('PgferryStack networking', () => {
  const interfaceServices = ['secretsmanager', 'ecr.api', 'ecr.dkr', 'logs', 'states'];
  const serviceOf = (endpoint: Resource) => render(endpoint.Properties.ServiceName).replace('com.amazonaws.<<AWS::Region>>.', '');

  it('logs all the new VPC traffic to an encrypted log group', () => {
    const { stack, template } = defaultStack();
    const resources = resourcesOf(template);
    const [, flowLog] = only(template.findResources('AWS::EC2::FlowLog') as Record<string, Resource>);
    expect(flowLog.Properties).toMatchObject({
      ResourceId: { Ref: logicalId(stack.migration.vpc as ec2.Vpc) },
      ResourceType: 'VPC',
      TrafficType: 'ALL',
      LogDestinationType: 'cloud-watch-logs',
    });
    const logGroup = resources[flowLog.Properties.LogGroupName.Ref]!;
    expect(logGroup.Properties).toEqual({ RetentionInDays: 30, KmsKeyId: { 'Fn::GetAtt': [logicalId(stack.migration.encryptionKey), 'Arn'] } });
  });

  it('keeps AWS API traffic in the VPC: interface endpoints open to the functions and tasks only, and an S3 gateway', () => {
    const { stack, template } = defaultStack();
    const vpc = stack.migration.vpc as ec2.Vpc;
    const privateSubnets = vpc.privateSubnets.map((subnet) => ({ Ref: logicalId(subnet) }));
    const endpoints = Object.values(template.findResources('AWS::EC2::VPCEndpoint') as Record<string, Resource>);
    const interfaces = endpoints.filter((endpoint) => endpoint.Properties.VpcEndpointType === 'Interface');
    expect(interfaces.map(serviceOf).sort()).toEqual([...interfaceServices].sort());
    const endpointGroup = { 'Fn::GetAtt': [logicalId(stack.migration.endpointSecurityGroup!), 'GroupId'] };
    for (const endpoint of interfaces) {
      expect(endpoint.Properties).toMatchObject({ PrivateDnsEnabled: true, SubnetIds: privateSubnets, SecurityGroupIds: [endpointGroup] });
    }
    const [gateway, ...others] = endpoints.filter((endpoint) => endpoint.Properties.VpcEndpointType === 'Gateway');
    expect(others).toEqual([]);
    expect(serviceOf(gateway!)).toBe('s3');
    const privateRouteTables = vpc.privateSubnets.map((subnet) => stack.resolve(subnet.routeTable.routeTableId));
    expect(privateRouteTables).toHaveLength(2);
    expect(sortJson(gateway!.Properties.RouteTableIds)).toEqual(sortJson(privateRouteTables));

    // HTTPS from the two client security groups, nothing else in, nothing out.
    const resources = resourcesOf(template);
    const group = resources[logicalId(stack.migration.endpointSecurityGroup!)]!;
    expect(group.Properties.SecurityGroupIngress).toBeUndefined();
    expect(group.Properties.SecurityGroupEgress).toEqual([expect.objectContaining({ CidrIp: '255.255.255.255/32', Description: 'Disallow all traffic' })]);
    const ingress = Object.values(template.findResources('AWS::EC2::SecurityGroupIngress') as Record<string, Resource>);
    expect(ingress.map((rule) => rule.Properties.GroupId)).toEqual([endpointGroup, endpointGroup]);
    expect(sortJson(ingress.map((rule) => rule.Properties.SourceSecurityGroupId))).toEqual(
      sortJson([
        { 'Fn::GetAtt': [logicalId(stack.migration.databaseClientSecurityGroup as ec2.SecurityGroup), 'GroupId'] },
        { 'Fn::GetAtt': [logicalId(stack.migration.taskSecurityGroup as ec2.SecurityGroup), 'GroupId'] },
      ]),
    );
    for (const rule of ingress) expect(rule.Properties).toMatchObject({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443 });
  });

  it('creates isolated subnets without NAT gateway or internet gateway for natGateways 0, endpoints still on', () => {
    const { stack, template } = synthStack({ natGateways: '0' });
    const vpc = stack.migration.vpc as ec2.Vpc;
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    template.resourceCountIs('AWS::EC2::Route', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    expect(vpc.isolatedSubnets).toHaveLength(2);
    expect(vpc.publicSubnets).toHaveLength(0);
    expect(substitution(template, 'TaskSubnetIds')).toBe(vpc.isolatedSubnets.map((subnet) => `<<${logicalId(subnet)}>>`).join(','));
    template.resourceCountIs('AWS::EC2::VPCEndpoint', interfaceServices.length + 1);
    template.resourceCountIs('AWS::EC2::FlowLog', 1);
  });

  it('takes the NAT gateway count and the endpoints switch from context, and refuses what cannot work', () => {
    const { template } = synthStack({ natGateways: 2, vpcEndpoints: 'false' });
    template.resourceCountIs('AWS::EC2::NatGateway', 2);
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    expect(() => synthStack({ natGateways: '0', vpcEndpoints: false })).toThrow(/VPC endpoints/);
    expect(() => synthStack({ natGateways: 'one' })).toThrow(/natGateways/);
    expect(() => synthStack({ natGateways: 3 })).toThrow(/natGateways/);
    expect(() => synthStack({ vpcEndpoints: 'yes' })).toThrow(/vpcEndpoints/);
    const vpcStack = new Stack(newApp(), 'Both');
    const vpc = new ec2.Vpc(vpcStack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    expect(() => new PgferryMigration(vpcStack, 'Migration', { vpc, natGateways: 0 })).toThrow(/natGateways and vpcEndpoints/);
  });

  it('uses an existing VPC, subnets and security groups from context without creating any network resource', () => {
    const { stack, template } = existingVpcStack();
    for (const type of [
      'AWS::EC2::VPC',
      'AWS::EC2::Subnet',
      'AWS::EC2::NatGateway',
      'AWS::EC2::InternetGateway',
      'AWS::EC2::RouteTable',
      'AWS::EC2::Route',
      'AWS::EC2::VPCEndpoint',
      'AWS::EC2::FlowLog',
      'AWS::EC2::SecurityGroup',
      'AWS::EC2::SecurityGroupIngress',
      'AWS::EC2::SecurityGroupEgress',
    ]) {
      template.resourceCountIs(type, 0);
    }
    expect(stack.migration.endpointSecurityGroup).toBeUndefined();
    expect(substitution(template, 'TaskSubnetIds')).toBe(existingVpc.subnetIds.join(','));
    expect(substitution(template, 'TaskSecurityGroupIds')).toBe(existingVpc.taskSecurityGroupId);
    const resources = resourcesOf(template);
    for (const definition of lambdaFunctions.filter((d) => d.needsDatabase)) {
      expect(resources[logicalId(stack.migration.functions[definition.name]!)]!.Properties.VpcConfig).toEqual({
        SubnetIds: existingVpc.subnetIds,
        SecurityGroupIds: [existingVpc.databaseClientSecurityGroupId],
      });
    }
    template.hasOutput('DatabaseClientSecurityGroupId', { Value: existingVpc.databaseClientSecurityGroupId });
    template.hasOutput('TaskSecurityGroupId', { Value: existingVpc.taskSecurityGroupId });
    // No warning about the given subnets' route tables (nothing reads them).
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('routeTableId'))).toEqual([]);
  });

  it('creates its own security groups in an existing VPC when none are given', () => {
    const { vpcId, subnetIds, availabilityZones } = existingVpc;
    const { stack, template } = synthStack({ vpcId, subnetIds: JSON.stringify(subnetIds), availabilityZones });
    template.resourceCountIs('AWS::EC2::SecurityGroup', 2);
    template.resourceCountIs('AWS::EC2::VPC', 0);
    for (const group of [stack.migration.databaseClientSecurityGroup, stack.migration.taskSecurityGroup]) {
      expect(resourcesOf(template)[logicalId(group as ec2.SecurityGroup)]!.Properties.VpcId).toBe(vpcId);
    }
  });

  it('rejects network context that is incomplete or malformed', () => {
    const { vpcId, subnetIds, availabilityZones } = existingVpc;
    expect(() => synthStack({ subnetIds })).toThrow(/'subnetIds' needs 'vpcId'/);
    expect(() => synthStack({ taskSecurityGroupId: existingVpc.taskSecurityGroupId })).toThrow(/needs 'vpcId'/);
    expect(() => synthStack({ vpcId })).toThrow(/needs 'subnetIds' and 'availabilityZones'/);
    expect(() => synthStack({ vpcId: 'vpc-1', subnetIds, availabilityZones })).toThrow(/'vpcId' must be a VPC id/);
    expect(() => synthStack({ vpcId, subnetIds: ['subnet-x'], availabilityZones })).toThrow(/'subnetIds' must be a JSON list of subnet ids/);
    expect(() => synthStack({ vpcId, subnetIds: subnetIds.slice(0, 1), availabilityZones })).toThrow(/same number of subnets/);
    expect(() => synthStack({ vpcId, subnetIds, availabilityZones, databaseClientSecurityGroupId: 'default' })).toThrow(/security group id/);
    expect(() => synthStack({ alarmTopicArn: 'pgferry-ops' })).toThrow(/alarmTopicArn/);
    expect(() => synthStack({ alarmEmails: 'ops@example.com' })).toThrow(/alarmEmails/);
  });
});

describe('PgferryStack operation', () => {
  it('keeps the operator function out of the workflow: no substitution, no warning, no invoke grant', () => {
    const { stack, template } = defaultStack();
    const operators = lambdaFunctions.filter((definition) => definition.operator);
    expect(operators.map((definition) => definition.name)).toEqual(['Operator']);
    const operator = operators[0]!;
    expect(stack.migration.operatorFunction).toBe(stack.migration.functions.Operator);
    const substitutions = stateMachineOf(template).Properties.DefinitionSubstitutions as Record<string, unknown>;
    expect(Object.keys(substitutions)).not.toContain(operator.arnPlaceholder);
    expect(Object.keys(substitutions).sort()).toEqual(
      [
        'ClusterArn',
        'TaskSubnetIds',
        'TaskSecurityGroupIds',
        ...lambdaFunctions.filter((definition) => !definition.operator).map((definition) => definition.arnPlaceholder),
        ...fargateTasks.map((task) => task.taskDefinitionPlaceholder),
      ].sort(),
    );
    expect(Annotations.fromStack(stack).findWarning('*', Match.anyValue())).toEqual([]);
    template.hasOutput('OperatorFunctionArn', { Value: { 'Fn::GetAtt': [logicalId(stack.migration.operatorFunction!), 'Arn'] } });
  });

  it('refuses a definition that names the operator function', () => {
    const definitionPath = join(tempDir(), 'operator.asl.json');
    writeFileSync(definitionPath, readFileSync(migrationDefinitionPath, 'utf8').replace('${PrecheckFunctionArn}', '${OperatorFunctionArn}'));
    expect(() => new PgferryMigration(new Stack(newApp(), 'Operator'), 'Migration', { definitionPath })).toThrow(
      /\$\{OperatorFunctionArn\}.*operator function/,
    );
  });

  it('tags the state machine, and only it, with the operator function, the scheduler role and the schedule group', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const tags = Object.fromEntries(
      (stateMachineOf(template).Properties.Tags as { Key: string; Value: unknown }[]).map((tag) => [tag.Key, tag.Value]),
    );
    expect(tags).toEqual({
      [stateMachineTags.operatorFunction]: { 'Fn::GetAtt': [logicalId(migration.operatorFunction!), 'Arn'] },
      [stateMachineTags.schedulerRole]: { 'Fn::GetAtt': [logicalId(migration.schedulerRole), 'Arn'] },
      [stateMachineTags.scheduleGroup]: stack.resolve(migration.scheduleGroup.ref),
    });
    for (const [id, resource] of Object.entries(resourcesOf(template))) {
      if (resource.Type === 'AWS::StepFunctions::StateMachine') continue;
      expect(JSON.stringify(resource.Properties?.Tags ?? []), id).not.toContain('pgferry:');
    }
  });

  it('starts an execution with the event detail as input for each start event, through a role that may do only that', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const rule = resourcesOf(template)[logicalId(migration.startRule)]!;
    expect(rule.Properties.EventPattern).toEqual({ source: [startMigrationEvent.source], 'detail-type': [startMigrationEvent.detailType] });
    expect(rule.Properties.EventBusName).toBeUndefined();
    const [target, ...others] = rule.Properties.Targets as Record<string, any>[];
    expect(others).toEqual([]);
    expect(target).toMatchObject({
      Arn: { Ref: logicalId(migration.stateMachine) },
      InputPath: '$.detail',
      DeadLetterConfig: { Arn: { 'Fn::GetAtt': [logicalId(migration.deadLetterQueue), 'Arn'] } },
      RetryPolicy: { MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 7200 },
    });
    const roleId = roleIdOf(target!.RoleArn);
    expect(resourcesOf(template)[roleId]!.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' } },
    ]);
    expect(roleStatements(template, roleId)).toEqual([
      { Action: 'states:StartExecution', Effect: 'Allow', Resource: { Ref: logicalId(migration.stateMachine) } },
    ]);
  });

  it('keeps undeliverable events in an encrypted, TLS-only dead-letter queue only the two rules may write to', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const queueId = logicalId(migration.deadLetterQueue);
    expect(resourcesOf(template)[queueId]!.Properties).toEqual({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
    const [, policy] = only(template.findResources('AWS::SQS::QueuePolicy') as Record<string, Resource>);
    const statements = policy.Properties.PolicyDocument.Statement as (Statement & { Principal: unknown })[];
    expect(statements).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    );
    const allowed = statements.filter((statement) => statement.Effect === 'Allow');
    expect(allowed.map((statement) => statement.Principal)).toEqual([{ Service: 'events.amazonaws.com' }, { Service: 'events.amazonaws.com' }]);
    expect(allowed.map((statement) => statement.Action)).toEqual(['sqs:SendMessage', 'sqs:SendMessage']);
    expect(sortJson(allowed.map((statement) => statement.Condition))).toEqual(
      sortJson(
        [migration.startRule, migration.stoppedExecutionRule!].map((rule) => ({ ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [logicalId(rule), 'Arn'] } } })),
      ),
    );
  });

  it('gives EventBridge Scheduler a schedule group and a role, for that group of this account only, that may only start this state machine', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    template.resourceCountIs('AWS::Scheduler::ScheduleGroup', 1);
    const role = resourcesOf(template)[logicalId(migration.schedulerRole)]!;
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { Service: 'scheduler.amazonaws.com' },
        Condition: {
          StringEquals: {
            'aws:SourceAccount': { Ref: 'AWS::AccountId' },
            'aws:SourceArn': stack.resolve(migration.scheduleGroup.attrArn),
          },
        },
      },
    ]);
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    expect(role.Properties.Policies).toBeUndefined();
    expect(roleStatements(template, logicalId(migration.schedulerRole))).toEqual([
      { Action: 'states:StartExecution', Effect: 'Allow', Resource: { Ref: logicalId(migration.stateMachine) } },
    ]);
    template.hasOutput('ScheduleGroupName', { Value: stack.resolve(migration.scheduleGroup.ref) });
    template.hasOutput('SchedulerRoleArn', { Value: { 'Fn::GetAtt': [logicalId(migration.schedulerRole), 'Arn'] } });
  });

  it('adds a heartbeat timeout to every callback task of the deployed definition', () => {
    const { template } = defaultStack();
    const states = taskStates(JSON.parse(deployedDefinition(stateMachineOf(template))));
    const callbacks = states.filter((state) => state.Resource === 'arn:aws:states:::ecs:runTask.waitForTaskToken');
    expect(callbacks.length).toBeGreaterThanOrEqual(2);
    for (const state of callbacks) {
      expect(state.HeartbeatSeconds).toBe(300);
      expect(state.HeartbeatSeconds).toBeLessThan(state.TimeoutSeconds);
    }
    for (const state of states.filter((s) => !callbacks.includes(s))) expect(state.HeartbeatSeconds).toBeUndefined();
  });
});

describe('PgferryStack alerts and metrics', () => {
  const alarms = (template: Template) => Object.entries(template.findResources('AWS::CloudWatch::Alarm') as Record<string, Resource>);

  it('encrypts the new alarm topic with the rotated key, TLS only, and lets CloudWatch and CloudWatch Logs use the key', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const keyId = logicalId(migration.encryptionKey);
    const topicId = logicalId(migration.alarmTopic as Construct);
    expect(resourcesOf(template)[topicId]!.Properties).toMatchObject({ KmsMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
    const [, topicPolicy] = only(template.findResources('AWS::SNS::TopicPolicy') as Record<string, Resource>);
    expect(topicPolicy.Properties.PolicyDocument.Statement).toEqual([
      expect.objectContaining({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    ]);
    const key = resourcesOf(template)[keyId]!;
    expect(key.Properties.EnableKeyRotation).toBe(true);
    const statements = key.Properties.KeyPolicy.Statement as (Statement & { Principal: any })[];
    const logs = statements.find((statement) => JSON.stringify(statement.Principal).includes('logs.'))!;
    expect(render(logs.Principal.Service)).toBe('logs.<<AWS::Region>>.amazonaws.com');
    expect(render(logs.Condition && (logs.Condition as any).ArnLike['kms:EncryptionContext:aws:logs:arn'])).toBe(
      'arn:<<AWS::Partition>>:logs:<<AWS::Region>>:<<AWS::AccountId>>:log-group:*',
    );
    expect(statements.find((statement) => statement.Principal.Service === 'cloudwatch.amazonaws.com')).toMatchObject({
      Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
    });
    template.allResourcesProperties('AWS::Logs::LogGroup', { KmsKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
    template.hasOutput('AlarmTopicArn', { Value: { Ref: topicId } });
  });

  it('alarms on failed and timed-out executions, lag over threshold, function errors and undelivered events, all to the topic', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const topic = { Ref: logicalId(migration.alarmTopic as Construct) };
    const all = alarms(template);
    const workflowFunctions = Object.keys(migration.functions);
    expect(all).toHaveLength(4 + workflowFunctions.length);
    for (const [id, alarm] of all) {
      expect(alarm.Properties, id).toMatchObject({
        AlarmActions: [topic],
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        Threshold: 1,
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
    const byId = Object.fromEntries(all);
    const stateMachine = [{ Name: 'StateMachineArn', Value: { Ref: logicalId(migration.stateMachine) } }];
    expect(byId[logicalId(migration.monitoring.executionsFailedAlarm)]!.Properties).toMatchObject({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsFailed',
      Dimensions: stateMachine,
      Statistic: 'Sum',
      Period: 60,
    });
    expect(byId[logicalId(migration.monitoring.executionsTimedOutAlarm)]!.Properties).toMatchObject({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsTimedOut',
      Dimensions: stateMachine,
      Statistic: 'Sum',
    });
    expect(byId[logicalId(migration.monitoring.replicationLagAlarm)]!.Properties).toMatchObject({
      Namespace: metrics.namespace,
      MetricName: metrics.names.lagOverThreshold,
      Dimensions: [{ Name: metrics.serviceDimension, Value: migration.serviceName }],
      Statistic: 'Maximum',
      Period: 60,
      OKActions: [topic],
    });
    for (const name of workflowFunctions) {
      expect(byId[logicalId(migration.monitoring.functionErrorAlarms[name]!)]!.Properties, name).toMatchObject({
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(migration.functions[name]!) } }],
        Statistic: 'Sum',
      });
    }
    expect(byId[logicalId(migration.monitoring.deadLetterAlarm)]!.Properties).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(migration.deadLetterQueue), 'QueueName'] } }],
    });
  });

  it('has a dashboard of executions, lag, rows and bytes, and the functions, for this deployment', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const [dashboardId, dashboard] = only(template.findResources('AWS::CloudWatch::Dashboard') as Record<string, Resource>);
    expect(dashboardId).toBe(logicalId(migration.dashboard));
    const body = JSON.parse(render(dashboard.Properties.DashboardBody)) as { widgets: { properties: { title: string; metrics?: unknown[][] } }[] };
    const widget = (title: string) => body.widgets.find((w) => w.properties.title === title)!.properties.metrics!;
    const names = (title: string) => widget(title).map((metric) => `${metric[0]}/${metric[1]}`);
    expect(names('Executions')).toEqual(['Started', 'Succeeded', 'Failed', 'TimedOut', 'Aborted'].map((n) => `AWS/States/Executions${n}`));
    expect(names('Replication lag (seconds)')).toEqual([`pgferry/${metrics.names.lagSeconds}`, `pgferry/${metrics.names.lagOverThreshold}`]);
    expect(names('Replication lag (bytes)')).toEqual([`pgferry/${metrics.names.lagBytes}`]);
    expect(names('Rows applied (CDC)')).toEqual([`pgferry/${metrics.names.rowsApplied}`]);
    expect(names('Rows copied (full load)')).toEqual([`pgferry/${metrics.names.rowsCopied}`]);
    expect(names('Bytes copied (full load)')).toEqual([`pgferry/${metrics.names.bytesCopied}`]);
    for (const title of ['Replication lag (seconds)', 'Rows applied (CDC)', 'Bytes copied (full load)']) {
      for (const metric of widget(title)) expect(metric.slice(2, 4)).toEqual([metrics.serviceDimension, migration.serviceName]);
    }
    expect(names('Lambda errors')).toEqual(lambdaFunctions.map(() => 'AWS/Lambda/Errors'));
    expect(names('Lambda duration (p99)')).toEqual(lambdaFunctions.map(() => 'AWS/Lambda/Duration'));
    template.hasOutput('DashboardName', { Value: { Ref: dashboardId } });
    template.hasOutput('MetricsServiceName', { Value: migration.serviceName });
  });

  it('sends the alarms to an existing topic from context and subscribes the e-mail addresses to it', () => {
    const { template } = existingVpcStack();
    template.resourceCountIs('AWS::SNS::Topic', 0);
    for (const [id, alarm] of alarms(template)) expect(alarm.Properties.AlarmActions, id).toEqual([existingVpc.alarmTopicArn]);
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com', TopicArn: existingVpc.alarmTopicArn });
    template.hasOutput('AlarmTopicArn', { Value: existingVpc.alarmTopicArn });
    // No topic to encrypt: the key serves the log groups only.
    const [, key] = only(template.findResources('AWS::KMS::Key') as Record<string, Resource>);
    expect(JSON.stringify(key.Properties.KeyPolicy)).not.toContain('cloudwatch.amazonaws.com');
  });

  it('subscribes e-mail addresses to the new topic', () => {
    const { stack, template } = synthStack({ alarmEmails: JSON.stringify(['a@example.com', 'b@example.com']) });
    const topic = { Ref: logicalId(stack.migration.alarmTopic as Construct) };
    template.resourceCountIs('AWS::SNS::Subscription', 2);
    for (const email of ['a@example.com', 'b@example.com']) {
      template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: email, TopicArn: topic });
    }
  });

  it('names each deployment uniquely in the metrics, or as told', () => {
    const stack = new Stack(newApp(), 'Two');
    const a = new PgferryMigration(stack, 'A');
    const b = new PgferryMigration(stack, 'B', { serviceName: 'pgferry-prod' });
    expect(a.serviceName).toMatch(/^pgferry-[0-9a-f]{8}$/);
    expect(b.serviceName).toBe('pgferry-prod');
    expect(new PgferryMigration(stack, 'C').serviceName).not.toBe(a.serviceName);
    expect(defaultStack().stack.migration.serviceName).toBe(synthStack().stack.migration.serviceName);
  });
});

describe('PgferryMigration', () => {
  it('puts the database functions and the tasks in the given VPC private subnets', () => {
    const stack = new Stack(newApp(), 'WithVpc');
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const migration = new PgferryMigration(stack, 'Migration', {
      vpc,
      secretArns: [sourceArn],
      stateMachineName: 'pgferry-test',
      logRetention: logs.RetentionDays.ONE_WEEK,
    });
    const template = Template.fromStack(stack);
    const resources = resourcesOf(template);
    const privateSubnets = vpc.privateSubnets.map((subnet) => ({ Ref: logicalId(subnet) }));

    template.resourceCountIs('AWS::EC2::VPC', 1);
    expect(migration.vpc).toBe(vpc);
    for (const definition of lambdaFunctions) {
      const fn = resources[logicalId(migration.functions[definition.name]!)]!;
      if (definition.needsDatabase) {
        expect(fn.Properties.VpcConfig).toEqual({
          SubnetIds: privateSubnets,
          SecurityGroupIds: [{ 'Fn::GetAtt': [logicalId(migration.databaseClientSecurityGroup), 'GroupId'] }],
        });
        const secretStatements = roleStatements(template, functionRoleId(template, logicalId(migration.functions[definition.name]!)))
          .filter((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'));
        expect(secretStatements.map((s) => s.Resource)).toEqual([sourceArn]);
      } else {
        expect(fn.Properties.VpcConfig).toBeUndefined();
      }
    }
    expect(substitution(template, 'TaskSubnetIds')).toBe(privateSubnets.map((subnet) => `<<${subnet.Ref}>>`).join(','));
    expect(resources[logicalId(migration.taskSecurityGroup)]!.Properties.VpcId).toEqual({ Ref: logicalId(vpc) });
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineName: 'pgferry-test' });
  });

  it('uses a given task definition and task sizes, and still scopes RunTask and PassRole to the tasks it runs', () => {
    const stack = new Stack(newApp(), 'Given');
    const given = new ecs.FargateTaskDefinition(stack, 'CustomCopy', { cpu: 4096, memoryLimitMiB: 8192 });
    given.addContainer('pgferry', { image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/pgferry:1') });
    const migration = new PgferryMigration(stack, 'Migration', {
      taskDefinitions: { Copy: given },
      taskSizes: { Compare: { cpu: 2048, memoryLimitMiB: 4096 } },
    });
    const template = Template.fromStack(stack);

    template.resourceCountIs('AWS::ECS::TaskDefinition', fargateTasks.length);
    expect(migration.taskDefinitions.Copy).toBe(given);
    expect(substitution(template, 'CopyTaskDefinitionArn')).toBe(`<<${logicalId(given)}>>`);
    expect(taskDefinitionsOf(template, migration).Compare!.Properties).toMatchObject({ Cpu: '2048', Memory: '4096' });
    // The given container gets the metrics settings too (the lag alarm reads its metrics).
    expect(resourcesOf(template)[logicalId(given)]!.Properties.ContainerDefinitions[0].Environment).toEqual([
      { Name: 'POWERTOOLS_SERVICE_NAME', Value: migration.serviceName },
      { Name: 'POWERTOOLS_METRICS_NAMESPACE', Value: metrics.namespace },
      { Name: 'PGFERRY_METRICS', Value: 'emf' },
    ]);

    const statements = roleStatements(template, stateMachineRoleId(template));
    const runTask = statements.find((s) => actionsOf(s).includes('ecs:RunTask'))!;
    expect(asList(runTask.Resource).map(render)).toContain(
      `arn:<<AWS::Partition>>:ecs:<<AWS::Region>>:<<AWS::AccountId>>:task-definition/${given.family}:*`,
    );
    const passRole = statements.find((s) => actionsOf(s).includes('iam:PassRole'))!;
    // The given task role (it needs no execution role), the generated task roles and their shared execution role.
    expect(given.executionRole).toBeUndefined();
    expect(asList(passRole.Resource)).toContainEqual({ 'Fn::GetAtt': [logicalId(given.taskRole), 'Arn'] });
    expect(asList(passRole.Resource)).toHaveLength(fargateTasks.length + 1);
  });

  it('rejects task definitions and sizes it cannot use', () => {
    const noContainer = new Stack(newApp(), 'NoContainer');
    const bare = new ecs.FargateTaskDefinition(noContainer, 'Bare');
    bare.addContainer('app', { image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/app:1') });
    expect(() => new PgferryMigration(noContainer, 'Migration', { taskDefinitions: { Copy: bare } })).toThrow(/container named 'pgferry'/);
    expect(() => new PgferryMigration(new Stack(newApp(), 'Unknown'), 'Migration', { taskSizes: { Cpoy: { cpu: 256, memoryLimitMiB: 512 } } })).toThrow(
      /'Cpoy' is not a task/,
    );
    const publicStack = new Stack(newApp(), 'Public');
    const vpc = new ec2.Vpc(publicStack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    expect(() => new PgferryMigration(publicStack, 'Migration', { vpc, vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC } })).toThrow(
      /private subnets/,
    );
  });

  it('fails at synth when the definition uses a placeholder nothing substitutes', () => {
    const definitionPath = join(tempDir(), 'bad.asl.json');
    writeFileSync(
      definitionPath,
      readFileSync(migrationDefinitionPath, 'utf8').replace('${PrecheckFunctionArn}', '${PrecheckFunctionArn}${MysteryFunctionArn}'),
    );
    const stack = new Stack(newApp(), 'Bad');
    expect(() => new PgferryMigration(stack, 'Migration', { definitionPath })).toThrow(/\$\{MysteryFunctionArn\}/);
  });

  it('warns about a registered function or task the definition never uses', () => {
    const definitionPath = join(tempDir(), 'partial.asl.json');
    writeFileSync(
      definitionPath,
      readFileSync(migrationDefinitionPath, 'utf8')
        .replaceAll('${DescribeFailureFunctionArn}', 'arn:aws:lambda:eu-west-1:123456789012:function:x')
        .replaceAll('${CompareTaskDefinitionArn}', 'arn:aws:ecs:eu-west-1:123456789012:task-definition/x:1'),
    );
    const stack = new Stack(newApp(), 'Partial');
    new PgferryMigration(stack, 'Migration', { definitionPath });
    const annotations = Annotations.fromStack(stack);
    annotations.hasWarning('*', Match.stringLikeRegexp('DescribeFailureFunctionArn'));
    annotations.hasWarning('*', Match.stringLikeRegexp('CompareTaskDefinitionArn'));
  });
});

describe('bundling', () => {
  it('bundles every function with the local esbuild into a loadable ESM module', () => {
    const app = newApp({}, { bundle: true });
    const stack = new PgferryStack(app, 'Bundled');
    const template = Template.fromStack(stack);
    const outdir = app.outdir;
    // Lambda provides @aws-sdk/*; here the bundles find it in the repository's node_modules.
    symlinkSync(join(repoRoot, 'node_modules'), join(outdir, 'node_modules'), 'dir');

    for (const definition of lambdaFunctions) {
      const fn = resourcesOf(template)[logicalId(stack.migration.functions[definition.name]!)]!;
      const assetDir = join(outdir, `asset.${(fn.Properties.Code.S3Key as string).replace(/\.zip$/, '')}`);
      expect(readdirSync(assetDir).sort()).toEqual(['index.mjs', 'index.mjs.map']);
      const bundle = join(assetDir, 'index.mjs');
      expect(readFileSync(bundle, 'utf8')).toMatch(/^import \{ createRequire \} from 'module'; const require = createRequire\(import\.meta\.url\);/);

      const exported = execFileSync(
        process.execPath,
        ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(bundle).href)}); console.log(typeof m.handler);`],
        { encoding: 'utf8', timeout: 30_000 },
      );
      expect(exported.trim(), definition.name).toBe('function');
    }
  });

  it('stages a Docker context from which the Dockerfile builds a runnable, self-contained bundle per task', () => {
    const { app } = defaultStack();
    const assets = JSON.parse(readFileSync(join(app.outdir, 'Pgferry.assets.json'), 'utf8'));
    const [, image] = only(assets.dockerImages as Record<string, any>);
    const staged = join(app.outdir, image.source.directory as string);

    // The context is the .dockerignore allowlist: sources of the tasks, not the rest of the repository.
    const top = readdirSync(staged).sort();
    for (const name of ['Dockerfile', 'package.json', 'package-lock.json', 'tasks']) expect(top).toContain(name);
    for (const name of ['node_modules', 'cdk.out', '.git', 'test', 'bench', 'lambdas', 'local', 'scratch']) expect(top).not.toContain(name);
    for (const task of fargateTasks) expect(existsSync(join(staged, task.entry)), task.entry).toBe(true);

    const dockerfile = readFileSync(join(staged, 'Dockerfile'), 'utf8');
    expect(dockerfile).toBe(readFileSync(join(repoRoot, 'Dockerfile'), 'utf8'));
    const stages = dockerfile.split(/^FROM /m).slice(1);
    expect(stages).toHaveLength(2);
    expect(stages[0]).toMatch(/^--platform=\$BUILDPLATFORM node:22-slim AS build\n/);
    expect(stages[0]).toMatch(/^RUN npm ci\b/m);
    const final = stages[1]!;
    expect(final).toMatch(/^node:22-slim\n/);
    expect(final).toMatch(/^COPY --from=build \S+\/dist\/tasks \.\/dist\/tasks$/m);
    expect(final).toMatch(/^WORKDIR \/app$/m);
    expect(final).toMatch(/^USER node$/m);
    expect(final).toMatch(/^ENTRYPOINT \["node"\]$/m);
    expect(final).not.toMatch(/^(CMD|RUN) /m);

    // The build stage, without Docker: the context plus installed dependencies, then the
    // Dockerfile's own bundle command.
    const bundleCommand = /^RUN (npx tsx infra\/bundle-tasks\.ts dist\/tasks)$/m.exec(stages[0]!)?.[1];
    expect(bundleCommand).toBeDefined();
    const build = join(tempDir(), 'build');
    cpSync(staged, build, { recursive: true });
    symlinkSync(join(repoRoot, 'node_modules'), join(build, 'node_modules'), 'dir');
    execFileSync('sh', ['-c', bundleCommand!], { cwd: build, encoding: 'utf8', timeout: 60_000, stdio: 'pipe' });

    // The final stage: the bundles alone, run the way the task definitions run them.
    const app2 = join(tempDir(), 'app');
    mkdirSync(join(app2, 'dist'), { recursive: true });
    cpSync(join(build, 'dist', 'tasks'), join(app2, 'dist', 'tasks'), { recursive: true });
    for (const task of fargateTasks) {
      const [command] = expectedCommand(task.entry);
      const bundle = join(app2, command!);
      expect(existsSync(bundle), command).toBe(true);
      expect(readFileSync(bundle, 'utf8')).toMatch(/^import \{ createRequire \} from 'module'; const require = createRequire\(import\.meta\.url\);/);
      // Without the workflow's environment every task stops at its first setting (the
      // migration, or the task token of a callback task): proof that
      // the whole bundle loaded, without any node_modules.
      const run = spawnSync(process.execPath, ['--enable-source-maps', command!], {
        cwd: app2,
        env: { PATH: process.env.PATH },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(run.stderr, task.name).toMatch(/PGFERRY_[A-Z_]+ is not set/);
      expect(run.stderr, task.name).not.toMatch(/Cannot find (module|package)|Dynamic require/);
      expect(run.status, task.name).toBe(1);
    }
  });
});
