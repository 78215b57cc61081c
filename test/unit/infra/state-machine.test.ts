/** The state machine of PgferryMigration (infra/state-machine.ts): the deployed definition, its substitutions and its permissions. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { describe, expect, it } from 'vitest';
import { PgferryMigration } from '../../../infra/index.js';
import { migrationDefinitionPath } from '../../../infra/paths.js';
import { callbackTaskPlaceholders, definitionPlaceholders } from '../../../infra/state-machine.js';
import { lambdaByPlaceholder, lambdaFunctions } from '../../../lambdas/registry.js';
import { fargateTasks, taskByPlaceholder } from '../../../tasks/registry.js';
import {
  actionsOf,
  asList,
  deployedDefinition,
  infraTestStacks,
  logicalId,
  render,
  resourcesOf,
  roleIdOf,
  roleStatements,
  sortJson,
  stateMachineOf,
  stateMachineRoleId,
  taskDefinitionsOf,
  taskStates,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { tempDir, newApp, defaultStack, secretStack } = infraTestStacks('infra-state-machine');

describe('PgferryMigration state machine', () => {
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

    // ContinueAsNew starts this state machine itself, and nothing else.
    const starting = matching('states:');
    expect(starting).toHaveLength(1);
    expect(starting[0]).toMatchObject({ Effect: 'Allow', Action: 'states:StartExecution', Resource: { Ref: logicalId(stack.migration.stateMachine) } });

    // Nothing else: only the log delivery and X-Ray statements Step Functions needs remain,
    // and they are the only wildcard resources.
    const known = new Set([invoking[0], running, following, passing[0], events[0], starting[0]]);
    for (const statement of statements.filter((s) => !known.has(s))) {
      expect(statement.Resource).toBe('*');
      for (const action of actionsOf(statement)) expect(action).toMatch(/^(logs|xray):/);
    }
  });

  it('lets only the callback tasks report to the state machine, and no task anything else', () => {
    const { stack, template } = secretStack();
    expect(callbackTaskPlaceholders(JSON.parse(readFileSync(migrationDefinitionPath, 'utf8'))).sort()).toEqual(['ReplicateTaskDefinitionArn', 'SnapshotTaskDefinitionArn']);
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

  it('refuses a definition that names the operator function', () => {
    const definitionPath = join(tempDir(), 'operator.asl.json');
    writeFileSync(definitionPath, readFileSync(migrationDefinitionPath, 'utf8').replace('${PrecheckFunctionArn}', '${OperatorFunctionArn}'));
    expect(() => new PgferryMigration(new Stack(newApp(), 'Operator'), 'Migration', { definitionPath })).toThrow(
      /\$\{OperatorFunctionArn\}.*operator function/,
    );
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
