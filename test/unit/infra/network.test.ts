/** The network of PgferryMigration (infra/network.ts): a new or given VPC, the subnets and security groups of the functions and tasks, the endpoints. */
import { Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { describe, expect, it } from 'vitest';
import { PgferryMigration } from '../../../infra/index.js';
import { lambdaFunctions } from '../../../lambdas/registry.js';
import { fargateTasks } from '../../../tasks/registry.js';
import {
  actionsOf,
  deployedDefinition,
  existingVpc,
  functionRoleId,
  infraTestStacks,
  logicalId,
  only,
  render,
  type Resource,
  resourcesOf,
  roleStatements,
  sortJson,
  sourceArn,
  stateMachineOf,
  substitution,
  taskStates,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { newApp, synthStack, defaultStack, existingVpcStack } = infraTestStacks('infra-network');

describe('PgferryMigration network', () => {
  const interfaceServices = ['secretsmanager', 'ecr.api', 'ecr.dkr', 'logs', 'states'];
  const serviceOf = (endpoint: Resource) => render(endpoint.Properties.ServiceName).replace('com.amazonaws.<<AWS::Region>>.', '');

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
});
