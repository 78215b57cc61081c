import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repositoryRoot } from '../../local/runner/index.js';
import { runCli as run } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';

const scratch = scratchDir('cli-test');
afterAll(() => scratch.remove());

describe('pgferry command line', () => {
  it('exits 2 listing all three paths of a spec with three typos (through the workflow)', () => {
    const spec = scratch.writeJson('typos.json', {
      nmae: 'typo-migration',
      mode: 'ful',
      source: { secert: 'env:SOURCE' },
      target: { secret: 'env:TARGET' },
    });
    const result = spawnSync(process.execPath, [join(repositoryRoot, 'bin', 'pgferry.js'), 'run', spec], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('Migration failed (SpecInvalid)');
    expect(result.stderr).toContain('The migration spec has 3 problems:');
    expect(result.stderr).toContain('- nmae: unknown field "nmae" — did you mean "name"?');
    expect(result.stderr).toContain('- mode: must be one of "full", "full+cdc", "cdc" (got "ful")');
    expect(result.stderr).toContain('- source.secert: unknown field "secert" — did you mean "secret"?');
  });

  it('precheck exits 2 on an invalid spec, before touching any database', async () => {
    const spec = scratch.writeJson('bad-name.json', { name: '1x', source: { secret: 'env:A' }, target: { secret: 'nope' } });
    const result = await run('precheck', spec);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('The migration spec has 2 problems:');
    expect(result.stderr).toContain('- name: must be 4–50 characters');
    expect(result.stderr).toContain('- target.secret: must be a Secrets Manager ARN');
  });

  it('exits 2 on a missing spec file or one that is not JSON', async () => {
    expect(await run('run', join(scratch.dir, 'absent.json'))).toMatchObject({ code: 2, stderr: expect.stringContaining('no such file') });
    const broken = join(scratch.dir, 'broken.json');
    (await import('node:fs')).writeFileSync(broken, '{"name": ');
    expect(await run('precheck', broken)).toMatchObject({ code: 2, stderr: expect.stringContaining('is not valid JSON') });
  });

  it('exits 2 naming what the file holds when its JSON is not an object, or nests absurdly deep, for run as for precheck', async () => {
    for (const [json, holds] of [['[]', 'an array'], ['null', 'null'], ['42', 'a number'], ['"spec"', 'a string']]) {
      const file = join(scratch.dir, 'not-object.json');
      (await import('node:fs')).writeFileSync(file, json);
      for (const command of ['run', 'precheck']) {
        expect(await run(command, file)).toMatchObject({ code: 2, stderr: expect.stringContaining(`holds ${holds}: a spec is one JSON object`) });
      }
    }
    const deep = join(scratch.dir, 'deep.json');
    (await import('node:fs')).writeFileSync(deep, `{"name": "deep-spec", "x": ${'['.repeat(8000)}${']'.repeat(8000)}}`);
    expect(await run('run', deep)).toMatchObject({ code: 2, stderr: expect.stringContaining('deeper than 32 levels') });
  });

  it('exits 2 on usage errors and prints help on --help', async () => {
    expect(await run()).toMatchObject({ code: 2, stderr: expect.stringContaining('Usage:') });
    expect(await run('migrate')).toMatchObject({ code: 2, stderr: expect.stringContaining('Unknown command "migrate"') });
    expect(await run('run')).toMatchObject({ code: 2, stderr: 'Usage: pgferry run SPEC [--report FILE] [--force] [--detach [--log FILE]]\n' });
    expect(await run('run', 'spec.json', '--log', 'run.log')).toMatchObject({ code: 2, stderr: expect.stringContaining('takes --log only with --detach') });
    expect(await run('precheck', 'spec.json', '--detach')).toMatchObject({ code: 2, stderr: expect.stringContaining('does not take --detach') });
    expect(await run('--bogus')).toMatchObject({ code: 2 });
    const help = await run('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('pgferry precheck SPEC');
    expect(help.stdout).toContain('--detach [--log FILE]');
    expect(help.stdout).toContain('pgferry start SPEC --state-machine ARN');
    expect(help.stdout).toContain('pgferry status EXECUTION_ARN');
    expect(await run('precheck', 'spec.json', '--at', '2030-01-01T00:00:00Z')).toMatchObject({
      code: 2,
      stderr: 'pgferry precheck does not take --at.\nUsage: pgferry precheck SPEC\n',
    });
  });

  it('status and cutover of a spec file read its target, not AWS', async () => {
    const spec = scratch.writeJson('local-control.json', {
      name: 'local-control',
      source: { secret: 'env:PGFERRY_CLI_TEST_SOURCE' },
      target: { secret: 'env:PGFERRY_CLI_TEST_UNSET' },
    });
    for (const command of ['status', 'cutover']) {
      const result = await run(command, spec);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('Secret env:PGFERRY_CLI_TEST_UNSET: environment variable PGFERRY_CLI_TEST_UNSET is not set');
    }
  });

  it('throttle takes its options only, refusing bad limits as usage errors before reading the spec', async () => {
    expect(await run('throttle')).toMatchObject({ code: 2, stderr: expect.stringContaining('Usage: pgferry throttle SPEC | EXECUTION_ARN [--rows N]') });
    expect(await run('throttle', 'absent.json', '--rows', 'many')).toMatchObject({ code: 2, stderr: expect.stringContaining('--rows must be a whole number of rows per second, 0 to lift the limit; not "many"') });
    expect(await run('throttle', 'absent.json', '--bytes=-1')).toMatchObject({ code: 2, stderr: expect.stringContaining('--bytes must be bytes per second') });
    expect(await run('throttle', 'absent.json', '--drop')).toMatchObject({ code: 2, stderr: expect.stringContaining('pgferry throttle does not take --drop') });
    expect(await run('cutover', 'absent.json', '--rows', '5')).toMatchObject({ code: 2, stderr: expect.stringContaining('pgferry cutover does not take --rows') });
    expect((await run('--help')).stdout).toContain('pgferry throttle SPEC [--rows N] [--bytes N|SIZE] [--off | --reset] [--phase load|cdc]');
  });

  it('prints the JSON Schema of the spec', async () => {
    const result = await run('spec-schema');
    expect(result.code).toBe(0);
    const schema = JSON.parse(result.stdout);
    expect(schema.required).toEqual(expect.arrayContaining(['name', 'source', 'target']));
    expect(schema.properties.mode.enum).toEqual(['full', 'full+cdc', 'cdc']);
  });
});
