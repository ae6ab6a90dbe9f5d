// The seed workload as a Node.js Lambda handler: connect, query, sleep, query, disconnect.
//
// The Python handler's contract (functions/app/handler.py, docs/contracts.md) on `pg`, the
// driver the source experiment used: the same request knobs (sleep_ms, queries, hold), the same
// response and per-request timings, the same way to the pooler (the EE's PgBouncer socket, no
// password) or to the database (CONNECT_DIRECT=1, with the secret's password). Each request
// opens its own pg Client and ends it, as the seed's handler did.
//
// Settings (and, when direct, the password) are read once per runtime at init: on Managed
// Instances the runtime client runs this module once in each of its worker threads, whose
// async handlers then share it, so "worker" in a response is pid:threadId, not a slot.

import os from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { threadId } from "node:worker_threads";

import pg from "pg";

export const MAX_SLEEP_MS = 60_000;
export const MAX_QUERIES = 100;
// Kept from the function's timeout for connecting, querying and answering (as in Python).
export const SLEEP_MARGIN_MS = 2_000;

/** The password field of an RDS-style JSON secret. The AWS SDK v3 ships in Lambda's Node.js
 * runtimes, so it is imported only here, only when a secret is to be read (locally: the
 * devDependency, against moto in tests/local/test_node_runtime.py). */
export async function readPasswordFromSecretsManager(secretArn) {
  const { SecretsManagerClient, GetSecretValueCommand } = await import(
    "@aws-sdk/client-secrets-manager"
  );
  const client = new SecretsManagerClient({});
  const value = await client.send(new GetSecretValueCommand({ SecretId: secretArn }));
  return String(JSON.parse(value.SecretString).password);
}

/** Where the handler connects and as whom: FunctionSettings.from_env in the Python handler. */
export async function settingsFromEnv(env, readSecret = readPasswordFromSecretsManager) {
  const direct = (env.CONNECT_DIRECT ?? "0") === "1";
  let host;
  let port;
  let password = null;
  if (direct) {
    host = required(env, "DB_HOST");
    port = intOf(env.DB_PORT ?? "5432", "DB_PORT");
    if (env.DB_SECRET_ARN) {
      password = await readSecret(env.DB_SECRET_ARN);
    } else if (env.DB_PASSWORD !== undefined) {
      password = env.DB_PASSWORD;
    } else {
      throw new Error("neither DB_SECRET_ARN nor DB_PASSWORD is set");
    }
  } else {
    // The extension's POOLER_RUN_DIR: pg, as libpq, reads a host that is a path as the folder
    // of the socket .s.PGSQL.<port>.
    host = env.POOLER_RUN_DIR ?? "/tmp";
    port = intOf(env.POOLER_PORT ?? "6432", "POOLER_PORT");
  }
  const timeout = env.FUNCTION_TIMEOUT_MS;
  return Object.freeze({
    arm: env.ARM ?? "unknown",
    eeId: env.POOLBENCH_EE_ID || env.AWS_LAMBDA_LOG_STREAM_NAME || os.hostname(),
    host,
    port,
    dbname: env.DB_NAME ?? "postgres",
    user: required(env, "DB_USER"),
    password,
    connectTimeoutS: intOf(env.CONNECT_TIMEOUT ?? "5", "CONNECT_TIMEOUT"),
    functionTimeoutMs: timeout ? intOf(timeout, "FUNCTION_TIMEOUT_MS") : null,
  });
}

/** The longest sleep_ms this function can serve, and why (sleep_limit in Python). */
export function sleepLimit(settings, context) {
  let timeout;
  let source;
  if (settings.functionTimeoutMs !== null) {
    [timeout, source] = [settings.functionTimeoutMs, "FUNCTION_TIMEOUT_MS"];
  } else if (typeof context?.getRemainingTimeInMillis === "function") {
    [timeout, source] = [Math.trunc(context.getRemainingTimeInMillis()), "time left"];
  } else {
    return [MAX_SLEEP_MS, `the handler's cap of ${MAX_SLEEP_MS} ms`];
  }
  const limit = Math.max(0, Math.min(MAX_SLEEP_MS, timeout - SLEEP_MARGIN_MS));
  return [
    limit,
    `the function times out after ${timeout} ms (${source}) and keeps` +
      ` ${SLEEP_MARGIN_MS} ms for connecting and querying`,
  ];
}

/** What one request asks for; the seed is sleep_ms=5000, queries=2, hold=true. Query string
 * first, then a JSON body; throws RequestError naming a bad parameter. */
export function paramsFromEvent(event) {
  const raw = {};
  const body = event?.body;
  if (body) {
    let parsed;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new RequestError("body is not JSON");
    }
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
      Object.assign(raw, parsed);
    }
  }
  Object.assign(raw, event?.queryStringParameters ?? {});
  return {
    sleep_ms: boundedInt(raw, "sleep_ms", 5000, MAX_SLEEP_MS),
    queries: boundedInt(raw, "queries", 2, MAX_QUERIES),
    hold: bool(raw, "hold", true),
  };
}

export class RequestError extends Error {}

// Python's int(): an integral string (surrounding spaces allowed), a number (truncated) or a
// boolean; anything else is not an integer.
function boundedInt(raw, name, fallback, maximum) {
  if (!Object.hasOwn(raw, name)) return fallback;
  const value = raw[name];
  let number;
  if (typeof value === "boolean") number = value ? 1 : 0;
  else if (typeof value === "number" && Number.isFinite(value)) number = Math.trunc(value);
  else if (typeof value === "string" && /^\s*[+-]?\d+\s*$/.test(value)) number = Number(value);
  else throw new RequestError(`${name} must be an integer`);
  if (!(number >= 0 && number <= maximum)) {
    throw new RequestError(`${name} must be between 0 and ${maximum}`);
  }
  return number;
}

function bool(raw, name, fallback) {
  if (!Object.hasOwn(raw, name)) return fallback;
  const value = String(raw[name]).toLowerCase();
  if (["1", "true", "yes"].includes(value)) return true;
  if (["0", "false", "no"].includes(value)) return false;
  throw new RequestError(`${name} must be true or false`);
}

function required(env, name) {
  const value = env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

function intOf(text, name) {
  if (!/^\s*[+-]?\d+\s*$/.test(text)) throw new Error(`${name} must be an integer: ${text}`);
  return Number(text);
}

const round3 = (ms) => Math.round(ms * 1000) / 1000;

/** One runtime's state (a worker thread on Managed Instances): settings, first request yet. */
export class Worker {
  constructor(settings) {
    this.settings = settings;
    this.cold = true;
    this.readyAt = performance.now(); // init's end: a first request that began before it waited
  }

  /** A new Client per connect, as the seed's handler; simple-protocol queries only, so
   * PgBouncer in transaction mode needs no prepared-statement support (1.18). */
  async connect() {
    const s = this.settings;
    const client = new pg.Client({
      host: s.host,
      port: s.port,
      database: s.dbname,
      user: s.user,
      password: s.password ?? undefined,
      connectionTimeoutMillis: s.connectTimeoutS * 1000,
      application_name: `poolbench-${s.arm}`,
    });
    // An error event on an idle client (the server went away) must not kill the runtime.
    client.on("error", (error) => console.error("pg client error:", error.message));
    await client.connect();
    return client;
  }

  /** The queries with the sleep split evenly between them (after the first if only one). */
  async run(params) {
    const timings = { connect_ms: 0, query_ms: [], slept_ms: 0 };
    if (params.queries === 0) {
      await timedSleep(params.sleep_ms, timings);
      return timings;
    }
    const pauseMs = params.sleep_ms / Math.max(params.queries - 1, 1);
    const client = params.hold ? await this.timedConnect(timings) : null;
    try {
      for (let i = 0; i < params.queries; i++) {
        if (i > 0) await timedSleep(pauseMs, timings);
        await this.query(client, timings);
      }
      if (params.queries === 1) await timedSleep(pauseMs, timings);
    } finally {
      if (client !== null) await client.end();
    }
    return timings;
  }

  async timedConnect(timings) {
    const start = performance.now();
    const client = await this.connect();
    timings.connect_ms = round3(timings.connect_ms + (performance.now() - start));
    return client;
  }

  async query(client, timings) {
    const own = client === null;
    const active = own ? await this.timedConnect(timings) : client;
    try {
      const start = performance.now();
      await active.query("select now()");
      timings.query_ms.push(round3(performance.now() - start));
    } finally {
      if (own) await active.end();
    }
  }
}

async function timedSleep(ms, timings) {
  const start = performance.now();
  await sleep(ms);
  timings.slept_ms = round3(timings.slept_ms + (performance.now() - start));
}

function response(statusCode, body, requestId) {
  return {
    statusCode,
    headers: { "Content-Type": "application/json", "X-Poolbench-Request-Id": requestId },
    body: JSON.stringify(body),
  };
}

/** A handler bound to one Worker: API Gateway REST proxy (1.0) event in, proxy response out. */
export function makeHandler(worker) {
  return async (event, context) => {
    const requestId = String(context?.awsRequestId ?? "");
    const cold = worker.cold;
    worker.cold = false;
    const identity = {
      arm: worker.settings.arm,
      ee: worker.settings.eeId,
      worker: `${process.pid}:${threadId}`,
      cold_start: cold,
      // ms from the end of this worker's init to its first request (null after that)
      init_age_ms: cold ? Math.round((performance.now() - worker.readyAt) * 10) / 10 : null,
    };
    let params;
    try {
      params = paramsFromEvent(event);
      const [limit, why] = sleepLimit(worker.settings, context);
      if (params.sleep_ms > limit) {
        throw new RequestError(`sleep_ms ${params.sleep_ms} is above ${limit}: ${why}`);
      }
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      return response(400, { ...identity, error: error.message }, requestId);
    }
    const start = performance.now();
    let timings;
    try {
      timings = await worker.run(params);
    } catch (error) {
      const s = worker.settings;
      console.error(`database error on ${s.host}:${s.port}:`, error);
      const kind = error?.constructor?.name ?? "Error";
      const code = error?.code ? ` ${error.code}` : "";
      return response(503, { ...identity, error: `database error: ${kind}${code}` }, requestId);
    }
    timings.total_ms = round3(performance.now() - start);
    return response(200, { ...identity, ...timings, params }, requestId);
  };
}

// Init once per runtime (per worker thread on Managed Instances), so a missing credential fails
// init rather than the first request; outside a Lambda runtime (tests) nothing runs at import.
export const handler =
  "AWS_LAMBDA_RUNTIME_API" in process.env
    ? makeHandler(new Worker(await settingsFromEnv(process.env)))
    : async () => {
        throw new Error("not in a Lambda runtime: AWS_LAMBDA_RUNTIME_API is not set");
      };
