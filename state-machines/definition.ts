/**
 * The pgferry workflow, described once. `npm run asl` (state-machines/generate.ts) writes
 * migration.asl.json from it: CDK deploys that file with its `${…}` placeholders substituted,
 * the local runner executes it as is, and test/unit/infra-definition.test.ts checks that the
 * checked-in file is what this description generates. Change the workflow here, then run
 * `npm run asl`; never edit the JSON by hand.
 */
import {
  continueAsNew,
  COPY_WORKER_TIMEOUT_SECONDS,
  ecsTask,
  fromInput,
  lambdaStep,
  type State,
  specField,
  specFields,
  specPath,
  withCatch,
  withCleanupCatch,
} from './steps.js';

/** The generated file, next to this one. */
export { workflowFile as definitionFile } from './file.js';

const spec = { 'spec.$': specPath };

/**
 * Turns of the CDC and paused loops one execution runs before it continues as a new one. A
 * turn costs about 13 history events while waiting (up to about 20 with a restart or a
 * comparison): 1,000 turns stay well under the 25,000 events a Standard execution may have,
 * and at 14 minutes a turn span about 9 days. test/e2e/continue-as-new.test.ts measures it.
 */
export const MAX_LOOP_TURNS = 1000;

/** A Pass state that counts a turn of the loops in $.loop.turns. */
function countTurn(next: string): State {
  return { Type: 'Pass', Parameters: { 'turns.$': 'States.MathAdd($.loop.turns, 1)' }, ResultPath: '$.loop', Next: next };
}
const DAY_SECONDS = 86_400;

function choice(comment: string, choices: readonly State[], defaultState: string): State {
  return { Type: 'Choice', Comment: comment, Choices: choices, Default: defaultState };
}

const start: Record<string, State> = {
  ValidateSpec: withCatch(
    lambdaStep('ValidateSpec', {
      comment: 'Validates the migration spec (every problem at once) and fills in the defaults. The input is the spec, or {"spec": …, "resume": true} to resume a paused run, or {"spec": …, "force": true} to let a new run replace the tables of a finished one.',
      payload: { 'spec.$': '$' },
      result: ['spec', 'resume', 'force', 'continues', 'loop'],
      resultPath: '$.validated',
      outputPath: '$.validated',
      timeoutSeconds: 60,
      next: 'HasStartTime',
    }),
    // Nothing to clean up yet: no migration exists before the spec is valid.
    { next: 'DescribeFailure', resultPath: '$.error' },
  ),
  HasStartTime: choice(
    'Runs at once unless the spec names a start time.',
    [{ Variable: specField('startAt'), IsPresent: true, Next: 'WaitForStartTime' }],
    'Precheck',
  ),
  WaitForStartTime: { Type: 'Wait', TimestampPath: specField('startAt'), Next: 'Precheck' },
  Precheck: withCleanupCatch(
    lambdaStep('Precheck', {
      comment: 'Connectivity to both sides, server versions, and what CDC needs on the source. Fails with every failed check and its remedy.',
      payload: spec,
      result: ['checks'],
      resultPath: '$.precheck',
      timeoutSeconds: 180,
      next: 'SchemaPreData',
    }),
  ),
  SchemaPreData: withCleanupCatch(
    lambdaStep('SchemaPreData', {
      comment: 'Creates the control schema, then schemas, types, sequences, tables, partitions, primary keys, functions and views on the target, in dependency order. A resume instead takes over the paused run, whose objects are there.',
      payload: { ...spec, 'execution.$': '$$.Execution.Id', 'resume.$': '$.resume', 'force.$': '$.force', 'continues.$': '$.continues' },
      result: ['tables', 'objects'],
      resultPath: '$.preData',
      timeoutSeconds: 900,
      next: 'ResumesRun',
    }),
  ),
  ResumesRun: choice('A resume goes on from what the paused run has done.', [{ Variable: '$.resume', BooleanEquals: true, Next: 'PlanResume' }], 'SnapshotSource'),
};

const resume: Record<string, State> = {
  PlanResume: withCleanupCatch(
    lambdaStep('PlanResume', {
      comment: "Decides where the resumed run goes on from what it has done: the units left to copy, the load's finish, a new streamer from the target's checkpoint, or the comparison. Refuses a run whose slot is gone: that needs a reload.",
      payload: { ...spec, 'continues.$': '$.continues' },
      result: ['route', 'pendingUnits'],
      resultPath: '$.resumePlan',
      timeoutSeconds: 120,
      next: 'ResumeRoute',
    }),
  ),
  ResumeRoute: choice(
    'Where PlanResume says the run goes on.',
    (
      [
        ['load', 'ExportSnapshot'],
        ['resync', 'ResyncTables'],
        ['finish-load', 'FinishFullLoad'],
        ['stream', 'ResumeStreamer'],
        ['compare', 'Compare'],
        ['paused', 'Paused'],
        ['reverse', 'ReverseWait'],
      ] as const
    ).map(([route, next]) => ({ Variable: '$.resumePlan.route', StringEquals: route, Next: next })),
    'ResumeReplication',
  ),
  ResyncTables: withCleanupCatch(
    ecsTask('Copy', {
      comment: "A full+cdc run paused during its load: the tables with units left are copied again whole at a temporary slot's snapshot, and the stream applies their changes from its LSN on; the tables already loaded keep their rows.",
      integration: 'sync',
      environment: { PGFERRY_RESYNC: '1' },
      timeoutSeconds: COPY_WORKER_TIMEOUT_SECONDS,
      resultPath: null,
      retryFailedTask: true,
      next: 'ResumeStreamer',
    }),
  ),
  ResumeStreamer: withCleanupCatch(
    ecsTask('Replicate', {
      comment: 'Starts the CDC task of a resumed run whose apply has not begun: it waits for BeginApply, then streams from the checkpoint.',
      integration: 'callback',
      environment: { PGFERRY_RESUME: '1' },
      resultPath: null,
      next: 'ResumedLoadsData',
    }),
  ),
  ResumedLoadsData: choice(
    'Mode "cdc" has no load to finish.',
    [{ Variable: specField('mode'), StringEquals: 'cdc', Next: 'BeginApply' }],
    'FinishFullLoad',
  ),
};

const fullLoad: Record<string, State> = {
  SnapshotSource: choice(
    'A full load reads a snapshot of its own; with CDC the replication slot exports it, so the load meets the stream with no gap and no duplicate.',
    [{ Variable: specField('mode'), StringEquals: 'full', Next: 'ExportSnapshot' }],
    'StartReplication',
  ),
  ExportSnapshot: withCleanupCatch(
    ecsTask('Snapshot', {
      comment: 'Starts the task that exports the source snapshot the whole load reads and holds it open until the migration releases it.',
      integration: 'callback',
      // The copy workers read the snapshot for as long as they may run, and no longer.
      environment: { PGFERRY_SNAPSHOT_MAX_HOLD_SECONDS: String(COPY_WORKER_TIMEOUT_SECONDS) },
      resultPath: '$.snapshot',
      next: 'PlanFullLoad',
    }),
  ),
  StartReplication: withCleanupCatch(
    ecsTask('Replicate', {
      comment: 'Starts the CDC task: it creates the publication and the replication slot with its exported snapshot, reports them, holds the snapshot while the load needs it, then streams and applies changes once BeginApply allows it, until cutover has drained.',
      integration: 'callback',
      resultPath: '$.snapshot',
      next: 'LoadsData',
    }),
  ),
  LoadsData: choice(
    'Mode "cdc" streams into tables that are already there.',
    [{ Variable: specField('mode'), StringEquals: 'cdc', Next: 'BeginApply' }],
    'PlanFullLoad',
  ),
  PlanFullLoad: withCleanupCatch(
    lambdaStep('PlanFullLoad', {
      comment: 'Splits the load into work units (tables, ctid ranges of large tables) in the control schema, and sizes the worker pool.',
      payload: spec,
      result: ['units', 'workers'],
      resultPath: '$.plan',
      timeoutSeconds: 300,
      next: 'FullLoad',
    }),
  ),
  FullLoad: withCleanupCatch({
    Type: 'Map',
    Comment: `The copy workers, ${specFields.parallelism} at once, all reading the exported snapshot.`,
    ItemsPath: '$.plan.workers',
    ItemSelector: { ...spec, 'snapshot.$': '$.snapshot.snapshot', 'worker.$': '$$.Map.Item.Value' },
    ItemProcessor: {
      ProcessorConfig: { Mode: 'INLINE' },
      StartAt: 'CopyWorker',
      States: {
        CopyWorker: ecsTask('Copy', {
          comment: "A copy worker: takes pending units until none is left; a unit is one target transaction, so a killed worker's unit is redone.",
          integration: 'sync',
          environment: { PGFERRY_SNAPSHOT: fromInput('$.snapshot'), PGFERRY_WORKER: fromInput("States.Format('{}', $.worker)") },
          timeoutSeconds: COPY_WORKER_TIMEOUT_SECONDS,
          resultPath: null,
          retryFailedTask: true,
        }),
      },
    },
    ResultPath: null,
    Next: 'FinishFullLoad',
  }),
  FinishFullLoad: withCleanupCatch(
    lambdaStep('FinishFullLoad', {
      comment: "Checks that every unit was copied, sets the target's sequences from the source, and reports post-data itself when the copy workers built all of it.",
      payload: spec,
      result: ['units', 'rows', 'bytes', 'sequences', 'postDataLeft'],
      resultPath: '$.loaded',
      timeoutSeconds: 300,
      next: 'PostDataLeft',
    }),
  ),
  PostDataLeft: choice(
    'Post-data runs as a task only when it has statements to run: on AWS that saves starting a container.',
    [{ Variable: '$.loaded.postDataLeft', BooleanEquals: true, Next: 'SchemaPostData' }],
    'AfterPostData',
  ),
  SchemaPostData: withCleanupCatch(
    ecsTask('PostData', {
      comment: 'Secondary indexes, unique/check/exclusion constraints, validated foreign keys, triggers, then ANALYZE: none of them slowed or fired during the load.',
      integration: 'sync',
      timeoutSeconds: DAY_SECONDS,
      resultPath: null,
      next: 'AfterPostData',
    }),
  ),
  AfterPostData: choice(
    'With CDC, changes since the snapshot are applied before anything is compared.',
    [{ Variable: specField('mode'), StringEquals: 'full', Next: 'Compare' }],
    'BeginApply',
  ),
};

const replication: Record<string, State> = {
  BeginApply: withCleanupCatch(
    lambdaStep('BeginApply', {
      comment: 'Lets the CDC task apply the changes it streams, now that post-data has built the keys.',
      payload: spec,
      resultPath: null,
      timeoutSeconds: 120,
      next: 'CatchUp',
    }),
  ),
  CatchUp: { Type: 'Wait', Comment: 'The CDC loop: status every 2 seconds until cutover has drained.', Seconds: 2, Next: 'ReplicationStatus' },
  ReplicationStatus: withCleanupCatch(
    lambdaStep('ReplicationStatus', {
      comment: "Reads the streamer's heartbeat and lag from the control schema and says what to do: wait, restart a silent streamer, compare while replicating, cut over (caught up, and asked to or automatic), or finish once drained. While the answer is wait it looks again every 2 s for up to waitUpToSeconds, so one turn of the loop spans minutes: a Standard execution ends at 25,000 history events.",
      payload: { ...spec, waitUpToSeconds: 840 },
      result: ['action', 'lagSeconds', 'lagBytes', 'appliedLsn', 'rowsApplied', 'restarts', 'cutoverRequested'],
      resultPath: '$.replicationStatus',
      timeoutSeconds: 900,
      next: 'ReplicationNext',
    }),
  ),
  ReplicationNext: choice(
    'AwaitCutover: loops (comparing once when first caught up) until `pgferry cutover` (or cutover.mode auto) and lag under cutover.maxLagSeconds.',
    (
      [
        ['restart', 'ResumeReplication'],
        ['compare', 'LiveCompare'],
        ['cutover', 'Cutover'],
        ['drained', 'FinishCutover'],
      ] as const
    ).map(([action, next]) => ({ Variable: '$.replicationStatus.action', StringEquals: action, Next: next })),
    'CountTurn',
  ),
  CountTurn: countTurn('HistoryLeft'),
  HistoryLeft: choice(
    `Past ${MAX_LOOP_TURNS} turns of its loops the execution continues as a new one (a Standard execution ends at 25,000 history events; a turn costs at most about 20), unless a cutover is under way.`,
    [
      {
        And: [
          { Variable: '$.loop.turns', NumericGreaterThanEquals: MAX_LOOP_TURNS },
          { Variable: '$.replicationStatus.cutoverRequested', BooleanEquals: false },
        ],
        Next: 'ContinueAsNew',
      },
    ],
    'CatchUp',
  ),
  ResumeReplication: withCleanupCatch(
    ecsTask('Replicate', {
      comment: 'Starts a new CDC task when the streamer went silent; it resumes from the checkpoint in the target (an earlier streamer still alive is ended).',
      integration: 'callback',
      environment: { PGFERRY_RESUME: '1' },
      resultPath: null,
      next: 'CatchUp',
    }),
  ),
  LiveCompare: withCleanupCatch(
    ecsTask('Compare', {
      comment: 'Once caught up, compares source and target while changes still flow, each table in a consistent pair of snapshots (rows changed between them are left for later); at the cutover request, again and again only what changed since, so little is left for the comparison behind the fence. Then straight to the status, which cuts over at once when lag allows.',
      integration: 'sync',
      environment: { PGFERRY_LIVE: '1' },
      timeoutSeconds: DAY_SECONDS,
      resultPath: null,
      next: 'ReplicationStatus',
    }),
  ),
  Cutover: withCleanupCatch(
    lambdaStep('Cutover', {
      comment: 'Fences the source when cutover.fenceSource is set, then gives the streamer the source LSN to drain to.',
      payload: spec,
      result: ['drainLsn', 'fenced'],
      resultPath: '$.cutover',
      timeoutSeconds: 120,
      // Straight to the status, which looks every 100 ms while draining: applications cannot write meanwhile.
      next: 'ReplicationStatus',
    }),
  ),
  FinishCutover: withCleanupCatch(
    lambdaStep('FinishCutover', {
      comment:
        'Drained: sets the target sequences from the source, gives the triggers left disabled while replicating their source state, ' +
        'copies the large objects that changed (the stream does not carry them) and refreshes the materialized views; ' +
        'runs the final comparison itself when the comparison while replicating verified every table and little is left to read (no task to start behind the fence).',
      payload: spec,
      result: ['sequences', 'triggers', 'largeObjects', 'materializedViews', 'compared'],
      resultPath: '$.cutoverResult',
      timeoutSeconds: 900,
      next: 'FinalCompare',
    }),
  ),
};

const finish: Record<string, State> = {
  FinalCompare: choice(
    'The final comparison, source as it is now against target, unless cutover.finalCompare is off or FinishCutover ran it.',
    [
      { Variable: specField('finalCompare'), BooleanEquals: false, Next: 'FinishMigration' },
      { And: [{ Variable: '$.cutoverResult.compared', IsPresent: true }, { Variable: '$.cutoverResult.compared', BooleanEquals: true }], Next: 'FinishMigration' },
    ],
    'Compare',
  ),
  Compare: withCleanupCatch(
    ecsTask('Compare', {
      comment: "Row counts and range checksums per table, source at the load's snapshot against the target; mismatching ranges are bisected down to keys.",
      integration: 'sync',
      timeoutSeconds: DAY_SECONDS,
      resultPath: null,
      next: 'FinishMigration',
    }),
  ),
  FinishMigration: withCleanupCatch(
    lambdaStep('FinishMigration', {
      comment:
        'Fails on any comparison difference (naming tables and keys); otherwise marks the migration done and releases the snapshot; ' +
        'after a cutover it records (and publishes) how long applications could not write.',
      payload: spec,
      result: ['tables', 'compared', 'writeUnavailableSeconds', 'reverse'],
      resultPath: '$.result',
      timeoutSeconds: 300,
      next: 'ReverseArmed',
    }),
  ),
  ReverseArmed: choice('With cutover.reverse, changes on the target flow back to the source until finish or fallback.', [{ Variable: '$.result.reverse', BooleanEquals: true, Next: 'StartReverse' }], 'Done'),
  Done: { Type: 'Succeed' },
};

/** Errors of the Reverse loop never go to Cleanup (which would lift the fence): the loop goes on, and status shows them. */
const backToReverseLoop = { next: 'ReverseWait', resultPath: '$.reverseError' };

const reverse: Record<string, State> = {
  StartReverse: withCatch(
    ecsTask('Replicate', {
      comment: "Starts the reverse CDC task: it streams the target's reverse slot and applies the changes to the source (whose fence its sessions pass), skipping what pgferry itself applied.",
      integration: 'callback',
      environment: { PGFERRY_REVERSE: '1' },
      resultPath: null,
      next: 'ReverseWait',
    }),
    backToReverseLoop,
  ),
  ReverseWait: { Type: 'Wait', Comment: 'The Reverse loop: the target takes the writes, which flow back to the source.', Seconds: 2, Next: 'ReverseStatus' },
  ReverseStatus: withCatch(
    lambdaStep('ReverseStatus', {
      comment: "Reads the reverse stream's heartbeat and lag, and whether `pgferry fallback` or `pgferry finish` was asked for; looks again every 2 s for up to waitUpToSeconds while the answer is wait.",
      payload: { ...spec, waitUpToSeconds: 840 },
      result: ['action', 'lagSeconds', 'lagBytes', 'rowsApplied'],
      resultPath: '$.reverseStatus',
      timeoutSeconds: 900,
      next: 'ReverseNext',
    }),
    backToReverseLoop,
  ),
  ReverseNext: choice(
    'Falls back or finishes when asked; restarts a silent reverse streamer; otherwise waits.',
    (
      [
        ['restart', 'StartReverse'],
        ['fallback', 'Fallback'],
        ['finish', 'FinishAfterCutover'],
      ] as const
    ).map(([action, next]) => ({ Variable: '$.reverseStatus.action', StringEquals: action, Next: next })),
    'CountReverseTurn',
  ),
  CountReverseTurn: countTurn('ReverseHistoryLeft'),
  ReverseHistoryLeft: choice(
    `The Reverse loop's execution continues as a new one past ${MAX_LOOP_TURNS} turns too.`,
    [{ Variable: '$.loop.turns', NumericGreaterThanEquals: MAX_LOOP_TURNS, Next: 'ContinueAsNew' }],
    'ReverseWait',
  ),
  Fallback: withCatch(
    lambdaStep('Fallback', {
      comment:
        'pgferry fallback: fences the target, drains the reverse stream into the source, sets the sequences back, ends the reverse stream, lifts the source fence ' +
        'and points the application back (cutover.switch). A failure leaves both sides fenced and waits for pgferry fallback to be asked again.',
      payload: spec,
      result: ['drainLsn', 'sequences', 'windowSeconds'],
      resultPath: '$.fallback',
      timeoutSeconds: 900,
      next: 'Done',
    }),
    backToReverseLoop,
  ),
  FinishAfterCutover: withCatch(
    lambdaStep('FinishAfterCutover', {
      comment: 'pgferry finish: ends the reverse stream (drops its slot and publication), lifts the source fence, and with --drop-control removes the control schema from both sides.',
      payload: spec,
      result: ['fenceLifted', 'controlDropped'],
      resultPath: '$.finished',
      timeoutSeconds: 120,
      next: 'Done',
    }),
    backToReverseLoop,
  ),
};

const failure: Record<string, State> = {
  Cleanup: withCatch(
    lambdaStep('Cleanup', {
      comment: 'Pauses a run that streams changes once its slot exists: records the cause, lifts a cutover fence, keeps the slot and publication, and the tasks end. Any other run is marked failed and its slot and publication dropped. Never hides the original error.',
      payload: { ...spec, 'error.$': '$.error', 'execution.$': '$$.Execution.Id' },
      result: ['cleaned', 'paused'],
      resultPath: '$.cleanup',
      timeoutSeconds: 120,
      next: 'PausedOrFailed',
    }),
    { next: 'DescribeFailure', resultPath: '$.cleanupError' },
  ),
  PausedOrFailed: choice('A paused run waits to be resumed or abandoned.', [{ Variable: '$.cleanup.paused', BooleanEquals: true, Next: 'Paused' }], 'DescribeFailure'),
  Paused: withCatch(
    lambdaStep('PausedStatus', {
      comment: 'The paused run keeps its slot. Looks every 2 s for up to waitUpToSeconds whether it was resumed (pgferry resume starts an execution that takes it over) or abandoned (pgferry stop --drop).',
      payload: { ...spec, 'execution.$': '$$.Execution.Id', waitUpToSeconds: 840 },
      result: ['action', 'cause'],
      resultPath: '$.paused',
      timeoutSeconds: 900,
      next: 'PausedNext',
    }),
    { next: 'DescribeFailure', resultPath: '$.pausedError' },
  ),
  PausedNext: choice(
    'Waits while paused; ends when another execution resumed the run or it was abandoned.',
    [
      { Variable: '$.paused.action', StringEquals: 'handed-over', Next: 'HandedOver' },
      { Variable: '$.paused.action', StringEquals: 'abandoned', Next: 'MigrationAbandoned' },
    ],
    'CountPausedTurn',
  ),
  CountPausedTurn: countTurn('PausedHistoryLeft'),
  PausedHistoryLeft: choice(
    `A paused run's execution continues as a new one past ${MAX_LOOP_TURNS} turns too.`,
    [{ Variable: '$.loop.turns', NumericGreaterThanEquals: MAX_LOOP_TURNS, Next: 'ContinueAsNew' }],
    'PausedWait',
  ),
  PausedWait: { Type: 'Wait', Seconds: 2, Next: 'Paused' },
  ContinueAsNew: withCleanupCatch(
    continueAsNew({
      comment: "Starts a new execution of this state machine that takes the run over as it is (in the CDC loop or paused), so that no execution's history outgrows its limit: CDC can run for a year.",
      next: 'ContinuedAsNew',
    }),
  ),
  ContinuedAsNew: { Type: 'Succeed', Comment: 'The run goes on in the execution this one started.' },
  HandedOver: { Type: 'Succeed', Comment: 'The run goes on in the execution that resumed it.' },
  MigrationAbandoned: { Type: 'Fail', Error: 'pgferry.Abandoned', CausePath: '$.paused.cause' },
  DescribeFailure: withCatch(
    lambdaStep('DescribeFailure', {
      comment: 'Turns the caught error into an error name and a cause a person can read.',
      payload: { 'error.$': '$.error' },
      result: ['error', 'cause'],
      resultPath: '$.failure',
      timeoutSeconds: 60,
      next: 'MigrationFailed',
    }),
    { next: 'MigrationFailedUndescribed' },
  ),
  MigrationFailed: { Type: 'Fail', ErrorPath: '$.failure.error', CausePath: '$.failure.cause' },
  MigrationFailedUndescribed: {
    Type: 'Fail',
    Error: 'pgferry.Failed',
    Cause: 'The migration failed and its error could not be described; the execution history has the original error.',
  },
};

/** The workflow as Amazon States Language. */
export const migrationDefinition = {
  Comment:
    'pgferry: online PostgreSQL to PostgreSQL migration. The single source of truth for the workflow: CDK deploys it with definitionSubstitutions, the local runner executes it as is.',
  StartAt: 'ValidateSpec',
  States: { ...start, ...resume, ...fullLoad, ...replication, ...finish, ...reverse, ...failure },
};

/** The text of migration.asl.json. */
export function definitionText(): string {
  return `${JSON.stringify(migrationDefinition, null, 2)}\n`;
}
