/**
 * The Lambdas of PgferryMigration: one per entry of lambdas/registry.ts, each with a role and a
 * log group of its own, the database ones in the VPC with the secrets granted.
 */
import { join } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { Construct } from 'constructs';
import { type LambdaFunctionDefinition, lambdaFunctions } from '../lambdas/registry.js';
import type { MigrationEncryption } from './encryption.js';
import { deployedBundleOptions } from './esbuild-recipe.js';
import { acknowledge } from './nag.js';
import { repoRoot } from './paths.js';

/** The registry's operator function (the CLI's, never the workflow's), if any; refuses more than one. */
export function operatorDefinition(): LambdaFunctionDefinition | undefined {
  const operators = lambdaFunctions.filter((def) => def.operator);
  if (operators.length > 1) {
    throw new Error(`PgferryMigration: one operator function at most (the state machine tag names one), got ${operators.map((def) => def.name).join(', ')}.`);
  }
  return operators[0];
}

/** The functions the workflow invokes: every one but the operator's. */
export const workflowFunctionDefinitions: readonly LambdaFunctionDefinition[] = lambdaFunctions.filter((def) => !def.operator);

export interface MigrationFunctionsProps {
  readonly encryption: MigrationEncryption;
  readonly vpc: ec2.IVpc;
  readonly vpcSubnets: ec2.SubnetSelection;
  readonly databaseClientSecurityGroup: ec2.ISecurityGroup;
  /** POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE. */
  readonly metricsEnvironment: Readonly<Record<string, string>>;
}

/**
 * Builds into the scope it is given (no construct level of its own, so the logical IDs stay
 * those of PgferryMigration's direct children): per function `<name>Role`, `<name>Logs` and the
 * function `<name>`, in registry order.
 */
export class MigrationFunctions {
  /** Every function of lambdas/registry.ts, by name. */
  readonly functions: Readonly<Record<string, NodejsFunction>>;
  /** The function the CLI invokes for status and cutover (the registry's `operator` entry). */
  readonly operatorFunction?: NodejsFunction;

  constructor(scope: Construct, props: MigrationFunctionsProps) {
    const functions: Record<string, NodejsFunction> = {};
    for (const def of lambdaFunctions) functions[def.name] = migrationFunction(scope, def, props);
    this.functions = functions;
    const operator = operatorDefinition();
    this.operatorFunction = operator && functions[operator.name];
  }
}

function migrationFunction(scope: Construct, def: LambdaFunctionDefinition, props: MigrationFunctionsProps): NodejsFunction {
  // A role of its own per function instead of the AWS managed execution policies: logs go
  // to the function's own log group only.
  const role = new iam.Role(scope, `${def.name}Role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `pgferry ${def.name} function`,
  });
  const functionLogs = props.encryption.logGroup(`${def.name}Logs`);
  functionLogs.grantWrite(role);
  acknowledge(role, 'IAM5[Resource::*]', 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing)' +
    (def.needsDatabase ? ' and the VPC network interface actions Lambda requires on all resources (Create/Describe/DeleteNetworkInterface, DescribeSubnets, Assign/UnassignPrivateIpAddresses)' : '') +
    ' support no resource-level permissions.');
  if (def.needsDatabase) {
    // What AWSLambdaVPCAccessExecutionRole grants; Lambda checks them on all resources.
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: [
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        resources: ['*'],
      }),
    );
  }
  const fn = new NodejsFunction(scope, def.name, {
    entry: join(repoRoot, def.entry),
    handler: 'handler',
    runtime: lambda.Runtime.NODEJS_22_X,
    architecture: lambda.Architecture.ARM_64,
    timeout: Duration.seconds(def.timeoutSeconds),
    memorySize: def.memoryMb,
    role,
    tracing: lambda.Tracing.ACTIVE,
    projectRoot: repoRoot,
    depsLockFilePath: join(repoRoot, 'package-lock.json'),
    environment: {
      // Source maps are only applied to stack traces with this flag.
      NODE_OPTIONS: '--enable-source-maps',
      ...props.metricsEnvironment,
      POWERTOOLS_LOG_LEVEL: 'INFO',
    },
    logGroup: functionLogs,
    // The deployed recipe of infra/esbuild-recipe.ts, in CDK's terms; the Lambda runtime provides the AWS SDK.
    bundling: {
      format: OutputFormat.ESM,
      target: deployedBundleOptions.target,
      minify: deployedBundleOptions.minify,
      sourceMap: deployedBundleOptions.sourcemap,
      sourcesContent: deployedBundleOptions.sourcesContent,
      mainFields: [...deployedBundleOptions.mainFields],
      banner: deployedBundleOptions.banner.js,
      externalModules: ['@aws-sdk/*'],
      forceDockerBundling: false,
    },
    ...(def.needsDatabase
      ? { vpc: props.vpc, vpcSubnets: props.vpcSubnets, securityGroups: [props.databaseClientSecurityGroup] }
      : {}),
  });
  acknowledge(fn, 'L1', 'nodejs22.x on purpose: the same Node.js major as the task image (node:22) and the esbuild target node22, upgraded together; supported by Lambda.');
  if (def.needsDatabase) props.encryption.grantSecrets(fn);
  if (def.switchesApplication) props.encryption.grantApplicationSecrets(fn);
  return fn;
}
