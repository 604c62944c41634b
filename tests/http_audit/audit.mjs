// Runs graphql-http's server audit (GraphQL over HTTP conformance) against a running gateway.
//
//   node audit.mjs URL            (API key in the GATEWAY_API_KEY environment variable)
//
// Prints one JSON array on stdout: every audit's id, name, status ("ok", or "error" for a
// failed MUST, "warn" for a failed SHOULD, "notice" for a failed MAY) and, when it failed, the
// reason and the answer's status, content type and body.
import { auditServer } from 'graphql-http';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}
const key = process.env.GATEWAY_API_KEY;

// The audit has no option for headers: every request it makes goes through this fetch.
function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  if (key) headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithKey });
const report = [];
for (const result of results) {
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    const response = result.response;
    entry.answer = {
      status: response.status,
      contentType: response.headers.get('content-type'),
      allow: response.headers.get('allow'),
      body: response.bodyUsed ? '<read>' : (await response.text()).slice(0, 500),
    };
  }
  report.push(entry);
}
process.stdout.write(JSON.stringify(report, null, 1) + '\n');
