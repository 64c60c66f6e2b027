#!/usr/bin/env node
// Call the cams-flows gateway from Node.js: the four Flow reads (GetFlow, ListFlows page after
// page, GetFlowPreviewUrl, GetFlowJsonAsset) with a deadline, retries that wait as long as the
// gateway's grpc-retry-pushback-ms trailer says (through examples/service-config.json), and the
// google.rpc error details (ErrorInfo, RetryInfo, BadRequest, QuotaFailure) decoded from
// grpc-status-details-bin.
//
//   npm ci --prefix examples/node
//   node examples/node/client.js get 926753328126430 --space cams-kei1
//   node examples/node/client.js get sim:throttle:500
//   node examples/node/client.js list --space sim:catalogue:45 --name flow_1
//   node examples/node/client.js preview 100000000000002
//   node examples/node/client.js asset 100000000000002
//   node examples/node/client.js quota --space cams-kei1
//
// Every answer's RateLimit metadata (ratelimit-policy, ratelimit: the limit that binds, what it
// leaves, when it resets) is printed with it; quota asks QuotaService/GetQuota, which spends
// nothing.
//
// Exit status: 0 on success, 1 on a gRPC error, 2 on a usage error.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const EXAMPLES = path.resolve(__dirname, '..');
const FLOWS_PROTO = 'cams/flows/v1/flows.proto';
const QUOTA_PROTO = 'cams/flows/v1/quota.proto';
// The RateLimit metadata of every FlowService answer (response headers, or trailers on a failure).
const RATELIMIT_HEADERS = ['ratelimit-policy', 'ratelimit'];

// Each command: the FlowService method it calls, and the CAMS action behind it, by which the
// simulated CAMS counts its calls.
const COMMANDS = {
  get: { method: 'GetFlow', action: 'GetFlow' },
  preview: { method: 'GetFlowPreviewUrl', action: 'GetFlowPreviewUrl' },
  asset: { method: 'GetFlowJsonAsset', action: 'GetFlowJSONAssest' }, // CAMS spells it so
  list: { method: 'ListFlows', action: 'ListFlow' },
};

const USAGE = `usage: node client.js [options] get|preview|asset FLOW_ID
       node client.js [options] list [--name FILTER] [--page-size N]
       node client.js [options] quota

Calls cams.flows.v1.FlowService and prints the answer, or the status with its details:
  get FLOW_ID       GetFlow: the flow
  preview FLOW_ID   GetFlowPreviewUrl: its preview URL and when it expires
  asset FLOW_ID     GetFlowJsonAsset: where its Flow JSON file is
  list              ListFlows: every page, following next_page_token until the last
  quota             QuotaService/GetQuota: the tenant's and the caller's limits and each CAMS
                    action's account budget (spends nothing)

options:
  --target HOST:PORT      gateway address (env CAMS_FLOWS_TARGET; default localhost:50051)
  --timeout SECONDS       deadline of each call (of each page, for list), retries included
                          (default: the service config's timeout, 5 s; none without a service
                          config)
  --space ID              CustSpaceId (default: empty, the account's own space)
  --name FILTER           list: only flows whose name matches it (CAMS's FlowName)
  --page-size N           list: flows per page, at most 100 (default 0: 20)
  --service-config FILE   gRPC service config JSON (default: examples/service-config.json;
                          "" for none)
  --tls                   TLS, with Node's CA roots
  --ca-file FILE          TLS, trusting the CA certificates in this PEM file
  --proto-dir DIR         directory holding ${FLOWS_PROTO} (default: the repository's proto/)
  --sandbox-url URL       the simulated CAMS's URL (env CAMS_SANDBOX_URL): then print how many
                          calls of the command's CAMS action it accepted for this flow id (for
                          list: this space)
The API key for a gateway with auth.mode = "api_key" is read from CAMS_FLOWS_API_KEY.`;

function usageError(message) {
  console.error(`error: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        target: { type: 'string', default: process.env.CAMS_FLOWS_TARGET || 'localhost:50051' },
        timeout: { type: 'string' },
        space: { type: 'string', default: '' },
        name: { type: 'string' },
        'page-size': { type: 'string' },
        // Where list starts: a next_page_token from an earlier listing (used to show a refused
        // token). Not in the usage: the client prints no tokens to resume from.
        'page-token': { type: 'string', default: '' },
        'service-config': { type: 'string', default: path.join(EXAMPLES, 'service-config.json') },
        tls: { type: 'boolean', default: false },
        'ca-file': { type: 'string' },
        'proto-dir': { type: 'string', default: path.join(EXAMPLES, '..', 'proto') },
        'sandbox-url': { type: 'string', default: process.env.CAMS_SANDBOX_URL || '' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    usageError(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const command = positionals[0];
  if (command === 'list' || command === 'quota') {
    if (positionals.length !== 1) usageError(`expected: ${command}, with no argument`);
  } else if (command in COMMANDS) {
    if (positionals.length !== 2) usageError(`expected: ${command} FLOW_ID`);
    if (values.name !== undefined || values['page-size'] !== undefined) {
      usageError('--name and --page-size are options of list');
    }
  } else {
    usageError('expected a command: get, preview, asset, list or quota');
  }
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeout !== undefined && !(timeout > 0)) {
    usageError(`--timeout ${values.timeout}: not a positive number of seconds`);
  }
  const pageSize = values['page-size'] === undefined ? 0 : Number(values['page-size']);
  if (!Number.isInteger(pageSize)) {
    usageError(`--page-size ${values['page-size']}: not a whole number`);
  }
  return { ...values, command, timeout, pageSize, flowId: positionals[1] };
}

// A client constructor of the gateway's package (FlowService, QuotaService), with stubs built from
// the proto at run time: there is no generated code to keep in sync.
function loadService(protoDir, proto = FLOWS_PROTO, service = 'FlowService', defaults = false) {
  if (!fs.existsSync(path.join(protoDir, proto))) {
    usageError(`${path.join(protoDir, proto)} not found (use --proto-dir)`);
  }
  const definition = protoLoader.loadSync(proto, {
    includeDirs: [protoDir],
    keepCase: false, // camelCase field names, as in the proto's JSON mapping
    enums: String, // FLOW_STATUS_DRAFT rather than 1
    longs: String,
    // FlowService's answers are printed as JSON output prints them, without the fields that hold
    // their default value; QuotaService's figures are printed all, a remaining of 0 included.
    defaults,
  });
  return grpc.loadPackageDefinition(definition).cams.flows.v1[service];
}

// google.rpc.Status and the detail messages, from the googleapis protos in ./proto (copied
// unchanged; protobufjs bundles the google/protobuf/*.proto they import).
const rpc = (() => {
  const dir = path.join(__dirname, 'proto', 'google', 'rpc');
  const root = new protobuf.Root().loadSync(
    [path.join(dir, 'status.proto'), path.join(dir, 'error_details.proto')],
    { keepCase: true },
  );
  return { root, Status: root.lookupType('google.rpc.Status') };
})();

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));

// The details of a failed call: each google.protobuf.Any in grpc-status-details-bin, decoded by
// the type its URL names ("type.googleapis.com/google.rpc.ErrorInfo").
function statusDetails(trailers) {
  const raw = trailers ? trailers.get('grpc-status-details-bin') : [];
  if (raw.length === 0) return null;
  const status = rpc.Status.decode(raw[0]);
  return status.details.map((any) => {
    const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = rpc.root.lookup(name);
    if (!(type instanceof protobuf.Type)) return { name, value: null };
    const value = type.toObject(type.decode(any.value), { longs: Number, defaults: true });
    return { name, value };
  });
}

function durationMs(duration) {
  return Math.round((duration.seconds || 0) * 1000 + (duration.nanos || 0) / 1e6);
}

function printError(error) {
  console.log(`error: ${CODE_NAMES[error.code]}: ${error.details}`);
  const trailers = error.metadata;
  const pushback = trailers ? trailers.get('grpc-retry-pushback-ms') : [];
  if (pushback.length > 0) console.log(`  grpc-retry-pushback-ms: ${pushback[0]}`);
  printRateLimit(trailers, '  ');
  const details = statusDetails(trailers);
  if (details === null) {
    console.log('  (no google.rpc.Status details)');
    return;
  }
  for (const { name, value } of details) {
    if (name === 'google.rpc.ErrorInfo') {
      console.log(`  ErrorInfo: reason=${value.reason} domain=${value.domain}`);
      for (const key of Object.keys(value.metadata).sort()) {
        console.log(`    ${key}: ${value.metadata[key]}`);
      }
    } else if (name === 'google.rpc.RetryInfo') {
      console.log(`  RetryInfo: retry after ${durationMs(value.retry_delay)} ms`);
    } else if (name === 'google.rpc.BadRequest') {
      for (const v of value.field_violations) {
        console.log(`  BadRequest: ${v.field}: ${v.description}`);
      }
    } else if (name === 'google.rpc.QuotaFailure') {
      for (const v of value.violations) {
        console.log(`  QuotaFailure: ${v.subject}: ${v.description}`);
      }
    } else {
      console.log(`  type.googleapis.com/${name}`);
    }
  }
}

// A Timestamp as JSON writes it: RFC 3339 in UTC.
function rfc3339(timestamp) {
  const ms = Number(timestamp.seconds) * 1000 + Math.floor((timestamp.nanos || 0) / 1e6);
  return new Date(ms).toISOString();
}

// A response as the proto's JSON mapping writes it (GetFlow's expiry is in its flow,
// GetFlowPreviewUrl's at the top).
function printable(response) {
  for (const message of [response, response.flow]) {
    if (message && message.previewUrlExpireTime) {
      message.previewUrlExpireTime = rfc3339(message.previewUrlExpireTime);
    }
  }
  return JSON.stringify(response, null, 2);
}

// The RateLimit metadata, when the answer has it: the limits checked, and the one that binds now
// with the calls it leaves (r) and the seconds until it is whole (t).
function printRateLimit(metadata, indent = '') {
  for (const name of RATELIMIT_HEADERS) {
    const value = metadata ? metadata.get(name) : [];
    if (value.length > 0) console.log(`${indent}${name}: ${value[0]}`);
  }
}

function cacheHeader(headers) {
  return headers ? headers.get('x-cams-cache')[0] || '' : '';
}

function channelOptions(args) {
  const options = {
    'grpc.enable_retries': 1,
    // Use only the config below, not one from a DNS TXT record of the target's name.
    'grpc.service_config_disable_resolution': 1,
  };
  if (args['service-config']) {
    const text = fs.readFileSync(args['service-config'], 'utf8');
    JSON.parse(text); // fail here, with the file's name, rather than at the first call
    options['grpc.service_config'] = text;
  }
  return options;
}

function credentials(args) {
  if (args.tls || args['ca-file']) {
    const roots = args['ca-file'] ? fs.readFileSync(args['ca-file']) : null;
    return grpc.credentials.createSsl(roots);
  }
  return grpc.credentials.createInsecure();
}

function callMetadata() {
  const metadata = new grpc.Metadata();
  if (process.env.CAMS_FLOWS_API_KEY) {
    metadata.set('authorization', `Bearer ${process.env.CAMS_FLOWS_API_KEY}`);
  }
  return metadata;
}

// One call: resolves to its error or its response and headers, and how many attempts it took.
function unaryCall(client, method, request, args) {
  // The deadline travels as grpc-timeout and bounds every attempt together; the gateway bounds
  // its call to CAMS by what is left of it. Without --timeout, the service config's applies.
  const options = args.timeout ? { deadline: new Date(Date.now() + args.timeout * 1000) } : {};
  return new Promise((resolve) => {
    let headers = null;
    const call = client[method](request, callMetadata(), options, (error, response) => {
      // grpc-js reports how many attempts came before the one that answered.
      const received = error ? error.metadata : headers;
      const previous = received ? received.get('grpc-previous-rpc-attempts') : [];
      const attempts = previous.length > 0 ? Number(previous[0]) + 1 : 1;
      resolve({ error, response, headers, attempts });
    });
    call.on('metadata', (received) => {
      headers = received;
    });
  });
}

// get, preview and asset: one flow by id; the response as JSON.
async function readFlow(client, args) {
  const request = { flowId: args.flowId, custSpaceId: args.space };
  const { error, response, headers, attempts } = await unaryCall(
    client,
    COMMANDS[args.command].method,
    request,
    args,
  );
  if (error) {
    printError(error);
  } else {
    console.log(printable(response));
    console.log(`x-cams-cache: ${cacheHeader(headers)}`);
    printRateLimit(headers);
  }
  console.log(`attempts: ${attempts}`);
  return error ? 1 : 0;
}

// The categories by enum name; one this version does not know, with CAMS's text.
function categoryNames(flow) {
  const raw = flow.rawCategories || [];
  return (flow.categories || [])
    .map((name, i) => (name === 'FLOW_CATEGORY_UNSPECIFIED' ? `${name} (${raw[i]})` : name))
    .join(', ');
}

// list: every page of ListFlows, following next_page_token until it comes back empty.
async function listFlows(client, args) {
  let pages = 0;
  let flows = 0;
  let pageToken = args['page-token'];
  do {
    const request = {
      custSpaceId: args.space,
      flowName: args.name || '',
      pageSize: args.pageSize,
      pageToken,
    };
    const { error, response, headers, attempts } = await unaryCall(
      client,
      'ListFlows',
      request,
      args,
    );
    if (error) {
      printError(error);
      console.log(`attempts: ${attempts}`);
      return 1;
    }
    const page = response.flows || [];
    pages += 1;
    flows += page.length;
    const cache = `x-cams-cache: ${cacheHeader(headers)}`;
    console.log(`page: ${pages} flows: ${page.length} ${cache} attempts: ${attempts}`);
    for (const flow of page) {
      console.log(`  ${flow.flowId}  ${flow.flowName}  [${categoryNames(flow)}]`);
    }
    pageToken = response.nextPageToken || '';
  } while (pageToken);
  console.log(`pages: ${pages} flows: ${flows}`);
  return 0;
}

function printLimit(limit) {
  const resetMs = durationMs({ seconds: Number(limit.reset.seconds), nanos: limit.reset.nanos });
  console.log(
    `${limit.name}: rps=${limit.rps} burst=${limit.burst} remaining=${limit.remaining} ` +
      `reset=${resetMs} ms shadow=${limit.shadow}`,
  );
}

// quota: QuotaService/GetQuota for a tenant: its limit and the caller's, and the account's budget
// of each CAMS action. It spends nothing, so it may be polled.
async function quota(args) {
  const QuotaService = loadService(args['proto-dir'], QUOTA_PROTO, 'QuotaService', true);
  const client = new QuotaService(args.target, credentials(args));
  const deadline = new Date(Date.now() + (args.timeout || 5) * 1000);
  const answer = await new Promise((resolve) => {
    client.GetQuota({ custSpaceId: args.space }, callMetadata(), { deadline }, (error, response) =>
      resolve({ error, response }),
    );
  });
  client.close();
  if (answer.error) {
    printError(answer.error);
    return 1;
  }
  const { tenant, caller, actions } = answer.response;
  printLimit(tenant);
  if (caller) printLimit(caller);
  else console.log('caller: no limit of its own');
  for (const action of actions) {
    console.log(
      `account ${action.action}: rps=${action.accountRps} ` +
        `used_last_second=${action.usedLastSecond} waiting=${action.waiting}`,
    );
  }
  return 0;
}

// How many calls of the command's CAMS action the simulated CAMS accepted (its /_sandbox/stats)
// for the flow id (`calls_by_flow`) or, for list, the space (`calls_by_space`).
async function printSandboxCalls(sandboxUrl, args) {
  const reply = await fetch(`${sandboxUrl.replace(/\/+$/, '')}/_sandbox/stats`, {
    signal: AbortSignal.timeout(5000),
  });
  const stats = (await reply.json()).by_action[COMMANDS[args.command].action];
  const calls =
    args.command === 'list' ? stats.calls_by_space[args.space] : stats.calls_by_flow[args.flowId];
  console.log(`cams calls: ${calls || 0}`);
}

async function main() {
  const args = parseCommandLine();
  if (args.command === 'quota') {
    process.exitCode = await quota(args);
    return;
  }
  const FlowService = loadService(args['proto-dir']);
  const client = new FlowService(args.target, credentials(args), channelOptions(args));
  const started = process.hrtime.bigint();
  const status = await (args.command === 'list' ? listFlows : readFlow)(client, args);
  console.log(`elapsed: ${Number((process.hrtime.bigint() - started) / 1_000_000n)} ms`);
  client.close();
  if (args['sandbox-url']) await printSandboxCalls(args['sandbox-url'], args);
  process.exitCode = status;
}

main().catch((error) => {
  console.error(`error: ${error.message}`);
  process.exitCode = 1;
});
