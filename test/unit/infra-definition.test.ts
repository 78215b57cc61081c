/**
 * One workflow file, two worlds: the state machine CDK deploys and the definition the local
 * runner interprets are both state-machines/migration.asl.json, each with its own values for the
 * `${…}` placeholders; the runner also leaves out HeartbeatSeconds, which its interpreter lacks.
 * The file itself is generated from state-machines/definition.ts (`npm run asl`).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { migrationDefinitionPath } from '../../infra/paths.js';
import { definitionPlaceholders } from '../../infra/state-machine.js';
import { lambdaFunctions } from '../../lambdas/registry.js';
import { loadLocalDefinition, substituteLocally, workflowFile } from '../../local/runner/index.js';
import { definitionFile, definitionText } from '../../state-machines/definition.js';
import { fargateTasks } from '../../tasks/registry.js';
import { cdkTestApps, deployedDefinition, render } from '../support/infra.js';

const { synthStack } = cdkTestApps('definition');

/** Puts `${name}` back where `values` (name → value) were substituted into `text`. */
function unsubstitute(text: string, values: Record<string, string>): string {
  // Longest first, so that no value is replaced inside a longer one.
  const entries = Object.entries(values).sort(([, a], [, b]) => b.length - a.length);
  let result = text;
  for (const [name, value] of entries) result = result.split(value).join(`\${${name}}`);
  return result;
}

const withoutHeartbeats = (text: string) => text.replace(/^\s*"HeartbeatSeconds": \d+,\n/gm, '');

describe('the workflow file', () => {
  const file = readFileSync(migrationDefinitionPath, 'utf8');
  const placeholders = definitionPlaceholders(file);

  it('is what state-machines/definition.ts generates (run `npm run asl` after changing the description)', () => {
    expect(definitionFile).toBe(migrationDefinitionPath);
    expect(file).toBe(definitionText());
  });

  it('lets the snapshot holder hold the snapshot exactly as long as a copy worker may run', () => {
    const { States: states } = JSON.parse(file);
    const copyWorker = states.FullLoad.ItemProcessor.States.CopyWorker;
    const [snapshotContainer] = states.ExportSnapshot.Parameters.Overrides.ContainerOverrides;
    expect(snapshotContainer.Environment).toContainEqual({ Name: 'PGFERRY_SNAPSHOT_MAX_HOLD_SECONDS', Value: String(copyWorker.TimeoutSeconds) });
  });

  it('is the one file both the construct and the local runner read', () => {
    expect(workflowFile).toBe(migrationDefinitionPath);
    expect(placeholders.length).toBeGreaterThan(fargateTasks.length);
  });

  it('is deployed as it is, only its placeholders substituted', () => {
    const [stateMachine] = Object.values(synthStack().template.findResources('AWS::StepFunctions::StateMachine'));
    const substitutions = Object.fromEntries(
      Object.entries(stateMachine!.Properties.DefinitionSubstitutions as Record<string, unknown>).map(([name, value]) => [name, render(value)]),
    );
    const deployed = deployedDefinition(stateMachine!);
    expect(deployed).not.toContain('${');
    expect(unsubstitute(deployed, substitutions)).toBe(file);
    expect(deployed).toMatch(/"HeartbeatSeconds": 300/);
  });

  it('is run locally as it is, only its placeholders substituted and HeartbeatSeconds left out', async () => {
    const wiring = { lambdas: lambdaFunctions, tasks: fargateTasks };
    const local = Object.fromEntries(placeholders.map((name) => [name, substituteLocally(`\${${name}}`, wiring)]));
    const { definition } = await loadLocalDefinition();
    const text = JSON.stringify(definition, null, 2);
    expect(text).not.toMatch(/HeartbeatSeconds/);
    expect(unsubstitute(text, local)).toBe(JSON.stringify(JSON.parse(withoutHeartbeats(file)), null, 2));
    expect(withoutHeartbeats(file)).not.toBe(file);
  });
});
