'use strict';

/**
 * pltf's actions as Backstage template actions `pltf:<id>`: each step is one pltf run, started
 * with an Idempotency-Key made of the task and step ids, its run id kept with ctx.checkpoint,
 * its log streamed into the task log as pltf writes it, cancelled with the task, and its
 * outputs set as the step's outputs.
 */

const path = require('node:path');
const { PltfError, errorMessage } = require('./client');
const { extractWorkspace, writeDirectoryContents, inside } = require('./files');

const RENDER = 'cookiecutter:render';
// The module's own inputs of pltf:cookiecutter:render, taken off before the input goes to pltf.
const WORKSPACE_INPUTS = {
  intoWorkspace: {
    type: 'boolean',
    default: false,
    description:
      "Write the rendered files into the task's workspace, for Backstage's own publish:* and catalog:register steps (always on in a dry run).",
  },
  targetPath: {
    type: 'string',
    default: '.',
    description: 'Where in the workspace the rendered files go.',
  },
};
// Every action's: a plan step in a real task (service:provision's findings and diff before the apply).
const DRY_RUN_INPUT = {
  type: 'boolean',
  default: false,
  description: "Run this step as a pltf dry run even in a real task (a template's plan step); always on in a dry run.",
};
const RUN_OUTPUTS = {
  runId: { type: 'string', description: "pltf's run" },
  runUrl: { type: 'string', description: "The run on pltf's API, with its log" },
  replayed: {
    type: 'boolean',
    description: 'The run was started by an earlier attempt of this step (a retried task): its effects are there already',
  },
};

/**
 * @typedef {import('./client').ActionDescription} ActionDescription
 * @typedef {import('./client').PltfClient} PltfClient
 * @typedef {import('@backstage/plugin-scaffolder-node').ActionContext<any, any>} ActionContext
 * @typedef {import('@backstage/plugin-scaffolder-node').TemplateAction<any, any>} TemplateAction
 */

/** `service:*`-style globs, as `pltf.actions` lists them. @param {string[]} patterns */
function matcher(patterns) {
  const expressions = patterns.map(
    pattern => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`),
  );
  return (/** @type {string} */ id) => expressions.some(expression => expression.test(id));
}

/** The schemas as Backstage shows them: the module's own inputs and outputs added. @param {ActionDescription} action */
function schemaOf(action) {
  const input = structuredClone(action.schema.input ?? { type: 'object' });
  const output = structuredClone(action.schema.output ?? { type: 'object' });
  if (action.id === RENDER) input.properties = { ...input.properties, ...WORKSPACE_INPUTS };
  // Only where pltf's own input has no field of that name, which then keeps its meaning.
  if (!input.properties?.dryRun) input.properties = { ...input.properties, dryRun: DRY_RUN_INPUT };
  output.properties = { ...output.properties, ...RUN_OUTPUTS };
  return { input, output };
}

/** pltf's examples name its own ids; the template step names ours. @param {ActionDescription} action */
function examplesOf(action) {
  return (action.examples ?? []).map(example => ({
    description: example.description,
    example: example.example.split(`action: ${action.id}\n`).join(`action: pltf:${action.id}\n`),
  }));
}

/** The step's log line for one of pltf's, with pltf's step name. @param {import('./client').LogLine} line */
function logLine(line) {
  return line.step ? `[${line.step}] ${line.message}` : line.message;
}

/**
 * @param {ActionDescription} described
 * @param {PltfClient} client
 * @returns {TemplateAction}
 */
function templateAction(described, client) {
  const actionId = described.id;
  /** @type {TemplateAction} */
  const action = {
    id: `pltf:${actionId}`,
    description: described.description,
    examples: examplesOf(described),
    supportsDryRun: true,
    schema: schemaOf(described),
    async handler(ctx) {
      const input = { ...ctx.input };
      const wantsFiles = actionId === RENDER && (Boolean(input.intoWorkspace) || Boolean(ctx.isDryRun));
      const targetPath = typeof input.targetPath === 'string' ? input.targetPath : '.';
      if (actionId === RENDER) {
        delete input.intoWorkspace;
        delete input.targetPath;
      }
      let dryRun = Boolean(ctx.isDryRun);
      if (!described.schema.input?.properties?.dryRun && 'dryRun' in input) {
        dryRun ||= Boolean(input.dryRun);
        delete input.dryRun;
      }
      const stepId = ctx.step?.id ?? actionId;
      // The task id survives Backstage's retries, so a retried step gets its first run back.
      const idempotencyKey = `backstage-${ctx.task.id}-${stepId}`;
      let replayedRun = true; // unless this attempt starts it
      const runId = await ctx.checkpoint({
        key: `pltf.run.${stepId}`,
        fn: async () => {
          const { run, replayed } = await client.startRun(
            actionId,
            // Not ctx.secrets: they hold the initiator's Backstage token, which stays in Backstage.
            { input, dryRun },
            idempotencyKey,
          );
          ctx.logger.info(`pltf ${replayed ? 'already had' : 'started'} run ${run.id} of ${actionId}: ${client.runUrl(run.id)}`);
          replayedRun = replayed;
          return run.id;
        },
      });
      ctx.output('runId', runId);
      ctx.output('runUrl', client.runUrl(runId));
      ctx.output('replayed', replayedRun);
      const cancelled = new AbortController();
      /** @type {Promise<unknown> | undefined} */
      let cancelling;
      const onAbort = () => {
        ctx.logger.warn(`the task was cancelled; cancelling pltf run ${runId}`);
        cancelling = client.cancel(runId).catch(error => ctx.logger.error(`could not cancel pltf run ${runId}: ${error.message}`));
        cancelled.abort(ctx.signal?.reason);
      };
      if (ctx.signal?.aborted) onAbort();
      else ctx.signal?.addEventListener('abort', onAbort, { once: true });
      let run;
      try {
        run = await client.follow(runId, {
          signal: cancelled.signal,
          onLog: line => {
            const log = line.level === 'error' ? ctx.logger.error : line.level === 'warning' ? ctx.logger.warn : ctx.logger.info;
            log.call(ctx.logger, logLine(line));
          },
        });
      } catch (error) {
        if (cancelled.signal.aborted) {
          await cancelling;
          throw new Error(`cancelled pltf run ${runId} of ${actionId}`);
        }
        throw error;
      } finally {
        ctx.signal?.removeEventListener('abort', onAbort);
      }
      if (run.status === 'cancelled') throw new Error(`pltf run ${runId} of ${actionId} was cancelled`);
      if (run.status !== 'succeeded') throw new Error(errorMessage(run.error, `pltf run ${runId} of ${actionId} ${run.status}`));
      const output = { ...(run.output ?? {}) };
      if (wantsFiles) {
        const root = inside(path.resolve(ctx.workspacePath), targetPath);
        const written = output.directoryContents
          ? await writeDirectoryContents(root, output.directoryContents)
          : await extractWorkspace(root, await client.workspaceArchive(output.workspaceId), output.directory);
        ctx.logger.info(`wrote ${written.length} rendered files into the workspace${targetPath === '.' ? '' : ` at ${targetPath}`}`);
        delete output.directoryContents; // in the workspace now; the task state need not carry it twice
      }
      for (const [name, value] of Object.entries(output)) ctx.output(name, value);
    },
  };
  return action;
}

/**
 * The template actions for pltf's actions that `patterns` lets through.
 * @param {ActionDescription[]} described @param {PltfClient} client @param {string[]} patterns
 */
function createPltfActions(described, client, patterns = ['*']) {
  const wanted = matcher(patterns);
  return described.filter(action => wanted(action.id)).map(action => templateAction(action, client));
}

/**
 * Refreshes the descriptions and schemas of registered actions in place; returns the ids pltf has
 * that are not registered (the scaffolder takes actions only at start-up).
 * @param {TemplateAction[]} registered @param {ActionDescription[]} described @param {string[]} patterns
 */
function refreshActions(registered, described, patterns = ['*']) {
  const wanted = matcher(patterns);
  const byId = new Map(registered.map(action => [action.id, action]));
  const added = [];
  for (const action of described.filter(item => wanted(item.id))) {
    const existing = byId.get(`pltf:${action.id}`);
    if (!existing) {
      added.push(action.id);
      continue;
    }
    existing.description = action.description;
    existing.examples = examplesOf(action);
    existing.schema = schemaOf(action);
  }
  return added;
}

module.exports = { createPltfActions, refreshActions, matcher, PltfError };
