/**
 * cdk-nag 3 (the version this repository pins) runs as a CDK policy validation plugin and reads
 * acknowledgements from `Validations.of(construct).acknowledge()`: an acknowledgement covers the
 * construct and everything under it, one rule (or one finding, `Rule[Finding]`) at a time. These
 * helpers keep every acknowledgement next to the resource it is about, with its reason.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-${id}`, reason });
}

/**
 * A CloudFormation value as cdk-nag names it in a finding (its flattenCfnReference): Fn::Join
 * joined, `{Ref: X}` → `<X>`, `{Fn::GetAtt: [X, Y]}` → `<X.Y>`, `${X}` of Fn::Sub → `<X>`.
 */
export function nagText(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const intrinsic = value as Record<string, any>;
  if (intrinsic['Fn::Join']) {
    const [separator, parts] = intrinsic['Fn::Join'] as [string, unknown[]];
    return parts.map(nagText).join(separator);
  }
  if (intrinsic['Fn::Sub']) return nagText(intrinsic['Fn::Sub']);
  if (intrinsic['Fn::GetAtt']) return `<${nagText(intrinsic['Fn::GetAtt'][0])}.${nagText(intrinsic['Fn::GetAtt'][1])}>`;
  if (intrinsic['Fn::ImportValue']) return nagText(intrinsic['Fn::ImportValue']);
  if (intrinsic.Ref) return `<${nagText(intrinsic.Ref)}>`;
  return JSON.stringify(value);
}

/**
 * Acknowledges AwsSolutions-IAM5 for exactly the wildcard resources of `statement` (each one a
 * finding of its own), on the role or policy that holds it: any other wildcard added later
 * still fails the check.
 */
export function acknowledgeWildcardResources(owner: IConstruct, statement: iam.PolicyStatement, reason: string): void {
  const stack = Stack.of(owner);
  for (const resource of statement.resources) {
    const text = nagText(stack.resolve(resource));
    if (text.includes('*')) acknowledge(owner, `IAM5[Resource::${text}]`, reason);
  }
}
