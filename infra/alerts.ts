/**
 * The per-migration alert topics (issue 15, item 4) in PgferryMigration: the functions and
 * tasks that publish a migration's alerts (the registries' `publishesAlerts`) may publish to the
 * listed topics only (`sns:Publish`, and for topics encrypted with a customer managed key,
 * that key through SNS only), and ValidateSpec learns the list, so that a spec naming another
 * topic is refused before the run starts. Without topics nothing is granted or set: ValidateSpec
 * in a Lambda then refuses every alerts.snsTopicArn (platform/alerts.ts).
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { lambdaFunctions } from '../lambdas/registry.js';
import { alertEnvironment } from '../platform/aws/deployment.js';
import { fargateTasks } from '../tasks/registry.js';
import { privateSubnetGroupName } from './network.js';

export interface MigrationAlertTopicsProps {
  /** SNS topics a spec's alerts.snsTopicArn may name. */
  readonly alertTopicArns: readonly string[];
  /** Customer managed KMS keys of those topics (server-side encryption): the publishers may use them through SNS. */
  readonly alertTopicKeyArns: readonly string[];
  readonly functions: Readonly<Record<string, NodejsFunction>>;
  readonly taskDefinitions: Readonly<Record<string, ecs.TaskDefinition>>;
  /** The VPC the construct created and its endpoints' security group, when it has endpoints: SNS gets one too. */
  readonly endpoints?: { vpc: ec2.IVpc; securityGroup: ec2.ISecurityGroup };
}

/** Grants the publishers and tells ValidateSpec the topics; does nothing without topics. */
export function grantAlertTopics(props: MigrationAlertTopicsProps): void {
  const { alertTopicArns, alertTopicKeyArns, functions, taskDefinitions } = props;
  if (alertTopicArns.length === 0) return;
  const publish = { [alertEnvironment.publish.name]: alertEnvironment.publish.sns };
  const grant = (grantee: iam.IGrantable) => {
    grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['sns:Publish'], resources: [...alertTopicArns] }));
    if (alertTopicKeyArns.length === 0) return;
    // SNS encrypts each message with a data key of the topic's key, on behalf of the publisher.
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [...alertTopicKeyArns],
        conditions: { StringLike: { 'kms:ViaService': 'sns.*.amazonaws.com' } },
      }),
    );
  };
  for (const def of lambdaFunctions) {
    const fn = functions[def.name];
    if (!def.publishesAlerts || !fn) continue;
    grant(fn);
    for (const [name, value] of Object.entries(publish)) fn.addEnvironment(name, value);
  }
  for (const task of fargateTasks) {
    const taskDefinition = taskDefinitions[task.name];
    if (!task.publishesAlerts || !taskDefinition) continue;
    grant(taskDefinition.taskRole);
    for (const [name, value] of Object.entries(publish)) taskDefinition.findContainer(task.containerName)?.addEnvironment(name, value);
  }
  functions.ValidateSpec?.addEnvironment(alertEnvironment.allowedTopics, JSON.stringify(alertTopicArns));
  // The publishers run in private subnets: in a VPC with endpoints (and perhaps no NAT), SNS of the stack's region needs one too.
  const { endpoints } = props;
  if (endpoints) {
    endpoints.vpc.addInterfaceEndpoint('Sns', {
      service: ec2.InterfaceVpcEndpointAwsService.SNS,
      subnets: { subnetGroupName: privateSubnetGroupName },
      privateDnsEnabled: true,
      securityGroups: [endpoints.securityGroup],
      open: false,
    });
  }
}
