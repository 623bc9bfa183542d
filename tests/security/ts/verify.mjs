// Verifies captured Homing deliveries with the official TypeScript Receiver of @upstash/qstash.
//
//   node verify.mjs cases.json   ->  prints {"accepted": [1|0, ...], "errors": {...}}
//
// cases.json: {"cases": [{"signature", "body", "url", "current", "next"}, ...]}. A case is
// accepted (1) when `verify` resolves to true; any throw or other result counts as refused (0).
import { readFileSync } from "node:fs";
import { Receiver } from "@upstash/qstash";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
const accepted = [];
const errors = {};
for (const c of doc.cases) {
  const receiver = new Receiver({ currentSigningKey: c.current, nextSigningKey: c.next });
  try {
    const ok = await receiver.verify({ signature: c.signature, body: c.body, url: c.url });
    accepted.push(ok === true ? 1 : 0);
  } catch (error) {
    accepted.push(0);
    const kind = `${error?.name ?? "Error"}: ${String(error?.message ?? error).slice(0, 40)}`;
    errors[kind] = (errors[kind] ?? 0) + 1;
  }
}
process.stdout.write(JSON.stringify({ accepted, errors }));
