import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations, Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { lambdaFunctions } from '../lambdas/registry.js';
import { fargateTasks } from '../tasks/registry.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const migrationDefinitionPath = join(repoRoot, 'state-machines', 'migration.asl.json');

export interface PgferryMigrationProps {
  /** When given, the functions that connect to the databases run in it. */
  readonly vpc?: ec2.IVpc;
  /** Subnets for the database functions. @default private subnets with egress */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** Secrets Manager secrets (source/target credentials) the database functions may read. */
  readonly secretArns?: readonly string[];
  readonly stateMachineName?: string;
  /** Retention of the functions' and the state machine's log groups. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /** Task definition of each Fargate task in tasks/registry.ts, by task name. */
  readonly taskDefinitions?: Readonly<Record<string, ecs.TaskDefinition>>;
  /** The workflow definition. @default state-machines/migration.asl.json */
  readonly definitionPath?: string;
}

/** Names inside `${…}` in an ASL text, each once, in order of first use. */
export function definitionPlaceholders(text: string): string[] {
  return [...new Set(Array.from(text.matchAll(/\$\{([^}]*)\}/g), (m) => m[1]!))];
}

/**
 * The pgferry workflow: one Lambda per entry of lambdas/registry.ts and the Step Functions
 * state machine of state-machines/migration.asl.json, its placeholders substituted.
 */
export class PgferryMigration extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly functions: Readonly<Record<string, NodejsFunction>>;
  /**
   * Shared by the functions that connect to the databases when a VPC is given: allow it
   * on the databases' security groups.
   */
  readonly databaseClientSecurityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: PgferryMigrationProps = {}) {
    super(scope, id);
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const secretArns = props.secretArns ?? [];

    if (props.vpc) {
      this.databaseClientSecurityGroup = new ec2.SecurityGroup(this, 'DatabaseClientSecurityGroup', {
        vpc: props.vpc,
        description: 'pgferry functions that connect to the source and target databases',
        allowAllOutbound: true,
      });
    }

    const functions: Record<string, NodejsFunction> = {};
    for (const def of lambdaFunctions) {
      const inVpc = def.needsDatabase && props.vpc !== undefined;
      const fn = new NodejsFunction(this, def.name, {
        entry: join(repoRoot, def.entry),
        handler: 'handler',
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        timeout: Duration.seconds(def.timeoutSeconds),
        memorySize: def.memoryMb,
        projectRoot: repoRoot,
        depsLockFilePath: join(repoRoot, 'package-lock.json'),
        // Source maps are only applied to stack traces with this flag.
        environment: { NODE_OPTIONS: '--enable-source-maps' },
        logGroup: new logs.LogGroup(this, `${def.name}Logs`, { retention }),
        bundling: {
          format: OutputFormat.ESM,
          target: 'node22',
          minify: true,
          sourceMap: true,
          mainFields: ['module', 'main'],
          // esbuild's ESM output has no `require` for the CommonJS dependencies it bundles.
          banner: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
          externalModules: ['@aws-sdk/*'],
          forceDockerBundling: false,
        },
        ...(inVpc
          ? {
              vpc: props.vpc,
              vpcSubnets: props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
              securityGroups: [this.databaseClientSecurityGroup!],
            }
          : {}),
      });
      if (def.needsDatabase && secretArns.length > 0) {
        fn.addToRolePolicy(
          new iam.PolicyStatement({
            actions: ['secretsmanager:GetSecretValue'],
            resources: [...secretArns],
          }),
        );
      }
      functions[def.name] = fn;
    }
    this.functions = functions;

    const definitionPath = props.definitionPath ?? migrationDefinitionPath;
    const definition = readFileSync(definitionPath, 'utf8');
    const placeholders = definitionPlaceholders(definition);

    const substitutions: Record<string, string> = {};
    for (const def of lambdaFunctions) {
      substitutions[def.arnPlaceholder] = functions[def.name]!.functionArn;
      if (!placeholders.includes(def.arnPlaceholder)) {
        Annotations.of(functions[def.name]!).addWarningV2(
          'pgferry:unusedFunction',
          `${definitionPath} never uses \${${def.arnPlaceholder}}: the function is deployed but not invoked.`,
        );
      }
    }
    const taskDefinitions: ecs.TaskDefinition[] = [];
    for (const task of fargateTasks) {
      const taskDefinition = props.taskDefinitions?.[task.name];
      if (!taskDefinition) {
        throw new Error(
          `PgferryMigration: no task definition for the Fargate task '${task.name}' (tasks/registry.ts); pass it in props.taskDefinitions.`,
        );
      }
      substitutions[task.taskDefinitionPlaceholder] = taskDefinition.taskDefinitionArn;
      taskDefinitions.push(taskDefinition);
    }

    const unsubstituted = placeholders.filter((name) => !Object.hasOwn(substitutions, name));
    if (unsubstituted.length > 0) {
      throw new Error(
        `PgferryMigration: ${definitionPath} uses ${unsubstituted.map((name) => `\${${name}}`).join(', ')}, ` +
          'which no entry of lambdas/registry.ts (arnPlaceholder) or tasks/registry.ts (taskDefinitionPlaceholder) provides.',
      );
    }

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions,
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'StateMachineLogs', { retention }),
        level: sfn.LogLevel.ERROR,
        includeExecutionData: true,
      },
    });

    // DefinitionBody.fromString derives no permissions from the definition.
    const functionList = Object.values(functions);
    if (functionList.length > 0) {
      this.stateMachine.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: functionList.flatMap((fn) => [fn.functionArn, `${fn.functionArn}:*`]),
        }),
      );
    }
    for (const taskDefinition of taskDefinitions) {
      taskDefinition.grantRun(this.stateMachine);
    }
  }
}
