// Evaluates AWS requests against IAM identity policies with
// @cloud-copilot/iam-simulate (installed into the project's npm prefix by
// scripts/tools), conditions included (dynamodb:LeadingKeys,
// dynamodb:Attributes, s3:prefix, ...).
//
// stdin:  {"policies": {"<name>": <policy document>},
//          "requests": [{"id", "policy", "action", "resource", "context"}]}
// stdout: [{"id", "result", "detail"}], result being Allowed,
//         ImplicitlyDenied, ExplicitlyDenied or an error.
'use strict';
const path = require('node:path');
const prefix = process.env.PRISM_NPM_PREFIX;
if (!prefix) {
  console.error('PRISM_NPM_PREFIX is not set (scripts/tools exports it)');
  process.exit(2);
}
const { createRequire } = require('node:module');
const load = createRequire(path.join(prefix, 'node_modules', 'x.js'));
const { runSimulation } = load('@cloud-copilot/iam-simulate');

const ACCOUNT = '123456789012';

async function main() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const out = [];
  for (const r of input.requests) {
    const policy = input.policies[r.policy];
    if (!policy) {
      out.push({ id: r.id, result: 'error', detail: `no policy ${r.policy}` });
      continue;
    }
    const sim = await runSimulation(
      {
        request: {
          principal: `arn:aws:iam::${ACCOUNT}:role/${r.policy}`,
          action: r.action,
          resource: { resource: r.resource, accountId: ACCOUNT },
          contextVariables: r.context || {},
        },
        identityPolicies: [{ name: r.policy, policy }],
        serviceControlPolicies: [],
        resourceControlPolicies: [],
      },
      {},
    );
    if (sim.resultType === 'error') {
      out.push({ id: r.id, result: 'error', detail: JSON.stringify(sim.errors) });
    } else {
      out.push({ id: r.id, result: sim.overallResult, detail: '' });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
