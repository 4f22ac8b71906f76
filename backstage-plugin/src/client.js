'use strict';

/**
 * pltf's HTTP API, as the scaffolder module uses it: list actions, start a run with an
 * Idempotency-Key, follow its event stream, cancel it, read it, download a workspace.
 * Only Node 20's own fetch; no dependencies, so the packed module installs anywhere.
 */

/**
 * @typedef {{ field: string, message: string }} FieldProblem
 * @typedef {{ code?: string, message?: string, status?: number, fields?: FieldProblem[] }} PltfErrorBody
 * @typedef {{ seq: number, level: string, step?: string | null, message: string }} LogLine
 * @typedef {{ id: string, action: string, status: string, output?: Record<string, any> | null,
 *   error?: PltfErrorBody | null, links?: Record<string, string> }} Run
 * @typedef {{ id: string, description: string, schema: { input: Record<string, any>, output: Record<string, any> },
 *   examples?: { description: string, example: string }[] }} ActionDescription
 */

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
// A stream that drops is reopened from the last line seen (Last-Event-ID), this many times in a row.
const MAX_RECONNECTS = 5;

/** One line for a task log from pltf's error body: its message and the first field problems. */
function errorMessage(/** @type {PltfErrorBody | null | undefined} */ error, /** @type {string} */ fallback) {
  if (!error || typeof error.message !== 'string') return fallback;
  const problems = (error.fields ?? [])
    .slice(0, 5)
    .filter(item => item && item.field && item.message && !error.message?.includes(item.message))
    .map(item => `${item.field}: ${item.message}`);
  return problems.length ? `${error.message} (${problems.join('; ')})` : error.message;
}

class PltfError extends Error {
  /** @param {string} message @param {number} status @param {PltfErrorBody | undefined} body */
  constructor(message, status, body) {
    super(message);
    this.name = 'PltfError';
    this.status = status;
    this.body = body;
  }
}

class PltfClient {
  /** @param {{ baseUrl: string, token: string }} options */
  constructor({ baseUrl, token }) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
  }

  /** @param {string} path @param {RequestInit} [init] */
  async request(path, init = {}) {
    const headers = { Authorization: `Bearer ${this.token}`, ...(init.headers ?? {}) };
    let response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { ...init, headers });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new PltfError(`cannot reach pltf at ${this.baseUrl}: ${/** @type {Error} */ (error).cause ?? error}`, 0, undefined);
    }
    if (!response.ok) {
      const text = await response.text();
      /** @type {any} */
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      const fallback = `pltf answered ${response.status} to ${init.method ?? 'GET'} ${path}`;
      throw new PltfError(errorMessage(body?.error, fallback), response.status, body?.error);
    }
    return response;
  }

  /** @returns {Promise<ActionDescription[]>} */
  async listActions() {
    const response = await this.request('/v1/actions');
    return (await response.json()).actions;
  }

  /**
   * Starts a run and answers at once (`wait=false`); the same key gives back the same run.
   * @param {string} actionId @param {{ input: Record<string, any>, dryRun?: boolean, secrets?: Record<string, string> }} body
   * @param {string} idempotencyKey
   * @returns {Promise<{ run: Run, replayed: boolean }>}
   */
  async startRun(actionId, body, idempotencyKey) {
    const response = await this.request(`/v1/actions/${encodeURIComponent(actionId)}/runs?wait=false`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey },
      body: JSON.stringify(body),
    });
    return { run: await response.json(), replayed: response.headers.get('idempotent-replayed') === 'true' };
  }

  /** @param {string} runId @returns {Promise<Run>} */
  async getRun(runId) {
    const response = await this.request(`/v1/runs/${encodeURIComponent(runId)}`);
    return response.json();
  }

  /** @param {string} runId @returns {Promise<Run | undefined>} the run, or undefined when it had finished already */
  async cancel(runId) {
    try {
      const response = await this.request(`/v1/runs/${encodeURIComponent(runId)}/cancel`, { method: 'POST' });
      return await response.json();
    } catch (error) {
      if (error instanceof PltfError && error.status === 409) return undefined;
      throw error;
    }
  }

  /** @param {string} workspaceId @returns {Promise<Buffer>} the workspace's tar.gz */
  async workspaceArchive(workspaceId) {
    const response = await this.request(`/v1/workspaces/${encodeURIComponent(workspaceId)}/archive`);
    return Buffer.from(await response.arrayBuffer());
  }

  /** @param {string} runId */
  runUrl(runId) {
    return `${this.baseUrl}/v1/runs/${runId}`;
  }

  /**
   * Follows a run's event stream, calling onLog for each line as pltf writes it, until the run ends.
   * @param {string} runId
   * @param {{ onLog: (line: LogLine) => void, signal?: AbortSignal }} options
   * @returns {Promise<Run>} the finished run
   */
  async follow(runId, { onLog, signal }) {
    let lastId = '';
    for (let drops = 0; ; drops += 1) {
      const headers = /** @type {Record<string, string>} */ ({ Accept: 'text/event-stream' });
      if (lastId) headers['Last-Event-ID'] = lastId;
      try {
        const response = await this.request(`/v1/runs/${encodeURIComponent(runId)}/events`, { headers, signal });
        for await (const event of readEvents(/** @type {ReadableStream<Uint8Array>} */ (response.body))) {
          const payload = event.data ? JSON.parse(event.data) : {};
          if (event.event === 'log') {
            lastId = event.id || lastId;
            drops = 0;
            onLog(payload.body);
          } else if (event.event === 'completion') {
            return /** @type {Run} */ (payload.body);
          }
        }
      } catch (error) {
        // pltf's own refusal (404, 403) or a cancelled step ends it; a dropped connection does not.
        if (signal?.aborted || (error instanceof PltfError && error.status > 0)) throw error;
      }
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      if (drops >= MAX_RECONNECTS) {
        const run = await this.getRun(runId);
        if (TERMINAL.has(run.status)) return run;
        throw new PltfError(`lost the event stream of run ${runId} ${MAX_RECONNECTS} times in a row`, 0, undefined);
      }
    }
  }
}

/**
 * Server-sent events from a response body, one `{event, id, data}` per blank-line-separated block.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<{ event: string, id: string, data: string }>}
 */
async function* readEvents(body) {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of /** @type {AsyncIterable<Uint8Array>} */ (/** @type {unknown} */ (body))) {
    buffer += decoder.decode(chunk, { stream: true });
    // A CR at the end may be the first half of a CRLF split across chunks: keep it for the next one.
    const held = buffer.endsWith('\r') ? '\r' : '';
    buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: 'message', id: '', data: '' };
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event.event = value;
        else if (field === 'id') event.id = value;
        else if (field === 'data') data.push(value);
      }
      if (!data.length && event.event === 'message') continue; // a keep-alive ping
      event.data = data.join('\n');
      yield event;
    }
    buffer += held;
  }
}

module.exports = { PltfClient, PltfError, errorMessage, readEvents, TERMINAL };
