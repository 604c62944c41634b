// A receiver of the gateway's event webhooks that verifies each delivery per the Standard
// Webhooks specification, with nothing but Node's own modules.
//
//   WEBHOOK_SECRET=whsec_... PORT=3000 node examples/verify-webhook.mjs
//
// It answers 204 to a delivery that verifies (the gateway counts it delivered) and 400 with
// the reason to one that does not (the gateway tries it again later). It prints one line per
// request: "listening on <url>" once, then "accepted <webhook-id> <type>" or
// "rejected <reason>".
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

// How far a delivery's timestamp may be from this machine's clock, either way: an older
// request may be a replay.
const TOLERANCE_SECONDS = 5 * 60;

class VerificationError extends Error {}

// The key of a "whsec_<base64>" secret.
function key(secret) {
  return Buffer.from(secret.replace(/^whsec_/, ""), "base64");
}

// The payload of a delivery whose headers prove it came from the holder of `secret`; throws
// VerificationError otherwise. `body` is the raw body, as received: verify before parsing.
function verify(secret, body, headers, now = Date.now() / 1000) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) {
    throw new VerificationError("missing webhook headers");
  }
  const sent = Number(timestamp);
  if (!/^\d+$/.test(timestamp) || Math.abs(now - sent) > TOLERANCE_SECONDS) {
    throw new VerificationError("timestamp outside the tolerance");
  }
  const expected = createHmac("sha256", key(secret))
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  // Several signatures during a secret rotation, space-separated: one that matches is enough.
  const matches = signatures.split(" ").some((signature) => {
    const [version, encoded] = signature.split(",", 2);
    if (version !== "v1" || !encoded) return false;
    const given = Buffer.from(encoded, "base64");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!matches) {
    throw new VerificationError("no signature matches");
  }
  return JSON.parse(body.toString("utf8"));
}

function serve(secret, port, host) {
  const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      try {
        const event = verify(secret, Buffer.concat(chunks), request.headers);
        console.log(`accepted ${request.headers["webhook-id"]} ${event.type}`);
        response.writeHead(204).end();
      } catch (error) {
        if (!(error instanceof VerificationError)) throw error;
        console.log(`rejected ${error.message}`);
        response.writeHead(400, { "Content-Type": "text/plain" }).end(error.message);
      }
    });
  });
  server.listen(port, host, () => {
    const { address, port: bound } = server.address();
    console.log(`listening on http://${address}:${bound}`);
  });
  process.on("SIGTERM", () => server.close());
}

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error("set WEBHOOK_SECRET to the endpoint's whsec_... secret");
  process.exit(2);
}
serve(secret, Number(process.env.PORT ?? 3000), process.env.HOST ?? "127.0.0.1");
